"""The dense Ratings view built from store rows one value at a time, and its sparse side: the
oracle that the store's reads (`RatingStore.scores`, `score_blocks`) are checked against."""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import torch

from ramo.ratings import FIELDS, Rating, Ratings


def dense(rows: Iterable[Sequence], pair_ids: Sequence[str], rule_ids: Sequence[str]) -> Ratings:
    """Ratings on these pairs and rules from rows in COLUMNS order; rows of other pairs or rules
    are ignored, NaN where no row is given. Each value is rounded once, float64 -> float32."""
    pair_pos = {p: i for i, p in enumerate(pair_ids)}
    rule_pos = {r: j for j, r in enumerate(rule_ids)}
    assert len(pair_pos) == len(pair_ids) and len(rule_pos) == len(rule_ids)
    shape = (len(pair_ids), 2, len(rule_ids))
    fields = {f: torch.full(shape, float("nan"), dtype=torch.float32) for f in FIELDS}
    seen = set()
    for pair_id, side, rule_id, *values in rows:
        if pair_id not in pair_pos or rule_id not in rule_pos:
            continue
        key = (pair_pos[pair_id], side, rule_pos[rule_id])
        assert side in (0, 1) and key not in seen, (pair_id, side, rule_id)
        seen.add(key)
        for f, value in zip(FIELDS, values, strict=True):
            fields[f][key] = torch.tensor(value, dtype=torch.float64).float()
    return Ratings(tuple(pair_ids), tuple(rule_ids), *(fields[f] for f in FIELDS))


def sparse(ratings: Ratings) -> Iterator[Rating]:
    """The rated entries as store rows, in (pair order, side, rule order)."""
    for i, pair_id in enumerate(ratings.pair_ids):
        for side in (0, 1):
            for j, rule_id in enumerate(ratings.rule_ids):
                if ratings.valid[i, side, j]:
                    yield Rating(pair_id, side, rule_id,
                                 *(float(getattr(ratings, f)[i, side, j]) for f in FIELDS))


def missing(ratings: Ratings) -> list[tuple[str, int, str]]:
    """The (pair_id, side, rule_id) keys not rated, in (pair order, side, rule order)."""
    return [(p, side, r) for i, p in enumerate(ratings.pair_ids) for side in (0, 1)
            for j, r in enumerate(ratings.rule_ids) if not ratings.valid[i, side, j]]
