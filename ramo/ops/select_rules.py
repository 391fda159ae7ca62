"""select_rules: discrepancy + relevance + top-k + reward aggregation (docs/architecture.md,
"Dispatch" and "Exactness").

Implementations, all named select_rules:
  reference  ramo/reference/select_rules.py       (the specification)
  cpu        csrc/cpu/select_rules.cpp            (torch.ops.ramo.select_rules, CPU key)
  cuda       csrc/cuda/select_rules.cpp + kernels/cuda/select_rules.cu  (CUDA key)
  triton     kernels/triton/select_rules.py       (torch.ops.ramo.select_rules_triton)
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch

from ramo import backends, reference
from ramo.ops._common import FLOAT_DTYPES, beyond_fast_paths
from ramo.reference.select_rules import accumulation_dtype


class RuleSelection(NamedTuple):
    """Per pair: the selected rules and the label they give.

    indices     int64 [N, k]  selected rule indices, best first; -1 pads rows with < k valid rules
    criterion   [N, k]        criterion of each selected rule; -inf where indices is -1
    reward_a    [N]           sum of scores_a over the selected rules, in selection order
    reward_b    [N]           the same for scores_b
    margin      [N]           reward_a - reward_b
    preference  int8 [N]      +1 A better, -1 B better, 0 tie (|margin| <= tie_tolerance)

    Floats are fp32 (fp64 for fp64 scores). reward_a, reward_b and margin are differentiable
    in the scores; indices, criterion and preference are not.
    """

    indices: torch.Tensor
    criterion: torch.Tensor
    reward_a: torch.Tensor
    reward_b: torch.Tensor
    margin: torch.Tensor
    preference: torch.Tensor


def select_rules(
    scores_a: torch.Tensor,
    scores_b: torch.Tensor,
    relevance: torch.Tensor | None = None,
    *,
    k: int = 5,
    discrepancy_weight: float = 0.5,
    relevance_weight: float = 1.0,
    valid: torch.Tensor | None = None,
    tie_tolerance: float = 0.0,
    backend: str | None = None,
) -> RuleSelection:
    """Selects, per pair, the k rules where the two responses differ most and labels the pair.

    criterion[n, r] = discrepancy_weight * |scores_a[n, r] - scores_b[n, r]|
                      + relevance_weight * relevance[n, r]
    The k valid rules of largest criterion are selected (ties: lower rule index first); the
    pair's rewards are the sums of its scores over them.

    scores_a, scores_b: [N, R] float16 / bfloat16 / float32 / float64.
    relevance: None, [R] or [N, R]. valid: None, [R] or [N, R] bool; False rules are never
    selected and may hold any value, NaN included.
    backend: "reference", "cpu", "cuda" or "triton"; None picks by device (or RAMO_BACKEND).
    """
    _check_arguments(scores_a, scores_b, relevance, valid, k, discrepancy_weight,
                     relevance_weight, tie_tolerance)
    args = (scores_a, scores_b, relevance, valid, int(k), float(discrepancy_weight),
            float(relevance_weight), float(tie_tolerance))
    chosen = backends.resolve("select_rules", scores_a.device, backend,
                              not_fast=beyond_fast_paths(k))
    if chosen == "reference":
        return RuleSelection(*reference.select_rules(*args))
    op = torch.ops.ramo.select_rules_triton if chosen == "triton" else torch.ops.ramo.select_rules
    criterion, reward_a, reward_b, margin, indices, preference = op(*args)
    return RuleSelection(indices, criterion, reward_a, reward_b, margin, preference)


def _check_arguments(scores_a, scores_b, relevance, valid, k, discrepancy_weight,
                     relevance_weight, tie_tolerance) -> None:
    for name, t in (("scores_a", scores_a), ("scores_b", scores_b)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"select_rules: {name} must be a tensor, got {type(t).__name__}")
        if t.dtype not in FLOAT_DTYPES:
            raise ValueError(f"select_rules: {name} must be a float tensor (float16, bfloat16, "
                             f"float32 or float64), got {t.dtype}")
        if t.dim() != 2:
            raise ValueError(f"select_rules: {name} must be [N, R], got shape {tuple(t.shape)}")
    if scores_a.shape != scores_b.shape:
        raise ValueError(f"select_rules: scores_a and scores_b differ in shape: "
                         f"{tuple(scores_a.shape)} vs {tuple(scores_b.shape)}")
    if scores_a.dtype != scores_b.dtype:
        raise ValueError(f"select_rules: scores_a is {scores_a.dtype} but scores_b is "
                         f"{scores_b.dtype}")
    n, r = scores_a.shape
    check_selection_arguments("select_rules", n, r, scores_a.device, "scores_a", relevance,
                              valid, k, discrepancy_weight, relevance_weight, tie_tolerance)
    if scores_b.device != scores_a.device:
        raise ValueError(f"select_rules: scores_a is on {scores_a.device} but scores_b is "
                         f"on {scores_b.device}")


def check_selection_arguments(op: str, n: int, r: int, device, device_of: str, relevance,
                              valid, k, discrepancy_weight, relevance_weight,
                              tie_tolerance) -> None:
    """The checks of the selection's own arguments, shared by every op that selects rules
    (select_rules, rule_head_select); errors name `op`, and a device mismatch names the
    tensor `device_of` that sets the device."""
    for name, t, dtypes in (("relevance", relevance, FLOAT_DTYPES),
                            ("valid", valid, (torch.bool,))):
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{op}: {name} must be a tensor or None")
        if t.dtype not in dtypes:
            raise ValueError(f"{op}: {name} must be "
                             f"{'bool' if name == 'valid' else 'a float tensor'}, got {t.dtype}")
        # Size by size: under torch.compile sizes may be symbols, and a tuple of them `in` a
        # tuple of tuples came out False for equal sizes (a size marked dynamic against one
        # that is not).
        if not (t.dim() == 1 and t.shape[0] == r
                or t.dim() == 2 and t.shape[0] == n and t.shape[1] == r):
            raise ValueError(f"{op}: {name} must have shape [{r}] or [{n}, {r}], "
                             f"got {tuple(t.shape)}")
        if t.device != device:
            raise ValueError(f"{op}: {device_of} is on {device} but {name} is on {t.device}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= r:
        raise ValueError(f"{op}: k must be a Python int in [1, R={r}], got {k!r}")
    check_weights(op, discrepancy_weight, relevance_weight, tie_tolerance)


def check_weights(op: str, discrepancy_weight, relevance_weight, tie_tolerance) -> None:
    """ValueError unless the three weights are finite Python ints or floats (finite as floats:
    the ops take them as such) and tie_tolerance >= 0.

    Under torch.compile a float argument may be traced as a symbol (dynamic=True, or automatic
    dynamic once a call passes another value), which math.isfinite cannot take: there only
    the types are checked, and the ops check the values when they run, with these messages
    (the compiled op in C++, the Triton op by calling this)."""
    for name, w in (("discrepancy_weight", discrepancy_weight),
                    ("relevance_weight", relevance_weight), ("tie_tolerance", tie_tolerance)):
        if not isinstance(w, (int, float)) or (not torch.compiler.is_compiling()
                                                and not _finite_as_float(w)):
            raise ValueError(f"{op}: {name} must be a finite Python int or float, got {w!r}")
    if tie_tolerance < 0:
        raise ValueError(f"{op}: tie_tolerance must be >= 0, got {tie_tolerance}")


def _finite_as_float(w: int | float) -> bool:
    try:
        return math.isfinite(w)
    except OverflowError:  # an int beyond the largest float
        return False


# --- torch.library registrations shared by the compiled and Triton ops -------------------
# The ops return (criterion, reward_a, reward_b, margin, indices, preference): floats first,
# as csrc/ops.cpp explains.

def _fake(scores_a, scores_b, relevance, valid, k, discrepancy_weight, relevance_weight,
          tie_tolerance):
    n = scores_a.shape[0]
    acc = accumulation_dtype(scores_a.dtype)
    return (scores_a.new_empty((n, k), dtype=acc),
            scores_a.new_empty((n,), dtype=acc),
            scores_a.new_empty((n,), dtype=acc),
            scores_a.new_empty((n,), dtype=acc),
            scores_a.new_empty((n, k), dtype=torch.int64),
            scores_a.new_empty((n,), dtype=torch.int8))


def _setup_context(ctx, inputs, output):
    scores_a = inputs[0]
    ctx.save_for_backward(output[4])
    ctx.scores_shape = scores_a.shape
    ctx.scores_dtype = scores_a.dtype
    ctx.mark_non_differentiable(output[0])


def _scatter_selected(indices, grad, shape, dtype):
    """[N, R] gradient: grad[n] at each selected rule of row n, 0 elsewhere."""
    # 0 at padding (index -1), which adds nothing to rule 0. Selected, not multiplied by the
    # mask: an inf or NaN grad times 0 would be NaN, where autograd of the reference gives 0.
    values = torch.where(indices >= 0, grad.unsqueeze(1), 0.0).to(dtype)
    out = torch.zeros(shape, dtype=dtype, device=indices.device)
    return out.scatter_add(1, indices.clamp_min(0), values)


def _backward(ctx, grad_criterion, grad_reward_a, grad_reward_b, grad_margin, grad_indices,
              grad_preference):
    (indices,) = ctx.saved_tensors
    n = indices.shape[0]
    acc = accumulation_dtype(ctx.scores_dtype)
    zero = torch.zeros(n, dtype=acc, device=indices.device)
    g_a = grad_reward_a if grad_reward_a is not None else zero
    g_b = grad_reward_b if grad_reward_b is not None else zero
    if grad_margin is not None:  # margin = reward_a - reward_b
        g_a, g_b = g_a + grad_margin, g_b - grad_margin
    grad_a = _scatter_selected(indices, g_a, ctx.scores_shape, ctx.scores_dtype)
    grad_b = _scatter_selected(indices, g_b, ctx.scores_shape, ctx.scores_dtype)
    return grad_a, grad_b, None, None, None, None, None, None


@torch.library.custom_op("ramo::select_rules_triton", mutates_args=())
def _select_rules_triton(
    scores_a: torch.Tensor,
    scores_b: torch.Tensor,
    relevance: Optional[torch.Tensor],
    valid: Optional[torch.Tensor],
    k: int,
    discrepancy_weight: float,
    relevance_weight: float,
    tie_tolerance: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from ramo.triton_kernels.select_rules import select_rules as triton_select_rules

    check_weights("select_rules", discrepancy_weight, relevance_weight, tie_tolerance)
    acc = accumulation_dtype(scores_a.dtype)
    indices, criterion, reward_a, reward_b, margin, preference = triton_select_rules(
        scores_a.contiguous(), scores_b.contiguous(),
        None if relevance is None else relevance.to(acc).contiguous(),
        None if valid is None else valid.contiguous(),
        k, discrepancy_weight, relevance_weight, tie_tolerance,
    )
    return criterion, reward_a, reward_b, margin, indices, preference


def _register(op_name: str) -> None:
    torch.library.register_fake(op_name, _fake)
    torch.library.register_autograd(op_name, _backward, setup_context=_setup_context)


_register("ramo::select_rules_triton")
if backends.built()["cpu"]:
    _register("ramo::select_rules")
