"""The adapter-evaluate step: how well a trained Rule Adapter's k rules stand in for the full
selection on pairs it was not trained on (the metrics themselves: ramo/adapter/metrics.py)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ramo.io import Pair, Rule
from ramo.io.selections import Selection


def evaluate_adapter(adapter, pairs: Sequence[Pair], selections: Sequence[Selection],
                     rules: Sequence[Rule], ratings, *, k: int | None = None,
                     seed: int = 0) -> dict:
    """Metrics of the adapter's k rules on `pairs` against their full selections (one per
    pair, in order) and the judge's ratings of every rule (a complete `Ratings` of these
    pairs on `rules`): see `adapter_metrics`; plus "holdout_ids", the pairs' ids. Pairs
    with a human label are also scored against it."""
    from ramo.adapter.metrics import adapter_metrics
    from ramo.adapter.model import padded, rule_indices

    adapter.check_rules(rules)
    k = adapter.resolve_k(k)
    pair_ids = [p.id for p in pairs]
    if [s.id for s in selections] != pair_ids:
        raise ValueError("the selections are not of these pairs, in this order")
    if list(ratings.pair_ids) != pair_ids or list(ratings.rule_ids) != [r.id for r in rules]:
        raise ValueError("the ratings are not of these pairs and rules, in this order")
    ratings.require_complete("the ratings")
    target = padded(rule_indices(pair_ids, [s.rule_ids for s in selections],
                                 adapter.rule_ids, source="selections"))
    labels = [p.label for p in pairs]
    metrics = adapter_metrics(adapter.predict(pairs, k=k), target, ratings.score[:, 0],
                              ratings.score[:, 1], k=k, seed=seed,
                              labels=labels if any(x is not None for x in labels) else None)
    metrics["holdout_ids"] = pair_ids
    return metrics


def write_metrics(folder: str | os.PathLike, metrics: dict) -> None:
    """metrics.json and metrics.md (the table) into the adapter's folder."""
    from ramo.adapter.metrics import metrics_markdown
    from ramo.io.atomic import write_json, write_text

    write_json(Path(folder) / "metrics.json", metrics)
    write_text(Path(folder) / "metrics.md", metrics_markdown(metrics))
