"""How good a Rule Adapter's k rules are, on pairs whose full selection is known.

Set overlap with the full selection (precision@k, recall@k, exact set) says whether the
adapter names the same rules; what matters is whether its rules give the pair the same
label. So the headline is preference agreement: the share of pairs where the sign of the
summed score difference over the adapter's rules, sum_j (a_j - b_j), equals the full
max-discrepancy selection's preference. Ties (a zero sum) are an outcome of their own: a
tie agrees only with a tie, and each row reports its share of ties. Every number comes with
the same number for k random rules (mean over `random_trials` draws), the floor an adapter
has to clear.

With human labels (0: A is better, 1: B is better, None: unknown) each row also reports how
often its preference matches the label, on the labelled pairs; a tie never does (as in
RewardBench, where a tie counts as wrong).

Every top-k and every sum goes through `select_rules`, so ties and summation order are the
ones of the selections being compared.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ramo.checks import positive_integer
from ramo.ops import select_rules

_SET_METRICS = ("precision_at_k", "recall_at_k", "exact_set")
_COLUMNS = (("precision_at_k", "precision@k"), ("recall_at_k", "recall@k"),
            ("exact_set", "exact set"), ("preference_agreement", "preference agreement"),
            ("tie_rate", "ties"))


def adapter_metrics(predicted: torch.Tensor, target: torch.Tensor, scores_a: torch.Tensor,
                    scores_b: torch.Tensor, *, k: int, random_trials: int = 20, seed: int = 0,
                    labels: Sequence[int | None] | torch.Tensor | None = None) -> dict:
    """Metrics of the adapter's rules, of random rules and of the full selection.

    predicted: int64 [N, k], each row k distinct rule indices. target: int [N, T], the full
    selection's rule indices in its order, -1 padding allowed. scores_a, scores_b: [N, R],
    the judge's scores of every rule. labels: None, or N human labels (0, 1 or None).

    precision@k = |predicted & target| / k; recall@k = |predicted & target| / |target| (pairs
    with an empty target are left out of recall); exact set: the two sets are equal.
    Returns {"pairs", "rules", "k", "random_trials", "seed", "labeled_pairs",
    "reference_ties", "rows": [{"name", <metric>: value or None, ...}, ...]} with the rows
    "adapter", "random" and "full selection" (whose set metrics are None: it is the target).
    """
    n, r = _check(predicted, target, scores_a, scores_b, k, random_trials)
    expected = _expected_preferences(labels, n)
    target_hot = torch.zeros(n, r, dtype=torch.bool)
    valid = target >= 0
    target_hot[valid.nonzero(as_tuple=True)[0], target[valid]] = True
    reference = _preference(scores_a, scores_b, target)

    def row(indices: torch.Tensor) -> dict[str, float | None]:
        overlap = target_hot.gather(1, indices).sum(1).double()
        sizes = valid.sum(1).double()
        preference = _preference(scores_a, scores_b, indices)
        return {"precision_at_k": (overlap / k).mean().item(),
                "recall_at_k": (overlap / sizes)[sizes > 0].mean().item() if (sizes > 0).any()
                else None,
                "exact_set": ((overlap == k) & (sizes == k)).double().mean().item(),
                **_agreements(preference, reference, expected)}

    generator = torch.Generator().manual_seed(seed)
    zeros = torch.zeros(n, r)
    draws = [row(select_rules(zeros, zeros, relevance=torch.rand(n, r, generator=generator),
                              k=k, discrepancy_weight=0.0).indices)
             for _ in range(random_trials)]
    random_row = {name: None if draws[0][name] is None
                  else sum(d[name] for d in draws) / len(draws) for name in draws[0]}
    full = {**dict.fromkeys(_SET_METRICS), **_agreements(reference, reference, expected)}
    return {
        "pairs": n, "rules": r, "k": k, "random_trials": random_trials, "seed": seed,
        "labeled_pairs": int((expected != 0).sum()) if expected is not None else 0,
        "reference_ties": int((reference == 0).sum()),
        "rows": [{"name": "adapter", **row(predicted)}, {"name": "random", **random_row},
                 {"name": "full selection", **full}],
    }


def metrics_markdown(metrics: dict) -> str:
    """The metrics as a markdown table, with a line saying what was measured."""
    columns = list(_COLUMNS)
    if metrics.get("labeled_pairs"):
        columns.append(("human_agreement", "human agreement"))
    lines = [
        f"Rule Adapter: {metrics['pairs']} pairs, k = {metrics['k']} of R = {metrics['rules']} "
        f"rules; random = mean of {metrics['random_trials']} draws of k rules; "
        f"{metrics['reference_ties']} full-selection ties"
        + (f"; {metrics['labeled_pairs']} pairs with a human label" if metrics.get("labeled_pairs")
           else ""),
        "",
        "| selection | " + " | ".join(title for _, title in columns) + " |",
        "| --- |" + " ---: |" * len(columns),
    ]
    for row in metrics["rows"]:
        cells = ["—" if row.get(key) is None else f"{row[key]:.3f}" for key, _ in columns]
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    lines += ["", "preference agreement: the share of pairs whose label from the chosen rules "
              "(the sign of the summed score difference; a tie only matches a tie) equals the "
              "full max-discrepancy selection's label."]
    return "\n".join(lines) + "\n"


def _preference(scores_a: torch.Tensor, scores_b: torch.Tensor,
                columns: torch.Tensor) -> torch.Tensor:
    """int8 [N]: the label the rules in `columns` ([N, W], -1 padding) give each pair.

    The gathered scores, with a zero criterion, go through select_rules: it keeps the column
    order (equal criteria: the lower column first) and sums in it, as the selection did.
    """
    valid = columns >= 0
    picked = columns.clamp_min(0)
    a, b = scores_a.gather(1, picked), scores_b.gather(1, picked)
    return select_rules(a, b, k=columns.shape[1], discrepancy_weight=0.0, relevance_weight=0.0,
                        valid=valid).preference


def _agreements(preference: torch.Tensor, reference: torch.Tensor,
                expected: torch.Tensor | None) -> dict[str, float | None]:
    out = {"preference_agreement": (preference == reference).double().mean().item(),
           "tie_rate": (preference == 0).double().mean().item(), "human_agreement": None}
    if expected is not None and (expected != 0).any():
        labeled = expected != 0
        out["human_agreement"] = (preference[labeled] == expected[labeled]).double().mean().item()
    return out


def _expected_preferences(labels, n: int) -> torch.Tensor | None:
    """int8 [N]: +1 where the label says A, -1 where it says B, 0 where there is none."""
    if labels is None:
        return None
    labels = labels.tolist() if isinstance(labels, torch.Tensor) else list(labels)
    if len(labels) != n:
        raise ValueError(f"labels: {len(labels)} labels for {n} pairs")
    bad = [(i, x) for i, x in enumerate(labels)
           if x is not None and (isinstance(x, bool) or x not in (0, 1))]
    if bad:
        raise ValueError(f"labels: must be 0 (A better), 1 (B better) or None; label {bad[0][0]} "
                         f"is {bad[0][1]!r}")
    return torch.tensor([0 if x is None else (1 if x == 0 else -1) for x in labels],
                        dtype=torch.int8)


def _check(predicted, target, scores_a, scores_b, k, random_trials) -> tuple[int, int]:
    for name, t in (("scores_a", scores_a), ("scores_b", scores_b)):
        if not isinstance(t, torch.Tensor) or t.dim() != 2 or not t.is_floating_point():
            raise ValueError(f"{name} must be a float tensor [N, R]")
    if scores_a.shape != scores_b.shape:
        raise ValueError(f"scores_a is {tuple(scores_a.shape)} but scores_b is "
                         f"{tuple(scores_b.shape)}")
    n, r = scores_a.shape
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= r:
        raise ValueError(f"k must be an integer in [1, R = {r}], got {k!r}")
    positive_integer("random_trials", random_trials)
    for name, t, low in (("predicted", predicted, 0), ("target", target, -1)):
        if not isinstance(t, torch.Tensor) or t.dim() != 2 or t.dtype != torch.int64:
            raise ValueError(f"{name} must be an int64 tensor [N, width]")
        if t.shape[0] != n:
            raise ValueError(f"{name} has {t.shape[0]} rows but the scores have {n}")
        if t.numel() and (t.min() < low or t.max() >= r):
            raise ValueError(f"{name} holds a rule index outside [{low}, {r})")
        ordered = t.sort(dim=1).values
        if ((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)).any():
            raise ValueError(f"{name}: a row names the same rule twice")
    if predicted.shape[1] != k:
        raise ValueError(f"predicted must be [N, k = {k}], got {tuple(predicted.shape)}")
    if target.shape[1] == 0:
        raise ValueError("target has no columns: the full selection named no rules")
    return n, r
