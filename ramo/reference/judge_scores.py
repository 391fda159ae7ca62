"""Reference judge_scores (docs/architecture.md, "judge_scores") written as plain PyTorch.

This is the specification and the test oracle, so it is the obvious computation: it builds
the full [B, V] logits (the fused backends never do), takes the softmax over the vocabulary
or over the listed ids, and sums it over each id set.

Relevance is (p_yes + p_no) / (p_yes + p_no + p_other). The vocabulary normaliser cancels
in that ratio, so it is evaluated on the probabilities renormalised over the listed ids:
the same number, exactly, but it keeps its meaning where the three vocabulary
probabilities underflow (a judge that puts almost no mass on any answer). It is 0 only
when all three probabilities are exactly 0, which happens when a -inf bias masks every
listed id (allowed in "vocab" mode only).
"""

from __future__ import annotations

import torch

from ramo.reference.select_rules import accumulation_dtype

NORMALIZE_MODES = ("vocab", "choices")


def check_values(hidden: torch.Tensor, bias: torch.Tensor | None, ids: torch.Tensor,
                 normalize: str) -> None:
    """The data-dependent checks every backend makes (shapes are checked by ramo.ops).

    hidden must be finite. bias may hold -inf (a masked token: probability 0) but not NaN
    or +inf, and must leave something to normalise over: some token in "vocab" mode, some
    listed id in "choices" mode. bias is checked as the op adds it, in the accumulation
    dtype: a float64 bias beyond float32's range is +-inf for float32 hidden states.
    """
    if not bool(torch.isfinite(hidden).all()):
        row, col = (int(i) for i in (~torch.isfinite(hidden)).nonzero()[0])
        raise ValueError(f"judge_scores: hidden has a non-finite value (row {row}, "
                         f"column {col})")
    if bias is None:
        return
    acc = accumulation_dtype(hidden.dtype)
    in_acc = f"as {str(acc).removeprefix('torch.')}, the dtype the op computes in"
    bias = bias.to(acc)
    bad = torch.isnan(bias) | (bias == float("inf"))
    if bool(bad.any()):
        raise ValueError(f"judge_scores: bias holds NaN or +inf (token "
                         f"{int(bad.nonzero()[0, 0])}, {in_acc}); only -inf (a masked token) "
                         f"is allowed")
    pool = bias if normalize == "vocab" else bias[ids]
    if not bool((pool > float("-inf")).any()):
        what = "every token" if normalize == "vocab" else "every listed id"
        raise ValueError(f"judge_scores: bias masks (-inf) {what} ({in_acc}): there is "
                         f"nothing to normalise over in {normalize!r} mode")


def set_sums(probs: torch.Tensor, n_yes: int, n_no: int) -> tuple[torch.Tensor, ...]:
    """Sums of [B, L] probabilities over the yes, no and other columns."""
    return (probs[:, :n_yes].sum(1), probs[:, n_yes:n_yes + n_no].sum(1),
            probs[:, n_yes + n_no:].sum(1))


def relevance_of(listed: torch.Tensor, n_yes: int, n_no: int) -> torch.Tensor:
    """(p_yes + p_no) / (p_yes + p_no + p_other) from the [B, L] listed logits."""
    top = listed.max(dim=1, keepdim=True).values
    masked = top == float("-inf")  # every listed id masked: all three probabilities are 0
    e = torch.exp(listed - torch.where(masked, torch.zeros_like(top), top))
    s_yes, s_no, s_other = set_sums(e, n_yes, n_no)
    s_answer = s_yes + s_no
    total = s_answer + s_other
    return torch.where(total > 0, s_answer / torch.where(total > 0, total, 1.0),
                       torch.zeros_like(total))


def judge_scores(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    ids: torch.Tensor,
    n_yes: int,
    n_no: int,
    normalize: str,
) -> tuple[torch.Tensor, ...]:
    """Returns (p_yes, p_no, p_other, score, relevance), each [B] in the accumulation dtype.

    ids: int64 [L], the yes ids, then the no ids, then the other ids. Shapes, dtypes and ids
    are assumed checked (ramo.ops.judge_scores does that); values are checked here.
    """
    check_values(hidden, bias, ids, normalize)
    acc = accumulation_dtype(hidden.dtype)
    logits = hidden.to(acc) @ weight.to(acc).T
    if bias is not None:
        logits = logits + bias.to(acc)
    listed = logits[:, ids]
    if normalize == "vocab":
        probs = torch.softmax(logits, dim=1)[:, ids]
    else:
        probs = torch.softmax(listed, dim=1)
    p_yes, p_no, p_other = set_sums(probs, n_yes, n_no)
    return p_yes, p_no, p_other, p_yes - p_no, relevance_of(listed, n_yes, n_no)


def from_listed_logprobs(listed: torch.Tensor, n_yes: int, n_no: int,
                         normalize: str) -> tuple[torch.Tensor, ...]:
    """The same five outputs from an engine that returns, instead of hidden states, the
    full-vocabulary log-probabilities of the listed ids ([B, L], yes then no then other
    columns), as vLLM does: "vocab" probabilities are their exponentials, "choices" their
    softmax (the vocabulary's normaliser cancels), and the relevance is the same ratio."""
    probs = torch.exp(listed) if normalize == "vocab" else torch.softmax(listed, dim=1)
    p_yes, p_no, p_other = set_sums(probs, n_yes, n_no)
    return p_yes, p_no, p_other, p_yes - p_no, relevance_of(listed, n_yes, n_no)
