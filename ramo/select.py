"""The select step: per pair, the k rules of largest discrepancy (plus relevance), and the
label their summed scores give.

Runs the fused `select_rules` op over all pairs at once on the judge's ratings of every pair
on every rule and returns one `Selection` per pair (ramo/io/selections.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from ramo.io import Pair, Rule
from ramo.io.selections import Selection
from ramo.relevance import SOURCES


def select(pairs: Sequence[Pair], rules: Sequence[Rule], ratings, *, k: int = 5,
           relevance: str = "judge", encoder: str = "default", discrepancy_weight: float = 0.5,
           relevance_weight: float = 1.0) -> list[Selection]:
    """The select step. ratings: a complete `ramo.ratings.Ratings` of these pairs on these
    rules, in their order. relevance: "judge" (the judge's own, mean of the two sides),
    "embedding" (prompt-rule cosine under `encoder`) or "none" (discrepancy alone)."""
    from ramo.io.selections import selections_from
    from ramo.ops import select_rules
    from ramo.relevance import embedding_relevance

    if relevance not in SOURCES:
        raise ValueError(f"relevance must be one of {SOURCES}, not {relevance!r}")
    check_k(k, rules)
    pair_ids, rule_ids = [p.id for p in pairs], [r.id for r in rules]
    if list(ratings.pair_ids) != pair_ids or list(ratings.rule_ids) != rule_ids:
        raise ValueError("the ratings are not of these pairs and rules, in this order")
    ratings.require_complete("the ratings")
    rel = None
    if relevance == "judge":
        rel = ratings.pair_relevance()
    elif relevance == "embedding":
        rel = embedding_relevance([p.prompt for p in pairs], [r.text for r in rules],
                                  encoder=encoder)
    selection = select_rules(ratings.score[:, 0], ratings.score[:, 1], rel, k=k,
                             discrepancy_weight=discrepancy_weight,
                             relevance_weight=relevance_weight)
    return selections_from(pair_ids, rule_ids, selection)


def check_k(k, rules, name: str = "k") -> None:
    """k against the pool, before anything is rated or written."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(rules):
        raise ValueError(f"{name} must be an integer from 1 to the pool's {len(rules)} rules, "
                         f"got {k!r}")


def label_agreement(pairs: Sequence[Pair], preference) -> dict | None:
    """How often a rule label (1: A better, -1: B better, 0: tie) agrees with the pair's own
    label (0: A better, 1: B better); ties are disagreements. None when no pair has one."""
    known = [(p.label, int(v)) for p, v in zip(pairs, list(preference)) if p.label is not None]
    if not known:
        return None
    agree = sum((label == 0 and v == 1) or (label == 1 and v == -1) for label, v in known)
    return {"agree": agree, "n": len(known), "rate": agree / len(known)}


def counts(pairs: Sequence[Pair], selections: Sequence[Selection]) -> dict:
    """A / B / tie counts of the selections' labels, and their agreement with the pairs' own
    labels (None when the pairs have none): what the select and adapter-apply steps report."""
    preference = [s.preference for s in selections]
    return {"pairs": len(pairs), "a_better": preference.count(1),
            "b_better": preference.count(-1), "ties": preference.count(0),
            "label_agreement": label_agreement(pairs, preference)}


def summary(stats: dict) -> str:
    """`counts` as one line."""
    line = (f"{stats['pairs']} pairs: A better {stats['a_better']}, B better "
            f"{stats['b_better']}, ties {stats['ties']}")
    agreement = stats["label_agreement"]
    if agreement:
        line += (f"; agrees with the data's own label on {agreement['agree']} of "
                 f"{agreement['n']} ({100.0 * agreement['rate']:.1f}%, ties count as "
                 "disagreement)")
    return line
