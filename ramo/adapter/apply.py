"""`ramo adapter apply`: label pairs with a Rule Adapter's k rules, rating only those.

The adapter reads each pair and names its k rules; the judge then rates only those k rules
on each response, k x 2 ratings per pair instead of R x 2, and the pair's label is the sum
of the scores over them (A is better when its sum is larger; equal sums are ties). The
output is a selections file (the format of `ramo select`, without "criterion").

With --ratings, ratings already in the store are reused and new ones are added as they are
made, so a killed run resumes where it stopped and a second run asks the judge nothing.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch

from ramo.adapter.model import pair_fields, top_k
from ramo.ops import select_rules


class AppliedSelections(list):
    """The selection rows (a list of dicts, ramo/io/selections.py format), and what they cost.

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


def apply_adapter(adapter, judge, pairs: Sequence, rules: Sequence, *, k: int | None = None,
                  store=None, progress: bool = True, batch_size: int = 32,
                  commit_every: int = 4) -> AppliedSelections:
    """Selection rows for `pairs` from the adapter's k rules, rated by `judge`.

    adapter: a `RuleAdapter` over exactly `rules` (else ValueError). judge: a `RuleJudge` (or
    anything with its `rate_response`, `fingerprint`, `template_fingerprint`). store: an
    open `RatingStore` of that judge, or None. batch_size: pairs per adapter forward pass.
    commit_every: responses per store transaction.

    Each response is rated on its pair's k rules only, in one `judge.rate_response` call
    (the rules not in the store, when there is one). The label comes from `select_rules`
    over the k columns with the adapter's logits as relevance and no discrepancy term, so the
    rows list the rules in the adapter's order and sum the scores in it.
    """
    adapter.check_rules(rules)
    k = adapter.resolve_k(k)
    fields = [pair_fields(p, i) for i, p in enumerate(pairs)]
    pair_ids = [f[0] for f in fields]
    if len(set(pair_ids)) != len(pair_ids):
        raise ValueError("pair ids must be distinct: ratings are stored under them")
    if isinstance(commit_every, bool) or not isinstance(commit_every, int) or commit_every < 1:
        raise ValueError(f"commit_every must be a positive integer, got {commit_every!r}")
    if store is not None:
        _check_store(store, judge)
    n, rule_ids = len(pairs), adapter.rule_ids
    logits = adapter.logits(pairs, batch_size) if n else torch.zeros(0, len(rules))
    picked = top_k(logits, k) if n else torch.zeros(0, k, dtype=torch.int64)
    picked_rows = picked.tolist()
    chosen = [[rule_ids[j] for j in row] for row in picked_rows]
    stored = _stored(store, pair_ids, chosen) if store is not None else set()

    from ramo.judge.rule_judge import progress_bar
    from ramo.rate import rating_rows  # the store's row layout, as `ramo rate` writes it

    todo = [(i, side, [c for c in range(k) if (pair_ids[i], side, chosen[i][c]) not in stored])
            for i in range(n) for side in (0, 1)]
    todo = [unit for unit in todo if unit[2]]
    bar = progress_bar(2 * n, k, progress, initial=2 * n - len(todo))
    scores = torch.zeros(n, 2, k)
    calls, pending = 0, []
    for i, side, columns in todo:
        prompt, response = fields[i][1], fields[i][2 + side]
        rated = judge.rate_response(prompt, response, [rules[picked_rows[i][c]] for c in columns])
        calls += len(columns)
        scores[i, side, columns] = rated.score.float().cpu()
        if store is not None:
            pending.extend(rating_rows(pair_ids[i], side, [chosen[i][c] for c in columns], rated))
            if len(pending) >= commit_every * k:
                store.add(pending, skip_existing=True)
                pending = []
        bar.update(1)
    if pending:
        store.add(pending, skip_existing=True)
    bar.close()
    if store is not None:
        scores = _read(store, pair_ids, chosen, k)  # the store is the truth, fresh or reused

    selection = select_rules(scores[:, 0], scores[:, 1], relevance=logits.gather(1, picked),
                             k=k, discrepancy_weight=0.0) if n else None
    rows = []
    if selection is not None:
        from ramo.io.selections import selection_rows

        # Columns back to rule indices (the columns come out in order: the logits are sorted).
        by_rule = selection._replace(indices=picked.gather(1, selection.indices))
        rows = [{key: value for key, value in row.items() if key != "criterion"}
                for row in selection_rows(pair_ids, rule_ids, by_rule)]
    return AppliedSelections(rows, k=k, judge_calls=calls, reused=2 * n * k - calls,
                             full_calls=2 * n * len(rules))


def _check_store(store, judge) -> None:
    for what in ("fingerprint", "template_fingerprint"):
        mine = getattr(judge, what)()
        theirs = getattr(store, "judge_fingerprint" if what == "fingerprint" else what)
        if mine != theirs:
            raise ValueError(f"ratings store {store.path} holds another judge's ratings "
                             f"({what}: the store has {theirs!r}, the judge has {mine!r})")


def _stored(store, pair_ids: list[str], chosen: list[list[str]]) -> set[tuple[str, int, str]]:
    """The (pair_id, side, rule_id) among the chosen ones that the store holds: one query
    per distinct rule, over the pairs that chose it."""
    wanting = defaultdict(list)
    for pair_id, rule_ids in zip(pair_ids, chosen):
        for rule_id in rule_ids:
            wanting[rule_id].append(pair_id)
    held = set()
    for rule_id, ids in wanting.items():
        missing = set(store.missing_units(ids, [rule_id]))
        held.update((pair_id, side, rule_id) for pair_id in ids for side in (0, 1)
                    if (pair_id, side) not in missing)
    return held


def _read(store, pair_ids: list[str], chosen: list[list[str]], k: int) -> torch.Tensor:
    """[N, 2, k] scores from the store: one query per distinct rule list."""
    groups = defaultdict(list)
    for n, rule_ids in enumerate(chosen):
        groups[tuple(rule_ids)].append(n)
    out = torch.zeros(len(pair_ids), 2, k)
    for rule_ids, members in groups.items():
        out[members] = store.to_tensors([pair_ids[n] for n in members], list(rule_ids))[0]
    return out


# ---- the command -----------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--adapter", required=True, type=Path,
                        help="adapter folder (from `ramo adapter train`)")
    parser.add_argument("--pairs", required=True, type=Path,
                        help="preference pairs: JSONL(.gz), Parquet or JSON")
    parser.add_argument("--rules", required=True, type=Path,
                        help="the adapter's rule pool; 'default' for ramo's")
    parser.add_argument("--out", required=True, type=Path, help="selections JSONL to write")
    parser.add_argument("--judge", default="default",
                        help="judge: a local folder, a hub id, or 'default' (SmolLM2-135M-Instruct)")
    parser.add_argument("--ratings", type=Path, default=None,
                        help="ratings store (sqlite) to reuse ratings from and add new ones to")
    parser.add_argument("--k", type=int, default=None,
                        help="rules per pair (default: the adapter's)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="pairs per adapter forward pass")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from ramo.adapter.model import RuleAdapter
    from ramo.io import load_pairs, load_rules
    from ramo.io.atomic import write_jsonl
    from ramo.judge import RuleJudge
    from ramo.rate import default_device, open_store

    device = default_device(None)
    # The cheap checks first: a mismatched pool or a bad k fails before the judge loads.
    adapter = RuleAdapter.from_pretrained(args.adapter, device=device)
    pairs = load_pairs(args.pairs)
    rules = load_rules(args.rules)
    adapter.check_rules(rules)
    k = adapter.resolve_k(args.k)
    judge = RuleJudge.from_pretrained(args.judge, device=device, progress=False)
    if args.ratings is None:
        selections = apply_adapter(adapter, judge, pairs, rules, k=k,
                                   progress=not args.no_progress, batch_size=args.batch_size)
    else:
        with open_store(args.ratings, judge) as store:
            selections = apply_adapter(adapter, judge, pairs, rules, k=k, store=store,
                                       progress=not args.no_progress,
                                       batch_size=args.batch_size)
    write_jsonl(args.out, selections)
    ties = sum(1 for row in selections if row["preference"] == 0)
    print(selections.summary())
    print(f"wrote {len(selections)} selections ({ties} ties) to {args.out}")
    return 0
