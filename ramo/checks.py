"""The checks of the Python API's numeric arguments, one ValueError naming the argument: the
trainers' (reward model, Rule Adapter, RL), which the pipeline runs up front, the rating
loop's, the store's and the adapter's. Nothing of ramo below it.

Finite numbers only: NaN and the infinities pass a comparison silently (NaN < 0 is False) and
then reach the outputs' JSON, which cannot hold them, after the work.
"""

from __future__ import annotations

import math
from typing import Any


def _number(value: Any) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value))


def positive_integer(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def optional_positive_integer(name: str, value: Any) -> None:
    """None (the option's "no limit" or "the default"), or a positive integer."""
    if value is not None:
        positive_integer(name, value)


def positive_number(name: str, value: Any) -> None:
    if not _number(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def non_negative_number(name: str, value: Any) -> None:
    if not _number(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
