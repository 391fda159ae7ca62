"""Conversations in TRL's conversational format: lists of {"role", "content"} messages.

A pair row may give its prompt and responses as conversations: the prompt is every turn
before the response, each response is one assistant message. Without a prompt column,
chosen and rejected are whole conversations that share their first turns (TRL's implicit
prompt): the prompt is the longest run of messages they share, and what follows must be one
assistant message on each side.

The models that read text (the judge, which quotes the conversation inside its own
template; the Rule Adapter's and the relevance encoders) read `conversation_text`: a single
user turn is its content as it is (the pair is then the same as its standard-format row), a
longer conversation is written as an hh-rlhf transcript ("Human: ...\\n\\nAssistant: ...").
A reward model with a chat template renders the messages themselves (ramo.tokenization).
"""

from __future__ import annotations

from typing import Any

from ramo.io._problems import type_name

ROLES = ("system", "user", "assistant", "tool")
_SPEAKERS = {"system": "System", "user": "Human", "assistant": "Assistant", "tool": "Tool"}

# A checked conversation: a tuple of {"role", "content"} dicts.
Messages = tuple[dict[str, str], ...]


def check_messages(value: Any, name: str) -> tuple[Messages | None, list[str]]:
    """(the messages, []) or (None, problems naming the field and message index).

    Each message needs a known role and string content. Other keys are refused unless they
    are null (Arrow and Parquet give every struct the union of all rows' keys): ramo would
    drop them, and a tool call or a name quietly lost changes what a model reads.
    """
    # A tuple too: checked messages are one (Prompt.model_prompt hands them on as they are).
    if not isinstance(value, (list, tuple)) or not value:
        return None, [f"{name!r} must be a non-empty list of messages, got {type_name(value)}"
                      + (" (empty)" if isinstance(value, (list, tuple)) else "")]
    messages, issues = [], []
    for i, message in enumerate(value):
        where = f"{name!r} message {i}"
        if not isinstance(message, dict):
            issues.append(f"{where} must be an object with 'role' and 'content', "
                          f"got {type_name(message)}")
            continue
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            issues.append(f"{where}: 'role' must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            issues.append(f"{where}: 'content' must be a string, got {type_name(content)}")
        unread = sorted(k for k, v in message.items() if k not in ("role", "content")
                        and v is not None)
        if unread:
            issues.append(f"{where} has fields ramo does not read: {', '.join(unread)}")
        messages.append({"role": role, "content": content})
    return (None, issues) if issues else (tuple(messages), [])


def response_of(messages: Messages, name: str) -> tuple[str | None, list[str]]:
    """The text of a response given as messages: exactly one assistant message."""
    if len(messages) != 1 or messages[0]["role"] != "assistant":
        roles = ", ".join(m["role"] for m in messages)
        return None, [f"{name!r} must be one assistant message, got {len(messages)} "
                      f"message(s) ({roles})"]
    return messages[0]["content"], []


def split_conversations(chosen: Messages, rejected: Messages
                        ) -> tuple[Messages, str, str] | str:
    """(prompt messages, chosen text, rejected text) of two whole conversations sharing their
    first turns (TRL's implicit prompt), or a problem message."""
    shared = 0
    while (shared < min(len(chosen), len(rejected))
           and chosen[shared] == rejected[shared]):
        shared += 1
    if shared == 0:
        return ("no 'prompt' column, and 'chosen' and 'rejected' do not start with the same "
                "messages (the implicit prompt)")
    rest = {"chosen": chosen[shared:], "rejected": rejected[shared:]}
    texts, issues = {}, []
    for name, messages in rest.items():
        if not messages:
            issues.append(f"{name!r} ends where the shared prompt ends: no response")
            continue
        text, problems = response_of(messages, f"{name} after the shared prompt")
        texts[name] = text
        issues += problems
    if issues:
        return "; ".join(issues)
    return chosen[:shared], texts["chosen"], texts["rejected"]


def conversation_text(messages: Messages) -> str:
    """The text a text-reading model sees for a prompt given as messages."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    return "\n\n".join(f"{_SPEAKERS[m['role']]}: {m['content']}" for m in messages)


def as_messages(prompt: str | Messages) -> list[dict[str, str]]:
    """A prompt as chat messages: its own when it has them, else one user turn."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [dict(m) for m in prompt]
