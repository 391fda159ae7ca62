"""Selections: per pair, the chosen rules and the label they give (`ramo select`,
`ramo adapter apply`), one JSON object per line.

    {"id": "p1", "rule_ids": ["r004", ...], "criterion": [0.91, ...], "reward_a": 1.3,
     "reward_b": -0.4, "margin": 1.7, "preference": 1}

preference: 1 when response A is better, -1 when B is, 0 for a tie. `criterion` is absent
for selections that did not rank by a criterion (an adapter's prediction).
"""

from __future__ import annotations

import math
import os
from typing import Any

from ramo.io._problems import Problems, type_name
from ramo.io.jsonl import read_jsonl

_NUMBERS = ("reward_a", "reward_b", "margin")


def selection_rows(pair_ids: list[str], rule_ids: list[str], selection) -> list[dict[str, Any]]:
    """Rows for a `RuleSelection` (indices -1, a padded slot, are left out)."""
    rows = []
    indices = selection.indices.tolist()
    criterion = selection.criterion.double().tolist()
    fields = [getattr(selection, name).double().tolist() for name in _NUMBERS]
    for n, pair_id in enumerate(pair_ids):
        picked = [j for j in indices[n] if j >= 0]
        rows.append({
            "id": pair_id,
            "rule_ids": [rule_ids[j] for j in picked],
            "criterion": criterion[n][:len(picked)],
            **{name: values[n] for name, values in zip(_NUMBERS, fields)},
            "preference": int(selection.preference[n]),
        })
    return rows


def load_selections(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a selections file, validated; ValueError lists bad lines by number."""
    problems = Problems(path)
    rows, seen = [], {}
    for where, row in read_jsonl(path, problems):
        issues = _problems_of(row)
        if not issues and row["id"] in seen:
            issues.append(f"duplicate id {row['id']!r} (first at {seen[row['id']]})")
        if issues:
            problems.add(where, issues)
            continue
        seen[row["id"]] = where
        rows.append(row)
    problems.raise_if_any()
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
        value = row[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            issues.append(f"{name} must be a finite number, got {value!r}")
    if row["preference"] not in (-1, 0, 1) or isinstance(row["preference"], bool):
        issues.append(f"preference must be -1, 0 or 1, got {row['preference']!r}")
    return issues
