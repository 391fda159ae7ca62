"""`ramo rm train`, `ramo eval` and `ramo explain`: the reward model's steps."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ramo.cli._common import (PAIRS_HELP, add_lora_argument, add_no_progress, finite_number,
                              positive, positive_number)


def train_arguments(parser: argparse.ArgumentParser) -> None:
    from ramo.reward.train import train_reward_model
    from ramo.steps import defaults

    d = defaults(train_reward_model)
    parser.add_argument("--data", required=True, type=Path,
                        help="labeled pairs: prompt, chosen, rejected (+ margin, rule_ids), as "
                        "text or TRL's conversational messages; JSONL(.gz), Parquet, JSON, or a "
                        "datasets / Parquet / Arrow folder")
    parser.add_argument("--out", required=True, type=Path,
                        help="folder to save the trained model, tokenizer and "
                        "ramo_training.json to (replaced whole when training succeeds; an "
                        "existing folder must be empty or an earlier rm train's)")
    parser.add_argument("--model", default=d["model"],
                        help="backbone: 'default' (all-MiniLM-L6-v2), a local folder or a hub id "
                        "(any AutoModelForSequenceClassification; an existing reward model works)")
    parser.add_argument("--epochs", type=positive_number, default=d["epochs"],
                        help=f"passes over the data (default {d['epochs']})")
    parser.add_argument("--max-steps", type=positive, default=d["max_steps"],
                        help="stop after this many optimiser steps (overrides --epochs)")
    parser.add_argument("--lr", type=positive_number, default=d["learning_rate"],
                        help=f"peak learning rate, linear decay to 0 (default {d['learning_rate']})")
    parser.add_argument("--batch-size", type=positive, default=d["batch_size"],
                        help="pairs per device per step; each pair is 2 sequences "
                        f"(default {d['batch_size']})")
    parser.add_argument("--grad-accum", type=positive, default=d["gradient_accumulation_steps"],
                        help="gradient accumulation steps "
                        f"(default {d['gradient_accumulation_steps']})")
    parser.add_argument("--max-length", type=positive, default=d["max_length"],
                        help="tokens per prompt + response; the response is kept first "
                        f"(default {d['max_length']})")
    parser.add_argument("--center-rewards", type=finite_number,
                        default=d["center_rewards_coefficient"],
                        metavar="C",
                        help="add C * mean((r_chosen + r_rejected)^2) to the loss (e.g. 0.01)")
    parser.add_argument("--margin", default=d["margin"], choices=["none", "raw"],
                        help="none (default, as in the paper): the loss ignores a margin "
                        "column; raw: -logsigmoid(r_chosen - r_rejected - margin) with each "
                        "row's margin (ramo label writes the summed score gap), as in TRL")
    add_lora_argument(parser, d["lora"])
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision")
    parser.add_argument("--gradient-checkpointing", action="store_true",
                        help="recompute activations in backward: less memory, more time")
    parser.add_argument("--seed", type=int, default=d["seed"],
                        help=f"seed of the one-time shuffle and of the new head (default {d['seed']})")
    parser.add_argument("--heads", default=d["heads"], choices=["single", "rules"],
                        help="single: one score head (default); rules: one head per rule of "
                        "--rules, trained on the k heads that differ most per pair "
                        "(ramo.models.RuleHeadRewardModel)")
    parser.add_argument("--rules", default=None,
                        help="with --heads rules: the rule pool ('default' for ramo's)")
    # -k, --ratings and --regression-weight default to None so that giving one without
    # what it needs is refused, not ignored (train fills in the defaults).
    parser.add_argument("-k", "--k", type=positive, default=None,
                        help=f"with --heads rules: heads selected per pair (default {d['k']})")
    parser.add_argument("--ratings", type=Path, default=None,
                        help="with --heads rules: a ratings store; the heads are also regressed "
                        "onto the judge's scores of the pairs it rated")
    parser.add_argument("--regression-weight", type=finite_number, default=None,
                        help="with --ratings: weight of that regression (default 1.0)")
    add_no_progress(parser)


def train(args: argparse.Namespace) -> int:
    """Train a Bradley-Terry reward model on labeled preference pairs.

    Input: TRL preference rows (`prompt`, `chosen`, `rejected`, optionally `margin` and
    `rule_ids`: what `ramo label` writes) as JSONL(.gz), Parquet or JSON. Output: a folder with
    the tokenizer and `ramo_training.json` (the arguments and the per-step loss): a
    single-score model that AutoModelForSequenceClassification.from_pretrained loads, or with
    --heads rules a rule-head model (`ramo.models.load_any_reward_model` loads either
    kind). The folder appears whole when training has finished, or not at all.

    Runs as is on one device, and under `torchrun --nproc_per_node N -m ramo rm train ...`
    with --batch-size pairs per rank per step; only rank 0 writes.
    """
    from ramo.reward.train import train_reward_model
    from ramo.steps import defaults

    _check_heads_flags(args)
    k = defaults(train_reward_model)["k"] if args.k is None else args.k
    summary = train_reward_model(
        args.data, args.out, model=args.model, epochs=args.epochs, learning_rate=args.lr,
        batch_size=args.batch_size, gradient_accumulation_steps=args.grad_accum,
        max_length=args.max_length, center_rewards_coefficient=args.center_rewards,
        margin=args.margin, bf16=args.bf16, gradient_checkpointing=args.gradient_checkpointing,
        seed=args.seed, progress=not args.no_progress, max_steps=args.max_steps, heads=args.heads,
        rules=args.rules, k=k, ratings=args.ratings, lora=args.lora,
        regression_weight=(1.0 if args.regression_weight is None else args.regression_weight)
        if args.ratings else 0.0)
    if int(os.environ.get("RANK", "0")) == 0:
        steps = summary["steps"]
        print(f"trained on {summary['pairs']} pairs: {steps} step{'s' * (steps != 1)} of "
              f"{summary['global_batch_size']} pairs, final loss {summary['final_loss']:.4f} "
              f"(mean {summary['train_loss']:.4f}), {summary['runtime_s']:.1f} s; "
              f"saved to {args.out}")
        cut = summary["truncation"]
        print(f"{cut['truncated']} of {cut['sequences']} sequences cut at "
              f"{cut['max_length']} tokens (--max-length)")
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():  # launched by torchrun
        dist.destroy_process_group()
    return 0


def _check_heads_flags(args: argparse.Namespace) -> None:
    """The rule-head flags need --heads rules, and it needs --rules: refused by flag name
    before anything is read (the library would name its parameters, or ignore them)."""
    if args.heads != "rules":
        given = [flag for flag, value in (("--rules", args.rules), ("-k", args.k),
                                          ("--ratings", args.ratings)) if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: only for a rule-head reward model; add "
                             "--heads rules")
    elif args.rules is None:
        raise ValueError("--heads rules needs the rule pool: give --rules FILE ('default' "
                         "for ramo's)")
    if args.regression_weight is not None and args.ratings is None:
        raise ValueError("--regression-weight weighs the regression onto --ratings: give "
                         "--ratings (and --heads rules) too")


def evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    from ramo.evaluation import evaluate
    from ramo.steps import defaults

    d = defaults(evaluate)
    parser.add_argument("--model", required=True,
                        help="reward model: a folder from `ramo rm train`, another local folder "
                        "or a hub id (AutoModelForSequenceClassification, one output)")
    parser.add_argument("--data", required=True, type=Path,
                        help="pairs with prompt, chosen, rejected, subset: JSONL(.gz), Parquet "
                        "or JSON (RewardBench's schema)")
    parser.add_argument("--out", type=Path, default=None,
                        help="write the result as JSON here (atomically)")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="write the tables as markdown here (atomically)")
    parser.add_argument("--batch-size", type=positive, default=d["batch_size"],
                        help=f"sequences per forward pass (default {d['batch_size']})")
    parser.add_argument("--max-length", type=positive, default=d["max_length"],
                        help="tokens per prompt + response (default: the longest the model "
                        "takes, at most 2048, RewardBench's); the result says how many "
                        "sequences were cut")
    parser.add_argument("--weights", default=d["weights"], choices=["count", "official"],
                        help="section weights: count (default: the pairs in the data) or "
                        "official (RewardBench's example counts, math-prm as 984; all = the "
                        "mean of the sections, RewardBench's score)")
    add_no_progress(parser)


def evaluate(args: argparse.Namespace) -> int:
    """A reward model's accuracy per subset and per section on RewardBench-format pairs.

    Data: rows with `prompt`, `chosen`, `rejected`, `subset` (optionally `id`). A pair is
    correct when the model scores the chosen response strictly higher than the rejected one;
    a tie is wrong. A section's accuracy is the example-count-weighted mean of its subsets'.
    """
    from ramo.evaluation import check_output_paths, evaluate as evaluate_step
    from ramo.evaluation import to_markdown, write_result
    from ramo.io.atomic import check_output

    check_output_paths(args.out, args.markdown)
    for flag, target in (("--out", args.out), ("--markdown", args.markdown)):
        if target is not None:
            check_output(target, flag, {"--data": args.data})
    result = evaluate_step(args.model, args.data, batch_size=args.batch_size,
                           max_length=args.max_length, weights=args.weights,
                           progress=not args.no_progress)
    print(to_markdown(result), end="")
    write_result(result, args.out, args.markdown, model=str(args.model),
                 data=os.fspath(args.data))
    return 0


def explain_arguments(parser: argparse.ArgumentParser) -> None:
    from ramo.explain import explain as explain_pairs
    from ramo.steps import defaults

    max_length = defaults(explain_pairs)["max_length"]
    parser.add_argument("--model", required=True, type=Path,
                        help="a rule-head reward model (`ramo rm train --heads rules`)")
    parser.add_argument("--pairs", required=True, type=Path,
                        help=PAIRS_HELP + " (response_a/response_b or chosen/rejected)")
    parser.add_argument("--id", action="append", default=[], dest="ids",
                        help="pair id to explain (repeatable; default: the first 3 pairs)")
    parser.add_argument("--rules", default=None,
                        help="the rule pool, to print each rule's text ('default' for ramo's)")
    parser.add_argument("--max-length", type=positive, default=None,
                        help="tokens per prompt + response (default: as the model was trained, "
                        f"from its ramo_training.json; {max_length} without one)")
    add_no_progress(parser)


def explain(args: argparse.Namespace) -> int:
    """For a pair, the rules a rule-head reward model selects and each side's scores.

    For each pair the model's heads score both responses on every rule; the k rules on which
    the two differ most are selected, as in training, and their per-rule scores, the two
    rewards (sums over the selected rules), the margin and the preference are printed.
    """
    from ramo.explain import explain as explain_pairs
    from ramo.io import load_pairs, load_rules
    from ramo.models import RuleHeadRewardModel
    from ramo.reward.train import trained_max_length
    from ramo.steps import defaults

    pairs = load_pairs(args.pairs)
    if args.ids:
        by_id = {p.id: p for p in pairs}
        missing = [i for i in args.ids if i not in by_id]
        if missing:
            raise ValueError(f"no pair with id {', '.join(map(repr, missing))} in {args.pairs}")
        pairs = [by_id[i] for i in args.ids]
    else:
        pairs = pairs[:3]
    rule_text = {r.id: r.text for r in load_rules(args.rules)} if args.rules else None
    model, tokenizer = RuleHeadRewardModel.from_pretrained(args.model)
    max_length = args.max_length or trained_max_length(args.model) or defaults(
        explain_pairs)["max_length"]
    print(explain_pairs(model, tokenizer, pairs, rule_text, max_length=max_length))
    return 0
