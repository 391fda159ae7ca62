"""The rate step: the judge rates pairs' responses on rules into a ratings store, resumably.

The unit of work is one response (a pair's side) with the rules it is rated on, rated and
committed by the one rating loop (`ramo.judge.rating_loop.rate_units`). A response too long
for the judge's context is cut to fit it (or refused: `RuleJudge.check_context`), and the
store records which with its ratings. The store keys ratings by response
(`ramo.ratings.response_key`), so a response that appears in several pairs is rated once.

Under torchrun (or accelerate launch) every rank takes the responses whose key falls to it
(`share`) and writes a store of its own, merged by rank 0 at the end (see `ramo.cli.rating`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ramo.io import Pair, Rule
from ramo.checks import positive_integer
from ramo.judge.rating_loop import COMMIT_EVERY, rate_units


def open_store(path, judge, *, single_writer: bool = False):
    """The ratings store at `path` for this judge and template (created when absent; a store
    of another judge or template is refused). single_writer: see `RatingStore`."""
    from ramo.ratings import RatingStore

    return RatingStore(path, judge_fingerprint=judge.fingerprint(),
                       template_fingerprint=judge.template_fingerprint(),
                       judge_info=judge.describe(),
                       template_info={"template": judge.template.name, "normalize": judge.normalize,
                                      "max_length": judge.max_length},
                       single_writer=single_writer)


def bind(store, pairs: Sequence[Pair], indices: Sequence[int]) -> dict[tuple[int, int], str]:
    """Binds both sides of `pairs[indices]` to their responses in the store; returns
    {(pair index, side): response key}. ValueError when a pair's text changed under its id."""
    from ramo.ratings import response_key

    keys = {(i, side): response_key(pairs[i].prompt, text) for i in indices
            for side, text in enumerate((pairs[i].response_a, pairs[i].response_b))}
    store.bind((pairs[i].id, side, key) for (i, side), key in keys.items())
    return keys


def rate(judge, pairs: Sequence[Pair], rules: Sequence[Rule], store, *,
         indices: Sequence[int] | None = None, share: tuple[int, int] = (0, 1),
         rated_elsewhere=None, commit_every: int = COMMIT_EVERY, progress: bool = True) -> int:
    """The rate step: rates each distinct response of `pairs[indices]` (all by default) that
    the store lacks on some rule, once, into the store. Returns the number rated now.

    share: (rank, world size): only the responses whose key falls to this rank (a stable
    split by key, so ranks never rate the same response). rated_elsewhere: another store (read
    only, say the merged store of an earlier run) whose complete responses are skipped too.
    """
    from ramo.ratings import rule_rows

    positive_integer("commit_every", commit_every)  # before the store is bound to anything
    rank, world = share
    if not 0 <= rank < world:
        raise ValueError(f"share must be (rank, world size) with 0 <= rank < world, got {share}")
    rule_ids = [r.id for r in rules]
    indices = range(len(pairs)) if indices is None else indices
    index = {pairs[i].id: i for i in indices}
    if rated_elsewhere is not None:
        # By id there: a pair or rule whose text changed since that store rated it must not
        # be skipped as done. Checked before this store binds anything, so that a refused
        # run leaves it (a rank's shard) bound to nothing new.
        rated_elsewhere.check_texts([pairs[i] for i in index.values()])
        rated_elsewhere.check_rules(rule_rows(rules))
    keys = bind(store, pairs, list(index.values()))
    store.bind_rules(rule_rows(rules))  # a rule reworded under its id is refused, not skipped
    mine = {key for key in keys.values() if int(key, 16) % world == rank}
    todo = store.missing_units(list(index), rule_ids)
    if rated_elsewhere is not None:
        todo = set(todo) & set(rated_elsewhere.missing_units(list(index), rule_ids))
    units, picked = [], set()
    for i, side in sorted((index[pair_id], side) for pair_id, side in todo):
        key = keys[(i, side)]
        if key in mine and key not in picked:  # one unit per response: the rest share it
            picked.add(key)
            units.append((i, side, rules))
    for _ in rate_units(judge, pairs, units, store=store, commit_every=commit_every,
                        progress=progress, done=len(mine) - len(units)):
        pass
    return len(units)


def cut_counts(store, pairs: Sequence[Pair]) -> dict[str, int]:
    """How many of these pairs' sides the judge read cut to fit its context (as the store
    records), and the longest of them before the cut."""
    ids = {pair.id for pair in pairs}
    cut = [tokens for pair_id, _, tokens, _ in store.cut_units() if pair_id in ids]
    return {"responses_cut": len(cut), "longest_cut": max(cut, default=0)}
