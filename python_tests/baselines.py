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


def naive_judge_scores(model, ids: list[int], answer_ids: dict[str, list[int]]) -> dict:
    """What the reference pipeline does for one (response, rule): a full forward pass of the
    rendered prompt, logits at every position, softmax of the last one."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1].float()
    probs = torch.softmax(logits, dim=-1)
    p = {a: probs[answer_ids[a]].sum().item() for a in ("yes", "no", "irrelevant")}
    return {"p_yes": p["yes"], "p_no": p["no"], "p_other": p["irrelevant"],
            "score": p["yes"] - p["no"]}


def judge_scores_eager(hidden, weight, yes_ids, no_ids, other_ids=(), bias=None):
    """Plain PyTorch for ramo.ops.judge_scores(normalize="vocab"): the full [B, V] logits,
    softmax over the vocabulary, gathers and sums. Returns (p_yes, p_no, p_other, score,
    relevance)."""
    logits = hidden @ weight.T
    if bias is not None:
        logits = logits + bias
    probs = torch.softmax(logits, dim=-1)
    p_yes = probs[:, list(yes_ids)].sum(1)
    p_no = probs[:, list(no_ids)].sum(1)
    p_other = probs[:, list(other_ids)].sum(1)
    total = p_yes + p_no + p_other
    relevance = torch.where(total > 0, (p_yes + p_no) / total, torch.zeros_like(total))
    return p_yes, p_no, p_other, p_yes - p_no, relevance


def rule_head_select_eager(hidden_a, hidden_b, weight, bias, relevance, k,
                           discrepancy_weight=0.5, relevance_weight=1.0):
    """Plain PyTorch for ramo.ops.rule_head_select: two addmm (the per-rule heads), then
    select_rules_eager (abs, topk, gather, sum, compare). Differentiable through autograd, which
    builds the dense [N, R] gradient of the scores. Returns (indices, criterion, reward_a,
    reward_b, margin, preference, scores_a, scores_b)."""
    if bias is None:
        scores_a, scores_b = hidden_a @ weight.T, hidden_b @ weight.T
    else:
        scores_a = torch.addmm(bias, hidden_a, weight.T)
        scores_b = torch.addmm(bias, hidden_b, weight.T)
    if relevance is None:
        relevance = torch.zeros(weight.shape[0], dtype=scores_a.dtype, device=scores_a.device)
    return (*select_rules_eager(scores_a, scores_b, relevance, k, discrepancy_weight,
                                relevance_weight), scores_a, scores_b)
