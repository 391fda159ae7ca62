"""`ramo study selection`: which rule-selection strategy labels pairs as the humans did."""

from __future__ import annotations

import argparse
from pathlib import Path

from ramo.cli._common import PAIRS_HELP, finite_number, positive


def _numbers(text: str, kind=int) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}")
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def _noise(text: str) -> float:
    value = finite_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"a noise level must be >= 0, got {text}")
    return value


def _ks(given: list[int] | None, pool: int) -> list[int]:
    """The k values to study over a pool of `pool` rules: those given, each checked to be in
    1..pool; by default ramo's, those above the pool cut to it (each once)."""
    from ramo.study import KS

    if given is None:
        return sorted({min(k, pool) for k in KS})
    bad = [k for k in given if not 1 <= k <= pool]
    if bad:
        raise ValueError(f"-k {','.join(map(str, bad))}: k must be from 1 to the pool's {pool} "
                         "rules")
    return given


def selection_arguments(parser: argparse.ArgumentParser) -> None:
    from ramo.study import CALIBRATIONS, KS, selection_study, synthetic_set
    from ramo.steps import defaults

    d, s = defaults(selection_study), defaults(synthetic_set)
    parser.add_argument("--out", required=True, type=Path,
                        help="folder for selection_study.md, selection_study.json and one plot "
                        "per set, selection_study_0.png, selection_study_1.png, ... (with "
                        "--synthetic: one set per --noise level)")
    parser.add_argument("--pairs", type=Path, default=None,
                        help="labeled " + PAIRS_HELP + " (label 0: A better, 1: B better; "
                        "chosen/rejected rows are labeled); pairs without a label are left out")
    parser.add_argument("--rules", default=None, help="the rule pool they were rated on")
    parser.add_argument("--ratings", type=Path, default=None,
                        help="ratings store with every pair rated on every rule (`ramo rate`)")
    parser.add_argument("--calibration", default="none", choices=CALIBRATIONS,
                        help="transform of the judge's scores before selection (default none)")
    parser.add_argument("--synthetic", action="store_true",
                        help="instead of real pairs: synthetic sets with a known truth, one "
                        "per --noise")
    parser.add_argument("--noise", type=lambda t: _numbers(t, _noise), default=[0.05, 0.15, 0.30],
                        help="with --synthetic: the judge noise levels (default 0.05,0.15,0.30)")
    parser.add_argument("--synthetic-pairs", type=positive, default=s["n_pairs"],
                        help=f"with --synthetic: pairs per set (default {s['n_pairs']}, over a "
                        f"pool of {s['n_rules']} rules)")
    parser.add_argument("-k", "--k", type=_numbers, default=None,
                        help="rules per pair, comma-separated, each from 1 to the pool's size "
                        f"(default {','.join(map(str, KS))}, those above the pool's size cut "
                        "to it)")
    parser.add_argument("--samples", type=positive, default=d["samples"],
                        help=f"bootstrap resamples for the 95%% intervals (default {d['samples']})")
    parser.add_argument("--random-draws", type=positive, default=d["random_draws"],
                        help=f"draws averaged for random k (default {d['random_draws']})")
    parser.add_argument("--seed", type=int, default=d["seed"],
                        help="seed of the synthetic sets, the random rules and the bootstrap "
                        "(default %(default)s)")


def selection(args: argparse.Namespace) -> int:
    """Which rule-selection strategy labels pairs as the humans did.

    For k rules per pair (default 1, 3, 5, 10, 20), each strategy selects k rules per pair and
    labels it by the summed score difference over them: max-discrepancy + relevance (the
    method), max-discrepancy alone, relevance alone, k random rules, and all R rules. The
    table gives each label's agreement with the pairs' own labels (a tie is a disagreement)
    with a 95% bootstrap interval over the pairs; the plot shows the same against k.

    On real data it reads a ratings store with every pair rated on every rule. With
    --synthetic it draws sets whose truth is known (a few deciding rules per pair, judge noise
    --noise): under those assumptions the method's ordering must appear, which checks the
    machinery, not the method.
    """
    from ramo.io import load_pairs, load_rules
    from ramo.io.atomic import write_json, write_text
    from ramo.study import STRATEGIES, labeled_ratings, selection_study, study_markdown
    from ramo.steps import defaults
    from ramo.study import study_plot, synthetic_set

    options = {"samples": args.samples, "random_draws": args.random_draws, "seed": args.seed}
    if args.synthetic:
        options["ks"] = _ks(args.k, defaults(synthetic_set)["n_rules"])
        sets = {f"synthetic, noise {noise}": synthetic_set(
            args.synthetic_pairs, noise=noise, seed=args.seed) for noise in args.noise}
        studies = {name: (selection_study(s.scores, s.labels, s.relevance, **options),
                          {"pairs": args.synthetic_pairs, "noise": noise})
                   for (name, s), noise in zip(sets.items(), args.noise)}
    else:
        missing = [flag for flag, value in (("--pairs", args.pairs), ("--rules", args.rules),
                                            ("--ratings", args.ratings)) if value is None]
        if missing:
            raise ValueError(f"{', '.join(missing)} needed (or --synthetic)")
        pairs, rules = load_pairs(args.pairs), load_rules(args.rules)
        options["ks"] = _ks(args.k, len(rules))
        scores, relevance, labels, skipped = labeled_ratings(pairs, rules, args.ratings,
                                                             args.calibration)
        name = f"{args.pairs.name}, calibration {args.calibration}"
        # Response-centered scores sum to 0 over the pool on each side: no all-rules label.
        strategies = [s for s in STRATEGIES
                      if not (s == "all rules" and args.calibration == "response-centered")]
        studies = {name: (selection_study(scores, labels, relevance, strategies=strategies,
                                          **options),
                          {"pairs": int(labels.numel()), "unlabeled_left_out": skipped,
                           "rules": len(rules), "calibration": args.calibration})}
    sections, record = [], []
    for index, (name, (rows, about)) in enumerate(studies.items()):
        table = study_markdown(rows)
        print(f"{name} ({about['pairs']} pairs): agreement with the labels, % [95% interval]")
        print(table)
        plot = args.out / f"selection_study_{index}.png"
        study_plot(plot, rows, name)
        sections.append(f"## {name}\n\n{about['pairs']} pairs; agreement with the labels in "
                        f"percent, [95% bootstrap interval]\n\n{table}\n![{name}]({plot.name})\n")
        record.append({"name": name, **about, "rows": [row.__dict__ for row in rows]})
    write_text(args.out / "selection_study.md", "# Selection study\n\n" + "\n".join(sections))
    write_json(args.out / "selection_study.json", {"settings": options, "studies": record})
    print(f"wrote {args.out / 'selection_study.md'} and its plots")
    return 0
