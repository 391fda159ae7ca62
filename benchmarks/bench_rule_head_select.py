"""Benchmark rule_head_select (per-rule heads + selection, forward and backward) against the
PyTorch composition a user would write.

Baseline (imported from the tests, which check that it computes the same thing): two addmm
(the heads), then abs, topk, gather, sum, compare; its backward is autograd's, which builds
the dense [N, R] gradient of both score matrices and multiplies it back through the heads
(three dense GEMMs per side). Against it: ramo's cpu backend on CPU, cuda and triton on a GPU,
whose backward reaches hidden, weight and bias through the k selected rules only.

A training step is timed: forward, then a Bradley-Terry loss on the margin
(-logsigmoid(margin).sum()) and the backward to hidden_a, hidden_b, weight and bias. The
forward alone is timed too, and so are the two addmm alone (the part every method shares: the
floor of the forward), the floor of a step and a square fp32 GEMM (the machine's compute
ceiling), all in alternation so that a noisy neighbour slows every method alike. The useful
work of a step is taken as the heads' 4 N D R flops plus the sparse backward's 8 N k D;
"% GEMM" is that rate as a share of the GEMM's.

The floor of a step is what no method can skip: the two addmm, plus reading hidden_a and
hidden_b once and writing two new tensors of their size (the hidden-state gradients), timed
as two out-of-place torch.mul. Those writes land in freshly allocated memory, so the floor
also holds the page faults that a new gradient costs under the allocator in use. "floor x
eager" is the most any method could gain over the baseline here; "% floor" is how close a
method's step comes to the floor.

Peak extra memory (one training step, inputs and parameters excluded):
  * CPU: in a fresh subprocess, from the kernel's resident-memory high-water mark (VmHWM reset
    just before the step), started with MALLOC_MMAP_THRESHOLD_ fixed so that glibc maps every
    block of 16 KiB or more afresh (see benchmarks/bench_judge_scores.py for the details).
  * CUDA: torch.cuda.max_memory_allocated above the level before the step.

Shapes: N in {4096, 16384, 65536}, D in {768, 4096}, R in {100, 1024}, k = 5, fp32, relevance
[R]. A shape is skipped (and the output says so) when the baseline's step would need more than
--max-gb of memory or, from the GEMM rate measured first, more than --max-step-s per step.

    python benchmarks/bench_rule_head_select.py --threads 2          # all shapes, this CPU
    python benchmarks/bench_rule_head_select.py --threads 2 --quick  # N=16384, D=768, R=100 only
    python benchmarks/bench_rule_head_select.py --device cuda        # eager, cuda, triton

Results: rule_heads_<device>[_quick | _NxDxR].{json,md} in --out (the prefix of the results of
earlier runs, made when this script was bench_rule_heads.py).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ramo  # noqa: E402
from benchmarks import common  # noqa: E402
from python_tests.baselines import rule_head_select_eager  # noqa: E402

FULL_SHAPES = list(itertools.product((4096, 16384, 65536), (768, 4096), (100, 1024)))
QUICK_SHAPES = [(16384, 768, 100)]
K = 5
GEMM_N = 2048  # the square fp32 GEMM whose GFLOP/s is the compute ceiling
# The results' file names start with the name this script had before it was named after its
# op: new results sit beside the earlier ones (benchmarks/results/rule_heads_*), which the
# README cites.
RESULTS_PREFIX = "rule_heads"


def make_inputs(n: int, d: int, r: int, device: torch.device):
    """hidden_a, hidden_b (requiring grad, as a transformer's outputs do), weight, bias
    (parameters) and relevance [R]."""
    gen = torch.Generator(device=device).manual_seed(0)
    ha = torch.randn(n, d, device=device, generator=gen).requires_grad_()
    hb = torch.randn(n, d, device=device, generator=gen).requires_grad_()
    w = (torch.randn(r, d, device=device, generator=gen) * d ** -0.5).requires_grad_()
    b = (torch.randn(r, device=device, generator=gen) * 0.1).requires_grad_()
    rel = torch.rand(r, device=device, generator=gen)
    return ha, hb, w, b, rel


def methods(device: torch.device) -> dict:
    """name -> forward(ha, hb, w, b, rel) returning the margin."""
    def ramo_backend(backend):
        return lambda ha, hb, w, b, rel: ramo.rule_head_select(ha, hb, w, b, rel, k=K,
                                                               backend=backend).margin

    return {"eager": lambda ha, hb, w, b, rel: rule_head_select_eager(ha, hb, w, b, rel, K)[4],
            **common.ramo_backends(device, ramo_backend)}


def train_step(forward, inputs):
    """Forward, Bradley-Terry loss on the margin, backward to the four tensors."""
    margin = forward(*inputs)
    loss = -torch.nn.functional.logsigmoid(margin).sum()
    return torch.autograd.grad(loss, inputs[:4])


def forward_only(forward, inputs):
    return forward(*inputs)


# --- memory ---------------------------------------------------------------------------------

def memory_child(method: str, n: int, d: int, r: int) -> None:
    """One step's peak extra memory, for common.cpu_peak_extra_mb (the module doc)."""
    inputs = make_inputs(n, d, r, torch.device("cpu"))
    common.memory_child_report(train_step, methods(torch.device("cpu"))[method], inputs)


# --- the run --------------------------------------------------------------------------------

def baseline_estimate(n: int, d: int, r: int, gemm_gflops: float) -> tuple[float, float]:
    """(GB, seconds) of one baseline step: inputs, their gradients, scores, dense score
    gradients and topk temporaries; 12 N D R flops (2 forward + 4 backward GEMMs) at the
    measured GEMM rate."""
    gb = (4 * n * d + 2 * r * d + 8 * n * r) * 4 / 1e9
    return gb, 12 * n * d * r / (gemm_gflops * 1e9)


def time_methods(device, inputs, fns, n, r, min_time_s) -> dict:
    """Interleaved medians (ms) of the GEMM, the two addmm, the floor of a step, and each
    method's forward and step; every buffer made here is freed on return."""
    sq = [torch.randn(GEMM_N, GEMM_N, device=device) for _ in range(3)]
    sa = torch.empty(n, r, device=device)
    sb = torch.empty(n, r, device=device)
    ha, hb, w, b = (t.detach() for t in inputs[:4])

    def heads():
        torch.addmm(b, ha, w.T, out=sa)
        torch.addmm(b, hb, w.T, out=sb)

    def floor():  # the heads, then hidden read once into two new gradient-sized tensors
        heads()
        return torch.mul(ha, 2.0), torch.mul(hb, 2.0)

    timed = {"gemm": lambda: torch.mm(sq[0], sq[1], out=sq[2]), "heads": heads, "floor": floor}
    for name, fn in fns.items():
        timed[f"{name} fwd"] = lambda fn=fn: forward_only(fn, inputs)
        timed[f"{name} step"] = lambda fn=fn: train_step(fn, inputs)
    return common.interleaved_median_ms(timed, device, min_time_s, min_reps=5, max_reps=50)


def run_shape(device, n, d, r, min_time_s, threads) -> dict:
    inputs = make_inputs(n, d, r, device)
    fns = methods(device)
    times = time_methods(device, inputs, fns, n, r, min_time_s)
    gemm_gflops = 2 * GEMM_N ** 3 / (times["gemm"] * 1e-3) / 1e9
    useful = 4 * n * d * r + 8 * n * K * d
    row = {"N": n, "D": d, "R": r, "k": K, "GEMM GFLOP/s": gemm_gflops,
           "heads ms": times["heads"], "floor ms": times["floor"],
           "floor x eager": times["eager step"] / times["floor"]}
    for name in fns:
        row[f"{name} fwd ms"] = times[f"{name} fwd"]
        row[f"{name} step ms"] = times[f"{name} step"]
        row[f"{name} x eager"] = times["eager step"] / times[f"{name} step"]
        row[f"{name} fwd x eager"] = times["eager fwd"] / times[f"{name} fwd"]
        row[f"{name} % GEMM"] = 100 * useful / (times[f"{name} step"] * 1e-3) / 1e9 / gemm_gflops
        row[f"{name} % floor"] = 100 * times["floor"] / times[f"{name} step"]
        if device.type == "cuda":
            row[f"{name} peak MB"] = common.cuda_peak_extra_mb(device, train_step, fns[name],
                                                                inputs)
    # The selection agrees with the baseline's (no ties in random data).
    with torch.no_grad():
        base = rule_head_select_eager(*inputs, K)
        for name in fns:
            if name != "eager":
                out = ramo.rule_head_select(*inputs, k=K, backend=name.split()[-1])
                row[f"{name} same indices"] = bool(torch.equal(out.indices, base[0]))
    del inputs
    if device.type == "cpu":  # after freeing this process's copy of the inputs
        for name in fns:
            row[f"{name} peak MB"] = common.cpu_peak_extra_mb(__file__, name, (n, d, r), threads)
    return row


def report(row: dict, names) -> str:
    parts = [f"N={row['N']:6d} D={row['D']:5d} R={row['R']:5d} k={row['k']}  GEMM "
             f"{row['GEMM GFLOP/s']:.0f} GFLOP/s; the two addmm alone {row['heads ms']:.2f} ms; "
             f"the floor of a step {row['floor ms']:.2f} ms ({row['floor x eager']:.2f}x eager)"]
    for m in names:
        parts.append(f"{m:12s} step {row[f'{m} step ms']:9.2f} ms ({row[f'{m} x eager']:.2f}x "
                     f"eager, {row[f'{m} % GEMM']:.0f}% GEMM, {row[f'{m} % floor']:.0f}% floor), "
                     f"forward "
                     f"{row[f'{m} fwd ms']:8.2f} ms ({row[f'{m} fwd x eager']:.2f}x), "
                     f"peak +{row[f'{m} peak MB']:.1f} MiB")
    return "\n    ".join(parts)


def run(device: torch.device, shapes, min_time_s: float, threads: int | None,
        max_gb: float, max_step_s: float) -> dict:
    print(f"# rule_head_select on {device} ({common.machine()})", flush=True)
    # The best of three: a single measurement on a shared machine can be far below the rate
    # the baseline will actually see.
    gemm = max(common.gemm_gflops(device, n=GEMM_N) for _ in range(3))
    rows, skipped = [], []
    for n, d, r in shapes:
        gb, seconds = baseline_estimate(n, d, r, gemm)
        if gb > max_gb or seconds > max_step_s:
            why = (f"N={n} D={d} R={r}: skipped, the baseline step needs about {gb:.1f} GB and "
                   f"{seconds:.1f} s here (limits {max_gb} GB, {max_step_s} s)")
            print(why, flush=True)
            skipped.append(why)
            continue
        row = run_shape(device, n, d, r, min_time_s, threads)
        rows.append(row)
        print(report(row, methods(device)), flush=True)
    return {"device": str(device), "machine": common.machine(), "k": K,
            "loss": "-logsigmoid(margin).sum(), backward to hidden_a, hidden_b, weight, bias",
            "rows": rows, "skipped": skipped}


def to_markdown(result: dict) -> str:
    names = list(methods(torch.device(result["device"])))
    columns = [("N", "N", "d"), ("D", "D", "d"), ("R", "R", "d"),
               ("GEMM GFLOP/s", "GEMM GFLOP/s", ".0f"), ("heads ms", "2 addmm ms", ".2f"),
               ("floor ms", "floor ms", ".2f"), ("floor x eager", "floor x eager", ".2f")]
    for m in names:
        columns += [(f"{m} fwd ms", f"{m} fwd ms", ".2f"),
                    (f"{m} step ms", f"{m} fwd+bwd ms", ".2f")]
        if m != "eager":
            columns += [(f"{m} x eager", "x eager", ".2f")]
        columns += [(f"{m} % GEMM", "% GEMM", ".0f"), (f"{m} % floor", "% floor", ".0f"),
                    (f"{m} peak MB", "peak MiB", ".0f")]
    m = result["machine"]
    header = (f"rule_head_select, {common.describe_run(result)}, {m['threads']} threads; "
              f"k = {result['k']}, fp32, relevance [R]. "
              f"A step is forward + {result['loss']}. Medians of interleaved runs; GEMM: a "
              f"square fp32 {GEMM_N} matmul in the same alternation; % GEMM: (4 N D R + 8 N k D) "
              f"flops per step as a share of it; floor: the two addmm plus hidden read once "
              f"into two new gradient-sized tensors (no method can do less), % floor: its time "
              f"as a share of the method's step; peak: extra memory of one step.")
    if "allocator" in m:
        header += " Allocator settings: " + ", ".join(
            f"{k}={v}" for k, v in m["allocator"].items()) + "."
    text = header + "\n\n" + common.markdown_table(result["rows"], columns)
    if result["skipped"]:
        text += "\n\n" + "\n".join(f"- {s}" for s in result["skipped"])
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_run_flags(parser)
    parser.add_argument("--quick", action="store_true", help="only N=16384, D=768, R=100")
    parser.add_argument("--shape", metavar="N,D,R", default=None,
                        help=f"only this shape (results named {RESULTS_PREFIX}_<device>_NxDxR)")
    parser.add_argument("--min-time", type=float, default=3.0,
                        help="seconds of timed calls per method and shape (at least 5 calls; "
                        "default 3: the first calls of a fresh process pay for growing its "
                        "heap and faulting in new gradient buffers, which a short run's median "
                        "would still hold)")
    parser.add_argument("--max-gb", type=float, default=8.0,
                        help="skip shapes whose baseline step needs more memory than this")
    parser.add_argument("--max-step-s", type=float, default=4.5,
                        help="skip shapes whose baseline step would take longer than this")
    parser.add_argument("--memory-child", nargs=4, metavar=("METHOD", "N", "D", "R"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        method, n, d, r = args.memory_child
        memory_child(method, int(n), int(d), int(r))
        return 0
    device = common.parse_device(parser, args.device)
    shape = tuple(int(x) for x in args.shape.split(",")) if args.shape else None
    shapes = [shape] if shape else QUICK_SHAPES if args.quick else FULL_SHAPES
    result = run(device, shapes, args.min_time,
                 args.threads, args.max_gb, args.max_step_s)
    stem = f"{RESULTS_PREFIX}_{device.type}" + (f"_{args.shape.replace(',', 'x')}" if shape
                                                else "_quick" if args.quick else "")
    common.save_and_print(args.out, stem, result, to_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
