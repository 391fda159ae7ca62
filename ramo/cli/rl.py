"""`ramo rl train` and `ramo rl eval`: GRPO against a ramo reward model, and the policies'
replies to held-out safety prompts before and after (ramo.rl)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ramo.cli._common import add_lora_argument, add_no_progress, finite_number, positive


def _reward_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reward", required=True, type=Path,
                        help="a reward model folder from `ramo rm train` (either kind)")
    parser.add_argument("--adapter", type=Path, default=None,
                        help="with a rule-head reward model: a Rule Adapter folder; the reward "
                        "is then the sum of the heads of its k rules for each prompt")


def train_arguments(parser: argparse.ArgumentParser) -> None:
    from ramo.rl import train_policy
    from ramo.steps import defaults

    d = defaults(train_policy)
    parser.add_argument("--policy", required=True, type=Path,
                        help="the causal LM to train: a local folder (save_pretrained)")
    _reward_arguments(parser)
    parser.add_argument("--prompts", required=True, type=Path,
                        help="rows with `prompt` (text or TRL's conversational messages): "
                        "JSONL(.gz), Parquet, JSON, or a datasets / Parquet / Arrow folder")
    parser.add_argument("--out", required=True, type=Path,
                        help="folder for the trained policy (save_pretrained; replaced whole "
                        "when training succeeds; an existing folder must be empty or an earlier "
                        "rl train's)")
    parser.add_argument("--steps", type=positive, default=d["steps"],
                        help=f"optimiser steps (default {d['steps']})")
    parser.add_argument("--num-generations", type=int, default=d["num_generations"],
                        help="completions sampled per prompt, >= 2 "
                        f"(default {d['num_generations']})")
    parser.add_argument("--prompts-per-step", type=positive, default=d["prompts_per_step"],
                        help=f"distinct prompts per step (default {d['prompts_per_step']})")
    parser.add_argument("--max-completion-length", type=positive,
                        default=d["max_completion_length"],
                        help=f"tokens per completion (default {d['max_completion_length']})")
    parser.add_argument("--lr", type=finite_number, default=d["learning_rate"],
                        help=f"learning rate (default {d['learning_rate']})")
    parser.add_argument("--beta", type=finite_number, default=d["beta"],
                        help="KL penalty to the starting policy (default 0: none, TRL's default)")
    parser.add_argument("--temperature", type=finite_number, default=d["temperature"],
                        help=f"sampling temperature (default {d['temperature']})")
    add_lora_argument(parser, d["lora"])
    parser.add_argument("--seed", type=int, default=d["seed"],
                        help="seed of the sampling and of the training (default %(default)s)")
    add_no_progress(parser)


def train(args: argparse.Namespace) -> int:
    """GRPO-train a policy against a ramo reward model (TRL's GRPOTrainer).

    Each step samples --num-generations completions for each of --prompts-per-step prompts,
    scores them with the reward model exactly as ramo trains and evaluates it
    (ramo.rewards.RamoReward), and moves the policy towards the completions scored above
    their group's mean. The policy is saved with its tokenizer and ramo_rl.json (arguments,
    mean reward per step).
    """
    from ramo.rl import train_policy

    summary = train_policy(
        args.policy, args.reward, args.prompts, args.out, adapter=args.adapter,
        steps=args.steps, num_generations=args.num_generations,
        prompts_per_step=args.prompts_per_step,
        max_completion_length=args.max_completion_length, learning_rate=args.lr,
        beta=args.beta, temperature=args.temperature, lora=args.lora, seed=args.seed,
        progress=not args.no_progress)
    rewards = [h["reward"] for h in summary["reward_history"]]
    shown = f"; mean reward {rewards[0]:.4f} at the first step, {rewards[-1]:.4f} at the last" \
        if rewards else ""
    print(f"{summary['steps']} steps in {summary['runtime_s']:.1f} s{shown}; saved to {args.out}")
    return 0


def evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    from ramo.rl import evaluate_policies
    from ramo.steps import defaults

    d = defaults(evaluate_policies)
    parser.add_argument("--policy", required=True, action="append", metavar="[NAME=]PATH",
                        help="a policy folder, optionally named (before=base/ after=out/); "
                        "repeatable")
    _reward_arguments(parser)
    parser.add_argument("--prompts", required=True, type=Path,
                        help="held-out rows with `prompt` and `kind` (should-refuse or "
                        "should-respond)")
    parser.add_argument("--out", required=True, type=Path,
                        help="folder for rl_eval.json, rl_eval.md and rl_eval.png")
    parser.add_argument("--max-new-tokens", type=positive, default=d["max_new_tokens"],
                        help=f"tokens per reply (default {d['max_new_tokens']})")
    parser.add_argument("--batch-size", type=positive, default=d["batch_size"],
                        help=f"prompts per generate call (default {d['batch_size']})")
    add_no_progress(parser)


def evaluate(args: argparse.Namespace) -> int:
    """Generate with each policy (greedy) on held-out safety prompts and compare them.

    For each policy: the mean reward of its replies (all, should-refuse, should-respond),
    the refusal rate on should-refuse prompts and the compliance rate on should-respond ones,
    refusals told by a string match on the reply's opening words (a proxy; see
    ramo.rl.REFUSAL_MARKERS). Written as JSON (with every reply), markdown and a plot.
    """
    from ramo.io.atomic import check_output_dir
    from ramo.rl import evaluate_policies, evaluation_markdown, write_evaluation

    policies = {}
    for item in args.policy:
        name, sep, path = item.partition("=")
        name, path = (name, path) if sep else (Path(item).name or item, item)
        if name in policies:
            raise ValueError(f"two policies are named {name!r}; name them: --policy NAME=PATH")
        policies[name] = path
    check_output_dir(args.out)
    result = evaluate_policies(policies, args.reward, args.prompts, adapter=args.adapter,
                               max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                               progress=not args.no_progress)
    written = write_evaluation(result, args.out)
    print(evaluation_markdown(result), end="")
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0
