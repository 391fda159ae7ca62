"""The `ramo` command line."""

from __future__ import annotations

import argparse
import platform
import sys

import torch


def info() -> str:
    """What was built, what is usable here, and what each op dispatches to."""
    import ramo
    from ramo import backends
    from ramo.ops.judge_scores import STALE_BUILD
    from ramo.ops.select_rules import MAX_FAST_K

    built = backends.built()
    lines = [
        f"ramo {ramo.__version__}",
        f"python {platform.python_version()}, torch {torch.__version__} "
        f"(cuda {torch.version.cuda or 'none'}), "
        f"CUDA devices: {torch.cuda.device_count() if torch.cuda.is_available() else 0}",
    ]
    if backends.extension_error():
        lines.append(f"ramo._C failed to load: {backends.extension_error()}")
    lines.append("backends:")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for name in backends.BACKENDS:
        state = "built" if built.get(name, True) else "not built"
        usable = [d.type for d in devices if backends.unusable_reason(name, d) is None]
        lines.append(f"  {name:9s} {state:9s} usable on: {', '.join(usable) or 'nothing here'}")
    lines.append("dispatch (backend=None" + (", RAMO_BACKEND set" if _env_backend() else "") + "):")
    for device in devices:
        chosen = backends.resolve("select_rules", device, None)
        lines.append(f"  select_rules on {device.type} tensors -> {chosen} "
                     f"(k <= {MAX_FAST_K}; larger k -> reference)")
        chosen = backends.resolve("judge_scores", device, None, not_fast=STALE_BUILD)
        lines.append(f"  judge_scores on {device.type} tensors -> {chosen}")
    return "\n".join(lines)


def _env_backend() -> str | None:
    import os

    return os.environ.get("RAMO_BACKEND")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ramo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print the version, the built backends and the dispatch")
    from ramo import rate

    rate.add_arguments(sub.add_parser(
        "rate", help="rate every pair's responses on every rule with a judge, into a "
        "resumable store", description=rate.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    args = parser.parse_args(argv)
    if args.command == "info":
        print(info())
        return 0
    try:
        return rate.run(args)
    except (ValueError, FileNotFoundError) as exc:
        # Bad input: one clear line, not a traceback; nothing has been written for it.
        print(f"ramo {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
