"""The one rating loop: a judge rates units of work, one response (a pair's side) with the rules
it is rated on, optionally committing their rows into a ratings store. `ramo.rate.rate` runs
it over every rule of the pool, the Rule Adapter's application over each pair's k rules,
`RuleJudge.rate` in memory.

One prefill serves a unit's rules, and a unit's rows are committed together, so a killed run
loses at most the units since its last commit and never leaves part of a unit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ramo.checks import positive_integer
from ramo.io import Pair, Rule


# Units (responses) per store transaction: a kill loses at most this many responses' work,
# and a transaction per response would cost a disk sync each.
COMMIT_EVERY = 4


def rate_units(judge, pairs: Sequence[Pair], units: Sequence[tuple[int, int, Sequence[Rule]]], *,
               store=None, commit_every: int = COMMIT_EVERY, progress: bool = True,
               done: int = 0) -> Iterator[tuple[int, int, object]]:
    """Rates each unit (pair index, side, rules) and yields (pair index, side, JudgeScores).

    With a store (to which the caller has bound the pairs' responses: `ramo.rate.bind`), the
    rows of every `commit_every` units go in in one transaction (units the store already
    holds are skipped, never overwritten); what was rated before a failure is committed
    before the error propagates. done: units finished before this call, for the
    bar, which counts responses and shows ratings per second.
    """
    from ramo.progress import rating_bar
    from ramo.ratings import response_rows

    positive_integer("commit_every", commit_every)
    per_unit = max((len(rules) for _, _, rules in units), default=0)
    bar = rating_bar(done + len(units), per_unit, progress, initial=done)
    pending, cuts, in_pending = [], [], 0
    try:
        for i, side, rules in units:
            pair = pairs[i]
            scores, cut = judge.rate_unit(
                pair.prompt, pair.response_a if side == 0 else pair.response_b, rules)
            if store is not None:
                pending.extend(response_rows(pair.id, side, [r.id for r in rules], scores))
                if cut is not None:
                    cuts.append((pair.id, side, *cut))
                in_pending += 1
                if in_pending >= commit_every:
                    store.add(pending, skip_existing=True, cuts=cuts)
                    pending, cuts, in_pending = [], [], 0
            bar.update(1)
            yield i, side, scores
    finally:
        if pending:  # whole units only: safe to keep whatever stopped the loop
            store.add(pending, skip_existing=True, cuts=cuts)
        bar.close()
