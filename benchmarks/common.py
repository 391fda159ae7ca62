"""What the benchmarks and studies share: where the repository, its results and the HH-RLHF
data are; timing (medians, the machine's copy bandwidth and GEMM rate measured in the same
run); peak memory; the machine's description; and JSON + markdown output."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from ramo.io.atomic import write_text

ROOT = Path(__file__).resolve().parents[1]  # the repository
RESULTS = ROOT / "benchmarks" / "results"  # where the scripts write unless told otherwise

# Anthropic's HH-RLHF, harmless-base subset, test split: JSONL, gzip, one {"chosen",
# "rejected"} pair of transcripts a line (2,312 pairs). ramo does not ship it: the scripts
# that read it take --data, whose default is $RAMO_HH_RLHF where set, else this path,
# relative to the repository's root.
HH_RLHF_ENV = "RAMO_HH_RLHF"
HH_RLHF_DEFAULT = "../shared/data/hh-rlhf-harmless-test.jsonl.gz"


def hh_rlhf_path() -> Path:
    """The HH-RLHF harmless-base test split: $RAMO_HH_RLHF if set, else HH_RLHF_DEFAULT
    (from the repository's root)."""
    path = os.environ.get(HH_RLHF_ENV)
    return Path(path) if path else Path(os.path.normpath(ROOT / HH_RLHF_DEFAULT))


def add_hh_rlhf_flag(parser: argparse.ArgumentParser) -> None:
    """--data: the HH-RLHF file the script reads (default hh_rlhf_path())."""
    parser.add_argument("--data", type=Path, default=hh_rlhf_path(), metavar="FILE",
                        help="Anthropic's HH-RLHF harmless-base test split (JSONL, gzip); "
                        f"default: ${HH_RLHF_ENV} if set, else {HH_RLHF_DEFAULT} from the "
                        "repository's root (now %(default)s)")


def hh_rlhf_absent(path: Path) -> str:
    """What a script says when the HH-RLHF file is not at `path`."""
    return (f"no HH-RLHF file at {path} (Anthropic's harmless-base test split, JSONL, gzip, "
            f"which ramo does not ship): give its path with --data or ${HH_RLHF_ENV}")


def skip_without_hh_rlhf(path: Path) -> bool:
    """True, having said the study is skipped, when the HH-RLHF file is not at `path` (the
    studies then exit 0)."""
    if path.is_file():
        return False
    print(f"skipped: {hh_rlhf_absent(path)}")
    return True


def command_line(script: str) -> str:
    """`python benchmarks/<script's name> <this process's arguments>`: the command a results
    file records."""
    return shlex.join(["python", f"benchmarks/{Path(script).name}", *sys.argv[1:]])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn, device: torch.device, min_time_s: float = 0.5, min_reps: int = 5,
              max_reps: int = 200, warm_up: bool = True) -> float:
    """Median wall time of fn() in ms, after one warm-up call (unless warm_up is False)."""
    if warm_up:
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


def processor_name() -> str:
    """The CPU's model name where Linux tells it, else the architecture: results from hosts of
    one architecture but different vendors (these VMs draw both) differ by 2x in copy rate."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{platform.machine()}, {line.split(':', 1)[1].strip()}"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    info = {
        "platform": platform.platform(),
        "processor": processor_name(),
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


def describe_machine(info: dict | None = None) -> str:
    """'<platform>, <processor>[, <GPU>]' of machine()'s dict (by default this machine's)."""
    m = info or machine()
    return ", ".join([m["platform"], m["processor"], *([m["gpu"]] if "gpu" in m else [])])


def add_run_flags(parser: argparse.ArgumentParser,
                  out_help: str = "folder for the JSON and markdown results") -> None:
    """--device, --threads and --out, as every kernel benchmark takes them."""
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads for the CPU run (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=out_help)


def parse_device(parser: argparse.ArgumentParser, name: str) -> torch.device:
    """torch.device(name); the parser's error if that is CUDA and there is no CUDA device."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA device")
    return device


def describe_run(result: dict) -> str:
    """'<device>, <GPU or processor>, torch <version>': the run a results header names."""
    m = result["machine"]
    return f"{result['device']}, {m.get('gpu', m['processor'])}, torch {m['torch']}"


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
    write_text(json_path, json.dumps(payload, indent=2) + "\n")
    write_text(md_path, markdown + "\n")
    return [json_path, md_path]


def save_and_print(out_dir: Path, stem: str, payload: dict, markdown: str,
                   also: list[Path] | tuple = ()) -> list[Path]:
    """save_results, then the markdown and the paths written (with `also`, files the caller
    wrote beside them) printed: how a benchmark ends."""
    written = save_results(out_dir, stem, payload, markdown) + list(also)
    print("\n" + markdown)
    print("\nwrote " + ", ".join(map(str, written)))
    return written


def gemm_gflops(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048,
                **timing) -> float:
    """FLOP/s of a large square matmul: the compute ceiling here, in GFLOP/s. `timing`:
    median_ms's options (how many calls, and whether to warm up)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    ms = median_ms(lambda: a @ b, device, **timing)
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
    with MALLOC_MMAP_THRESHOLD_ set (glibc then maps every large block afresh), as
    run_memory_child starts one."""

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


def hwm_extra_mb(fn, *args) -> float:
    """Peak extra resident memory of fn(*args) in MiB (PeakHWM), after one warm-up call:
    one-time allocations such as BLAS buffers and thread pools are not the call's. For a
    process started by run_memory_child."""
    fn(*args)  # warm-up: one-time allocations are not the method's
    with PeakHWM() as peak:
        result = fn(*args)
    del result
    return peak.extra_mb


def run_memory_child(argv: list) -> dict:
    """Runs `python *argv` in a fresh process with MALLOC_MMAP_THRESHOLD_ fixed at 16 KiB (so
    that glibc maps every block of that size or more afresh and unmaps it when freed: memory
    freed before a PeakHWM cannot be reused unseen) and returns the JSON object its last line
    of output prints. Timing stays out of such a process: mapping every large block afresh
    costs time."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(16 * 1024)}
    out = subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def cpu_peak_extra_mb(script: str, method: str, shape, threads: int | None,
                      *extra: str) -> float:
    """Peak extra resident memory in MiB of one call of a benchmark's `method` at `shape`,
    measured in a fresh process (run_memory_child) that runs `script --memory-child METHOD
    *shape *extra [--threads T]`: the script makes its inputs there and passes the call to
    memory_child_report."""
    argv = [str(script), "--memory-child", method, *map(str, shape), *extra]
    if threads:
        argv += ["--threads", str(threads)]
    return run_memory_child(argv)["extra_mb"]


def memory_child_report(fn, *args) -> None:
    """The memory child's side of cpu_peak_extra_mb: prints hwm_extra_mb(fn, *args) as the
    JSON line run_memory_child reads."""
    print(json.dumps({"extra_mb": hwm_extra_mb(fn, *args)}))


def cuda_peak_extra_mb(device: torch.device, fn, *args) -> float:
    """Peak extra CUDA memory of fn(*args) in MiB: torch.cuda.max_memory_allocated above the
    allocated level before it."""
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    result = fn(*args)
    torch.cuda.synchronize(device)
    del result
    return (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20
