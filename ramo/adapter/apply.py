"""The adapter-apply step: label pairs with a Rule Adapter's k rules, rating only those.

The adapter reads each pair and names its k rules; the judge then rates only those k rules
on each response, k x 2 ratings per pair instead of R x 2, and the pair's label is the sum
of the scores over them (A is better when its sum is larger; equal sums are ties). The
result is one `Selection` per pair (without a criterion: the adapter's ranking is not the
method's criterion).

With a store, ratings already in it are reused and new ones are added as they are made, so
a killed run resumes where it stopped and a second run asks the judge nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ramo.adapter.model import top_k
from ramo.io import Pair, Rule, as_pairs
from ramo.ops import select_rules


class AppliedSelections(list):
    """The `Selection`s of the pairs, in order, and what they cost.

    judge_calls: (response, rule) ratings the judge made for them; reused: ratings taken from
    the store instead; full_calls: R x 2 x N, what rating every rule would have taken.
    """

    def __init__(self, rows: list[dict], *, k: int, judge_calls: int, reused: int,
                 full_calls: int):
        super().__init__(rows)
        self.k = k
        self.judge_calls = judge_calls
        self.reused = reused
        self.full_calls = full_calls

    def summary(self) -> str:
        share = (f" ({100 * (self.judge_calls + self.reused) / self.full_calls:.1f}% of a full "
                 "rating)" if self.full_calls else "")
        return (f"{len(self)} pairs, k = {self.k}: the judge rated {self.judge_calls} "
                f"(response, rule) pairs, {self.reused} more came from the store, instead of "
                f"the {self.full_calls} that rating all rules takes{share}")


def apply_adapter(adapter, judge, pairs: Sequence[Pair], rules: Sequence[Rule], *,
                  k: int | None = None, store=None, progress: bool = True,
                  batch_size: int = 32) -> AppliedSelections:
    """Selections for `pairs` from the adapter's k rules, rated by `judge`.

    adapter: a `RuleAdapter` over exactly `rules` (else ValueError). judge: a `RuleJudge` (or
    anything with its `rate_response`, `fingerprint`, `template_fingerprint`). store: an
    open `RatingStore` of that judge (else StoreMismatchError), or None. batch_size: pairs per
    adapter forward pass.

    Each response is rated on its pair's k rules only (those not in the store, when there is
    one), through the one rating loop (`ramo.judge.rating_loop.rate_units`). The label comes from
    `select_rules` over the k columns with the adapter's logits as relevance and no
    discrepancy term, so the selections list the rules in the adapter's order and sum the
    scores in it.
    """
    from ramo.io.selections import selections_from
    from ramo.judge.rating_loop import rate_units
    from ramo.rate import bind
    from ramo.ratings import rule_rows

    adapter.check_rules(rules)
    k = adapter.resolve_k(k)
    pairs = as_pairs(pairs)
    if store is not None:
        store.check_judge(judge.fingerprint(), judge.template_fingerprint())
        bind(store, pairs, range(len(pairs)))  # so a response rated in another pair is reused
        store.bind_rules(rule_rows(rules))  # and a rule only with the text it was rated with
    n, rule_ids = len(pairs), adapter.rule_ids
    logits = adapter.logits(pairs, batch_size) if n else torch.zeros(0, len(rules))
    picked = top_k(logits, k) if n else torch.zeros(0, k, dtype=torch.int64)
    picked_rows = picked.tolist()
    if store is not None:  # what the store holds of the picked rules: [N, 2, R], sparse
        rated = store.scores(pairs, rules)
        held = rated.valid.gather(2, picked.unsqueeze(1).expand(n, 2, k))
    else:
        held = torch.zeros(n, 2, k, dtype=torch.bool)
    units = [(i, side, [rules[picked_rows[i][c]] for c in range(k) if not held[i, side, c]])
             for i in range(n) for side in (0, 1)]
    units = [unit for unit in units if unit[2]]
    scores = torch.zeros(n, 2, k)
    column = [{j: c for c, j in enumerate(row)} for row in picked_rows]
    index = {r.id: j for j, r in enumerate(rules)}
    rated_units = rate_units(judge, pairs, units, store=store, progress=progress,
                             done=2 * n - len(units))
    for (i, side, unit_rules), (_, _, rated_now) in zip(units, rated_units, strict=True):
        scores[i, side, [column[i][index[r.id]] for r in unit_rules]] = rated_now.score.float().cpu()
    if store is not None:  # the store is the truth, fresh or reused
        stored = store.scores(pairs, rules).score
        scores = stored.gather(2, picked.unsqueeze(1).expand(n, 2, k))
    calls = sum(len(unit[2]) for unit in units)
    selections = []
    if n:
        selection = select_rules(scores[:, 0], scores[:, 1], relevance=logits.gather(1, picked),
                                 k=k, discrepancy_weight=0.0)
        # Columns back to rule indices (the columns come out in order: the logits are sorted).
        by_rule = selection._replace(indices=picked.gather(1, selection.indices))
        selections = selections_from([p.id for p in pairs], rule_ids, by_rule, criterion=False)
    return AppliedSelections(selections, k=k, judge_calls=calls, reused=2 * n * k - calls,
                             full_calls=2 * n * len(rules))
