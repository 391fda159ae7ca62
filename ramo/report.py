"""The run report: report.md and plots/*.png, made from a pipeline run folder's artefacts.

Everything here reads what the steps wrote (steps/*.json, selections, ratings, eval.json), so
a report can be rebuilt at any time with `ramo pipeline --config ... --steps report`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ramo.plots import pyplot, save_figure

PLOTS = {
    "rule_frequency": "selected-rule frequency by category",
    "discrepancy": "discrepancy |s(A) - s(B)|: all rules vs selected rules",
    "adapter_metrics": "Rule Adapter vs random k rules on held-out pairs",
    "rm_loss": "reward-model training loss",
    "eval_accuracy": "accuracy by subset",
    "selection_study": "selection strategies against the pairs' own labels",
    "selection_study_synthetic": "the same study on synthetic pairs, judge noise 0.15",
}


def write_report(pipeline) -> list[Path]:
    """Writes report.md and the plots whose data exist; returns [report, *plots]."""
    from ramo.io.atomic import write_text

    plots_dir = pipeline.path("plots")
    plots_dir.mkdir(parents=True, exist_ok=True)
    sections, plots = [], []
    for make in (_overview, _selection, _selection_study, _adapter, _labels, _reward_model,
                 _evaluation):
        text, made = make(pipeline, plots_dir)
        if text:
            sections.append(text)
        plots += made
    report = pipeline.path("report.md")
    write_text(report, "\n\n".join(["# ramo run report"] + sections) + "\n")
    return [report] + plots


# ---- sections: each returns (markdown, [plot paths]) -----------------------------------------

def _overview(p, plots_dir):
    rate = p.record("rate")
    lines = ["## Run", "", f"- run folder: `{p.dir}`", f"- rule pool: {len(p.rules)} rules, "
             f"{len({r.category for r in p.rules})} categories (`{p.config.rules}`)",
             f"- pairs rated on every rule: {len(p.pairs)}; new pairs labeled through the "
             f"adapter: {len(p.new_pairs)}"]
    if rate:
        judge = rate.get("judge", {})
        lines += [f"- judge: `{judge.get('model', '?')}` ({judge.get('dtype', '?')}, template "
                  f"{judge.get('template', '?')}, normalize {judge.get('normalize', '?')}), "
                  f"fingerprint `{rate.get('judge_fingerprint', '?')}`",
                  f"- ratings: {rate['ratings']} in the store; {rate['responses_rated_now']} "
                  f"responses x {rate['rules']} rules rated in this run "
                  f"({rate['ratings_before']} were there before it)"]
        if rate.get("responses_cut"):
            lines.append(f"- {rate['responses_cut']} responses were longer than the judge's "
                         f"{judge.get('max_length')}-token context (the longest "
                         f"{rate['longest_cut']} tokens) and were read cut in the middle")
    times = [(step, (p.record(step) or {}).get("seconds")) for step in
             ("rate", "select", "adapter-train", "adapter-apply", "label", "rm-train", "eval")]
    lines += ["", "| step | seconds |", "| --- | ---: |"]
    lines += [f"| {step} | {secs:.1f} |" for step, secs in times if secs is not None]
    return "\n".join(lines), []


def _selection(p, plots_dir):
    rec = p.record("select")
    if not rec:
        return "", []
    from ramo.io import load_selections
    from ramo.ratings import read_ratings

    k = rec["settings"]["k"]
    lines = ["## Selection (max-discrepancy, all rules rated)", "",
             f"k = {k}, relevance: {rec['settings']['relevance']}, criterion = "
             f"{rec['settings']['discrepancy_weight']} x |s(A) - s(B)| + "
             f"{rec['settings']['relevance_weight']} x relevance", "",
             f"- A better: {rec['a_better']}, B better: {rec['b_better']}, ties: {rec['ties']}"]
    agreement = rec.get("label_agreement")
    if agreement:
        lines.append(f"- agreement with the data's own (human-written) preference: "
                     f"{agreement['agree']} / {agreement['n']} = {100 * agreement['rate']:.1f}% "
                     "(ties count as disagreement)")
        if agreement["rate"] < 0.6:
            lines.append("- that is close to chance: this judge's rule scores carry little "
                         "signal on these pairs, so the labels, and a reward model trained on "
                         "them, cannot be better than a coin; rate with a stronger judge")
    selections = load_selections(p.path("selections.jsonl"))
    category = {r.id: r.category or "(none)" for r in p.rules}
    counts = Counter(category[rid] for s in selections for rid in s.rule_ids)
    top = Counter(rid for s in selections for rid in s.rule_ids).most_common(5)
    text = {r.id: r.text for r in p.rules}
    lines += ["", "Most often selected rules:", ""]
    lines += [f"- `{rid}` ({n} pairs): {text[rid]}" for rid, n in top]
    plots = [_bar_plot(plots_dir / "rule_frequency.png", PLOTS["rule_frequency"],
                       counts.most_common(), "times selected")]
    scores = read_ratings(p.path("ratings.sqlite"), p.pairs, p.rules).score
    gap = (scores[:, 0] - scores[:, 1]).abs()
    index = {r.id: j for j, r in enumerate(p.rules)}
    chosen = [float(gap[n, index[rid]]) for n, s in enumerate(selections) for rid in s.rule_ids]
    plots.append(_histogram(plots_dir / "discrepancy.png", PLOTS["discrepancy"],
                            {"all (pair, rule)": gap.flatten().tolist(), "selected": chosen}))
    lines += ["", f"![{PLOTS['rule_frequency']}](plots/rule_frequency.png)",
              f"![{PLOTS['discrepancy']}](plots/discrepancy.png)"]
    return "\n".join(lines), plots


def _selection_study(p, plots_dir):
    """The selection strategies against the rated pairs' own labels (when they have any),
    beside the same study on a synthetic set whose judge has signal, for scale."""
    if not p.record("select"):
        return "", []
    from ramo.study import (KS, labeled_ratings, selection_study, study_markdown, study_plot,
                            synthetic_set)

    labeled = [x for x in p.pairs if x.label is not None]
    if not labeled:
        return "", []
    scores, relevance, labels, _ = labeled_ratings(labeled, p.rules, p.path("ratings.sqlite"))
    # The run's own k is studied too, so that the verdict below has its row whatever the
    # pool's size (the study caps every k at the pool's R rules, as select.k is).
    k = min(p.record("select")["settings"]["k"], len(p.rules))
    rows = selection_study(scores, labels, relevance, ks=sorted({*KS, k}))
    synthetic = synthetic_set(noise=0.15)
    synthetic_rows = selection_study(synthetic.scores, synthetic.labels, synthetic.relevance)
    plots = [study_plot(plots_dir / "selection_study.png", rows, PLOTS["selection_study"]),
             study_plot(plots_dir / "selection_study_synthetic.png", synthetic_rows,
                        PLOTS["selection_study_synthetic"])]
    method = next(r for r in rows if r.strategy == "max-discrepancy + relevance" and r.k == k)
    verdict = ("above chance" if method.low > 0.5 else
               "not distinguishable from chance (its 95% interval includes 50%)")
    lines = ["## Selection study", "",
             f"Each strategy picks k rules per pair and labels the pair by the summed score "
             f"difference over them; the table gives the agreement of that label with the "
             f"{len(labeled)} rated pairs' own labels, in percent [95% bootstrap interval] "
             f"(`ramo study selection`). At k = {k} (select.k) the method's labels are "
             f"{100 * method.agreement:.1f}% [{100 * method.low:.1f}, {100 * method.high:.1f}]: "
             f"{verdict}.", "", study_markdown(rows),
             f"![{PLOTS['selection_study']}](plots/selection_study.png)", "",
             "For scale, the same study on 2,000 synthetic pairs that one to three rules decide, "
             "rated by a judge with signal (noise 0.15 on scores in [-1, 1]); there the method "
             f"is the best strategy at k = {', '.join(map(str, _method_leads(synthetic_rows)))}:",
             "", study_markdown(synthetic_rows),
             f"![{PLOTS['selection_study_synthetic']}](plots/selection_study_synthetic.png)"]
    return "\n".join(lines), plots


def _method_leads(rows) -> list[int]:
    """The k at which the method's agreement is the highest of all strategies."""
    best = {}
    for row in rows:
        if row.k not in best or row.agreement > best[row.k].agreement:
            best[row.k] = row
    return [k for k, row in sorted(best.items()) if row.strategy == "max-discrepancy + relevance"]


def _adapter(p, plots_dir):
    rec = p.record("adapter-train")
    if not rec:
        return "", []
    from ramo.adapter import metrics_markdown

    lines = ["## Rule Adapter", "", f"- trained on {rec['train_pairs']} pairs "
             f"(backbone `{rec['settings']['backbone']}`, {rec['settings']['epochs']} epochs); "
             f"held out: {rec['heldout_pairs']} pairs"]
    plots = []
    if "metrics" in rec:
        lines += ["", metrics_markdown(rec["metrics"])]
        rows = _metric_rows(rec["metrics"])
        if rows:
            plots.append(_grouped_bars(plots_dir / "adapter_metrics.png", PLOTS["adapter_metrics"], rows))
            lines += ["", f"![{PLOTS['adapter_metrics']}](plots/adapter_metrics.png)"]
    applied = p.record("adapter-apply")
    if applied:
        needed = applied["judge_calls"] + applied.get("reused", 0)
        lines += ["", f"Applied to {applied['pairs']} new pairs: {needed} judge ratings "
                  f"({applied['judge_calls']} made in this run) instead of "
                  f"{applied['judge_calls_full']} for every rule "
                  f"({applied['judge_calls_full'] / max(1, needed):.0f}x fewer); "
                  f"A better {applied['a_better']}, B better {applied['b_better']}, "
                  f"ties {applied['ties']}."]
        if applied.get("label_agreement"):
            a = applied["label_agreement"]
            lines.append(f"Agreement of those labels with the data's own preference: "
                         f"{a['agree']} / {a['n']} = {100 * a['rate']:.1f}%.")
    return "\n".join(lines), plots


def _labels(p, plots_dir):
    rec = p.record("label")
    if not rec:
        return "", []
    return ("## Labels\n\n"
            f"{rec['labeled']} labeled pairs in `labeled.jsonl` (TRL format); "
            f"{rec['ties_dropped']} ties dropped; {rec['unselected']} pairs without a selection."), []


def _reward_model(p, plots_dir):
    rec = p.record("rm-train")
    if not rec:
        return "", []
    history = rec.get("loss_history") or []
    lines = ["## Reward model", "", f"- backbone `{rec['settings']['model']}`, "
             f"{rec['settings']['epochs']} epoch(s), learning rate {rec['settings']['learning_rate']}, "
             f"{rec['settings']['batch_size']} pairs per step; saved to `rm/`"]
    plots = []
    if history:
        steps = [h["step"] for h in history]
        losses = [h["loss"] for h in history]
        lines.append(f"- loss: {losses[0]:.4f} at step {steps[0]} -> {losses[-1]:.4f} at step {steps[-1]}")
        plots.append(_line_plot(plots_dir / "rm_loss.png", PLOTS["rm_loss"], steps, losses))
        lines += ["", f"![{PLOTS['rm_loss']}](plots/rm_loss.png)"]
    return "\n".join(lines), plots


def _evaluation(p, plots_dir):
    rec = p.record("eval")
    if not rec:
        return "", []
    from ramo.evaluation import to_markdown

    result = rec["result"]
    lines = ["## Evaluation", "", f"Evaluation set: `{p.config.eval}`", "", to_markdown(result)]
    series = {"RM on the judge's labels": {s: v["accuracy"]
                                           for s, v in result["subsets"].items()}}
    if rec.get("baseline"):
        base = rec["baseline"]
        series["untrained backbone"] = {s: v["accuracy"] for s, v in base["subsets"].items()}
        lines += ["", "The untrained backbone (same architecture, freshly initialised score "
                  "head) on the same set, for scale:", "", to_markdown(base)]
    if rec.get("human_labels"):
        human = rec["human_labels"]
        series["RM on the pairs' own labels"] = {s: v["accuracy"]
                                                 for s, v in human["subsets"].items()}
        lines += ["", f"The same reward model trained the same way on the {human['pairs']} "
                  "pairs' own (human-written) labels instead of the judge's, for scale: what "
                  "the labels would give if the judge agreed with them:", "",
                  to_markdown(human)]
    plots = [_grouped_bars(plots_dir / "eval_accuracy.png", PLOTS["eval_accuracy"], series,
                           ylabel="accuracy", chance=0.5)]
    lines += ["", f"![{PLOTS['eval_accuracy']}](plots/eval_accuracy.png)"]
    return "\n".join(lines), plots


def _metric_rows(metrics: dict) -> dict[str, dict[str, float]]:
    """{metric: {row name: value}} for the plot: each metric a group, each row a bar."""
    series: dict[str, dict[str, float]] = {}
    for row in metrics.get("rows", []):
        values = {m: float(v) for m, v in row.items()
                  if m != "name" and isinstance(v, (int, float)) and not isinstance(v, bool)}
        if values:
            series[row["name"]] = values
    return series


# ---- plots ------------------------------------------------------------------------------------

def _bar_plot(path, title, items, xlabel):
    labels = [name for name, _ in items][::-1]
    values = [value for _, value in items][::-1]
    fig, ax = pyplot().subplots(figsize=(7, 0.3 * len(items) + 1.2))
    ax.barh(labels, values, color="#4c72b0")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return save_figure(fig, path)


def _histogram(path, title, series: dict[str, list[float]]):
    fig, ax = pyplot().subplots(figsize=(7, 4))
    # The range follows the data: a weak judge's discrepancies can all lie below 0.05, and
    # on the full [0, 2] they would be one bar.
    top = max((v for values in series.values() for v in values), default=0.0) or 1.0
    for name, values in series.items():
        ax.hist(values, bins=40, range=(0, top), alpha=0.55, density=True,
                label=f"{name} (n={len(values)})")
    ax.set_xlabel("|s(A) - s(B)|")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend()
    return save_figure(fig, path)


def _line_plot(path, title, xs, ys):
    fig, ax = pyplot().subplots(figsize=(7, 4))
    ax.plot(xs, ys, marker=".", color="#c44e52")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("Bradley-Terry loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def _grouped_bars(path, title, series: dict[str, dict[str, float]], ylabel="", chance=None):
    groups = list(dict.fromkeys(g for values in series.values() for g in values))
    width = 0.8 / max(1, len(series))
    fig, ax = pyplot().subplots(figsize=(max(6, 1.1 * len(groups) + 2), 4.2))
    for i, (name, values) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(groups))]
        ax.bar(xs, [values.get(g, 0.0) for g in groups], width, label=name)
    if chance is not None:
        ax.axhline(chance, color="gray", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
