"""Study: ramo's reward-model trainer on human labels, HH-RLHF harmless-base (test split).

Trains the default backbone (all-MiniLM-L6-v2 with a new one-score head) with
`ramo.reward.train_reward_model` on the first 1,500 pairs of --data, Anthropic's HH-RLHF
harmless-base test split (JSONL, gzip; default: benchmarks/common.py's hh_rlhf_path()),
labelled as the humans labelled them (chosen is chosen), and scores the remaining 812 pairs
with `ramo.evaluation.evaluate` (one subset, "hh-rlhf-harmless"). The untrained model (the same
backbone and seed, so the same random head the training starts from) is the baseline row.

This is a check that the trainer learns from real preference data on a CPU in minutes, not a
benchmark of the method: a 22M-parameter sentence encoder, one epoch, 128 tokens.

    python benchmarks/study_hh_rlhf_rm.py [--epochs 1] [--max-length 128] [--batch-size 16]
    python benchmarks/study_hh_rlhf_rm.py --heads rules    # RuleHeadRewardModel, 100 heads, k 5

Output: benchmarks/results/hh_rlhf_rm_cpu.{json,md} (hh_rlhf_rm_rule_heads_cpu.* with
--heads rules). Skips (exit 0) when the data file is not there: ramo does not ship it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402

SUBSET = "hh-rlhf-harmless"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-pairs", type=int, default=1500)
    parser.add_argument("--heads", default="single", choices=["single", "rules"],
                        help="single score head, or one head per rule of the default pool")
    parser.add_argument("-k", "--k", type=int, default=5, help="with --heads rules")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per step")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's)")
    parser.add_argument("--no-progress", action="store_true")
    common.add_hh_rlhf_flag(parser)
    args = parser.parse_args()
    command = common.command_line(__file__)
    if common.skip_without_hh_rlhf(args.data):
        return 0

    import torch

    from ramo.evaluation import evaluate
    from ramo.io import load_pairs
    from ramo.io.atomic import write_json, write_text
    from ramo.models import load_reward_model
    from ramo.reward import train_reward_model

    if args.threads:
        torch.set_num_threads(args.threads)
    pairs = load_pairs(args.data, allow_empty_responses=True)
    train, test = pairs[:args.train_pairs], pairs[args.train_pairs:]
    test = [dataclasses.replace(p, extra={**p.extra, "subset": SUBSET}) for p in test]
    heads = ("one score head" if args.heads == "single"
             else f"RuleHeadRewardModel, 100 rule heads (default pool), k {args.k}")
    settings = {"model": "default (all-MiniLM-L6-v2)", "heads": heads, "train_pairs": len(train),
                "test_pairs": len(test), "epochs": args.epochs, "max_length": args.max_length,
                "batch_size": args.batch_size, "learning_rate": args.lr, "seed": args.seed,
                "schedule": "AdamW, linear decay, no warmup", "dropout": "off",
                "threads": torch.get_num_threads(), "torch": torch.__version__,
                "machine": common.describe_machine()}
    print(command)
    print("settings: " + ", ".join(f"{k} {v}" for k, v in settings.items()))
    progress = not args.no_progress

    t0 = time.perf_counter()
    if args.heads == "rules":
        from ramo.io import load_rules
        from ramo.models import RuleHeadRewardModel

        untrained = RuleHeadRewardModel.from_backbone(
            "default", [r.id for r in load_rules("default")], seed=args.seed, k=args.k)
    else:
        untrained = load_reward_model("default", seed=args.seed)
    before = evaluate(untrained, test, batch_size=args.eval_batch_size,
                      max_length=args.max_length, progress=progress)
    eval_s = time.perf_counter() - t0
    del untrained
    with tempfile.TemporaryDirectory(prefix="ramo-hh-rm-") as scratch:
        t0 = time.perf_counter()
        summary = train_reward_model(
            train, Path(scratch) / "rm", model="default", epochs=args.epochs,
            learning_rate=args.lr, batch_size=args.batch_size, max_length=args.max_length,
            seed=args.seed, progress=progress, heads=args.heads, rules="default", k=args.k)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        after = evaluate(Path(scratch) / "rm", test, batch_size=args.eval_batch_size,
                         max_length=args.max_length, progress=progress)
        eval2_s = time.perf_counter() - t0

    losses = [h["loss"] for h in summary["loss_history"]]
    k = min(10, len(losses))
    rows = [
        {"model": "untrained (random head)", "accuracy": before["sections"]["all"]["accuracy"],
         "n": before["sections"]["all"]["n"], "seconds": eval_s},
        {"model": f"trained on {len(train)} pairs",
         "accuracy": after["sections"]["all"]["accuracy"],
         "n": after["sections"]["all"]["n"], "seconds": eval2_s},
    ]
    lines = [
        "# HH-RLHF harmless-base: ramo reward-model trainer on human labels",
        "",
        f"`{command}`",
        "",
        "settings: " + ", ".join(f"{k} {v}" for k, v in settings.items()),
        "",
        f"training: {summary['steps']} steps of {summary['global_batch_size']} pairs in "
        f"{train_s:.0f} s; loss, mean of the first {k} steps {sum(losses[:k]) / k:.4f}, "
        f"of the last {k} steps {sum(losses[-k:]) / k:.4f}",
        "",
        f"accuracy on the held-out {len(test)} pairs (chosen scored strictly above rejected; "
        "ties wrong):",
        "",
        "| model | n | accuracy (%) | eval s |",
        "|---|---:|---:|---:|",
        *(f"| {r['model']} | {r['n']} | {100 * r['accuracy']:.1f} | {r['seconds']:.0f} |"
          for r in rows),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    name = "hh_rlhf_rm_cpu" if args.heads == "single" else "hh_rlhf_rm_rule_heads_cpu"
    write_json(common.RESULTS / f"{name}.json", {
        "command": command, "settings": settings, "machine": common.machine(), "results": rows,
        "train_seconds": train_s, "loss_history": summary["loss_history"],
        "untrained": before, "trained": after})
    write_text(common.RESULTS / f"{name}.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
