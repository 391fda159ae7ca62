"""judge_scores: a judge's Yes / No / Other probabilities from its last hidden state
(docs/architecture.md, "judge_scores"), without ever holding the [B, V] logits.

Implementations, all named judge_scores:
  reference  ramo/reference/judge_scores.py       (the specification)
  cpu        csrc/cpu/judge_scores.cpp            (torch.ops.ramo.judge_scores, CPU key)
  cuda       csrc/cuda/judge_scores.cpp + kernels/cuda/judge_scores.cu  (CUDA key)
  triton     kernels/triton/judge_scores.py       (torch.ops.ramo.judge_scores_triton)

No backward. The op is for judging, at inference: a gradient through the LM head's
log-sum-exp would need the [B, V] probabilities again (recomputed chunk by chunk, as Cut
Cross-Entropy does), which nothing in ramo uses. Rather than silently returning outputs that
are cut off from the graph, ramo.ops.judge_scores raises a ValueError when autograd would
record it (grad mode on and an input requiring grad): call it under torch.no_grad() or
torch.inference_mode(), or pass detached tensors. The raw ops (torch.ops.ramo.judge_scores*)
register a backward that raises, so a direct call cannot produce a silently wrong gradient.
"""

from __future__ import annotations

import operator
from typing import NamedTuple, Optional, Sequence, Union

import torch

from ramo import backends, reference
from ramo.ops._common import FLOAT_DTYPES, OPS
from ramo.reference.select_rules import accumulation_dtype
from ramo.reference.judge_scores import NORMALIZE_MODES, check_values

# A build of ramo._C from before this op lacks it: then the compiled and Triton backends fall
# back to the reference (with the usual one warning) instead of failing.
STALE_BUILD = OPS["judge_scores"].not_fast

TokenIds = Union[int, Sequence[int], torch.Tensor]


class JudgeScores(NamedTuple):
    """Per row of hidden, each [B], fp32 (fp64 for fp64 inputs).

    p_yes, p_no, p_other  probability mass on each id set (softmax over the vocabulary, or
                          over the listed ids with normalize="choices")
    score                 p_yes - p_no
    relevance             (p_yes + p_no) / (p_yes + p_no + p_other), evaluated on the
                          probabilities renormalised over the listed ids (the same ratio), so
                          it stays exact where the three underflow; 0 when all three are
                          exactly 0 (a -inf bias on every listed id)
    """

    p_yes: torch.Tensor
    p_no: torch.Tensor
    p_other: torch.Tensor
    score: torch.Tensor
    relevance: torch.Tensor


def judge_scores(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    yes_ids: TokenIds,
    no_ids: TokenIds,
    other_ids: TokenIds = (),
    *,
    bias: torch.Tensor | None = None,
    normalize: str = "vocab",
    backend: str | None = None,
) -> JudgeScores:
    """Probabilities of the judge's answers from its final hidden state and LM head.

    logits = hidden @ weight.T + bias; the probabilities are its softmax over the whole
    vocabulary (normalize="vocab") or over the union of the listed ids ("choices"), summed
    over each id set. The fused backends never build the [B, V] logits: "vocab" runs an
    online log-sum-exp over vocabulary chunks, "choices" reads only the listed rows of weight.

    hidden: [B, D] float16 / bfloat16 / float32 / float64, finite. weight: [V, D], same dtype
    and device (read in place when contiguous, as an LM head's weight is; otherwise copied
    once per call). bias: None or [V] float; -inf masks a token. yes_ids, no_ids (non-empty),
    other_ids (may be empty): token ids in [0, V) as ints, sequences of ints or 1-D integer
    tensors; no id twice, in one set or across sets. Under torch.compile(fullgraph=True) give
    them as python ints (a tensor's values are read on the host).
    backend: "reference", "cpu", "cuda" or "triton"; None picks by device (or RAMO_BACKEND).

    Inference only: no backward (see the module docstring); raises ValueError when autograd
    would record the call.
    """
    yes, no, other = (_id_list(name, ids) for name, ids in
                      (("yes_ids", yes_ids), ("no_ids", no_ids), ("other_ids", other_ids)))
    _check_arguments(hidden, weight, bias, yes, no, other, normalize)
    _refuse_autograd(hidden, weight, bias)
    ids = torch.tensor(yes + no + other, dtype=torch.int64, device=hidden.device)
    args = (hidden, weight, bias, ids, len(yes), len(no), normalize)
    chosen = backends.resolve("judge_scores", hidden.device, backend,
                              not_fast=STALE_BUILD)
    if chosen == "reference":
        return JudgeScores(*reference.judge_scores(*args))
    op = torch.ops.ramo.judge_scores_triton if chosen == "triton" else torch.ops.ramo.judge_scores
    return JudgeScores(*op(*args))


# --- argument checks ----------------------------------------------------------------------

def _id_list(name: str, ids) -> list[int]:
    """ids as a list of python ints (a tensor's values are copied to the host)."""
    if isinstance(ids, torch.Tensor):
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise ValueError(f"judge_scores: {name} must hold integers, got {ids.dtype}")
        if ids.dim() > 1:
            raise ValueError(f"judge_scores: {name} must be 1-D, got shape {tuple(ids.shape)}")
        return [int(i) for i in ids.reshape(-1).tolist()]
    if isinstance(ids, bool):
        raise ValueError(f"judge_scores: {name} must be token ids, got a bool")
    if isinstance(ids, int):
        return [ids]
    try:
        return [_token_id(name, i) for i in ids]
    except TypeError:
        raise ValueError(f"judge_scores: {name} must be an int, a sequence of ints or a 1-D "
                         f"integer tensor, got {type(ids).__name__}") from None


def _token_id(name: str, value) -> int:
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError(f"judge_scores: {name} must hold ints, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"judge_scores: {name} must hold ints, got {value!r}") from None


def _check_tensors(hidden, weight, bias) -> None:
    for name, t in (("hidden", hidden), ("weight", weight)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"judge_scores: {name} must be a tensor, got {type(t).__name__}")
        if t.dim() != 2:
            raise ValueError(f"judge_scores: {name} must be 2-D ([B, D] / [V, D]), got shape "
                             f"{tuple(t.shape)}")
    if hidden.dtype not in FLOAT_DTYPES:
        raise ValueError(f"judge_scores: hidden must be float16, bfloat16, float32 or float64, "
                         f"got {hidden.dtype}")
    if weight.dtype != hidden.dtype:
        raise ValueError(f"judge_scores: hidden is {hidden.dtype} but weight is {weight.dtype}")
    if weight.shape[1] != hidden.shape[1]:
        raise ValueError(f"judge_scores: hidden has D={hidden.shape[1]} but weight has "
                         f"D={weight.shape[1]} (weight must be [V, D])")
    if weight.device != hidden.device:
        raise ValueError(f"judge_scores: hidden is on {hidden.device} but weight is on "
                         f"{weight.device}")
    if bias is None:
        return
    if not isinstance(bias, torch.Tensor) or bias.dtype not in FLOAT_DTYPES:
        raise ValueError("judge_scores: bias must be None or a float tensor")
    if tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"judge_scores: bias must have shape [V={weight.shape[0]}], got "
                         f"{tuple(bias.shape)}")
    if bias.device != hidden.device:
        raise ValueError(f"judge_scores: hidden is on {hidden.device} but bias is on "
                         f"{bias.device}")


def _check_ids(yes: list[int], no: list[int], other: list[int], vocab: int) -> None:
    named = (("yes_ids", yes), ("no_ids", no), ("other_ids", other))
    for name, ids in named[:2]:
        if not ids:
            raise ValueError(f"judge_scores: {name} must not be empty")
    seen: dict[int, str] = {}
    for name, ids in named:
        for i in ids:
            if not 0 <= i < vocab:
                raise ValueError(f"judge_scores: {name} holds {i}, outside [0, V={vocab})")
            if i in seen:
                where = "twice" if seen[i] == name else f"and in {seen[i]}"
                raise ValueError(f"judge_scores: token id {i} is in {name} {where}; the id "
                                 f"sets must be disjoint and free of duplicates")
            seen[i] = name


def _check_arguments(hidden, weight, bias, yes, no, other, normalize) -> None:
    _check_tensors(hidden, weight, bias)
    _check_ids(yes, no, other, weight.shape[0])
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"judge_scores: normalize must be one of {NORMALIZE_MODES}, got "
                         f"{normalize!r}")


def _refuse_autograd(hidden, weight, bias) -> None:
    if not torch.is_grad_enabled():
        return
    for name, t in (("hidden", hidden), ("weight", weight), ("bias", bias)):
        if t is not None and t.requires_grad:
            raise ValueError(
                f"judge_scores: {name} requires grad, but judge_scores has no backward (it is "
                f"an inference op); call it under torch.no_grad() or torch.inference_mode(), "
                f"or pass {name}.detach()")


# --- torch.library registrations shared by the compiled and Triton ops -------------------

def _fake(hidden, weight, bias, ids, n_yes, n_no, normalize):
    acc = accumulation_dtype(hidden.dtype)
    return tuple(hidden.new_empty((hidden.shape[0],), dtype=acc) for _ in range(5))


def _setup_context(ctx, inputs, output):
    pass


def _backward(ctx, *grads):
    raise RuntimeError("judge_scores has no backward: it is an inference op (see "
                       "ramo/ops/judge_scores.py); run it under torch.no_grad()")


@torch.library.custom_op("ramo::judge_scores_triton", mutates_args=())
def _judge_scores_triton(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    ids: torch.Tensor,
    n_yes: int,
    n_no: int,
    normalize: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from ramo.triton_kernels.judge_scores import judge_scores as triton_judge_scores

    acc = accumulation_dtype(hidden.dtype)
    bias = None if bias is None else bias.to(acc).contiguous()
    check_values(hidden, bias, ids, normalize)
    return triton_judge_scores(hidden.contiguous(), weight.contiguous(), bias, ids.contiguous(),
                               n_yes, n_no, normalize)


def _register(op_name: str) -> None:
    torch.library.register_fake(op_name, _fake)
    torch.library.register_autograd(op_name, _backward, setup_context=_setup_context)


_register("ramo::judge_scores_triton")
if STALE_BUILD is None:
    _register("ramo::judge_scores")
