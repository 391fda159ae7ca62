"""Every kernel benchmark in its quick mode, and one table of their ratios and ceilings.

Runs, one after another in fresh processes (so that one benchmark's threads and caches do not
slow the next):

  select_rules      bench_select_rules.py --quick        N = 65536, R in {100, 1024}, k in {5, 16}
  judge_scores      bench_judge_scores.py --quick        B = 256, D = 4096, V = 128256
  rule_head_select  bench_rule_head_select.py --quick    N = 16384, D = 768, R = 100
  judge             bench_judge.py (CPU only)            100 rules x 2 responses, SmolLM2
  data_path         bench_data_path.py --quick (CPU)     N = 10^4 pairs, R = 100: ramo select,
                                                         ramo label, the store's read rate

then writes DIR/summary_<device>.md (and .json): one row per (benchmark, shape, ramo
backend) with its speedup over each baseline measured in the same run and its share of the
hardware ceiling measured in the same run (copy bandwidth, GEMM FLOP/s, for rule_head_select
the floor of a training step: its two GEMMs and one pass over the hidden states), so that a
regression shows in one table. Each benchmark's own JSON and markdown stay in DIR. A
benchmark that fails is listed as failed, the others still run; the exit code is then 1.
judge rates HH-RLHF conversations from its --data default ($RAMO_HH_RLHF, see
benchmarks/common.py).

    python benchmarks/run_all.py                      # CPU, into benchmarks/results/run_all
    python benchmarks/run_all.py --device cuda        # GPU: cuda and triton backends
    python benchmarks/run_all.py --only select_rules judge
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.common import RESULTS, command_line, markdown_table  # noqa: E402
from ramo.io.atomic import write_text  # noqa: E402

# name -> (script, quick arguments, JSON stem without the device, CPU only). rule_head_select's
# results keep the prefix rule_heads of its benchmark's former name (bench_rule_heads.py).
BENCHMARKS = {
    "select_rules": ("bench_select_rules.py", ["--quick"], "select_rules_{device}_quick", False),
    "judge_scores": ("bench_judge_scores.py", ["--quick"], "judge_scores_{device}_quick", False),
    "rule_head_select": ("bench_rule_head_select.py", ["--quick"], "rule_heads_{device}_quick",
                         False),
    "judge": ("bench_judge.py", ["--responses", "2", "--naive-rules", "4", "--batched-rules", "8"],
              "judge_{device}", True),
    "data_path": ("bench_data_path.py", ["--quick"], "data_path_{device}_quick", True),
}


def _backends(row: dict) -> list[str]:
    """The ramo backends a row timed ("ramo cpu", "ramo cuda", "ramo triton")."""
    return [key[:-len(" x eager")] for key in row
            if key.startswith("ramo ") and key.endswith(" x eager") and " fwd " not in key]


def summarise(name: str, result: dict) -> list[dict]:
    """One summary row per shape and ramo backend of one benchmark's JSON."""
    out = []
    if name == "select_rules":
        for row in result["rows"]:
            for b in _backends(row):
                out.append({"benchmark": name, "shape": f"N {row['N']} R {row['R']} k {row['k']}",
                            "method": b, "x baseline": f"{row[f'{b} x eager']:.1f}x eager, "
                                                       f"{row[f'{b} x compile']:.1f}x compile",
                            "ceiling": "copy bandwidth",
                            "% ceiling": row[f"{b} % copy bw"]})
    elif name == "judge_scores":
        for row in result["rows"]:
            for b in _backends(row):
                out.append({"benchmark": name, "shape": f"B {row['B']} D {row['D']} V {row['V']}",
                            "method": b, "x baseline": f"{row[f'{b} x eager']:.2f}x eager",
                            "ceiling": "GEMM FLOP/s", "% ceiling": row[f"{b} % GEMM"]})
    elif name == "rule_head_select":
        for row in result["rows"]:
            for b in _backends(row):
                out.append({"benchmark": name, "shape": f"N {row['N']} D {row['D']} R {row['R']}",
                            "method": b + " fwd+bwd",
                            "x baseline": f"{row[f'{b} x eager']:.2f}x eager "
                                          f"(fwd {row[f'{b} fwd x eager']:.2f}x; the floor "
                                          f"{row['floor x eager']:.2f}x)",
                            "ceiling": "floor of a step", "% ceiling": row[f"{b} % floor"]})
    elif name == "judge":
        for row in result["rows"]:
            ratio = f"{row['x_naive']:.1f}x naive"
            if "x_batched" in row:
                ratio += f", {row['x_batched']:.1f}x batched"
            out.append({"benchmark": name, "shape": f"{row['ratings']} ratings",
                        "method": row["method"], "x baseline": ratio, "ceiling": "GEMM FLOP/s",
                        "% ceiling": row["pct_ceiling"]})
    elif name == "data_path":
        shape = f"N {result['pairs']} R {result['rules']}"
        for row in result["rows"]:
            if row["step"] in ("select", "label"):
                out.append({"benchmark": name, "shape": shape, "method": f"ramo {row['step']}",
                            "x baseline": f"{row['seconds']:.1f} s, peak {row['peak_mib']:.0f} MiB"})
            elif row["step"] == "store":
                out.append({"benchmark": name, "shape": shape, "method": "store read",
                            "x baseline": f"{row['x scan']:.2f}x Python scan",
                            "ceiling": "sqlite's own scan", "% ceiling": 100 * row["x sqlite"]})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads for every CPU benchmark")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "run_all")
    args = parser.parse_args()

    rows, failed, seconds = [], [], {}
    for name in args.only or BENCHMARKS:
        script, quick, stem, cpu_only = BENCHMARKS[name]
        if cpu_only and args.device != "cpu":
            continue
        command = [sys.executable, str(HERE / script), *quick, "--out", str(args.out)]
        if not cpu_only:
            command += ["--device", args.device]
        if args.threads and args.device == "cpu":
            command += ["--threads", str(args.threads)]
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        t0 = time.perf_counter()
        done = subprocess.run(command, check=False)
        seconds[name] = time.perf_counter() - t0
        result_file = args.out / f"{stem.format(device=args.device)}.json"
        if done.returncode != 0 or not result_file.is_file():
            failed.append(name)
            print(f"{name} failed (exit code {done.returncode})", file=sys.stderr)
            continue
        rows += summarise(name, json.loads(result_file.read_text()))

    table = markdown_table(rows, [("benchmark", "benchmark", "s"), ("shape", "shape", "s"),
                                  ("method", "method", "s"), ("x baseline", "vs baselines", "s"),
                                  ("% ceiling", "% of ceiling", ".0f"),
                                  ("ceiling", "ceiling (same run)", "s")])
    command = command_line(__file__)
    header = (f"# ramo benchmarks, quick mode, {args.device}\n\n`{command}`\n\nRatios are "
              "against the baselines timed in the same run, and each ceiling was measured in "
              "the same run. Each benchmark's full table is beside this file.\n")
    if failed:
        header += f"\nFailed: {', '.join(failed)}.\n"
    text = f"{header}\n{table}\n"
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / f"summary_{args.device}.md", text)
    write_text(args.out / f"summary_{args.device}.json",
               json.dumps({"rows": rows, "failed": failed, "seconds": seconds}, indent=1))
    print(f"\n{text}\nwrote {args.out / f'summary_{args.device}.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
