"""rule_head_select: learned per-rule heads + select_rules, for training (docs/architecture.md,
"rule_head_select").

scores_x = hidden_x @ weight.T + bias (torch.addmm in every backend: BLAS on the CPU, cuBLAS on
a GPU, so all backends get the same bits), then exactly select_rules on
(scores_a, scores_b). The backward reaches hidden_a, hidden_b, weight and bias through the
selected rules only, with a sparse kernel that never builds the dense [N, R] score gradient.

Implementations, all named rule_head_select:
  reference  ramo/reference/rule_head_select.py    (the specification; autograd is the oracle)
  cpu        csrc/cpu/rule_head_select.cpp          (torch.ops.ramo.rule_head_select and
                                                     ..._backward, CPU key)
  cuda       csrc/cuda/rule_head_select.cpp + kernels/cuda/rule_head_select.cu  (CUDA key)
  triton     kernels/triton/rule_head_select.py     (torch.ops.ramo.rule_head_select_triton and
                                                     ..._backward_triton)

Gradients (reward_a, reward_b, margin; g_a = grad_reward_a + grad_margin, g_b = grad_reward_b
- grad_margin), with idx the selected rules of row n (padding -1 contributes nothing):
  grad_hidden_a[n] = g_a[n] * sum_j weight[idx[n, j]]          (likewise b with g_b)
  grad_weight[r]   = sum over (n, j) with idx[n, j] = r of g_a[n] hidden_a[n] + g_b[n] hidden_b[n]
  grad_bias[r]     = the same sum of g_a[n] + g_b[n]
accumulated in fp32 (fp64 for fp64). Gradients arriving at scores_a / scores_b (a caller that
also regresses the heads onto the judge's ratings) add the dense terms grad_scores @ weight,
grad_scores.T @ hidden and grad_scores.sum(0) with plain matmuls. criterion, indices and
preference are not differentiable, and relevance gets no gradient (the selection is not
differentiable, and the rewards do not depend on relevance otherwise).

Determinism: the CPU backward streams fixed blocks of rows (chosen from the shapes alone,
never from the thread count), each into its own partial grad_weight / grad_bias summed in row
order, and adds the partials in block order: bitwise reproducible on any number of threads.
The Triton backward uses no atomics (per-rule pieces added in order): reproducible too. The
CUDA backward accumulates grad_weight and grad_bias with fp32 (fp64 for fp64) atomic adds: not
bitwise reproducible from run to run.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from ramo import backends, reference
from ramo.ops._common import FLOAT_DTYPES, OPS, beyond_fast_paths
from ramo.reference.select_rules import accumulation_dtype
from ramo.ops.select_rules import check_selection_arguments
from ramo.reference.rule_head_select import rename_select_rules_error

# A build of ramo._C from before this op lacks it: then the compiled and Triton backends fall
# back to the reference (with the usual one warning) instead of failing.
STALE_BUILD = OPS["rule_head_select"].not_fast


class RuleHeadSelection(NamedTuple):
    """Per pair: the selected rules, the label they give, and the heads' scores.

    indices     int64 [N, k]  selected rule indices, best first; -1 pads rows with < k valid rules
    criterion   [N, k]        criterion of each selected rule; -inf where indices is -1
    reward_a    [N]           sum of scores_a over the selected rules, in selection order
    reward_b    [N]           the same for scores_b
    margin      [N]           reward_a - reward_b
    preference  int8 [N]      +1 A better, -1 B better, 0 tie (|margin| <= tie_tolerance)
    scores_a    [N, R]        hidden_a @ weight.T + bias, in the dtype of hidden_a
    scores_b    [N, R]        hidden_b @ weight.T + bias

    criterion, rewards and margin are fp32 (fp64 for fp64 inputs). reward_a, reward_b, margin,
    scores_a and scores_b are differentiable in hidden_a, hidden_b, weight and bias;
    indices, criterion and preference are not.
    """

    indices: torch.Tensor
    criterion: torch.Tensor
    reward_a: torch.Tensor
    reward_b: torch.Tensor
    margin: torch.Tensor
    preference: torch.Tensor
    scores_a: torch.Tensor
    scores_b: torch.Tensor


def rule_head_select(
    hidden_a: torch.Tensor,
    hidden_b: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    relevance: torch.Tensor | None = None,
    *,
    k: int = 5,
    discrepancy_weight: float = 0.5,
    relevance_weight: float = 1.0,
    valid: torch.Tensor | None = None,
    tie_tolerance: float = 0.0,
    backend: str | None = None,
) -> RuleHeadSelection:
    """Per-rule heads on two responses' hidden states, then select_rules on their scores.

    scores_x = hidden_x @ weight.T + bias; then, per pair, the k valid rules of largest
    discrepancy_weight * |scores_a - scores_b| + relevance_weight * relevance are selected
    (ties: lower rule index first) and the pair's rewards are the sums of its scores over them
    (ramo.select_rules).

    hidden_a, hidden_b: [N, D]; weight: [R, D]; bias: None or [R]; all float16 / bfloat16 /
    float32 / float64 of one dtype, on one device. relevance: None, [R] or [N, R] float (no
    gradient). valid: None, [R] or [N, R] bool; False rules are never selected.
    backend: "reference", "cpu", "cuda" or "triton"; None picks by device (or RAMO_BACKEND).

    The backward reaches hidden_a, hidden_b, weight and bias through the selected rules only
    (plus the dense terms of any gradient arriving at scores_a / scores_b); see the module
    docstring for the formulas.
    """
    _check_arguments(hidden_a, hidden_b, weight, bias, relevance, valid, k, discrepancy_weight,
                     relevance_weight, tie_tolerance)
    args = (hidden_a, hidden_b, weight, bias, relevance, valid, int(k), float(discrepancy_weight),
            float(relevance_weight), float(tie_tolerance))
    chosen = backends.resolve("rule_head_select", hidden_a.device, backend,
                              not_fast=beyond_fast_paths(k) or STALE_BUILD)
    if chosen == "reference":
        return RuleHeadSelection(*reference.rule_head_select(*args))
    op = (torch.ops.ramo.rule_head_select_triton if chosen == "triton"
          else torch.ops.ramo.rule_head_select)
    criterion, reward_a, reward_b, margin, scores_a, scores_b, indices, preference = op(*args)
    return RuleHeadSelection(indices, criterion, reward_a, reward_b, margin, preference,
                             scores_a, scores_b)


# --- argument checks ----------------------------------------------------------------------

def _check_tensor(name, t, dims: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"rule_head_select: {name} must be a tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise ValueError(f"rule_head_select: {name} must be a float tensor (float16, bfloat16, "
                         f"float32 or float64), got {t.dtype}")
    if t.dim() != len(dims.split(",")):
        raise ValueError(f"rule_head_select: {name} must be [{dims}], got shape "
                         f"{tuple(t.shape)}")


def _check_arguments(hidden_a, hidden_b, weight, bias, relevance, valid, k, discrepancy_weight,
                     relevance_weight, tie_tolerance) -> None:
    _check_tensor("hidden_a", hidden_a, "N, D")
    _check_tensor("hidden_b", hidden_b, "N, D")
    _check_tensor("weight", weight, "R, D")
    if hidden_a.shape != hidden_b.shape:
        raise ValueError(f"rule_head_select: hidden_a and hidden_b differ in shape: "
                         f"{tuple(hidden_a.shape)} vs {tuple(hidden_b.shape)}")
    n, d = hidden_a.shape
    r = weight.shape[0]
    if weight.shape[1] != d:
        raise ValueError(f"rule_head_select: hidden_a has D={d} but weight has "
                         f"D={weight.shape[1]} (weight must be [R, D])")
    if bias is not None:
        _check_tensor("bias", bias, "R")
        if bias.shape[0] != r:
            raise ValueError(f"rule_head_select: bias must have shape [R={r}], got "
                             f"{tuple(bias.shape)}")
    for name, t in (("hidden_b", hidden_b), ("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != hidden_a.dtype:
            raise ValueError(f"rule_head_select: hidden_a is {hidden_a.dtype} but {name} is "
                             f"{t.dtype} (hidden_a, hidden_b, weight and bias share one dtype)")
    for name, t in (("hidden_b", hidden_b), ("weight", weight), ("bias", bias)):
        if t is not None and t.device != hidden_a.device:
            raise ValueError(f"rule_head_select: hidden_a is on {hidden_a.device} but {name} "
                             f"is on {t.device}")
    check_selection_arguments("rule_head_select", n, r, hidden_a.device, "hidden_a", relevance,
                              valid, k, discrepancy_weight, relevance_weight, tie_tolerance)


# --- torch.library registrations shared by the compiled and Triton ops -------------------
# The forward ops return (criterion, reward_a, reward_b, margin, scores_a, scores_b, indices,
# preference): floats first, as csrc/ops.cpp explains. The backward ops return (grad_hidden_a,
# grad_hidden_b, grad_weight, grad_bias) for the selected-rules part only.

def _fake(hidden_a, hidden_b, weight, bias, relevance, valid, k, discrepancy_weight,
          relevance_weight, tie_tolerance):
    n, r = hidden_a.shape[0], weight.shape[0]
    acc = accumulation_dtype(hidden_a.dtype)
    return (hidden_a.new_empty((n, k), dtype=acc),
            hidden_a.new_empty((n,), dtype=acc),
            hidden_a.new_empty((n,), dtype=acc),
            hidden_a.new_empty((n,), dtype=acc),
            hidden_a.new_empty((n, r)),
            hidden_a.new_empty((n, r)),
            hidden_a.new_empty((n, k), dtype=torch.int64),
            hidden_a.new_empty((n,), dtype=torch.int8))


def _fake_backward(grad_reward_a, grad_reward_b, indices, hidden_a, hidden_b, weight):
    return (torch.empty_like(hidden_a, memory_format=torch.contiguous_format),
            torch.empty_like(hidden_b, memory_format=torch.contiguous_format),
            torch.empty_like(weight, memory_format=torch.contiguous_format),
            weight.new_empty((weight.shape[0],)))


def _setup_context(ctx, inputs, output):
    hidden_a, hidden_b, weight, bias = inputs[:4]
    ctx.save_for_backward(output[6], hidden_a, hidden_b, weight)
    ctx.has_bias = bias is not None
    ctx.mark_non_differentiable(output[0])
    # Outputs the loss does not use get None, not a zero tensor: unused scores then cost no
    # dense matmul in the backward.
    ctx.set_materialize_grads(False)


def _backward_of(backward_op):
    def backward(ctx, grad_criterion, grad_reward_a, grad_reward_b, grad_margin, grad_scores_a,
                 grad_scores_b, grad_indices, grad_preference):
        indices, hidden_a, hidden_b, weight = ctx.saved_tensors
        g_a, g_b = grad_reward_a, grad_reward_b
        if grad_margin is not None:  # margin = reward_a - reward_b
            g_a = grad_margin if g_a is None else g_a + grad_margin
            g_b = -grad_margin if g_b is None else g_b - grad_margin
        grad_ha = grad_hb = grad_w = grad_bias = None
        if g_a is not None or g_b is not None:  # the selected rules: the sparse kernel
            zero = torch.zeros(indices.shape[0], dtype=accumulation_dtype(hidden_a.dtype),
                               device=indices.device)
            grad_ha, grad_hb, grad_w, grad_bias = backward_op(
                zero if g_a is None else g_a, zero if g_b is None else g_b, indices,
                hidden_a, hidden_b, weight)
        # Gradients arriving at the scores themselves: the dense terms, plain matmuls.
        for grad_s, hidden, side in ((grad_scores_a, hidden_a, "a"),
                                     (grad_scores_b, hidden_b, "b")):
            if grad_s is None:
                continue
            dense_h = grad_s @ weight
            dense_w = grad_s.t() @ hidden
            dense_bias = grad_s.sum(0)
            if side == "a":
                grad_ha = dense_h if grad_ha is None else grad_ha + dense_h
            else:
                grad_hb = dense_h if grad_hb is None else grad_hb + dense_h
            grad_w = dense_w if grad_w is None else grad_w + dense_w
            grad_bias = dense_bias if grad_bias is None else grad_bias + dense_bias
        if not ctx.has_bias:
            grad_bias = None
        return grad_ha, grad_hb, grad_w, grad_bias, None, None, None, None, None, None

    return backward


def _no_double_backward(ctx, *grads):
    raise RuntimeError("rule_head_select's backward is not differentiable (no double "
                       "backward); see ramo/ops/rule_head_select.py")


@torch.library.custom_op("ramo::rule_head_select_triton", mutates_args=())
def _rule_head_select_triton(
    hidden_a: torch.Tensor,
    hidden_b: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    relevance: Optional[torch.Tensor],
    valid: Optional[torch.Tensor],
    k: int,
    discrepancy_weight: float,
    relevance_weight: float,
    tie_tolerance: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
           torch.Tensor, torch.Tensor]:
    from ramo.ops.select_rules import _select_rules_triton
    from ramo.reference.rule_head_select import head_scores

    scores_a = head_scores(hidden_a, weight, bias)
    scores_b = head_scores(hidden_b, weight, bias)
    try:
        criterion, reward_a, reward_b, margin, indices, preference = _select_rules_triton(
            scores_a, scores_b, relevance, valid, k, discrepancy_weight, relevance_weight,
            tie_tolerance)
    except ValueError as exc:
        raise ValueError(rename_select_rules_error(str(exc))) from None
    return criterion, reward_a, reward_b, margin, scores_a, scores_b, indices, preference


@torch.library.custom_op("ramo::rule_head_select_backward_triton", mutates_args=())
def _rule_head_select_backward_triton(
    grad_reward_a: torch.Tensor,
    grad_reward_b: torch.Tensor,
    indices: torch.Tensor,
    hidden_a: torch.Tensor,
    hidden_b: torch.Tensor,
    weight: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from ramo.triton_kernels.rule_head_select import rule_head_select_backward

    return rule_head_select_backward(grad_reward_a.contiguous(), grad_reward_b.contiguous(),
                                     indices.contiguous(), hidden_a.contiguous(),
                                     hidden_b.contiguous(), weight.contiguous())


def _register(op_name: str, backward_op_name: str, backward_op) -> None:
    torch.library.register_fake(op_name, _fake)
    torch.library.register_autograd(op_name, _backward_of(backward_op),
                                    setup_context=_setup_context)
    torch.library.register_fake(backward_op_name, _fake_backward)
    torch.library.register_autograd(backward_op_name, _no_double_backward,
                                    setup_context=lambda ctx, inputs, output: None)


_register("ramo::rule_head_select_triton", "ramo::rule_head_select_backward_triton",
          torch.ops.ramo.rule_head_select_backward_triton)
if STALE_BUILD is None:
    _register("ramo::rule_head_select", "ramo::rule_head_select_backward",
              torch.ops.ramo.rule_head_select_backward)
