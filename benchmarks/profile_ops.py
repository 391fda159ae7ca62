"""Where a GPU op's time goes: its device kernels against the wall time of a call.

One shape per op, each method of its benchmark (eager PyTorch, ramo cuda, ramo triton):

  select_rules      N = 262144, R = 100, k = 5 (fp32, relevance [R])
  rule_head_select  a training step (forward, Bradley-Terry loss, backward) at N = 16384,
                    D = 4096, R = 100, k = 5
  judge_scores      B = 256, D = 4096, V = 128256 ("vocab", fp32)

For each: the median wall time of a call (synchronised), then, under torch.profiler, the
summed device time of its device work per call (kernels, and the copies and fills that the
profiler lists beside them) and the items that take most of it. Wall time
far above the kernels' is host work the GPU waits for (Python, dispatch, launches, the
synchronisation that reading a non-finite flag costs); kernels far above the memory or
arithmetic they need are the kernel's own fault. For select_rules the kernels' bandwidth
(bytes read and written / kernel time) is given beside the copy bandwidth measured here.

    python benchmarks/profile_ops.py --device cuda
    python benchmarks/profile_ops.py --device cpu    # wall times only: no device kernels
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import (bench_judge_scores, bench_rule_head_select,  # noqa: E402
                        bench_select_rules, common)

TOP_KERNELS = 3


def cases(device: torch.device):
    """(op, shape, {method: fn}, bytes the op must move or None)."""
    n, r, k = 262144, 100, 5
    a, b, rel = bench_select_rules.make_inputs(n, r, device)
    yield ("select_rules", f"N {n} R {r} k {k}",
           {m: (lambda f=f: f(a, b, rel, k)) for m, f in bench_select_rules.methods(device).items()
            if m != "compile"}, bench_select_rules.bytes_moved(n, r, k))

    inputs = bench_rule_head_select.make_inputs(16384, 4096, 100, device)
    yield ("rule_head_select", "N 16384 D 4096 R 100 k 5, fwd+bwd",
           {m: (lambda f=f: bench_rule_head_select.train_step(f, inputs))
            for m, f in bench_rule_head_select.methods(device).items()}, None)

    h, w, bias = bench_judge_scores.make_inputs(256, 4096, 128256, device, with_bias=False)
    yield ("judge_scores", "B 256 D 4096 V 128256",
           {m: (lambda f=f: f(h, w, bias)) for m, f in bench_judge_scores.methods(device).items()},
           None)


def kernel_times(fn, device: torch.device, reps: int) -> tuple[float, list[tuple[str, float]]]:
    """(device ms per call, [(kernel, copy or fill, ms per call)] largest first). Annotated
    ranges (record_function, compiled regions) span kernels already counted: left out."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda"
                                           else [])
    with profile(activities=activities) as prof:
        for _ in range(reps):
            fn()
        common.sync(device)
    kernels = [(e.key, e.self_device_time_total / 1e3 / reps) for e in prof.key_averages()
               if e.device_type == DeviceType.CUDA and e.self_device_time_total > 0
               and not e.is_user_annotation]
    kernels.sort(key=lambda kv: -kv[1])
    return sum(ms for _, ms in kernels), kernels


def run(device: torch.device, min_time_s: float, reps: int) -> dict:
    copy, copied = common.copy_probe(device)
    copy_gbs = copied / (common.median_ms(copy, device, min_time_s) * 1e-3) / 1e9
    print(f"# profile of the ops on {device} ({common.machine()}); copy {copy_gbs:.0f} GB/s",
          flush=True)
    rows = []
    for op, shape, methods, nbytes in cases(device):
        for method, fn in methods.items():
            wall = common.median_ms(fn, device, min_time_s)
            kernel_ms, kernels = kernel_times(fn, device, reps)
            row = {"op": op, "shape": shape, "method": method, "wall ms": wall,
                   "kernels ms": kernel_ms, "kernels % wall": 100 * kernel_ms / wall,
                   "kernels": [{"name": name, "ms": ms} for name, ms in kernels]}
            if nbytes and kernel_ms > 0:
                row["kernels GB/s"] = nbytes / (kernel_ms * 1e-3) / 1e9
                row["kernels % copy bw"] = 100 * row["kernels GB/s"] / copy_gbs
            rows.append(row)
            top = "; ".join(f"{name[:60]} {ms:.3f} ms" for name, ms in kernels[:TOP_KERNELS])
            print(f"{op:16s} {method:12s} wall {wall:8.3f} ms, kernels {kernel_ms:8.3f} ms "
                  f"({row['kernels % wall']:.0f}% of wall, {len(kernels)} kinds)"
                  + (f", {row['kernels % copy bw']:.0f}% of copy bw" if "kernels GB/s" in row
                     else "") + (f": {top}" if top else ""), flush=True)
    return {"device": str(device), "machine": common.machine(), "copy GB/s": copy_gbs,
            "rows": rows}


def to_markdown(result: dict) -> str:
    header = (f"Where the ops' time goes, {common.describe_run(result)}: median wall time "
              f"of a synchronised call, and the device "
              f"time of its kernels per call under torch.profiler (copy "
              f"{result['copy GB/s']:.0f} GB/s). Top kernels per call in the last column.\n\n")
    columns = [("op", "op", "s"), ("shape", "shape", "s"), ("method", "method", "s"),
               ("wall ms", "wall ms", ".3f"), ("kernels ms", "kernels ms", ".3f"),
               ("kernels % wall", "kernels % wall", ".0f"),
               ("kernels % copy bw", "kernels % copy bw", ".0f"), ("top", "top kernels", "s")]
    rows = [{**row, "top": "; ".join(f"{k['name'][:48]} {k['ms']:.3f}"
                                     for k in row["kernels"][:TOP_KERNELS])}
            for row in result["rows"]]
    return header + common.markdown_table(rows, columns)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    parser.add_argument("--min-time", type=float, default=0.3,
                        help="seconds of timed calls per method for the wall time")
    parser.add_argument("--reps", type=int, default=10, help="profiled calls per method")
    parser.add_argument("--out", type=Path, default=common.RESULTS,
                        help="folder for profile_<device>.json and .md")
    args = parser.parse_args(argv)
    device = common.parse_device(parser, args.device)
    result = run(device, args.min_time, args.reps)
    written = common.save_results(args.out, f"profile_{device.type}", result,
                                  to_markdown(result))
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
