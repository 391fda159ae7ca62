"""Reference select_rules (docs/architecture.md, "Exactness") written as plain PyTorch.

Every backend must reproduce this bit for bit on indices and preference, and (for fp32)
within 1e-6 relative on the floats. Each arithmetic step is a separate PyTorch op, so each
is rounded on its own, which is the rounding the compiled kernels copy.
"""

from __future__ import annotations

import torch


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp64 inputs accumulate in fp64, every other float dtype in fp32. The one definition
    of this rule for every op (ramo.ops._common re-exports it); the Triton kernels, which
    import nothing from ramo, restate it in kernels/triton/_dtypes.py."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _row_broadcast(t: torch.Tensor | None, n: int) -> torch.Tensor | None:
    if t is None or t.dim() == 2:
        return t
    return t.unsqueeze(0).expand(n, -1)


def criterion(
    scores_a: torch.Tensor,
    scores_b: torch.Tensor,
    relevance: torch.Tensor | None,
    discrepancy_weight: float,
    relevance_weight: float,
) -> torch.Tensor:
    """discrepancy_weight * |a - b| + relevance_weight * rel, [N, R], in the accumulation dtype."""
    acc = accumulation_dtype(scores_a.dtype)
    wd = torch.tensor(discrepancy_weight, dtype=acc, device=scores_a.device)
    crit = wd * (scores_a.to(acc) - scores_b.to(acc)).abs()
    if relevance is not None:
        wr = torch.tensor(relevance_weight, dtype=acc, device=scores_a.device)
        crit = crit + wr * _row_broadcast(relevance.to(acc), scores_a.shape[0])
    return crit


def check_finite(
    scores_a: torch.Tensor,
    scores_b: torch.Tensor,
    relevance: torch.Tensor | None,
    valid: torch.Tensor | None,
) -> None:
    """ValueError for NaN or inf in a valid position, naming one position by this rule: the
    first row holding such a value in any of scores_a, scores_b, relevance (a shared [R]
    relevance counts as present in every row, masked by that row's valid); within that row
    the first of those tensors, in that order, that holds one; within it the first rule.

    Values are checked in the accumulation dtype, which the criterion computes in: a
    relevance finite in float64 but beyond float32's range is inf for float32 scores."""
    n = scores_a.shape[0]
    acc = accumulation_dtype(scores_a.dtype)
    mask = None if valid is None else _row_broadcast(valid, n)
    named = []
    for name, t in (("scores_a", scores_a), ("scores_b", scores_b), ("relevance", relevance)):
        if t is None:
            continue
        bad = ~torch.isfinite(_row_broadcast(t.to(acc), n))
        if mask is not None:
            bad = bad & mask
        named.append((name, bad))
    bad_rows = torch.stack([bad.any(dim=1) for _, bad in named]).any(dim=0)
    if not bool(bad_rows.any()):
        return
    row = int(bad_rows.nonzero()[0])
    for name, bad in named:
        if bool(bad[row].any()):
            rule = int(bad[row].nonzero()[0])
            raise ValueError(
                f"select_rules: {name} has a non-finite value in a valid position "
                f"(row {row}, rule {rule}) as {str(acc).removeprefix('torch.')}, the dtype "
                f"the op computes in"
            )


def select_rules(
    scores_a: torch.Tensor,
    scores_b: torch.Tensor,
    relevance: torch.Tensor | None,
    valid: torch.Tensor | None,
    k: int,
    discrepancy_weight: float,
    relevance_weight: float,
    tie_tolerance: float,
) -> tuple[torch.Tensor, ...]:
    """Returns (indices, criterion, reward_a, reward_b, margin, preference).

    Inputs are assumed shape-checked (ramo.ops.select_rules does that); values are checked here.
    Differentiable in scores_a and scores_b through plain autograd, which makes this the
    oracle for the compiled backends' backward too.
    """
    check_finite(scores_a, scores_b, relevance, valid)
    n, r = scores_a.shape
    acc = accumulation_dtype(scores_a.dtype)
    crit = criterion(scores_a, scores_b, relevance, discrepancy_weight, relevance_weight).detach()

    # Rank key: NaN ranks as -inf, and +0 replaces -0 so that sorts keyed on bits agree.
    key = torch.where(torch.isnan(crit), torch.full_like(crit, float("-inf")), crit) + 0.0
    valid_full = (
        torch.ones(n, r, dtype=torch.bool, device=crit.device)
        if valid is None
        else _row_broadcast(valid, n)
    )
    key = torch.where(valid_full, key, torch.full_like(key, float("-inf")))
    # Two stable sorts give the order (valid first, then larger key, then lower index).
    order = torch.sort(key, dim=1, descending=True, stable=True).indices
    valid_sorted = torch.gather(valid_full, 1, order)
    order = torch.gather(order, 1, torch.sort(valid_sorted.to(torch.int8), dim=1,
                                              descending=True, stable=True).indices)
    top = order[:, :k]
    selected = torch.gather(valid_full, 1, top)

    indices = torch.where(selected, top, torch.full_like(top, -1))
    crit_k = torch.where(selected, torch.gather(crit, 1, top),
                         torch.full((n, k), float("-inf"), dtype=acc, device=crit.device))

    def reward(scores: torch.Tensor) -> torch.Tensor:
        vals = torch.gather(scores.to(acc), 1, top)
        vals = torch.where(selected, vals, torch.zeros_like(vals))
        total = torch.zeros(n, dtype=acc, device=scores.device)
        for j in range(k):  # selection order, one rounding per step
            total = total + vals[:, j]
        return total

    reward_a, reward_b = reward(scores_a), reward(scores_b)
    margin = reward_a - reward_b
    tol = torch.tensor(tie_tolerance, dtype=acc, device=margin.device)
    preference = torch.where(
        margin.detach() > tol,
        torch.ones_like(margin, dtype=torch.int8),
        torch.where(margin.detach() < -tol, -torch.ones_like(margin, dtype=torch.int8),
                    torch.zeros_like(margin, dtype=torch.int8)),
    )
    return indices, crit_k, reward_a, reward_b, margin, preference
