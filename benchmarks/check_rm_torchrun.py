"""Does `ramo rm train` under torchrun follow the same loss curve as one process?

Trains the same reward model twice with the same global batch: once in one process with
--batch-size 2B, once under `torchrun --nproc_per_node 2` (CPU, gloo) with B pairs per rank.
The pairs are shuffled once and read in order, and accelerate gives rank r the batches r,
r + 2, ... of that order, so both runs see the same global batch at every step, and dropout
is off: the two curves may differ only by the order of floating-point reductions (the
gradient all-reduce, the split of the batch). Prints the per-step losses and their largest
absolute difference, and exits 1 when that exceeds the tolerance.

    python benchmarks/check_rm_torchrun.py [--model default] [--steps 20] [--tolerance 1e-4]

Data: the first pairs of ramo's demo evaluation set (ramo/data/demo/eval.jsonl), which ships
with the package. Output: benchmarks/results/rm_torchrun_cpu.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402

DATA = common.ROOT / "ramo" / "data" / "demo" / "eval.jsonl"


def _worker(args: argparse.Namespace) -> None:
    from ramo.io import load_preferences
    from ramo.reward import train_reward_model

    pairs = load_preferences(DATA)[:args.pairs]
    with tempfile.TemporaryDirectory() as scratch:
        summary = train_reward_model(
            pairs, Path(scratch) / "rm", model=args.model, batch_size=args.batch_size,
            max_steps=args.steps, epochs=args.steps, learning_rate=args.lr,
            max_length=args.max_length, seed=0, progress=False)
    if int(os.environ.get("RANK", "0")) == 0:
        Path(args.result).write_text(json.dumps(summary))


def _launch(command: list[str], threads: int) -> tuple[float, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(common.ROOT)}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=common.ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise SystemExit(f"failed ({done.returncode}): {shlex.join(command)}")
    return time.perf_counter() - start, done.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default",
                        help="'default' (MiniLM) or a model folder (default: default)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--per-rank-batch", type=int, default=4,
                        help="pairs per rank per step under torchrun (one process: twice that)")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest allowed |loss difference| at any step (default 1e-4)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pairs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return 0

    ranks, b = 2, args.per_rank_batch
    global_batch = ranks * b
    # Whole global batches only: a partial last one is padded differently by one process
    # (a short batch) and by accelerate (wrapping around to the first pairs).
    pairs = (sum(1 for line in DATA.open() if line.strip()) // global_batch) * global_batch
    worker_args = ["--worker", "--model", args.model, "--steps", str(args.steps), "--max-length",
              str(args.max_length), "--lr", str(args.lr), "--pairs", str(pairs)]
    this = str(Path(__file__).resolve())
    with tempfile.TemporaryDirectory() as scratch:
        one_json, two_json = Path(scratch) / "one.json", Path(scratch) / "two.json"
        one = [sys.executable, this, *worker_args, "--batch-size", str(global_batch),
               "--result", str(one_json)]
        two = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={ranks}", this, *worker_args, "--batch-size", str(b),
               "--result", str(two_json)]
        print("one process:", shlex.join(one))
        one_s, _ = _launch(one, threads=1)
        print("torchrun:   ", shlex.join(two))
        two_s, _ = _launch(two, threads=1)
        first, second = json.loads(one_json.read_text()), json.loads(two_json.read_text())

    curve1 = {h["step"]: h["loss"] for h in first["loss_history"]}
    curve2 = {h["step"]: h["loss"] for h in second["loss_history"]}
    if sorted(curve1) != sorted(curve2) or second["world_size"] != ranks:
        raise SystemExit(f"the runs differ in shape: steps {sorted(curve1)} vs {sorted(curve2)}, "
                         f"world sizes {first['world_size']} and {second['world_size']}")
    rows = [{"step": s, "one_process": curve1[s], "torchrun": curve2[s],
             "abs_diff": abs(curve1[s] - curve2[s])} for s in sorted(curve1)]
    worst = max(r["abs_diff"] for r in rows)
    passed = worst <= args.tolerance
    settings = {"model": args.model, "steps": args.steps, "pairs": pairs,
                "global_batch_pairs": global_batch, "ranks": ranks, "per_rank_batch": b,
                "max_length": args.max_length, "learning_rate": args.lr, "dropout": "off",
                "threads_per_process": 1, "backend": "gloo (CPU)"}
    lines = [
        "# reward-model training: one process vs torchrun",
        "",
        f"`python benchmarks/check_rm_torchrun.py --model {args.model} --steps {args.steps} "
        f"--per-rank-batch {b} --max-length {args.max_length} --lr {args.lr} "
        f"--tolerance {args.tolerance}`",
        "",
        "settings: " + ", ".join(f"{k} {v}" for k, v in settings.items()),
        f"machine: {common.describe_machine()}",
        f"wall time: one process {one_s:.1f} s, torchrun {two_s:.1f} s (including start-up)",
        "",
        "| step | loss, one process | loss, torchrun x2 | abs diff |",
        "|---:|---:|---:|---:|",
        *(f"| {r['step']} | {r['one_process']:.7f} | {r['torchrun']:.7f} | {r['abs_diff']:.2e} |"
          for r in rows),
        "",
        f"max |difference| = {worst:.3e}; tolerance {args.tolerance:.1e}: "
        f"{'PASS' if passed else 'FAIL'}",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    from ramo.io.atomic import write_json, write_text

    write_json(common.RESULTS / "rm_torchrun_cpu.json", {
        "settings": settings, "machine": common.machine(), "steps": rows,
        "max_abs_diff": worst, "tolerance": args.tolerance, "passed": passed,
        "wall_s": {"one_process": one_s, "torchrun": two_s}})
    write_text(common.RESULTS / "rm_torchrun_cpu.md", text)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
