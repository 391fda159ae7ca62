"""Study: the rule-head reward model beside the single-head one on ramo's demo data.

Trains MiniLM with one score head and with 100 rule heads (`--heads rules`, k = 5) with the
demo's reward-model settings on (a) the demo pairs' own human-written preference (all 200
pairs of ramo/data/demo/pairs.jsonl, chosen is chosen) and, when a `ramo demo` run folder is
given, (b) the labels that run wrote (labeled.jsonl: the judge's rule labels), and evaluates
each on the demo's evaluation set (ramo/data/demo/eval.jsonl, RewardBench Safety subsets).

    python benchmarks/study_rule_heads_demo.py [--demo-run ramo-demo]

Output: benchmarks/results/rule_heads_demo_cpu.{json,md}.
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
    parser.add_argument("--demo-run", type=Path, default=None,
                        help="a `ramo demo` folder whose labeled.jsonl to train on as well")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    command = common.command_line(__file__)

    import torch

    from ramo import demo
    from ramo.evaluation import evaluate
    from ramo.io.atomic import write_json, write_text

    settings = dict(demo.SETTINGS["rm"])
    eval_settings = {"batch_size": 32, "max_length": settings["max_length"]}
    sources = {"human labels (200 demo pairs)": demo.DATA / "pairs.jsonl"}
    if args.demo_run:
        sources["judge rule labels (demo run)"] = args.demo_run / "labeled.jsonl"
    rows = []
    from ramo.reward import train_reward_model

    for source, path in sources.items():
        for heads in ("single", "rules"):
            with tempfile.TemporaryDirectory(prefix="ramo-rule-heads-") as scratch:
                t0 = time.perf_counter()
                summary = train_reward_model(path, Path(scratch) / "rm", heads=heads,
                                             rules="default", k=5,
                                             progress=not args.no_progress, **settings)
                seconds = time.perf_counter() - t0
                result = evaluate(Path(scratch) / "rm", demo.DATA / "eval.jsonl",
                                  progress=not args.no_progress, **eval_settings)
            rows.append({"labels": source, "heads": heads, "pairs": summary["pairs"],
                         "steps": summary["steps"], "final_loss": summary["final_loss"],
                         "train_s": seconds, "safety": result["sections"]["safety"]["accuracy"],
                         "subsets": {s: v["accuracy"] for s, v in result["subsets"].items()}})
    subsets = list(rows[0]["subsets"])
    lines = ["# Rule-head vs single-head reward model on ramo's demo data", "", f"`{command}`", "",
             f"MiniLM (all-MiniLM-L6-v2), the demo's RM settings {settings}; rule heads: the 100 "
             f"rules of the default pool, k = 5; torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads. Accuracy on ramo/data/demo/eval.jsonl (100 pairs; "
             "ties wrong).", "",
             "| labels | heads | pairs | steps | final loss | train s | safety (%) | "
             + " | ".join(subsets) + " |",
             "|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(subsets)]
    for r in rows:
        lines.append(f"| {r['labels']} | {r['heads']} | {r['pairs']} | {r['steps']} | "
                     f"{r['final_loss']:.4f} | {r['train_s']:.0f} | {100 * r['safety']:.1f} | "
                     + " | ".join(f"{100 * r['subsets'][s]:.0f}" for s in subsets) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    write_json(common.RESULTS / "rule_heads_demo_cpu.json", {"command": command, "rows": rows})
    write_text(common.RESULTS / "rule_heads_demo_cpu.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
