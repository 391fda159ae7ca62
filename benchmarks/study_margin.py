"""Study: the reward model with and without the label margin, HH-RLHF harmless-base (test split).

The method's path on real pairs: the default judge rates the first --train-pairs pairs of
--data, Anthropic's HH-RLHF harmless-base test split (JSONL, gzip; default:
benchmarks/common.py's hh_rlhf_path()), on every --every-th rule of the default pool (CPU
time: all 100 rules would take hours here), `ramo select` keeps k rules per pair (max
discrepancy + the judge's relevance; pairs with a blank response are left out: the judge
rates text), `ramo label` labels the pairs and writes each pair's margin (the summed score
gap on its k rules), and the default reward model (MiniLM, one
score head) is trained on those labels twice, with `margin="none"` (ramo's default, the
paper's loss) and `margin="raw"` (TRL's use of a margin column), same seed and settings. A
third row trains on the same pairs' human labels, for scale. All are scored on the last
--test-pairs pairs (human labels; ties wrong) with a 95% bootstrap interval.

    python benchmarks/study_margin.py [--train-pairs 400] [--every 5] [--epochs 3]

The ratings go to a store under --work (reused by a rerun). Output:
benchmarks/results/margin_hh_rlhf_cpu.{json,md}. Skips (exit 0) when the data file is not
there.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-pairs", type=int, default=400)
    parser.add_argument("--test-pairs", type=int, default=812)
    parser.add_argument("--every", type=int, default=5, help="rate every N-th rule of the pool")
    parser.add_argument("-k", "--k", type=int, default=5)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ramo-margin")
    parser.add_argument("--no-progress", action="store_true")
    common.add_hh_rlhf_flag(parser)
    args = parser.parse_args()
    command = common.command_line(__file__)
    if common.skip_without_hh_rlhf(args.data):
        return 0

    import torch

    from ramo.evaluation import score_responses
    from ramo.io import load_pairs, load_rules
    from ramo.io.atomic import write_json, write_text
    from ramo.label import label
    from ramo.rate import open_store, rate
    from ramo.models import load_reward_model
    from ramo.reward import train_reward_model
    from ramo.select import select
    from ramo.steps import load_judge
    from ramo.study import bootstrap

    progress = not args.no_progress
    pairs = load_pairs(args.data, allow_empty_responses=True)
    # The judge rates a response only when it has text; HH has a few blank replies.
    train = [p for p in pairs[:args.train_pairs] if p.response_a.strip() and p.response_b.strip()]
    test = pairs[-args.test_pairs:]
    if args.train_pairs + len(test) > len(pairs):
        raise SystemExit("--train-pairs and --test-pairs overlap")
    rules = load_rules("default")[::args.every]
    print(command)

    judge = load_judge({})
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open_store(args.work / "ratings.sqlite", judge) as store:
        rate(judge, train, rules, store, progress=progress)
        ratings = store.scores(train, rules)
    rate_s = time.perf_counter() - t0
    selections = select(train, rules, ratings, k=args.k)
    labeled, counts = label(train, selections, [r.id for r in rules])
    by_id = {p.id: p for p in train}
    agree = [p.chosen == by_id[p.id].response_a for p in labeled]
    margins = torch.tensor([p.margin for p in labeled])
    human = train  # HH rows are chosen / rejected: label 0, chosen is response_a

    settings = {"judge": "default (SmolLM2-135M-Instruct)", "rules": len(rules),
                "rule_ids": f"every {args.every}th of the default pool", "k": args.k,
                "train_pairs": len(train), "labeled": len(labeled),
                "ties_dropped": counts["ties_dropped"], "test_pairs": len(test),
                "model": "default (all-MiniLM-L6-v2)", "epochs": args.epochs,
                "max_length": args.max_length, "batch_size": args.batch_size,
                "learning_rate": args.lr, "seed": args.seed,
                "threads": torch.get_num_threads(), "torch": torch.__version__}
    rows = []
    for name, data, margin in (("judge labels, margin none (default)", labeled, "none"),
                               ("judge labels, margin raw", labeled, "raw"),
                               ("human labels (no margin)", human, "none")):
        with tempfile.TemporaryDirectory(prefix="ramo-margin-") as scratch:
            t0 = time.perf_counter()
            summary = train_reward_model(
                data, Path(scratch) / "rm", model="default", epochs=args.epochs,
                learning_rate=args.lr, batch_size=args.batch_size,
                max_length=args.max_length, seed=args.seed, margin=margin, progress=progress)
            net, tokenizer = load_reward_model(Path(scratch) / "rm", require_head=True)
            scores = score_responses(net, tokenizer, [p.prompt for p in test] * 2,
                                     [p.response_a for p in test] + [p.response_b for p in test],
                                     max_length=args.max_length, progress=progress)
        correct = (scores[:len(test)] > scores[len(test):]).float().unsqueeze(0)
        mean, low, high = bootstrap(correct, seed=args.seed)
        rows.append({"labels": name, "pairs": summary["pairs"], "steps": summary["steps"],
                     "final_loss": summary["final_loss"], "accuracy": mean, "low": low,
                     "high": high, "seconds": time.perf_counter() - t0})
        print(rows[-1], flush=True)

    lines = [
        "# HH-RLHF harmless-base: the reward model with and without the label margin", "",
        f"`{command}`", "",
        "settings: " + ", ".join(f"{k} {v}" for k, v in settings.items()), "",
        f"rating: {len(train)} pairs x 2 sides x {len(rules)} rules, of which this run rated "
        f"what the store lacked in {rate_s:.0f} s; judge labels agree with the human preference on "
        f"{sum(agree)}/{len(agree)} = {100 * sum(agree) / len(agree):.1f}% of the labeled "
        f"pairs; margins: median {margins.median():.3f}, max {margins.max():.3f}", "",
        f"accuracy on the last {len(test)} pairs (human labels; chosen scored strictly above "
        "rejected, ties wrong), 95% bootstrap interval:", "",
        "| labels | pairs | steps | final loss | accuracy (%) | 95% interval |",
        "|---|---:|---:|---:|---:|---|",
        *(f"| {r['labels']} | {r['pairs']} | {r['steps']} | {r['final_loss']:.4f} | "
          f"{100 * r['accuracy']:.1f} | [{100 * r['low']:.1f}, {100 * r['high']:.1f}] |"
          for r in rows),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    write_json(common.RESULTS / "margin_hh_rlhf_cpu.json",
               {"command": command, "settings": settings, "rows": rows,
                "label_agreement": sum(agree) / len(agree), "rate_seconds": rate_s})
    write_text(common.RESULTS / "margin_hh_rlhf_cpu.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
