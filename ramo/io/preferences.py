"""Labeled pairs (`Preference`: TRL's prompt / chosen / rejected, plus margin, rule_ids and
chosen_side): what the label step writes and the reward-model step trains on."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ramo.io._problems import Problems, is_finite_number, type_name
from ramo.io.conversations import Messages, as_messages
from ramo.io.pairs import Pair, as_pairs, load_pairs


# The labeled file's formats: TRL's standard (text) and conversational (messages) formats.
FORMATS = ("standard", "conversational")


@dataclass(frozen=True)
class Preference:
    """One labeled pair in TRL's preference format: `chosen` is the better response.

    margin: how much better (used by the loss when every pair has one), or None.
    rule_ids: the rules that labeled the pair (`ramo label` writes them), or None; kept for
    the record, not used by the loss.
    chosen_side: "a" or "b", which response of the original pair `chosen` is (`ramo label`
    writes it); what ties a preference to its judge ratings, which are stored by side.
    prompt_messages: as `Pair.prompt_messages` (the prompt's messages when it came as a
    conversation; `prompt` is then their text).
    """

    id: str
    prompt: str
    chosen: str
    rejected: str
    margin: float | None = None
    rule_ids: tuple[str, ...] | None = None
    chosen_side: str | None = None
    prompt_messages: Messages | None = field(default=None, hash=False, repr=False)

    @property
    def model_prompt(self) -> str | Messages:
        """As `Pair.model_prompt`: the messages when there are some, else the text."""
        return self.prompt_messages if self.prompt_messages is not None else self.prompt

    def to_row(self, format: str = "standard") -> dict[str, Any]:
        """The labeled file's row: prompt, chosen, rejected, then what is known of the rest.

        format: "standard" (TRL's standard format: the three as text) or "conversational"
        (the prompt as its messages, or as one user turn when it came as text; each response
        as one assistant message)."""
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, not {format!r}")
        row = {key: value for key, value in asdict(self).items() if key != "prompt_messages"}
        if self.rule_ids is not None:
            row["rule_ids"] = list(self.rule_ids)
        if format == "conversational":
            row["prompt"] = as_messages(self.model_prompt)
            for side in ("chosen", "rejected"):
                row[side] = [{"role": "assistant", "content": row[side]}]
        return {key: value for key, value in row.items() if value is not None}


def load_preferences(path: str | os.PathLike, *,
                     allow_empty_responses: bool = False) -> list[Preference]:
    """Labeled pairs from JSONL(.gz), Parquet or JSON, in file order.

    Rows: `prompt`, `chosen`, `rejected` (or hh-rlhf transcripts without `prompt`, or
    `response_a`/`response_b` with `label` 0 or 1; text or TRL's conversational messages, a
    file or a datasets folder: see ramo.io.load_pairs), optionally `margin` (a finite number) and
    `rule_ids` (a list of strings). Reading and the common checks are ramo.io.load_pairs's;
    ValueError names the file and each bad row (JSONL: its line number): malformed JSON,
    missing columns, empty responses, an unlabeled pair, a bad margin or rule_ids, and a
    margin present on some rows but not on others (a missing margin is not 0: filling it in
    would quietly train on a number nobody wrote).
    """
    pairs = load_pairs(path, allow_empty_responses=allow_empty_responses)  # never empty
    return _preferences(pairs, Problems(path))


def preferences_from_pairs(items: Sequence[Pair | Preference | dict]) -> list[Preference]:
    """Preferences from memory: `Preference`s (checked as they are), or pairs (`Pair`s, or
    mappings with a pair file's columns) labeled as a file's rows are; each bad item is named
    by its id. A `Pair` is the pair itself, so its label names the side of its chosen
    response (`chosen_side`, which regression onto its ratings needs) unless its extra says."""
    items = list(items)
    preferences = [p for p in items if isinstance(p, Preference)]
    if len(preferences) == len(items):
        problems = Problems("pairs")
        with_margin = [p for p in preferences if p.margin is not None]
        for p in preferences:
            issues = _extra_issues(p.margin, list(p.rule_ids) if p.rule_ids is not None else None,
                                   p.chosen_side, with_margin and f"pair {with_margin[0].id!r}")
            if issues:
                problems.add(f"pair {p.id!r}", issues)
        problems.raise_if_any()
        return preferences
    if preferences:
        raise ValueError("give either Preference rows or pairs, not a mix of the two")
    converted = _preferences(as_pairs(items), Problems("pairs"))
    return [replace(p, chosen_side="ab"[item.label])
            if isinstance(item, Pair) and p.chosen_side is None else p
            for item, p in zip(items, converted, strict=True)]


def _preferences(pairs: list[Pair], problems: Problems) -> list[Preference]:
    first_margin = next((p.where for p in pairs if p.extra.get("margin") is not None), None)
    out = []
    for pair in pairs:
        issues = []
        if pair.label not in (0, 1):
            issues.append("no preference: 'label' is null (need 0 or 1, or chosen/rejected)")
        margin, rule_ids = pair.extra.get("margin"), pair.extra.get("rule_ids")
        side = pair.extra.get("chosen_side")
        issues += _extra_issues(margin, rule_ids, side, first_margin)
        if issues:
            problems.add(pair.where or f"pair {pair.id!r}", issues)
            continue
        chosen, rejected = ((pair.response_a, pair.response_b) if pair.label == 0
                            else (pair.response_b, pair.response_a))
        out.append(Preference(
            id=pair.id, prompt=pair.prompt, chosen=chosen, rejected=rejected,
            margin=None if margin is None else float(margin),
            rule_ids=None if rule_ids is None else tuple(rule_ids), chosen_side=side,
            prompt_messages=pair.prompt_messages))
    problems.raise_if_any()
    return out


def _extra_issues(margin: Any, rule_ids: Any, side: Any, first_margin: str | None) -> list[str]:
    """What is wrong with a row's margin, rule_ids and chosen_side. first_margin: where the
    first row with a margin is, when any has one (then every row needs one)."""
    issues = []
    if margin is not None and not is_finite_number(margin):
        issues.append(f"'margin' must be a finite number, got {margin!r}")
    elif margin is None and first_margin:
        issues.append(f"no 'margin', but other rows have one (first at {first_margin}); "
                      "give every row a margin or none")
    if rule_ids is not None and (not isinstance(rule_ids, list)
                                 or not all(isinstance(r, str) for r in rule_ids)):
        issues.append(f"'rule_ids' must be a list of strings, got {type_name(rule_ids)}")
    if side not in (None, "a", "b"):
        issues.append(f"'chosen_side' must be \"a\" or \"b\", got {side!r}")
    return issues


def write_preferences(path: str | os.PathLike, preferences: Sequence[Preference],
                      format: str = "auto") -> None:
    """A labeled file, one `Preference.to_row(format)` per line, written atomically.

    format: "standard", "conversational", or "auto": conversational when any pair's prompt
    came as messages, else standard (a file keeps the format its pairs were given in)."""
    from ramo.io.atomic import write_jsonl

    if format == "auto":
        conversational = any(p.prompt_messages is not None for p in preferences)
        format = "conversational" if conversational else "standard"
    if format not in FORMATS:
        raise ValueError(f"format must be auto or one of {FORMATS}, not {format!r}")
    write_jsonl(path, (p.to_row(format) for p in preferences))
