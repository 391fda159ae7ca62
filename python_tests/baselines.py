"""What a user would write without ramo: the baselines that the benchmarks time and that the
tests check for agreement with ramo (so the benchmarks compare like with like)."""

import torch


def select_rules_eager(scores_a, scores_b, relevance, k, discrepancy_weight=0.5,
                       relevance_weight=1.0):
    """Plain PyTorch: criterion, topk, gather, sum, compare."""
    crit = discrepancy_weight * (scores_a - scores_b).abs() + relevance_weight * relevance
    criterion, indices = crit.topk(k, dim=1)
    reward_a = scores_a.gather(1, indices).sum(1)
    reward_b = scores_b.gather(1, indices).sum(1)
    margin = reward_a - reward_b
    return indices, criterion, reward_a, reward_b, margin, torch.sign(margin).to(torch.int8)


select_rules_compiled = torch.compile(select_rules_eager, dynamic=False)
