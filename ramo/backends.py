"""Which backend runs an op: what was built, what each device can use, and the fallbacks.

Order of choice: the op's `backend=` argument, else the RAMO_BACKEND environment variable,
else the device's native backend (cpu for CPU tensors, cuda for CUDA tensors). A backend
that is missing (not built, not installed, or unable to take the arguments) falls back to
the next one in its chain with a single warning; all backends give identical results, so a
fallback changes speed, never the answer. A backend that cannot run on the tensors' device
at all is a ValueError.
"""

from __future__ import annotations

import importlib.util
import os
import warnings

import torch

BACKENDS = ("reference", "cpu", "cuda", "triton")

try:
    from ramo import _C  # noqa: F401  (loading it registers the C++ kernels)

    _C_ERROR = None
except ImportError as exc:  # a source checkout that was never built, or a broken build
    _C = None
    _C_ERROR = str(exc)

# Looked up once: torch.compile (2.11, at least) refuses to trace importlib.util.find_spec,
# and resolve() runs inside compiled graphs.
try:
    _TRITON_INSTALLED = importlib.util.find_spec("triton") is not None
except ValueError:  # a "triton" module without a spec (a stub someone put in sys.modules)
    _TRITON_INSTALLED = False

_warned: set[tuple] = set()


def extension_error() -> str | None:
    """Why ramo._C failed to load, or None when it loaded."""
    return _C_ERROR


def extension():
    """The loaded ramo._C module, or None (then extension_error() says why)."""
    return _C


def built() -> dict[str, bool]:
    """Which compiled backends this installation has."""
    return {
        "cpu": _C is not None,
        "cuda": _C is not None and bool(_C.built_with_cuda),
        "triton": _TRITON_INSTALLED,
    }


def triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def unusable_reason(backend: str, device: torch.device, not_fast: str | None = None) -> str | None:
    """None when `backend` can run on tensors of `device`, else why not. `not_fast` is the
    op's own reason why no compiled or Triton backend can take this call (k beyond the fast
    paths, an extension built before the op existed), or None."""
    if backend == "reference":
        return None
    if not_fast:
        return not_fast
    have = built()
    if backend == "cpu":
        return None if have["cpu"] else f"ramo._C is not built ({_C_ERROR})"
    if backend == "cuda":
        if not have["cuda"]:
            return "ramo._C was built without CUDA"
        return None if torch.cuda.is_available() else "no CUDA device"
    if not have["triton"]:
        return "triton is not installed"
    if device.type == "cpu" and not triton_interpreted():
        return "triton runs CPU tensors only under TRITON_INTERPRET=1"
    return None


def _chain(requested: str, device: torch.device) -> list[str]:
    if device.type == "cuda":
        chains = {"cuda": ["cuda", "triton", "reference"], "triton": ["triton", "reference"]}
    elif device.type == "cpu":
        chains = {"cpu": ["cpu", "reference"], "triton": ["triton", "cpu", "reference"]}
    else:
        chains = {}
    if requested == "reference":
        return ["reference"]
    if requested not in chains:
        raise ValueError(f"backend {requested!r} cannot run tensors on {device}")
    return chains[requested]


def native(device: torch.device) -> str:
    return device.type if device.type in ("cpu", "cuda") else "reference"


def resolve(op: str, device: torch.device, requested: str | None,
            not_fast: str | None = None) -> str:
    """The backend that will run `op` on tensors of `device`."""
    requested = requested or os.environ.get("RAMO_BACKEND") or native(device)
    if requested not in BACKENDS:
        raise ValueError(f"unknown backend {requested!r}; expected one of {BACKENDS}")
    chain = _chain(requested, device)
    for backend in chain:
        reason = unusable_reason(backend, device, not_fast)
        if reason is None:
            if backend != requested:
                key = (op, requested, backend, device.type)
                if key not in _warned:
                    _warned.add(key)
                    first_reason = unusable_reason(requested, device, not_fast)
                    warnings.warn(
                        f"ramo: {op} uses the {backend} backend instead of {requested}: "
                        f"{first_reason}",
                        RuntimeWarning,
                        stacklevel=3,
                    )
            return backend
    raise AssertionError("the reference backend is always usable")  # pragma: no cover
