"""Selections: per pair, the chosen rules and the label they give (`ramo select`,
`ramo adapter apply`), one JSON object per line.

    {"id": "p1", "rule_ids": ["r004", ...], "criterion": [0.91, ...], "reward_a": 1.3,
     "reward_b": -0.4, "margin": 1.7, "preference": 1}

preference: 1 when response A is better, -1 when B is, 0 for a tie. `criterion` is absent
for selections that did not rank by a criterion (an adapter's prediction).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ramo.io._problems import Problems, is_finite_number, type_name
from ramo.io.atomic import write_jsonl
from ramo.io.jsonl import read_jsonl

_NUMBERS = ("reward_a", "reward_b", "margin")


@dataclass(frozen=True)
class Selection:
    """One pair's selected rules (best first) and the label their summed scores give."""

    id: str
    rule_ids: list[str]
    reward_a: float
    reward_b: float
    margin: float
    preference: int
    criterion: list[float] | None = None

    def to_row(self) -> dict[str, Any]:
        """The file's row, in its column order."""
        row: dict[str, Any] = {"id": self.id, "rule_ids": list(self.rule_ids)}
        if self.criterion is not None:
            row["criterion"] = list(self.criterion)
        row.update({name: getattr(self, name) for name in _NUMBERS})
        row["preference"] = self.preference
        return row


def selections_from(pair_ids: Sequence[str], rule_ids: Sequence[str], selection, *,
                    criterion: bool = True) -> list[Selection]:
    """One Selection per row of a `RuleSelection` (indices -1, a padded slot, are left out);
    criterion=False leaves the criterion out (a ranking that is not the method's criterion)."""
    out = []
    indices = selection.indices.tolist()
    criteria = selection.criterion.double().tolist()
    numbers = [getattr(selection, name).double().tolist() for name in _NUMBERS]
    preference = selection.preference.tolist()
    for n, pair_id in enumerate(pair_ids):
        picked = [j for j in indices[n] if j >= 0]
        out.append(Selection(
            id=pair_id, rule_ids=[rule_ids[j] for j in picked],
            **{name: values[n] for name, values in zip(_NUMBERS, numbers)},
            preference=int(preference[n]),
            criterion=criteria[n][:len(picked)] if criterion else None))
    return out


def write_selections(path: str | os.PathLike, selections: Iterable[Selection]) -> None:
    write_jsonl(path, (s.to_row() for s in selections))


def load_selections(path: str | os.PathLike) -> list[Selection]:
    """A selections file, validated; ValueError lists bad lines by number, or says that
    there is no selection."""
    problems = Problems(path)
    rows = []
    for where, row in read_jsonl(path, problems):
        issues = _problems_of(row)
        if problems.admit(where, None if issues else row["id"], issues):
            rows.append(Selection(id=row["id"], rule_ids=list(row["rule_ids"]),
                              **{name: row[name] for name in _NUMBERS},
                              preference=row["preference"], criterion=row.get("criterion")))
    problems.raise_if_any()
    if not rows:
        raise ValueError(f"{os.fspath(path)}: no selections in the file")
    return rows


def _problems_of(row: Any) -> list[str]:
    if not isinstance(row, dict):
        return [f"expected an object, got {type_name(row)}"]
    issues = [f"missing column {c!r}" for c in ("id", "rule_ids", *_NUMBERS, "preference")
              if c not in row]
    if issues:
        return issues
    if not isinstance(row["id"], str) or not row["id"]:
        issues.append(f"id must be a non-empty string, got {row['id']!r}")
    if not isinstance(row["rule_ids"], list) or not all(isinstance(r, str) for r in row["rule_ids"]):
        issues.append("rule_ids must be a list of strings")
    for name in _NUMBERS:
        if not is_finite_number(row[name]):
            issues.append(f"{name} must be a finite number, got {row[name]!r}")
    criterion = row.get("criterion")
    if criterion is not None and (not isinstance(criterion, list)
                                  or not all(is_finite_number(c) for c in criterion)):
        issues.append(f"criterion must be a list of finite numbers, got {criterion!r}")
    # bool and float are excluded although True == 1 == 1.0, as for a pair's label.
    preference = row["preference"]
    if isinstance(preference, bool) or not isinstance(preference, int) or abs(preference) > 1:
        issues.append(f"preference must be -1, 0 or 1, got {preference!r}")
    return issues
