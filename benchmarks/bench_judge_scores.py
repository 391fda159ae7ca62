"""Benchmark judge_scores against what a user would write in PyTorch.

Baseline (imported from the tests, which check that it computes the same thing): eager
PyTorch, `softmax(hidden @ weight.T)` over the vocabulary (+ bias with --bias), then gathers
and sums; it holds the [B, V] logits and probabilities. Against it: ramo's cpu backend on CPU, cuda and
triton on a GPU, all in "vocab" mode (the full log-sum-exp: the expensive one).

--dtype bfloat16 runs hidden and weight in bf16 (the baseline then multiplies and normalises
in bf16, as a user's bf16 model would; ramo's backends keep fp32 logits, so the max err column
shows what that costs), with the GEMM ceiling in bf16 too.

Per shape it prints the median time (methods timed in alternation, so a noisy neighbour
slows all of them alike), the speedup over the baseline, the achieved GFLOP/s (2 B D V flops)
as a share of the GFLOP/s of a square GEMM timed in the same alternation, the time of the
bare matmul of the same shape, the peak extra memory of each method, and each method's largest error against
an fp64 ground truth on the first rows. Writes JSON and markdown to --out.

Peak extra memory:
  * CPU: no torch allocator statistic tracks CPU tensors, so each method runs once more in a
    fresh subprocess which reads the kernel's exact resident-memory high-water mark (VmHWM,
    reset just before the call) minus the resident size before it. The subprocess first
    runs the method once (one-time allocations such as BLAS buffers and thread pools are
    not the method's), and is started with MALLOC_MMAP_THRESHOLD_ fixed so that glibc maps
    every block of 16 KiB or more afresh and unmaps it when freed: memory freed by the
    warm-up call cannot be reused unseen, and every such block the measured call holds is
    counted (smaller ones may reuse freed heap unseen; every method here holds only a handful
    of those, such as its [B] outputs). The kernel keeps RSS counts per CPU and sums them
    approximately, so values below about 1 MiB are not exact.
  * CUDA: torch.cuda.max_memory_allocated above the allocated level before the call.

    python benchmarks/bench_judge_scores.py --threads 2       # all shapes, this machine's CPU
    python benchmarks/bench_judge_scores.py --quick           # B=256, D=4096, V=128256 only
    python benchmarks/bench_judge_scores.py --device cuda     # eager, cuda, triton
    python benchmarks/bench_judge_scores.py --device cuda --quick --dtype bfloat16
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402
from python_tests.baselines import judge_scores_eager  # noqa: E402
from ramo.ops import judge_scores  # noqa: E402

FULL_SHAPES = ((32, 2048, 49152), (256, 2048, 49152), (256, 4096, 128256))
QUICK_SHAPES = ((256, 4096, 128256),)
YES, NO, OTHER = [9454, 9891], [2822], [87, 1007]  # any ids below the smallest V
TRUTH_ROWS = 8
GEMM_N = 2048  # the square fp32 GEMM whose GFLOP/s is the compute ceiling


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def make_inputs(b: int, d: int, v: int, device: torch.device, with_bias: bool,
                dtype: torch.dtype = torch.float32):
    """hidden, weight (in dtype) and an fp32 bias (or None) with logits of a few units, as an
    LM head gives."""
    gen = torch.Generator(device=device).manual_seed(0)
    hidden = torch.randn(b, d, device=device, generator=gen).to(dtype)
    weight = torch.randn(v, d, device=device, generator=gen).mul_(d ** -0.5).to(dtype)
    bias = torch.randn(v, device=device, generator=gen).mul_(0.1) if with_bias else None
    return hidden, weight, bias


def methods(device: torch.device) -> dict:
    def ramo_backend(backend):
        return lambda h, w, b: judge_scores(h, w, YES, NO, OTHER, bias=b, backend=backend)

    return {"eager": lambda h, w, b: judge_scores_eager(h, w, YES, NO, OTHER, b),
            **common.ramo_backends(device, ramo_backend)}


# --- accuracy -------------------------------------------------------------------------------

def fp64_truth(hidden, weight, bias, rows: int) -> torch.Tensor:
    """[5, rows] outputs of the first rows from fp64 logits, built chunk by chunk."""
    h = hidden[:rows].double()
    logits = torch.cat([h @ weight[v0:v0 + 16384].double().T for v0 in
                        range(0, weight.shape[0], 16384)], dim=1)
    if bias is not None:
        logits = logits + bias.double()
    probs = torch.softmax(logits, dim=1)
    p = [probs[:, ids].sum(1) for ids in (YES, NO, OTHER)]
    total = p[0] + p[1] + p[2]
    return torch.stack([p[0], p[1], p[2], p[0] - p[1], (p[0] + p[1]) / total])


def max_error(out, want: torch.Tensor) -> float:
    got = torch.stack([t[:want.shape[1]].double() for t in out])
    return (got - want).abs().max().item()


# --- memory ---------------------------------------------------------------------------------

def memory_child(method: str, b: int, d: int, v: int, with_bias: bool, dtype: str) -> None:
    """One call's peak extra memory, for common.cpu_peak_extra_mb (the module doc)."""
    inputs = make_inputs(b, d, v, torch.device("cpu"), with_bias, DTYPES[dtype])
    common.memory_child_report(methods(torch.device("cpu"))[method], *inputs)


# --- the run --------------------------------------------------------------------------------

def run_shape(device, b, d, v, min_time_s, threads, with_bias, dtype="float32") -> dict:
    hidden, weight, bias = make_inputs(b, d, v, device, with_bias, DTYPES[dtype])
    fns = methods(device)
    flop = 2 * b * d * v
    logits_mb = b * v * hidden.element_size() / 2 ** 20  # the baseline's logits
    row = {"B": b, "D": d, "V": v, "logits MB": logits_mb}
    out_buf = torch.empty(b, v, device=device, dtype=hidden.dtype)
    # The GEMM ceiling is timed among the methods, so that it sees the same machine they do.
    sq = [torch.randn(GEMM_N, GEMM_N, device=device, dtype=hidden.dtype) for _ in range(3)]
    timed = {"gemm": lambda: torch.mm(sq[0], sq[1], out=sq[2]),
             "matmul": lambda: torch.mm(hidden, weight.T, out=out_buf)}
    timed.update({name: (lambda fn=fn: fn(hidden, weight, bias)) for name, fn in fns.items()})
    times = common.interleaved_median_ms(timed, device, min_time_s)
    del out_buf, sq
    gemm_gflops = 2 * GEMM_N ** 3 / (times["gemm"] * 1e-3) / 1e9
    row["GEMM GFLOP/s"] = gemm_gflops
    row["matmul ms"] = times["matmul"]
    want = fp64_truth(hidden, weight, bias, TRUTH_ROWS)
    for name, fn in fns.items():
        ms = times[name]
        row[f"{name} ms"] = ms
        row[f"{name} x eager"] = times["eager"] / ms
        row[f"{name} GFLOP/s"] = flop / (ms * 1e-3) / 1e9
        row[f"{name} % GEMM"] = 100 * row[f"{name} GFLOP/s"] / gemm_gflops
        row[f"{name} max err"] = max_error(fn(hidden, weight, bias), want)
        if device.type == "cuda":
            row[f"{name} peak MB"] = common.cuda_peak_extra_mb(device, fn, hidden, weight,
                                                                bias)
    del hidden, weight, bias
    if device.type == "cpu":  # after freeing this process's copy of the inputs
        child_flags = ["--dtype", dtype] + (["--bias"] if with_bias else [])
        for name in fns:
            row[f"{name} peak MB"] = common.cpu_peak_extra_mb(__file__, name, (b, d, v),
                                                               threads, *child_flags)
    for name in fns:
        row[f"{name} peak / logits"] = row[f"{name} peak MB"] / logits_mb
    return row


def report(row: dict, names) -> str:
    parts = [f"B={row['B']:4d} D={row['D']:5d} V={row['V']:6d}  GEMM "
             f"{row['GEMM GFLOP/s']:.0f} GFLOP/s, matmul of this shape {row['matmul ms']:.2f} ms"]
    for m in names:
        parts.append(f"{m} {row[f'{m} ms']:9.2f} ms ({row[f'{m} x eager']:.2f}x eager, "
                     f"{row[f'{m} GFLOP/s']:.0f} GFLOP/s = {row[f'{m} % GEMM']:.0f}% GEMM, "
                     f"peak +{row[f'{m} peak MB']:.1f} MiB = {row[f'{m} peak / logits']:.3f} "
                     f"of the logits, max err {row[f'{m} max err']:.1e})")
    return "\n    ".join(parts)


def run(device: torch.device, shapes, min_time_s: float, threads: int | None,
        with_bias: bool = False, dtype: str = "float32") -> dict:
    print(f"# judge_scores on {device}, {dtype} ({common.machine()})", flush=True)
    rows = []
    for b, d, v in shapes:
        row = run_shape(device, b, d, v, min_time_s, threads, with_bias, dtype)
        rows.append(row)
        print(report(row, methods(device)), flush=True)
    return {"device": str(device), "machine": common.machine(), "bias": with_bias,
            "dtype": dtype,
            "ids": {"yes": YES, "no": NO, "other": OTHER}, "rows": rows}


def to_markdown(result: dict) -> str:
    names = list(methods(torch.device(result["device"])))
    columns = [("B", "B", "d"), ("D", "D", "d"), ("V", "V", "d"),
               ("logits MB", "logits MiB", ".1f"), ("GEMM GFLOP/s", "GEMM GFLOP/s", ".0f"),
               ("matmul ms", "matmul ms", ".1f")]
    for m in names:
        columns += [(f"{m} ms", f"{m} ms", ".1f"), (f"{m} x eager", "x eager", ".2f"),
                    (f"{m} % GEMM", "% GEMM", ".0f"), (f"{m} peak MB", "peak MiB", ".1f"),
                    (f"{m} peak / logits", "peak / logits", ".3f"),
                    (f"{m} max err", "max err", ".1e")]
    dtype = result.get("dtype", "float32")
    header = (f"judge_scores (normalize=\"vocab\", {dtype}, "
              f"{'with' if result['bias'] else 'no'} bias), {common.describe_run(result)}, "
              f"{result['machine']['threads']} threads. "
              f"Medians of alternating calls, among them a {GEMM_N}^3 {dtype} GEMM (% GEMM: "
              f"achieved 2BDV flop/s as a share of it) and the bare [B, D] x [D, V] matmul "
              f"into a preallocated output; x eager > 1 is faster than the baseline; peak = extra memory "
              f"of one call (see the benchmark's docstring); max err = largest error of the five "
              f"outputs against fp64 on the first {TRUTH_ROWS} rows.\n\n")
    return header + common.markdown_table(result["rows"], columns)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_run_flags(parser)
    parser.add_argument("--quick", action="store_true", help="only B=256, D=4096, V=128256")
    parser.add_argument("--bias", action="store_true",
                        help="give the LM head a bias (the baseline then adds it to [B, V])")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES),
                        help="of hidden and weight (and of the baseline's arithmetic)")
    parser.add_argument("--min-time", type=float, default=0.5,
                        help="seconds of timed calls per method and shape (at least 5 calls)")
    parser.add_argument("--memory-child", nargs=4, metavar=("METHOD", "B", "D", "V"),
                        help=argparse.SUPPRESS)  # internal: one CPU memory measurement
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        method, b, d, v = args.memory_child
        memory_child(method, int(b), int(d), int(v), args.bias, args.dtype)
        return 0
    device = common.parse_device(parser, args.device)
    torch.set_grad_enabled(False)
    result = run(device, QUICK_SHAPES if args.quick else FULL_SHAPES, args.min_time, args.threads,
                 args.bias, args.dtype)
    stem = (f"judge_scores_{device.type}" + ("_bias" if args.bias else "")
            + ("" if args.dtype == "float32" else f"_{args.dtype}")
            + ("_quick" if args.quick else ""))
    common.save_and_print(args.out, stem, result, to_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
