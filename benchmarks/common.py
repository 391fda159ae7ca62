"""Timing and reporting shared by the benchmarks: medians, the machine's copy bandwidth
measured in the same run, and JSON + markdown (+ PNG when matplotlib is there) output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn, device: torch.device, min_time_s: float = 0.5, min_reps: int = 5,
              max_reps: int = 200) -> float:
    """Median wall time of fn() in ms, after one warm-up call."""
    fn()
    sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_reps and (len(times) < min_reps
                                     or time.perf_counter() - start < min_time_s):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def ramo_backends(device: torch.device, call) -> dict:
    """{"ramo <backend>": call(backend)} for the backends that run on `device`."""
    names = ("cpu",) if device.type == "cpu" else ("cuda", "triton")
    return {f"ramo {name}": call(name) for name in names}


def copy_probe(device: torch.device, nbytes: int = 1 << 28):
    """(fn, bytes): fn copies one large tensor into another, moving `bytes` (read + written);
    timed, it gives the memory ceiling here."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    return (lambda: dst.copy_(src)), 2 * nbytes


def machine() -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    # Settings that change how fresh memory is obtained (a replaced malloc, its options, torch's
    # huge pages): on the CPU they move the cost of new gradient buffers by a factor of two.
    allocator = {k: v for k, v in os.environ.items()
                 if k in ("LD_PRELOAD", "MALLOC_CONF", "THP_MEM_ALLOC_ENABLE", "GLIBC_TUNABLES")
                 or (k.startswith("MALLOC_") and k.endswith("_"))}
    if allocator:
        info["allocator"] = allocator
    return info


def write_atomic(path: Path, text: str) -> None:
    """Write text to path via a temporary file in the same folder, so no half-written file
    is ever left behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def markdown_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """columns: (key, header, format spec)."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |",
             "|" + "|".join("---:" for _ in columns) + "|"]
    for row in rows:
        cells = [("" if row.get(k) is None else format(row[k], fmt)) for k, _, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save_results(out_dir: Path, stem: str, payload: dict, markdown: str) -> list[Path]:
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    write_atomic(json_path, json.dumps(payload, indent=2) + "\n")
    write_atomic(md_path, markdown + "\n")
    return [json_path, md_path]


def gemm_gflops(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048) -> float:
    """FLOP/s of a large square matmul: the compute ceiling here, in GFLOP/s."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    ms = median_ms(lambda: a @ b, device)
    return 2 * n ** 3 / (ms * 1e-3) / 1e9


def interleaved_median_ms(fns: dict, device: torch.device, min_time_s: float = 0.5,
                          min_reps: int = 5, max_reps: int = 200) -> dict:
    """Median wall time in ms of each fn() in `fns`, timed in alternation (one call of each
    per round, after one warm-up call each), so that a slow spell of a shared machine lands
    on every method alike instead of on whichever ran then."""
    for fn in fns.values():
        fn()
    sync(device)
    times: dict = {name: [] for name in fns}
    start = time.perf_counter()
    rounds = 0
    while rounds < max_reps and (rounds < min_reps
                                 or time.perf_counter() - start < min_time_s * len(fns)):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append((time.perf_counter() - t0) * 1e3)
        rounds += 1
    return {name: statistics.median(t) for name, t in times.items()}


class PeakHWM:
    """Peak resident memory of this process above the level at entry, from the kernel's own
    high-water mark (VmHWM, reset on entry through /proc/self/clear_refs): exact, no
    sampling. `.extra_mb` (MiB) after exit. Linux only; freed memory must go back to the
    system for the level at entry to be the true baseline, so run it in a process started
    with MALLOC_MMAP_THRESHOLD_ set (glibc then maps every large block afresh)."""

    @staticmethod
    def _status_kb(key: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise RuntimeError(f"/proc/self/status has no {key}")

    def __enter__(self):
        self.base_kb = self._status_kb("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := current RSS
        return self

    def __exit__(self, *exc):
        self.extra_mb = (self._status_kb("VmHWM") - self.base_kb) / 1024
        return False
