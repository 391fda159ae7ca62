"""`ramo rate`, `ramo select` and `ramo label`: the steps from pairs to labeled pairs."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ramo.cli._common import (PAIRS_HELP, add_judge_arguments, add_no_progress,
                              add_pairs_and_rules, finite_number, judge_settings,
                              positive)

_PAIRS = PAIRS_HELP
_RULES = "rule pool: JSON, JSONL, YAML or text; 'default' for ramo's pool"


def rate_arguments(parser: argparse.ArgumentParser) -> None:
    from ramo.rate import rate
    from ramo.steps import defaults

    add_pairs_and_rules(parser, _PAIRS, _RULES)
    parser.add_argument("--out", required=True, type=Path, help="ratings store (sqlite file)")
    add_judge_arguments(parser, batch_size_flags=("--batch-size", "--judge-batch-size"))
    parser.add_argument("--commit-every", type=positive, default=defaults(rate)["commit_every"],
                        metavar="N", help="responses per transaction, each holding R rows "
                        "(default %(default)s)")
    parser.add_argument("--export", type=Path, default=None,
                        help="also write the whole store to this .parquet, .jsonl or .jsonl.gz file "
                        "(checked before the judge loads)")
    add_no_progress(parser)


def rate(args: argparse.Namespace) -> int:
    """Rate every (pair, side, rule) into a ratings store, resumably.

    The unit of work is one response (a pair's side) with all R rules: one prefill serves them
    all, and its R rows are committed together, so a killed run loses at most the units since
    its last commit and never leaves part of a unit. A rerun skips the units already stored.
    Ratings are keyed by response, so a response that several pairs share is rated once.

    Under torchrun (or accelerate launch) every rank takes the responses whose key falls to it
    and writes them to a store of its own, OUT.shards/rank-N.sqlite (one writer per file, no
    shared memory: safe on a network file system, which OUT.shards must be when the ranks
    span hosts, so that rank 0 can read it); after all are done rank 0 merges the shards into
    OUT and removes them. A killed job, rerun, resumes from its shards and from OUT;
    `ramo ratings merge` merges shards by hand.
    """
    from ramo.io import load_pairs, load_rules
    from ramo.io.atomic import check_output
    from ramo.rate import cut_counts, open_store
    from ramo.rate import rate as rate_step
    from ramo.ratings import RatingStore
    from ramo.steps import load_judge

    # Everything that can be wrong with the input is found before the store is touched, and
    # the flags before the judge loads.
    if args.out.is_dir():
        raise ValueError(f"--out {args.out}: is a folder; give the store's file name")
    check_output(args.out, "--out", {"--pairs": args.pairs, "--rules": args.rules})
    if args.export is not None:
        check_export(args.export)
        check_output(args.export, "--export", {"--out": args.out, "--pairs": args.pairs,
                                               "--rules": args.rules})
    settings = judge_settings(args)
    pairs = load_pairs(args.pairs)
    rules = load_rules(args.rules)
    rank, world = _dist()
    judge = load_judge(settings)
    judge.check_context(pairs, rules)
    shards = shard_folder(args.out)
    progress = not args.no_progress
    if world == 1:
        if shards.is_dir():  # a sharded run's leftovers: their ratings are not rated again
            _merge_shards(args.out, shards, single_writer=False)
        with open_store(args.out, judge) as store:
            rate_step(judge, pairs, rules, store, commit_every=args.commit_every,
                      progress=progress)
    else:
        # An empty OUT (its creation killed) has nothing rated elsewhere.
        elsewhere = (RatingStore.open_existing(args.out)
                     if args.out.is_file() and args.out.stat().st_size else None)
        try:
            if elsewhere is not None:
                elsewhere.check_judge(judge.fingerprint(), judge.template_fingerprint())
            with open_store(shards / f"rank-{rank}.sqlite", judge, single_writer=True) as store:
                rate_step(judge, pairs, rules, store, share=(rank, world),
                          rated_elsewhere=elsewhere, commit_every=args.commit_every,
                          progress=progress)
        finally:
            if elsewhere is not None:
                elsewhere.close()
    _barrier(world)
    if rank == 0:
        if world > 1:
            _merge_shards(args.out, shards, single_writer=True)
        with RatingStore.open_existing(args.out) as store:
            responses, stored = store.count_rated()
            # The run's pairs first: the store may hold others (an earlier run's).
            print(f"{len(pairs)} pairs x 2 sides x {len(rules)} rules = "
                  f"{len(pairs) * 2 * len(rules)} ratings in {args.out} (the store answers "
                  f"for {store.count()} over all its pairs; {responses} distinct responses "
                  f"rated, {stored} ratings stored)")
            cut = cut_counts(store, pairs)
            if cut["responses_cut"]:
                print(f"{cut['responses_cut']} responses were longer than the judge's "
                      f"{judge.max_length}-token context (the longest {cut['longest_cut']} "
                      "tokens) and were cut in the middle (recorded in the store; "
                      "--on-overflow error refuses them instead)")
            if args.export:
                store.export(args.export)
                print(f"exported to {args.export}")
    return 0


def check_export(path: Path) -> None:
    """What `RatingStore.export` would refuse at the end, refused before any rating: a file
    name it cannot write (`export_format`), a folder, or .parquet without pyarrow."""
    from ramo.ratings.export import export_format

    kind = export_format(path)
    if path.is_dir():
        raise ValueError(f"--export {path}: is a folder; give a file name")
    if kind == "parquet":
        from ramo.io.arrow import import_pyarrow

        import_pyarrow("--export to .parquet (or to .jsonl)")


def shard_folder(out: Path) -> Path:
    """Where the ranks of a multi-process `ramo rate --out OUT` write their stores."""
    return out.with_name(out.name + ".shards")


def _merge_shards(out: Path, shards: Path, *, single_writer: bool) -> None:
    """Merges every store in `shards` into `out`, then removes them (after the merge has
    committed, so a kill at any point loses nothing: the rerun merges again)."""
    from ramo.ratings import merge_stores

    paths = sorted(shards.glob("rank-*.sqlite"))
    # A rank killed while it created its shard leaves an empty file, which holds nothing.
    stores = [path for path in paths if path.stat().st_size > 0]
    if stores:
        bound, written = merge_stores(out, stores, single_writer=single_writer)
        print(f"merged {len(stores)} shards into {out}: {written} ratings, {bound} pair sides")
    for path in paths:
        path.unlink()
    for leftover in shards.glob("rank-*.sqlite-journal"):  # only a killed writer leaves one
        leftover.unlink()
    shards.rmdir()


def _dist() -> tuple[int, int]:
    """(rank, world size), joining the process group when launched with several ranks."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


def select_arguments(parser: argparse.ArgumentParser) -> None:
    from ramo.relevance import SOURCES
    from ramo.select import select
    from ramo.steps import defaults

    add_pairs_and_rules(parser, "the rated " + PAIRS_HELP,
                        "the rule pool they were rated on, or 'default' for ramo's pool")
    parser.add_argument("--ratings", required=True, type=Path,
                        help="ratings store written by `ramo rate` (every pair on every rule)")
    parser.add_argument("--out", required=True, type=Path, help="selections JSONL to write")
    d = defaults(select)
    parser.add_argument("-k", "--k", type=int, default=d["k"],
                        help=f"rules selected per pair (default {d['k']})")
    parser.add_argument("--relevance", default=d["relevance"], choices=SOURCES,
                        help="relevance regulariser: the judge's (default), prompt-rule "
                        "embedding cosine, or none")
    parser.add_argument("--encoder", default=d["encoder"],
                        help="sentence encoder for --relevance embedding (default: MiniLM)")
    parser.add_argument("--discrepancy-weight", type=finite_number, default=d["discrepancy_weight"],
                        help=f"weight of |s(A) - s(B)| in the criterion "
                        f"(default {d['discrepancy_weight']})")
    parser.add_argument("--relevance-weight", type=finite_number, default=d["relevance_weight"],
                        help=f"weight of the relevance in the criterion "
                        f"(default {d['relevance_weight']})")
    add_no_progress(parser)


def select(args: argparse.Namespace) -> int:
    """Per pair, the k rules of largest discrepancy (plus relevance), and the label they give.

    Reads the judge's ratings of every pair on every rule from a ratings store (`ramo rate`),
    runs the fused `select_rules` op over them a block of pairs at a time (so the store's
    size does not bound it) and writes one JSON object per pair: {"id", "rule_ids",
    "criterion", "reward_a", "reward_b", "margin", "preference"} (preference 1: response A
    is better, -1: B is, 0: a tie).
    """
    from ramo.io import load_pairs, load_rules
    from ramo.io.atomic import check_output
    from ramo.select import select_store, summary

    check_output(args.out, "--out", {"--pairs": args.pairs, "--rules": args.rules,
                                     "--ratings": args.ratings}, jsonl=True)
    pairs = load_pairs(args.pairs)
    rules = load_rules(args.rules)
    stats = select_store(pairs, rules, args.ratings, args.out, k=args.k,
                         relevance=args.relevance, encoder=args.encoder,
                         discrepancy_weight=args.discrepancy_weight,
                         relevance_weight=args.relevance_weight,
                         progress=not args.no_progress)
    print(summary(stats))
    print(f"wrote {args.out}")
    return 0


def label_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pairs", required=True, type=Path, action="append",
                        help="preference pairs (repeatable: e.g. the fully rated pairs and the "
                        "adapter-labeled ones)")
    parser.add_argument("--selections", required=True, type=Path, action="append",
                        help="selections JSONL from `ramo select` or `ramo adapter apply` "
                        "(repeatable)")
    parser.add_argument("--rules", default=None,
                        help="the rule pool; when given, every selected rule id must be in it")
    parser.add_argument("--out", required=True, type=Path, help="labeled JSONL to write")
    parser.add_argument("--format", default="auto",
                        choices=["auto", "standard", "conversational"],
                        help="TRL's standard format (prompt, chosen, rejected as text) or its "
                        "conversational one (the prompt's messages, each response one assistant "
                        "message); auto (default): conversational when the pairs came so")


def label(args: argparse.Namespace) -> int:
    """Preference rows for reward-model training from rule selections (TRL format).

    Each selected pair becomes {"id", "prompt", "chosen", "rejected", "margin", "rule_ids",
    "chosen_side"}: chosen is the response with the larger summed score on the pair's
    selected rules, margin the (non-negative) difference of the two sums. Ties carry no
    preference, so they are dropped and counted, never silently given to one side.
    """
    from ramo.io import load_pairs, load_rules, load_selections, write_preferences
    from ramo.io.atomic import check_output
    from ramo.label import label as label_step

    check_output(args.out, "--out", {"--pairs": args.pairs, "--selections": args.selections,
                                     "--rules": args.rules}, jsonl=True)
    pairs, seen = [], {}
    for path in args.pairs:
        for pair in load_pairs(path):
            if pair.id in seen:
                raise ValueError(f"pair id {pair.id!r} is in both {seen[pair.id]} and {path}")
            seen[pair.id] = path
            pairs.append(pair)
    selections, chosen_in = [], {}
    for path in args.selections:
        for selection in load_selections(path):
            if selection.id in chosen_in:
                raise ValueError(f"pair {selection.id!r} is selected in both "
                                 f"{chosen_in[selection.id]} and {path}")
            chosen_in[selection.id] = path
            selections.append(selection)
    rule_ids = [r.id for r in load_rules(args.rules)] if args.rules else None
    labeled, counts = label_step(pairs, selections, rule_ids)
    write_preferences(args.out, labeled, args.format)
    print(f"{counts['labeled']} labeled pairs written to {args.out}; "
          f"{counts['ties_dropped']} ties dropped; {counts['unselected']} pairs had no selection")
    return 0
