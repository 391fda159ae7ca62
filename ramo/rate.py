"""`ramo rate`: rate every (pair, side, rule) into a ratings store, resumably.

The unit of work is one response (a pair's side) with all R rules: one prefill serves them
all, and its R rows are committed together, so a killed run loses at most the units since its
last commit and never leaves part of a unit. A rerun skips the units already stored.

Under torchrun (or accelerate launch) every rank takes the pairs whose index is its rank
modulo the world size and writes to the same store; rank 0 exports once all are done.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pairs", required=True, type=Path,
                        help="preference pairs: JSONL(.gz), Parquet or JSON (see README)")
    parser.add_argument("--rules", required=True, type=Path,
                        help="rule pool: JSON, JSONL, YAML or text; 'default' for ramo's pool")
    parser.add_argument("--judge", default="default",
                        help="judge: a local folder, a hub id, or 'default' (SmolLM2-135M-Instruct)")
    parser.add_argument("--out", required=True, type=Path, help="ratings store (sqlite file)")
    parser.add_argument("--template", default="rule-last", choices=["rule-last", "rule-first"])
    parser.add_argument("--normalize", default="vocab", choices=["vocab", "choices"])
    parser.add_argument("--batch-size", type=int, default=None,
                        help="sequences per forward pass (default: RuleJudge's)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--device", default=None,
                        help="cpu or cuda (default: cuda:LOCAL_RANK when CUDA is there, else cpu)")
    parser.add_argument("--answer-word", action="append", default=[], metavar="ANSWER=WORD",
                        help="the word the judge is asked to answer with, e.g. irrelevant=NA "
                        "(repeatable; answers: yes, no, irrelevant)")
    parser.add_argument("--answer-ids", action="append", default=[], metavar="ANSWER=ID,ID",
                        help="token ids summed for an answer whose word is not one token, "
                        "e.g. irrelevant=6084,31302 (repeatable)")
    parser.add_argument("--commit-every", type=int, default=4,
                        help="responses per transaction (each holds R rows)")
    parser.add_argument("--export", type=Path, default=None,
                        help="also write the whole store to this .parquet or .jsonl")
    parser.add_argument("--no-progress", action="store_true")


def _dist() -> tuple[int, int]:
    """(rank, world size), joining the process group when launched with several ranks."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


def default_device(name: str | None) -> torch.device:
    """`name` when given; else this rank's GPU (LOCAL_RANK) when CUDA is there; else the CPU."""
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def open_store(path, judge):
    """The ratings store at `path` for this judge and template (created when absent)."""
    from ramo.ratings import RatingStore

    return RatingStore(path, judge_fingerprint=judge.fingerprint(),
                       template_fingerprint=judge.template_fingerprint(),
                       judge_info=judge.describe(),
                       template_info={"template": judge.template.name, "normalize": judge.normalize})


def rate_into(store, judge, pairs, rules, *, indices=None, commit_every: int = 4,
              progress: bool = True) -> int:
    """Rates the units (pair, side) of `pairs[indices]` that the store lacks, on every rule,
    committing every `commit_every` responses. Returns the number of responses rated."""
    from ramo.judge.rule_judge import progress_bar

    rule_ids = [r.id for r in rules]
    indices = range(len(pairs)) if indices is None else indices
    todo = store.missing_units([pairs[i].id for i in indices], rule_ids)
    index = {pairs[i].id: i for i in indices}
    units = [(index[pair_id], side) for pair_id, side in todo]
    bar = progress_bar(2 * len(index), len(rules), progress, initial=2 * len(index) - len(units))
    batch = []
    for i, side, scores in judge.iter_rate(pairs, rules, units):
        batch.extend(rating_rows(pairs[i].id, side, rule_ids, scores))
        bar.update(1)
        if len(batch) >= commit_every * len(rules):
            store.add(batch, skip_existing=True)
            batch = []
    if batch:
        store.add(batch, skip_existing=True)
    bar.close()
    return len(units)


def run(args: argparse.Namespace) -> int:
    from ramo.io import load_pairs, load_rules
    from ramo.judge import RuleJudge
    from ramo.ratings import RatingStore

    # Everything that can be wrong with the input is found before the store is touched.
    pairs = load_pairs(args.pairs)
    rules = load_rules(args.rules)
    rank, world = _dist()
    kwargs = {"template": args.template, "normalize": args.normalize, "progress": False}
    if args.answer_word:
        kwargs["answer_words"] = _assignments(args.answer_word, "--answer-word", str)
    if args.answer_ids:
        kwargs["answer_ids"] = _assignments(
            args.answer_ids, "--answer-ids", lambda v: [int(i) for i in v.split(",")])
    if args.batch_size:
        kwargs["batch_size"] = args.batch_size
    judge = RuleJudge.from_pretrained(args.judge, dtype=getattr(torch, args.dtype),
                                      device=default_device(args.device), **kwargs)
    mine = [i for i in range(len(pairs)) if i % world == rank]
    with open_store(args.out, judge) as store:
        rate_into(store, judge, pairs, rules, indices=mine, commit_every=args.commit_every,
                  progress=not args.no_progress)
    _barrier(world)
    if rank == 0:
        with RatingStore(args.out, judge_fingerprint=judge.fingerprint(),
                         template_fingerprint=judge.template_fingerprint()) as store:
            print(f"{store.count()} ratings in {args.out} "
                  f"({len(pairs)} pairs x 2 sides x {len(rules)} rules = {len(pairs) * 2 * len(rules)})")
            if args.export:
                store.export(args.export)
                print(f"exported to {args.export}")
    return 0


def _assignments(items: list[str], flag: str, parse) -> dict:
    """{"irrelevant": parse("NA")} from ["irrelevant=NA"]."""
    out = {}
    for item in items:
        answer, sep, value = item.partition("=")
        if not sep or not value:
            raise ValueError(f"{flag} {item!r}: write ANSWER=VALUE, e.g. irrelevant=...")
        try:
            out[answer.strip()] = parse(value)
        except ValueError:
            raise ValueError(f"{flag} {item!r}: the ids must be integers separated by commas")
    return out


def rating_rows(pair_id: str, side: int, rule_ids: list[str], scores) -> list[tuple]:
    """One response's JudgeScores as store rows (pair_id, side, rule_id, p_yes, p_no,
    p_other, score, relevance), one per rule."""
    cols = [getattr(scores, f).double().cpu().tolist()
            for f in ("p_yes", "p_no", "p_other", "score", "relevance")]
    return [(pair_id, side, rid, *(c[j] for c in cols)) for j, rid in enumerate(rule_ids)]
