"""What every op of ramo.ops shares: the dtypes they take, the fast paths' limit on k, the
check for a ramo._C older than an op, and the registry of ops that `ramo info` describes
(describe_dispatch, below)."""

from __future__ import annotations

import os
from typing import NamedTuple

import torch

from ramo import backends

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# kMaxFastK of kernels/common/select_rules.h, which ramo._C exports. The limit binds the Triton
# backend too, which runs without ramo._C (a source checkout never built), so that case
# needs the value as well; test_compiled_limits_match_python keeps the two equal.
_MAX_FAST_K_WITHOUT_EXTENSION = 64
MAX_FAST_K = (backends.extension().max_fast_k if backends.extension() is not None
              else _MAX_FAST_K_WITHOUT_EXTENSION)


def beyond_fast_paths(k: int) -> str | None:
    """Why no compiled or Triton backend takes this k, or None when they do."""
    return f"k = {k} is beyond the fast paths (k <= {MAX_FAST_K})" if k > MAX_FAST_K else None


def stale_build(op: str, *also: str) -> str | None:
    """Why the compiled and Triton backends cannot run `op`: ramo._C lacks torch.ops.ramo.<op>
    (or an op named in `also`) because it was built before the op existed. None when all are
    defined. The ops that need this check have always given the same reason when ramo._C is
    not built at all, which sends their calls to the reference."""
    reason = f"ramo._C was built before {op} existed; rebuild ramo"
    if not backends.built()["cpu"]:
        return reason
    try:
        for name in (op, *also):
            getattr(torch.ops.ramo, name)
    except (AttributeError, RuntimeError):
        return reason
    return None


class OpInfo(NamedTuple):
    """What `ramo info` says of an op."""

    name: str
    fast_path_note: str | None  # the limit of its fast paths, as `ramo info` words it
    not_fast: str | None        # why no compiled or Triton backend can run it (stale_build)


_K_LIMIT = f"k <= {MAX_FAST_K}; larger k -> reference"

# select_rules was in ramo._C from the start, so no build of it is stale for that op.
OPS = {op.name: op for op in (
    OpInfo("select_rules", _K_LIMIT, None),
    OpInfo("judge_scores", None, stale_build("judge_scores")),
    OpInfo("rule_head_select", _K_LIMIT,
           stale_build("rule_head_select", "rule_head_select_backward")),
)}


def describe_dispatch(devices: list[torch.device]) -> list[str]:
    """The lines of `ramo info` that say which backend each op runs on each of `devices`
    when the call names none: a heading, then one line per (device, op)."""
    env = os.environ.get("RAMO_BACKEND")
    lines = ["dispatch (backend=None" + (", RAMO_BACKEND set" if env else "") + "):"]
    for device in devices:
        for op in OPS.values():
            chosen = backends.resolve(op.name, device, None, not_fast=op.not_fast)
            note = f" ({op.fast_path_note})" if op.fast_path_note else ""
            lines.append(f"  {op.name} on {device.type} tensors -> {chosen}{note}")
    return lines
