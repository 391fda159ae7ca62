"""The select step: per pair, the k rules of largest discrepancy (plus relevance), and the
label their summed scores give.

Runs the fused `select_rules` op on the judge's ratings of every pair on every rule and
returns one `Selection` per pair (ramo/io/selections.py): over all pairs at once (`select`),
or over consecutive blocks of them (`select_blocks`), so that a store of any size is read
with one block in memory. A pair's selection depends on its own ratings alone, so the two
give the same selections.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from ramo.io import Pair, Rule
from ramo.io.selections import Selection
from ramo.relevance import SOURCES


def select(pairs: Sequence[Pair], rules: Sequence[Rule], ratings, *, k: int = 5,
           relevance: str = "judge", encoder: str = "default", discrepancy_weight: float = 0.5,
           relevance_weight: float = 1.0) -> list[Selection]:
    """The select step. ratings: a complete `ramo.ratings.Ratings` of these pairs on these
    rules, in their order. relevance: "judge" (the judge's own, mean of the two sides),
    "embedding" (prompt-rule cosine under `encoder`) or "none" (discrepancy alone)."""
    return list(select_blocks(pairs, rules, [ratings], k=k, relevance=relevance,
                              encoder=encoder, discrepancy_weight=discrepancy_weight,
                              relevance_weight=relevance_weight))


def select_blocks(pairs: Sequence[Pair], rules: Sequence[Rule], blocks, *, k: int = 5,
                  relevance: str = "judge", encoder: str = "default",
                  discrepancy_weight: float = 0.5,
                  relevance_weight: float = 1.0) -> Iterator[Selection]:
    """`select` with the ratings given as complete `Ratings` of consecutive blocks of the
    pairs, in their order (`RatingStore.score_blocks`): the same selections, yielded a block
    at a time. The options are checked, and the embedding relevance computed, on the call;
    each block as it comes."""
    from ramo.relevance import embedding_relevance

    if relevance not in SOURCES:
        raise ValueError(f"relevance must be one of {SOURCES}, not {relevance!r}")
    check_k(k, rules)
    rel = None
    if relevance == "embedding":
        # Of every pair at once ([N, R], a tenth of the scores' size at R = 100): the
        # encoder's batches then do not depend on the blocks.
        rel = embedding_relevance([p.prompt for p in pairs], [r.text for r in rules],
                                  encoder=encoder)
    options = {"k": k, "discrepancy_weight": discrepancy_weight,
               "relevance_weight": relevance_weight}
    return _selected([p.id for p in pairs], [r.id for r in rules], blocks, relevance, rel,
                     options)


def select_store(pairs: Sequence[Pair], rules: Sequence[Rule], ratings, out, *,
                 progress: bool = True, **settings) -> dict:
    """The select step from a ratings store (path) to a selections file `out`, a block of
    pairs at a time (`select_blocks` over `RatingStore.score_blocks`): memory stays one
    block's whatever the store's size. The file is written atomically, so a missing rating,
    or a pair whose text changed since it was rated, found in a late block leaves none
    behind; a rule whose text changed since it was rated is refused before any block.
    progress: a bar over the pairs, moved a block at a time. settings: `select_blocks`'.
    Returns `counts`."""
    from ramo.io import write_selections
    from ramo.progress import bar
    from ramo.ratings import RatingStore, require_complete_blocks

    preference: list[int] = []  # for the counts: the selections are written as they come

    def noted(selections):
        for selection in selections:
            preference.append(selection.preference)
            yield selection

    with RatingStore.open_existing(ratings) as store, \
            bar(len(pairs), progress, unit="pair", desc="selecting") as shown:
        blocks = _counted(store.score_blocks(pairs, rules), shown)
        selections = select_blocks(pairs, rules, require_complete_blocks(blocks, store.path),
                                   **settings)
        write_selections(out, noted(selections))
    return preference_counts(pairs, preference)


def _counted(blocks: Iterable, shown) -> Iterator:
    """The blocks, moving the bar `shown` by a block's pairs once the next is asked for (by
    then the block's selections are written)."""
    for block in blocks:
        yield block
        shown.update(len(block))


def _selected(pair_ids: list[str], rule_ids: list[str], blocks: Iterable, relevance: str,
              rel, options: dict) -> Iterator[Selection]:
    from ramo.io.selections import selections_from
    from ramo.ops import select_rules

    start = 0
    for ratings in blocks:
        ids = pair_ids[start:start + len(ratings)]
        if list(ratings.pair_ids) != ids or list(ratings.rule_ids) != rule_ids:
            raise ValueError("the ratings are not of these pairs and rules, in this order")
        ratings.require_complete("the ratings")
        block_rel = None
        if relevance == "judge":
            block_rel = ratings.pair_relevance()
        elif rel is not None:
            block_rel = rel[start:start + len(ids)]
        selection = select_rules(ratings.score[:, 0], ratings.score[:, 1], block_rel,
                                 **options)
        yield from selections_from(ids, rule_ids, selection)
        start += len(ids)
    if start != len(pair_ids):
        raise ValueError("the ratings are not of these pairs and rules, in this order")


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
    return preference_counts(pairs, [s.preference for s in selections])


def preference_counts(pairs: Sequence[Pair], preference: Sequence[int]) -> dict:
    """`counts` from the selections' preferences alone (1, -1 or 0, in the pairs' order)."""
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
