"""`ramo adapter train` and `ramo adapter apply`: the Rule Adapter's steps."""

from __future__ import annotations

import argparse
from pathlib import Path

from ramo.cli._common import (PAIRS_HELP, add_judge_arguments, add_lora_argument,
                              add_no_progress, finite_number, positive, positive_number)


def train_arguments(parser: argparse.ArgumentParser) -> None:
    from ramo.adapter.train import DEFAULT_HOLDOUT, train_adapter
    from ramo.steps import defaults

    d = defaults(train_adapter)
    parser.add_argument("--pairs", required=True, type=Path,
                        help=PAIRS_HELP)
    parser.add_argument("--rules", required=True,
                        help="the rule pool the selections were made from; 'default' for ramo's")
    parser.add_argument("--selections", required=True, type=Path,
                        help="selections JSONL (from `ramo select`): the targets; pairs "
                        "without a row are left out")
    parser.add_argument("--out", required=True, type=Path,
                        help="the adapter folder to write (replaced whole when training "
                        "succeeds; an existing folder must be empty or an earlier adapter's)")
    parser.add_argument("--ratings", type=Path, default=None,
                        help="ratings store with all R rules rated for the pairs: evaluate on "
                        "held-out pairs")
    parser.add_argument("--holdout", type=finite_number, default=None,
                        help="share of the pairs held out for evaluation (needs --ratings; "
                        f"default {DEFAULT_HOLDOUT} with --ratings)")
    parser.add_argument("--backbone", default=d["backbone"],
                        help="encoder folder or hub id; 'default' for the embedded MiniLM")
    parser.add_argument("-k", "--k", type=positive, default=None,
                        help="rules per pair to predict (default: as many as the selections hold)")
    parser.add_argument("--epochs", type=positive_number, default=d["epochs"],
                        help="passes over the training pairs (default %(default)s)")
    parser.add_argument("--lr", type=positive_number, default=d["learning_rate"],
                        help="learning rate (default %(default)s)")
    parser.add_argument("--batch-size", type=positive, default=d["batch_size"],
                        help="pairs per step (default %(default)s)")
    parser.add_argument("--max-length", type=positive, default=d["max_length"],
                        help="tokens per pair, prompt and both responses (default %(default)s)")
    parser.add_argument("--seed", type=int, default=d["seed"],
                        help="seed of the model's initialisation, the order and the holdout "
                        "(default %(default)s)")
    add_lora_argument(parser, d["lora"])
    add_no_progress(parser)


def train(args: argparse.Namespace) -> int:
    """Train a Rule Adapter on pairs and their max-discrepancy selections.

    The adapter learns, from a pair's text alone, which k rules the full selection (top k of
    R by `ramo select` on judge ratings of all R rules) chose for it: multi-hot targets, one
    sigmoid output per rule, binary cross-entropy.

    With --ratings (the store the selections were computed from) a share of the pairs
    (--holdout) is kept out of training and the adapter is evaluated on it: how often its k
    rules give the pair the same label as the full selection, against random k rules; the
    results go to DIR/metrics.json and DIR/metrics.md.
    """
    from ramo.adapter.metrics import metrics_markdown
    from ramo.adapter.model import ADAPTER_FILE
    from ramo.adapter.train import adapter_step
    from ramo.io import load_pairs, load_rules, load_selections
    from ramo.io.atomic import check_output_dir

    # Every input is read and checked before the backbone is loaded or anything is written.
    check_output_dir(args.out, {"--pairs": args.pairs, "--rules": args.rules,
                                "--selections": args.selections, "--ratings": args.ratings,
                                "--backbone": args.backbone}, marker=ADAPTER_FILE)
    pairs = load_pairs(args.pairs)
    rules = load_rules(args.rules)
    selections = load_selections(args.selections)
    if args.holdout and args.ratings is None:
        raise ValueError("--holdout needs --ratings: held-out pairs are evaluated on their "
                         "ratings of all rules")
    result = adapter_step(
        pairs, selections, rules, args.out, ratings=args.ratings, holdout=args.holdout,
        k=args.k, seed=args.seed, progress=not args.no_progress, backbone=args.backbone,
        epochs=args.epochs, learning_rate=args.lr, batch_size=args.batch_size,
        max_length=args.max_length, lora=args.lora)
    summary = result["training"]
    print(f"trained a Rule Adapter over {len(rules)} rules (k = {result['k']}) on "
          f"{result['train_pairs']} pairs: {summary['steps']} steps, mean loss "
          f"{summary['train_loss']:.4f}, {summary['timings']['total_s']:.1f} s; saved to "
          f"{args.out}")
    cut = summary["truncation"]
    print(f"{cut['truncated']} of {cut['pairs']} pairs cut to fit {cut['max_length']} tokens "
          "(--max-length)")
    if result["metrics"] is not None:
        print(metrics_markdown(result["metrics"]), end="")
    return 0


def apply_arguments(parser: argparse.ArgumentParser) -> None:
    from ramo.adapter.apply import apply_adapter
    from ramo.steps import defaults

    parser.add_argument("--adapter", required=True, type=Path,
                        help="adapter folder (from `ramo adapter train`)")
    parser.add_argument("--pairs", required=True, type=Path,
                        help=PAIRS_HELP)
    parser.add_argument("--rules", required=True,
                        help="the adapter's rule pool; 'default' for ramo's")
    parser.add_argument("--out", required=True, type=Path, help="selections JSONL to write")
    # The judge flags of `ramo rate`, so that the judge rates here as it rated there (and a
    # store from `ramo rate` is reused); its batch size under --judge-batch-size, since
    # --batch-size is the adapter's.
    add_judge_arguments(parser, batch_size_flags=("--judge-batch-size",))
    parser.add_argument("--ratings", type=Path, default=None,
                        help="ratings store (sqlite) to reuse ratings from and add new ones to")
    parser.add_argument("-k", "--k", type=positive, default=None,
                        help="rules per pair (default: the adapter's)")
    parser.add_argument("--batch-size", type=positive,
                        default=defaults(apply_adapter)["batch_size"],
                        help="pairs per adapter forward pass (default %(default)s; the judge's "
                        "is --judge-batch-size)")
    add_no_progress(parser)


def apply(args: argparse.Namespace) -> int:
    """Label pairs with a Rule Adapter's k rules, rating only those.

    The adapter reads each pair and names its k rules; the judge then rates only those k
    rules on each response, k x 2 ratings per pair instead of R x 2, and the pair's label is
    the sum of the scores over them (A is better when its sum is larger; equal sums are
    ties). The output is a selections file (the format of `ramo select`, without
    "criterion").

    With --ratings, ratings already in the store are reused and new ones are added as they
    are made, so a killed run resumes where it stopped and a second run asks the judge
    nothing.
    """
    from contextlib import nullcontext

    from ramo.adapter.apply import apply_adapter
    from ramo.adapter.model import RuleAdapter
    from ramo.cli._common import judge_settings
    from ramo.io import load_pairs, load_rules, write_selections
    from ramo.io.atomic import check_output
    from ramo.device import default_device
    from ramo.rate import open_store
    from ramo.steps import load_judge

    # The cheap checks first: bad pairs, a mismatched pool or a bad k fail before the judge
    # loads.
    check_output(args.out, "--out", {"--pairs": args.pairs, "--rules": args.rules,
                                     "--ratings": args.ratings}, jsonl=True)
    settings = judge_settings(args)
    pairs = load_pairs(args.pairs)
    adapter = RuleAdapter.from_pretrained(args.adapter, device=default_device(args.device))
    rules = load_rules(args.rules)
    adapter.check_rules(rules)
    k = adapter.resolve_k(args.k)
    judge = load_judge(settings)
    judge.check_context(pairs, rules)
    with open_store(args.ratings, judge) if args.ratings else nullcontext() as store:
        selections = apply_adapter(adapter, judge, pairs, rules, k=k, store=store,
                                   progress=not args.no_progress,
                                   batch_size=args.batch_size)
    write_selections(args.out, selections)
    ties = sum(1 for s in selections if s.preference == 0)
    print(selections.summary())
    print(f"wrote {len(selections)} selections ({ties} ties) to {args.out}")
    return 0
