"""Studies of the method on labeled pairs: which rule-selection strategy labels pairs as the
humans did (`selection_study`), on a judge's ratings or on a synthetic set with a known truth
(`synthetic_set`), and how much signal a judge's scores carry (`judge_agreement`).

Every selection and every sum over rules goes through `select_rules`, so ties and summation
order are the method's own. A label agrees with a pair's human label when its sign says the
same response is better; a tie never agrees (as in RewardBench, where a tie is wrong).

The strategies, each picking k rules per pair and labeling it by the summed score difference
over them:
  max-discrepancy + relevance  the method: criterion 0.5 |s(A) - s(B)| + 1.0 relevance
  max-discrepancy              the same without relevance
  relevance                    the k most relevant rules, whatever the scores say
  random                       k rules at random (the mean over `random_draws` draws)
  all rules                    every rule of the pool (no selection; the same for every k)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ramo.ops import select_rules

STRATEGIES = ("max-discrepancy + relevance", "max-discrepancy", "relevance", "random",
              "all rules")
KS = (1, 3, 5, 10, 20)
CALIBRATIONS = ("none", "choices", "log-odds", "response-centered", "rule-centered")


# ---- what a strategy's labels are -----------------------------------------------------------

def strategy_margins(strategy: str, scores: torch.Tensor, relevance: torch.Tensor | None,
                     k: int, *, random_draws: int = 20, seed: int = 0) -> torch.Tensor:
    """[D, N] margins sum(a - b) over each pair's selected rules (D = random_draws for
    "random", else 1). scores: [N, 2, R]; relevance: [N, R] or None (the relevance strategies
    then rank by discrepancy alone or by nothing)."""
    a, b = scores[:, 0].contiguous(), scores[:, 1].contiguous()
    n, r = a.shape
    k = min(k, r)
    if strategy == "all rules":  # k = R is beyond the fast paths: the reference, asked for
        zeros = torch.zeros_like(a)
        return select_rules(a, b, zeros, k=r, discrepancy_weight=0.0,
                            backend="reference").margin.unsqueeze(0)
    if strategy == "random":
        gen = torch.Generator().manual_seed(seed)
        draws = [select_rules(a, b, torch.rand(n, r, generator=gen), k=k,
                              discrepancy_weight=0.0).margin for _ in range(random_draws)]
        return torch.stack(draws)
    weights = {"max-discrepancy + relevance": (0.5, 1.0), "max-discrepancy": (0.5, 0.0),
               "relevance": (0.0, 1.0)}
    if strategy not in weights:
        raise ValueError(f"unknown strategy {strategy!r}; the strategies are {STRATEGIES}")
    discrepancy_weight, relevance_weight = weights[strategy]
    if relevance is None or relevance_weight == 0.0:
        relevance, relevance_weight = None, 1.0
    return select_rules(a, b, relevance, k=k, discrepancy_weight=discrepancy_weight,
                        relevance_weight=relevance_weight).margin.unsqueeze(0)


def agreement(margins: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[D, N] float: 1 where the margin's sign names the human-preferred response (label 0:
    A, 1: B); a zero margin (a tie) is 0."""
    wanted = 1 - 2 * labels.to(margins.device).long()  # +1 when A is better, -1 when B is
    return (torch.sign(margins) == wanted).float()


def bootstrap(values: torch.Tensor, *, samples: int = 1000, seed: int = 0,
              level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean of per-pair values [D, N] (averaged over D first) and its
    percentile bootstrap interval over the pairs."""
    per_pair = values.double().mean(0)
    n = per_pair.numel()
    if n == 0:
        return math.nan, math.nan, math.nan
    gen = torch.Generator().manual_seed(seed)
    means = per_pair[torch.randint(0, n, (samples, n), generator=gen)].mean(1)
    tail = (1 - level) / 2
    low, high = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=torch.float64))
    return float(per_pair.mean()), float(low), float(high)


@dataclass(frozen=True)
class StudyRow:
    strategy: str
    k: int
    agreement: float
    low: float
    high: float


def selection_study(scores: torch.Tensor, labels: torch.Tensor,
                    relevance: torch.Tensor | None = None, *, ks: Sequence[int] = KS,
                    strategies: Sequence[str] = STRATEGIES, samples: int = 1000,
                    random_draws: int = 20, seed: int = 0) -> list[StudyRow]:
    """Agreement with the human labels, with a 95% bootstrap interval, of every strategy at
    every k. scores [N, 2, R], labels [N] (0: A better, 1: B better), relevance [N, R]."""
    _check(scores, labels, relevance)
    rows = []
    for strategy in strategies:
        for k in ks:
            margins = strategy_margins(strategy, scores, relevance, k,
                                       random_draws=random_draws, seed=seed)
            mean, low, high = bootstrap(agreement(margins, labels), samples=samples, seed=seed)
            rows.append(StudyRow(strategy, min(k, scores.shape[2]), mean, low, high))
    return rows


def _check(scores: torch.Tensor, labels: torch.Tensor, relevance: torch.Tensor | None) -> None:
    if scores.dim() != 3 or scores.shape[1] != 2:
        raise ValueError(f"scores must be [N, 2, R], got {tuple(scores.shape)}")
    if labels.shape != (scores.shape[0],) or not bool(((labels == 0) | (labels == 1)).all()):
        raise ValueError("labels must be N values, each 0 (A better) or 1 (B better)")
    if relevance is not None and relevance.shape != (scores.shape[0], scores.shape[2]):
        raise ValueError(f"relevance must be [N, R] = {(scores.shape[0], scores.shape[2])}, "
                         f"got {tuple(relevance.shape)}")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("the scores hold NaN or inf: every pair needs every rule rated")


# ---- a judge's signal ---------------------------------------------------------------------------

def calibrated(ratings, calibration: str) -> torch.Tensor:
    """[N, 2, R] scores of a complete `Ratings` under a calibration:
      none               P(yes) - P(no), as rated
      choices            (P(yes) - P(no)) / (P(yes) + P(no) + P(irrelevant)): the score the
                         judge gives with normalize="choices", from a "vocab" rating
      log-odds           log P(yes) - log P(no) (both floored at 1e-12)
      response-centered  the score minus the response's mean over the rules (removes an
                         offset the judge gives a whole response, whatever the rule). The sum
                         over all rules is then 0 on both sides: "all rules" has no label.
      rule-centered      the score minus the rule's mean over every rated response (removes
                         a rule's own bias towards yes or no). It cancels in s(A) - s(B), so
                         every pairwise label is the uncalibrated one; listed to show that.
    """
    score = ratings.score.double()
    if calibration == "none":
        out = score
    elif calibration == "choices":
        total = (ratings.p_yes.double() + ratings.p_no.double() + ratings.p_other.double())
        out = (ratings.p_yes.double() - ratings.p_no.double()) / total.clamp_min(1e-30)
    elif calibration == "log-odds":
        out = ratings.p_yes.double().clamp_min(1e-12).log() - ratings.p_no.double().clamp_min(1e-12).log()
    elif calibration == "response-centered":
        out = score - score.mean(dim=2, keepdim=True)
    elif calibration == "rule-centered":
        out = score - score.mean(dim=(0, 1), keepdim=True)
    else:
        raise ValueError(f"unknown calibration {calibration!r}; the calibrations are {CALIBRATIONS}")
    return out.float()


def judge_agreement(scores: torch.Tensor, labels: torch.Tensor, *, samples: int = 1000,
                    seed: int = 0) -> dict:
    """How much a judge's scores [N, 2, R] say about the human labels [N]: the agreement of
    each single rule's label (per rule: the sign of s_r(A) - s_r(B); the mean, median and best
    over the rules), and of the label summed over all rules (with its 95% interval)."""
    _check(scores, labels, None)
    per_rule = agreement((scores[:, 0] - scores[:, 1]).T, labels).mean(1)  # [R]
    margins = strategy_margins("all rules", scores, None, scores.shape[2])
    mean, low, high = bootstrap(agreement(margins, labels), samples=samples, seed=seed)
    return {"pairs": int(labels.numel()), "rules": int(scores.shape[2]),
            "single_rule_mean": float(per_rule.mean()),
            "single_rule_median": float(per_rule.median()),
            "single_rule_best": float(per_rule.max()),
            "all_rules": mean, "all_rules_low": low, "all_rules_high": high}


# ---- a synthetic set with a known truth ---------------------------------------------------------

@dataclass(frozen=True)
class SyntheticSet:
    """Judge scores [N, 2, R] and relevance [N, R] with noise, the true labels [N] (0: A
    better), and the rules that decide each pair ([N, R] bool)."""

    scores: torch.Tensor
    relevance: torch.Tensor
    labels: torch.Tensor
    critical: torch.Tensor


def synthetic_set(n_pairs: int = 2000, n_rules: int = 100, *, critical: tuple[int, int] = (1, 3),
                  noise: float = 0.15, seed: int = 0) -> SyntheticSet:
    """Pairs on which a few rules (between critical[0] and critical[1] per pair) decide: the
    better response scores m higher on them than the worse one (m uniform in [0.3, 1]); on
    every other rule both responses get the same true score. The judge sees every true score
    plus Gaussian noise of std `noise` (clipped to [-1, 1]). Relevance is higher for the
    deciding rules (uniform in [0.4, 1] against [0, 0.6]), plus the same noise. These are
    the assumptions under which max-discrepancy selection should win; the set checks the
    machinery, not the assumptions."""
    gen = torch.Generator().manual_seed(seed)
    n, r = n_pairs, n_rules

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=gen)

    base = uniform(-0.5, 0.5, n, r)
    count = torch.randint(critical[0], critical[1] + 1, (n,), generator=gen)
    order = torch.rand(n, r, generator=gen).argsort(dim=1)
    deciding = torch.zeros(n, r, dtype=torch.bool)
    for i in range(n):
        deciding[i, order[i, :count[i]]] = True
    labels = torch.randint(0, 2, (n,), generator=gen)
    gap = uniform(0.3, 1.0, n, r) * deciding
    better = (base + gap / 2).clamp(-1, 1)
    worse = (base - gap / 2).clamp(-1, 1)
    a_better = (labels == 0).unsqueeze(1)
    true = torch.stack([torch.where(a_better, better, worse),
                        torch.where(a_better, worse, better)], dim=1)
    scores = (true + noise * torch.randn(n, 2, r, generator=gen)).clamp(-1, 1)
    relevance = torch.where(deciding, uniform(0.4, 1.0, n, r), uniform(0.0, 0.6, n, r))
    relevance = (relevance + noise * torch.randn(n, r, generator=gen)).clamp(0, 1)
    return SyntheticSet(scores.float(), relevance.float(), labels, deciding)


# ---- tables and the plot ------------------------------------------------------------------------

def study_markdown(rows: Sequence[StudyRow]) -> str:
    """Strategies as rows, k as columns: agreement in percent with its 95% interval."""
    ks = sorted({row.k for row in rows})
    by = {(row.strategy, row.k): row for row in rows}
    lines = ["| strategy | " + " | ".join(f"k = {k}" for k in ks) + " |",
             "| --- | " + " | ".join("---:" for _ in ks) + " |"]
    for strategy in dict.fromkeys(row.strategy for row in rows):
        cells = []
        for k in ks:
            row = by.get((strategy, k))
            cells.append("" if row is None else
                         f"{100 * row.agreement:.1f} [{100 * row.low:.1f}, {100 * row.high:.1f}]")
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def study_plot(path, rows: Sequence[StudyRow], title: str):
    """Agreement against k, one line per strategy, with the 95% intervals as bands."""
    from ramo.plots import pyplot, save_figure

    fig, ax = pyplot().subplots(figsize=(7, 4.2))
    for strategy in dict.fromkeys(row.strategy for row in rows):
        mine = sorted((row for row in rows if row.strategy == strategy), key=lambda x: x.k)
        ks = [row.k for row in mine]
        ax.plot(ks, [row.agreement for row in mine], marker="o", label=strategy)
        ax.fill_between(ks, [row.low for row in mine], [row.high for row in mine], alpha=0.12)
    ax.axhline(0.5, color="gray", linestyle="--", linewidth=1, label="chance")
    ax.set_xscale("log")
    ax.set_xticks(sorted({row.k for row in rows}))
    ax.set_xticklabels([str(k) for k in sorted({row.k for row in rows})])
    ax.set_xlabel("k (rules per pair)")
    ax.set_ylabel("agreement with the true label")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def labeled_ratings(pairs, rules, ratings_path, calibration: str = "none"):
    """(scores [N, 2, R], relevance [N, R], labels [N], skipped) for the pairs that carry a
    human label, read from a ratings store (all rules rated) and calibrated; skipped: how
    many pairs had no label."""
    from ramo.ratings import read_ratings

    labeled = [p for p in pairs if p.label is not None]
    if not labeled:
        raise ValueError("no pair has a label (0: A better, 1: B better): there is nothing to "
                         "agree with")
    ratings = read_ratings(ratings_path, labeled, rules)
    return (calibrated(ratings, calibration), ratings.pair_relevance(),
            torch.tensor([p.label for p in labeled]), len(pairs) - len(labeled))
