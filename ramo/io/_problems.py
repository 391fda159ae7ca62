"""Validation helpers shared by the rule and pair loaders.

A load either returns everything or raises: a half-loaded pool or pair set would be keyed,
rated and written as if it were whole. To save the user one fix-and-rerun cycle per bad row,
problems are collected over the whole file and the error lists the first few.
"""

from __future__ import annotations

import math
import os
from typing import Any

MAX_LISTED = 5


class Problems:
    """Collects one message per bad row; `raise_if_any` turns them into one ValueError."""

    def __init__(self, path: str | os.PathLike, limit: int = MAX_LISTED) -> None:
        self.path = os.fspath(path)
        self.limit = limit
        self.listed: list[str] = []
        self.count = 0
        self._first_seen: dict[str, str] = {}

    def add(self, where: str, messages: str | list[str]) -> None:
        if isinstance(messages, str):
            messages = [messages]
        self.count += 1
        if len(self.listed) < self.limit:
            self.listed.append(f"{where}: {'; '.join(messages)}")

    def admit(self, where: str, item_id: str | None, issues: list[str]) -> bool:
        """True for a clean row whose id is new; otherwise files the row's issues (a repeated
        id among them, naming where it was first seen) and returns False."""
        if item_id is not None and item_id in self._first_seen:
            issues = [*issues, f"duplicate id {item_id!r} (first at {self._first_seen[item_id]})"]
        if issues:
            self.add(where, issues)
            return False
        if item_id is not None:
            self._first_seen[item_id] = where
        return True

    def raise_if_any(self) -> None:
        if not self.count:
            return
        if self.count == 1:
            raise ValueError(f"{self.path}: {self.listed[0]}")
        shown = f"; the first {len(self.listed)}" if self.count > len(self.listed) else ""
        lines = [f"{self.path}: {self.count} bad rows{shown}:"]
        lines += [f"  {item}" for item in self.listed]
        if self.count > len(self.listed):
            lines.append(f"  ... and {self.count - len(self.listed)} more")
        raise ValueError("\n".join(lines))


def type_name(value: Any) -> str:
    """The JSON-ish name of a value's type, for messages read by people who wrote JSON."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, (list, tuple)):
        return "list"
    return type(value).__name__


def coerce_id(value: Any) -> tuple[str | None, str | None]:
    """An id as a string, or a problem message: (id, None) or (None, problem).

    Ints are accepted because hand-written files and pandas exports often number rows; bools
    are not (True is an int in Python, but an id of True is a mistake), and neither are floats
    (1.0 vs "1" would silently become different ids).
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None, f"'id' must be a string or an integer, got {type_name(value)}"
    text = str(value)
    if not text.strip():
        return None, "'id' is empty"
    return text, None


def is_finite_number(value: Any) -> bool:
    """Whether a value read from JSON is a finite number: not a bool (True is an int in
    Python), not NaN or +-Infinity (which Python's json reads), not an integer too large for
    a float (10**400)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
