"""Reference rule_head_select (docs/architecture.md, "rule_head_select") written as plain
PyTorch.

Per-rule scores are `hidden @ weight.T + bias`, computed with torch.addmm (torch.mm without a
bias), the same BLAS / cuBLAS call every backend makes, so every backend gets bit-identical
scores; then exactly the reference select_rules. The gradient comes from plain autograd
through this composition, which makes this module the oracle for the fused backward.
"""

from __future__ import annotations

import torch

from ramo.reference.select_rules import select_rules


def head_scores(hidden: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
    """[N, R] scores hidden @ weight.T + bias in the dtype of hidden: one addmm (mm without a
    bias). Every backend calls exactly this, so the scores agree bit for bit."""
    if bias is None:
        return torch.mm(hidden, weight.t())
    return torch.addmm(bias, hidden, weight.t())


def rename_select_rules_error(message: str) -> str:
    """A select_rules error message in rule_head_select's terms: its scores are computed."""
    message = message.replace("select_rules: ", "rule_head_select: ", 1)
    for side in ("a", "b"):
        message = message.replace(
            f"scores_{side} has", f"scores_{side} (hidden_{side} @ weight.T + bias) has")
    return message


def rule_head_select(
    hidden_a: torch.Tensor,
    hidden_b: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    relevance: torch.Tensor | None,
    valid: torch.Tensor | None,
    k: int,
    discrepancy_weight: float,
    relevance_weight: float,
    tie_tolerance: float,
) -> tuple[torch.Tensor, ...]:
    """Returns (indices, criterion, reward_a, reward_b, margin, preference, scores_a,
    scores_b). Inputs are assumed shape-checked (ramo.ops.rule_head_select does that)."""
    scores_a = head_scores(hidden_a, weight, bias)
    scores_b = head_scores(hidden_b, weight, bias)
    try:
        selection = select_rules(scores_a, scores_b, relevance, valid, k, discrepancy_weight,
                                 relevance_weight, tie_tolerance)
    except ValueError as exc:
        raise ValueError(rename_select_rules_error(str(exc))) from None
    return (*selection, scores_a, scores_b)
