"""Prompts for RL (`ramo rl train`): rows with a `prompt` (text, or TRL's conversational
messages) and any other columns, read from the files and folders `load_pairs` reads."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ramo.io._problems import Problems, coerce_id, type_name
from ramo.io.conversations import Messages, check_messages, conversation_text
from ramo.io.pairs import read_rows


@dataclass(frozen=True)
class Prompt:
    """One prompt: `text` (a conversation's `conversation_text`), `messages` when it came as
    a conversation, the row's other columns in `extra`."""

    id: str
    text: str
    messages: Messages | None = field(default=None, hash=False)
    extra: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def model_prompt(self) -> str | Messages:
        return self.messages if self.messages is not None else self.text

    def to_row(self, conversational: bool = False) -> dict[str, Any]:
        """The row TRL's trainers take: `prompt` as given (text or messages; a text prompt as
        one user turn when conversational), then the rest."""
        from ramo.io.conversations import as_messages

        prompt = (as_messages(self.model_prompt) if conversational or self.messages is not None
                  else self.text)
        return {"id": self.id, **self.extra, "prompt": prompt}


def load_prompts(path: str | os.PathLike) -> list[Prompt]:
    """Every row's prompt, in file order. A missing, empty or malformed `prompt`, a bad or
    repeated `id`, or an empty file is a ValueError naming the file (and the rows)."""
    problems = Problems(path)
    prompts = []
    for index, (where, row) in enumerate(read_rows(path, problems)):
        prompt, issues = _prompt(row, index)
        if problems.admit(where, prompt and prompt.id, issues):
            prompts.append(prompt)
    problems.raise_if_any()
    if not prompts:
        raise ValueError(f"{os.fspath(path)}: no prompts in the file")
    return prompts


def _prompt(row: Any, index: int) -> tuple[Prompt | None, list[str]]:
    if not isinstance(row, dict):
        return None, [f"expected an object, got {type_name(row)}"]
    if "prompt" not in row:
        return None, ["missing column 'prompt'"]
    value, issues, messages = row["prompt"], [], None
    if isinstance(value, list):
        messages, issues = check_messages(value, "prompt")
        text = conversation_text(messages) if messages else ""
    elif isinstance(value, str):
        text = value
    else:
        return None, [f"'prompt' must be a string or a list of messages, got {type_name(value)}"]
    if not issues and not text.strip():
        issues.append("'prompt' is empty")
    prompt_id = str(index)
    if "id" in row:
        prompt_id, problem = coerce_id(row["id"])
        if problem:
            issues.append(problem)
    if issues:
        return None, issues
    extra = {k: v for k, v in row.items() if k not in ("id", "prompt")}
    return Prompt(prompt_id, text, messages, extra), []
