"""Validation of what callers give the ratings store (rows, ids, sides, fingerprints, the
JSON descriptions), apart from the store itself: every value is checked before sqlite sees
it, so a bad row fails with a message naming it and nothing half-written; and the batching
that bounds the memory of streams of rows (merge, export)."""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

from ramo.ratings.ratings import COLUMNS, FIELDS


# Rows per batch of a stream: 65536 rows of a few dozen bytes each, a few MB in memory.
BATCH_ROWS = 65536


def batched(rows: Iterable, size: int = BATCH_ROWS) -> Iterator[list]:
    """Lists of `size` rows (the last one shorter) from an iterable (itertools.batched is
    Python 3.12's)."""
    rows = iter(rows)
    while batch := list(islice(rows, size)):
        yield batch


class DuplicateRatingError(ValueError):
    """`add` was given a (pair_id, side, rule_id) that is already stored."""


def check_rows(rows: Iterable[Sequence | Mapping]) -> list[tuple]:
    if isinstance(rows, (str, bytes, Mapping)):
        raise ValueError("add() takes an iterable of rows, not a single row")
    checked: list[tuple] = []
    first_seen: dict[tuple, int] = {}
    for i, row in enumerate(rows):
        try:
            values = check_row(row)
        except ValueError as exc:
            raise ValueError(f"rating row {i}: {exc}; nothing was written") from None
        key = values[:3]
        if key in first_seen:
            raise DuplicateRatingError(f"rating rows {first_seen[key]} and {i} have the same key "
                                       f"{key}; nothing was written")
        first_seen[key] = i
        checked.append(values)
    return checked


def check_row(row: Sequence | Mapping) -> tuple:
    if isinstance(row, Mapping):
        missing = [c for c in COLUMNS if c not in row]
        extra = sorted(map(str, set(row) - set(COLUMNS)))
        if missing or extra:
            raise ValueError(f"keys must be exactly {', '.join(COLUMNS)}"
                             + (f"; missing {', '.join(missing)}" if missing else "")
                             + (f"; unknown {', '.join(extra)}" if extra else ""))
        values = [row[c] for c in COLUMNS]
    elif isinstance(row, Sequence) and not isinstance(row, (str, bytes)):
        if len(row) != len(COLUMNS):
            raise ValueError(f"expected {len(COLUMNS)} values ({', '.join(COLUMNS)}), got {len(row)}")
        values = list(row)
    else:
        raise ValueError(f"expected a tuple or a dict, got {type(row).__name__}")
    return (check_id("pair_id", values[0]), check_side(values[1]), check_id("rule_id", values[2]),
            *(check_float(name, v) for name, v in zip(FIELDS, values[3:])))


def check_id(name: str, value: Any) -> str:
    # Strings only: converting 7 to "7" here would let one pair hide under two ids.
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: sqlite would fail mid-transaction
        raise ValueError(f"{name} {value!r} is not valid text") from None
    return value


def check_side(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value not in (0, 1):
        raise ValueError(f"side must be 0 (response A) or 1 (response B), got {value!r}")
    return int(value)


def check_float(name: str, value: Any) -> float:
    # float("0.5") would work; a string here means the caller mixed up its columns.
    if isinstance(value, (bool, str, bytes)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {number}")
    return number


def check_fingerprint(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def to_json(name: str, value: Any) -> str | None:
    if value is None:
        return None
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be JSON-serialisable: {exc}") from None


def from_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)
