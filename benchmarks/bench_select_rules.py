"""Benchmark select_rules against what a user would write in PyTorch.

Baselines (imported from the tests, which check that they compute the same thing):
eager PyTorch (criterion, topk, gather, sum, compare) and that composition under
torch.compile. Against them: ramo's cpu backend on CPU, cuda and triton on a GPU.

Prints, per shape, the median time, the achieved bandwidth (bytes that must move: both score
matrices and the relevance read once, the outputs written once), that bandwidth as a share
of the copy bandwidth, and the speedups. Each method is timed in its own block, in
alternation with a copy of 256 MiB into 256 MiB (one call of each per round), and its share
of the copy bandwidth is taken against the copy timed beside it: the copy rate of this shared
machine moved between 16 and 45 GB/s from one run to another. Methods are not alternated with
one another: the baselines' large temporaries, freed back to the system, would make the next
method's output allocations fault their pages in again (measured: 25% of the copy bandwidth
at N = 65536, R = 100, k = 5 alternated with eager and compile, 49-56% beside the copy
alone). Writes JSON and markdown (and a PNG when matplotlib is installed) to --out.

    python benchmarks/bench_select_rules.py                 # all shapes, this machine's CPU
    python benchmarks/bench_select_rules.py --quick         # N = 65536 only
    python benchmarks/bench_select_rules.py --device cuda   # eager, compile, cuda, triton
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ramo  # noqa: E402
from benchmarks import common  # noqa: E402
from python_tests.baselines import select_rules_compiled, select_rules_eager  # noqa: E402
from ramo.plots import pyplot, save_figure  # noqa: E402

FULL_N = (4096, 65536, 262144)
QUICK_N = (65536,)
R_VALUES = (100, 1024)
K_VALUES = (5, 16)


def bytes_moved(n: int, r: int, k: int, element_size: int = 4) -> int:
    reads = 2 * n * r * element_size + r * 4
    writes = n * k * (8 + 4) + n * (3 * 4 + 1)  # indices, criterion; rewards, margin, preference
    return reads + writes


def make_inputs(n: int, r: int, device: torch.device):
    """scores_a, scores_b [N, R] in [-1, 1) and relevance [R] in [0, 1)."""
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.rand(n, r, device=device, generator=gen) * 2 - 1
    b = torch.rand(n, r, device=device, generator=gen) * 2 - 1
    rel = torch.rand(r, device=device, generator=gen)
    return a, b, rel


def methods(device: torch.device) -> dict:
    def ramo_backend(backend):
        return lambda a, b, rel, k: ramo.select_rules(a, b, rel, k=k, backend=backend)

    return {"eager": select_rules_eager, "compile": select_rules_compiled,
            **common.ramo_backends(device, ramo_backend)}


def run(device: torch.device, n_values, min_time_s: float) -> dict:
    copy, copied = common.copy_probe(device)
    print(f"# select_rules on {device} ({common.machine()})", flush=True)
    rows = []
    for n, r, k in itertools.product(n_values, R_VALUES, K_VALUES):
        a, b, rel = make_inputs(n, r, device)
        torch._dynamo.reset()  # a fresh compile per shape, clear of the recompile limit
        nbytes = bytes_moved(n, r, k)
        row = {"N": n, "R": r, "k": k, "MB": nbytes / 1e6}
        copy_rates = []
        for name, fn in methods(device).items():
            times = common.interleaved_median_ms(
                {"copy": copy, name: lambda fn=fn: fn(a, b, rel, k)}, device, min_time_s)
            copy_rates.append(copied / (times["copy"] * 1e-3) / 1e9)
            row[f"{name} ms"] = times[name]
            row[f"{name} GB/s"] = nbytes / (times[name] * 1e-3) / 1e9
            row[f"{name} % copy bw"] = 100 * row[f"{name} GB/s"] / copy_rates[-1]
        row["copy GB/s"] = statistics.median(copy_rates)
        for name in methods(device):
            row[f"{name} x eager"] = row["eager ms"] / row[f"{name} ms"]
            row[f"{name} x compile"] = row["compile ms"] / row[f"{name} ms"]
        rows.append(row)
        fast = [m for m in methods(device) if m.startswith("ramo")]
        print(f"N={n:7d} R={r:5d} k={k:3d}  copy {row['copy GB/s']:.1f} GB/s  eager "
              f"{row['eager ms']:9.2f} ms  compile "
              f"{row['compile ms']:9.2f} ms  "
              + "  ".join(f"{m} {row[f'{m} ms']:8.2f} ms ({row[f'{m} x eager']:.1f}x eager, "
                          f"{row[f'{m} x compile']:.1f}x compile, "
                          f"{row[f'{m} % copy bw']:.0f}% of copy bw)" for m in fast),
              flush=True)
        del a, b, rel
    return {"device": str(device), "machine": common.machine(), "rows": rows}


def to_markdown(result: dict) -> str:
    fast = [m for m in methods(torch.device(result["device"])) if m.startswith("ramo")]
    columns = [("N", "N", "d"), ("R", "R", "d"), ("k", "k", "d"),
               ("copy GB/s", "copy GB/s", ".1f"), ("eager ms", "eager ms", ".2f"),
               ("compile ms", "compile ms", ".2f")]
    for m in fast:
        columns += [(f"{m} ms", f"{m} ms", ".2f"), (f"{m} x eager", "x eager", ".1f"),
                    (f"{m} x compile", "x compile", ".1f"), (f"{m} GB/s", "GB/s", ".1f"),
                    (f"{m} % copy bw", "% copy bw", ".0f")]
    header = (f"select_rules, {common.describe_run(result)}, {result['machine']['threads']} "
              f"threads. Each method timed in its own block "
              f"in alternation with a 256 MiB copy; % copy bw is against the copy of its own "
              f"block (bytes read + written), copy GB/s the median over the blocks. Medians; "
              f"fp32; relevance [R].\n\n")
    return header + common.markdown_table(result["rows"], columns)


def plot(result: dict, path: Path) -> Path | None:
    """The speedups as a bar chart, a PNG at `path`; None without matplotlib."""
    try:
        plt = pyplot()
    except ImportError:
        return None
    fast = [m for m in methods(torch.device(result["device"])) if m.startswith("ramo")]
    labels = [f"N={r['N']}\nR={r['R']} k={r['k']}" for r in result["rows"]]
    fig, ax = plt.subplots(figsize=(max(6, len(labels) * 0.9), 4))
    width = 0.8 / (len(fast) + 1)
    for i, name in enumerate(["compile"] + fast):
        ax.bar([x + i * width for x in range(len(labels))],
               [r[f"{name} x eager"] for r in result["rows"]], width, label=name)
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_xticks([x + width * len(fast) / 2 for x in range(len(labels))], labels, fontsize=7)
    ax.set_ylabel("speedup over eager PyTorch")
    ax.set_title(f"select_rules on {result['device']}")
    ax.legend()
    return save_figure(fig, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_run_flags(parser, out_help="folder for the JSON, markdown and PNG results")
    parser.add_argument("--quick", action="store_true", help="only N = 65536")
    parser.add_argument("--min-time", type=float, default=0.5,
                        help="seconds of timed calls per method and shape (at least 5 calls)")
    args = parser.parse_args(argv)
    device = common.parse_device(parser, args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(device, QUICK_N if args.quick else FULL_N, args.min_time)
    stem = f"select_rules_{device.type}" + ("_quick" if args.quick else "")
    png = plot(result, args.out / f"{stem}.png")
    common.save_and_print(args.out, stem, result, to_markdown(result), also=[png] if png else [])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
