"""Scale of the data path: `ramo select` and `ramo label` on N pairs x R rules of synthetic
ratings, and the ratings store's read rate against plain scans of the same table.

Builds once, in --work, a pairs file and a complete ratings store of N pairs x 2 sides x R
rules (benchmarks/synthetic_store.py; 10^6 x 100 is 2 x 10^8 ratings, about 20 GB and half an
hour here), then runs, each in a fresh process timed from outside, with its peak resident
memory from the kernel (wait4's ru_maxrss):

  startup   `python -m ramo select --help`: the interpreter, torch and ramo, the floor
  select    `ramo select` over the whole store (k = 5, the judge's relevance)
  label     `ramo label` on its selections
  store     the store's streaming read of every pair on every rule (`score_blocks`, what
            `ramo select` reads), timed inside the process
  scan      `SELECT * FROM ratings` iterated in Python: every row as a tuple, no join
  sqlite    one aggregate over every value of the table: sqlite's own scan, no Python rows

and prints medians over --reps rounds (the steps in alternation, so a slow spell of this
shared machine lands on all) and the store's read rate as a ratio of the two scans' in the
same run. Writes JSON and markdown to --out.

    python benchmarks/bench_data_path.py                     # N = 10^6, R = 100
    python benchmarks/bench_data_path.py --quick             # N = 10^4, for run_all
    python benchmarks/bench_data_path.py --pairs 100000 --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402
from benchmarks.synthetic_store import build, synthetic_pairs, synthetic_rules  # noqa: E402

READS = ("store", "scan", "sqlite")
STEPS = ("startup", "select", "label") + READS


def _read(kind: str, folder: Path, n_pairs: int, n_rules: int) -> dict:
    """One read of the whole store, in this process; {"rows", "seconds"}."""
    import sqlite3

    from ramo.ratings import RatingStore

    path = folder / "ratings.sqlite"
    if kind == "store":
        pairs, rules = synthetic_pairs(range(n_pairs)), synthetic_rules(n_rules)
        with RatingStore.open_existing(path) as store:
            t0 = time.perf_counter()
            rows = sum(int(block.valid.sum()) for block in store.score_blocks(pairs, rules))
            seconds = time.perf_counter() - t0
        return {"rows": rows, "seconds": seconds}
    con = sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True)
    try:
        t0 = time.perf_counter()
        if kind == "scan":
            rows, cursor = 0, con.execute("SELECT * FROM ratings")
            while batch := cursor.fetchmany(65536):
                rows += len(batch)
        else:
            rows, _ = con.execute("SELECT COUNT(*), TOTAL(p_yes + p_no + p_other + score"
                                  " + relevance) FROM ratings").fetchone()
        return {"rows": rows, "seconds": time.perf_counter() - t0}
    finally:
        con.close()


def _commands(folder: Path, args) -> dict:
    ramo = [sys.executable, "-m", "ramo"]
    me = [sys.executable, str(Path(__file__).resolve()), "--work", str(args.work),
          "--pairs", str(args.pairs), "--rules", str(args.rules)]
    return {
        "startup": ramo + ["select", "--help"],
        "select": ramo + ["select", "--pairs", str(folder / "pairs.jsonl"), "--rules",
                          str(folder / "rules.jsonl"), "--ratings", str(folder / "ratings.sqlite"),
                          "--out", str(folder / "selections.jsonl"), "-k", "5"],
        "label": ramo + ["label", "--pairs", str(folder / "pairs.jsonl"), "--selections",
                         str(folder / "selections.jsonl"), "--rules",
                         str(folder / "rules.jsonl"), "--out", str(folder / "labeled.jsonl")],
        **{kind: me + ["--read", kind] for kind in READS},
    }


def _run(command: list[str], log: Path, mem_cap_gb: float, threads: int | None) -> dict:
    """Runs command in a child process; its wall time, peak RSS (MiB), exit code and output.

    The child's address space is capped (RLIMIT_AS), so that a run that would take more
    memory than the cap fails with MemoryError instead of pushing a shared machine into swap
    or the OOM killer."""
    cap = int(mem_cap_gb * 2 ** 30)

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    with open(log, "w") as out:
        t0 = time.perf_counter()
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                 preexec_fn=limit)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - t0
    child.returncode = os.waitstatus_to_exitcode(status)
    return {"seconds": seconds, "peak_mib": usage.ru_maxrss / 1024, "rc": child.returncode,
            "output": log.read_text()[-2000:]}


def run(args) -> dict:
    folder = args.work / f"n{args.pairs}_r{args.rules}"
    t0 = time.perf_counter()
    record = build(folder, args.pairs, args.rules)
    print(f"# data set in {folder} ({time.perf_counter() - t0:.0f} s to build or check): "
          f"{args.pairs} pairs x 2 x {args.rules} rules, store "
          f"{record['store_bytes'] / 2 ** 30:.2f} GiB, pairs file "
          f"{record['pairs_bytes'] / 2 ** 20:.0f} MiB", flush=True)
    commands = _commands(folder, args)
    runs: dict = {step: [] for step in STEPS}
    for rep in range(args.reps):
        for step in STEPS:  # select before label: label reads select's output
            got = _run(commands[step], folder / f"{step}.log", args.mem_cap_gb, args.threads)
            if step in READS and got["rc"] == 0:
                got.update(json.loads(got["output"].strip().splitlines()[-1]))
            runs[step].append(got)
            print(f"round {rep + 1} {step:8s} {got['seconds']:9.2f} s  peak "
                  f"{got['peak_mib']:8.0f} MiB  exit {got['rc']}", flush=True)
            if got["rc"] != 0:
                print(got["output"], file=sys.stderr)
    rows = []
    for step in STEPS:
        ok = [r for r in runs[step] if r["rc"] == 0]
        row = {"step": step, "runs": len(runs[step]), "failed": len(runs[step]) - len(ok),
               "peak_mib": max((r["peak_mib"] for r in runs[step]), default=None)}
        if ok:
            # A CLI step's seconds are its process's; a read's, its read alone (from the
            # child's own report, which replaced the process's time above).
            row["seconds"] = statistics.median(r["seconds"] for r in ok)
            if step in READS:
                row["rows"] = ok[0]["rows"]
                row["rows_per_s"] = statistics.median(r["rows"] / r["seconds"] for r in ok)
        rows.append(row)
    by_step = {row["step"]: row for row in rows}
    for base in ("scan", "sqlite"):
        if "rows_per_s" in by_step[base] and "rows_per_s" in by_step["store"]:
            by_step["store"][f"x {base}"] = (by_step["store"]["rows_per_s"]
                                             / by_step[base]["rows_per_s"])
    command = common.command_line(__file__)
    return {"command": command, "machine": common.machine(), "pairs": args.pairs,
            "rules": args.rules, "reps": args.reps, "mem_cap_gb": args.mem_cap_gb,
            "build": record, "dense_gib": args.pairs * 2 * args.rules * 5 * 4 / 2 ** 30,
            "rows": rows, "runs": {s: [{k: v for k, v in r.items() if k != "output"}
                                       for r in runs[s]] for s in STEPS}}


def to_markdown(result: dict) -> str:
    m, b = result["machine"], result["build"]
    header = (
        f"Data path at N = {result['pairs']} pairs x 2 sides x R = {result['rules']} rules "
        f"({2 * result['pairs'] * result['rules']} ratings): `{result['command']}`. "
        f"{m['processor']}, torch {m['torch']}, {m['threads']} threads. Store "
        f"{b['store_bytes'] / 2 ** 30:.2f} GiB, pairs file {b['pairs_bytes'] / 2 ** 20:.0f} MiB; "
        f"the dense float32 Ratings of the whole store would be "
        f"{result['dense_gib']:.2f} GiB. Medians of {result['reps']} rounds; each step a fresh "
        f"process, capped at {result['mem_cap_gb']:g} GiB of address space; peak: the "
        "process's peak resident memory (the largest over the rounds). The reads' rates are "
        "timed inside their processes; the ratios are of the median rates, from the same "
        "rounds.\n\n")
    return header + common.markdown_table(result["rows"], [
        ("step", "step", "s"), ("seconds", "median s", ".2f"), ("peak_mib", "peak MiB", ".0f"),
        ("rows_per_s", "rows/s", ".3g"), ("x scan", "x Python scan", ".2f"),
        ("x sqlite", "x sqlite scan", ".2f"), ("failed", "failed runs", "d")])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10 ** 6)
    parser.add_argument("--rules", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="N = 10^4 (for run_all)")
    parser.add_argument("--reps", type=int, default=3, help="rounds of every step")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ramo-data-path"),
                        help="folder for the data set (built once, reused) and the outputs")
    parser.add_argument("--mem-cap-gb", type=float, default=12.0,
                        help="address-space cap of every child process, GiB")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the steps")
    parser.add_argument("--read", choices=READS, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=common.RESULTS,
                        help="folder for the JSON and markdown results")
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs = 10 ** 4
    if args.read:  # a child of run(): one read, its result as the last line
        folder = args.work / f"n{args.pairs}_r{args.rules}"
        print(json.dumps(_read(args.read, folder, args.pairs, args.rules)))
        return 0
    result = run(args)
    markdown = to_markdown(result)
    stem = "data_path_cpu"
    if args.quick:
        stem += "_quick"
    elif (args.pairs, args.rules) != (parser.get_default("pairs"), parser.get_default("rules")):
        stem += f"_{args.pairs}x{args.rules}"
    common.save_and_print(args.out, stem, result, markdown)
    failed = sum(row["failed"] for row in result["rows"])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
