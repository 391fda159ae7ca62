"""What a rating is (ramo/ratings/ratings.py): store rows from one response's scores, and the
dense Ratings view with its completeness check and pair relevance."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from python_tests.rating_rows import dense, missing, sparse
from ramo.ratings import COLUMNS, FIELDS, Rating, Ratings, response_rows

PAIRS, RULES = ("a", "b", "c"), ("r0", "r1", "r2", "r3")


def _same(a: Ratings, b: Ratings) -> bool:
    """Equal ids and bit-equal fields, NaN where NaN (Ratings has no ==: tensors are elementwise)."""
    return (a.pair_ids == b.pair_ids and a.rule_ids == b.rule_ids
            and all(torch.equal(getattr(a, f).view(torch.int32), getattr(b, f).view(torch.int32))
                    for f in FIELDS))


def _scores(n: int, dtype=torch.float64, seed: int = 0) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    return SimpleNamespace(**{f: torch.rand(n, generator=g, dtype=torch.float64).to(dtype)
                              for f in FIELDS})


def _rows(keys) -> list[Rating]:
    """Made-up rows, a distinct value per key and field; 0.1-steps are not float32-exact."""
    return [Rating(p, s, r, *(0.1 * (k + 1) + 0.01 * f for f in range(len(FIELDS))))
            for k, (p, s, r) in enumerate(keys)]


def test_columns():
    assert FIELDS == ("p_yes", "p_no", "p_other", "score", "relevance")
    assert COLUMNS == ("pair_id", "side", "rule_id") + FIELDS == Rating._fields


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_response_rows(dtype):
    scores = _scores(3, dtype)
    scores.score.requires_grad_(dtype != torch.bfloat16)
    rows = response_rows("p", 1, ["x", "y", "z"], scores)
    assert all(type(row) is Rating for row in rows)
    assert [row[:3] for row in rows] == [("p", 1, "x"), ("p", 1, "y"), ("p", 1, "z")]
    for f in FIELDS:  # through float64: every value exactly as the judge gave it
        assert [getattr(row, f) for row in rows] == getattr(scores, f).detach().double().tolist()
        assert all(type(getattr(row, f)) is float for row in rows)
    assert response_rows("p", 0, [], _scores(0)) == []
    with pytest.raises(ValueError, match=r"scores.p_yes has shape \(3,\); expected \(2,\)"):
        response_rows("p", 0, ["x", "y"], scores)


def test_require_complete():
    full = dense(_rows([(p, s, r) for p in PAIRS[:2] for s in (0, 1) for r in RULES]),
                 PAIRS[:2], RULES)
    assert full.require_complete("somewhere") is full and missing(full) == []
    assert dense([], [], RULES).require_complete("x").score.shape == (0, 2, 4)
    with pytest.raises(ValueError) as err:
        dense(sparse(full), ["a", "zz"], RULES).require_complete("store.db")
    assert str(err.value) == ("8 of 16 ratings are missing from store.db: ('zz', 0, 'r0'), "
                              "('zz', 0, 'r1'), ('zz', 0, 'r2'), ('zz', 0, 'r3'), ('zz', 1, 'r0') "
                              "and 3 more")
    with pytest.raises(ValueError) as err:  # five or fewer: all named, no "and 0 more"
        dense(list(sparse(full))[1:], PAIRS[:2], RULES).require_complete("s")
    assert str(err.value) == "1 of 16 ratings are missing from s: ('a', 0, 'r0')"


def test_pair_relevance():
    keys = [(p, s, r) for p in PAIRS for s in (0, 1) for r in RULES]
    keys.remove(("b", 1, "r2"))
    ratings = dense(_rows(keys), PAIRS, RULES)
    relevance = ratings.pair_relevance()
    assert relevance.shape == (3, 4) and relevance.dtype == torch.float32
    assert math.isnan(relevance[1, 2]) and torch.isnan(relevance).sum() == 1
    assert torch.equal(relevance[0], (ratings.relevance[0, 0] + ratings.relevance[0, 1]) / 2)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"Ratings.p_yes has shape \(3, 4\); expected \(3, 2, 4\)"):
        Ratings(PAIRS, RULES, *(torch.zeros(3, 4) for _ in FIELDS))


def test_frozen_and_repr():
    ratings = dense(_rows([("a", 0, "r0")]), list(PAIRS), list(RULES))
    assert isinstance(ratings.pair_ids, tuple)
    with pytest.raises(AttributeError):
        ratings.score = ratings.p_yes
    assert repr(ratings) == "Ratings(3 pairs x 2 sides x 4 rules, 1 of 24 rated)"
