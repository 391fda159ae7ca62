"""Study: how much signal each offline judge's rule scores carry about human safety preferences.

Data: a seeded sample of the pairs of --data, Anthropic's HH-RLHF harmless-base test split
(JSONL, gzip; default: benchmarks/common.py's hh_rlhf_path()), from pair 1,500 on (the pairs
the reward-model study holds out), response sides swapped at random so that "A is better" is
no answer; the first half is the dev split (to choose a calibration on), the second half the
test split (the bar). Also ramo's demo pairs, with the default judge's shipped ratings, where
given (--demo-run).

For each judge (rated here with `ramo.rate.rate` into --work, resumably) and each score
calibration (ramo.study.CALIBRATIONS), on each split: single-rule agreement (mean and best
over the 100 rules), the all-rule label's agreement, and at k = 5 the method's label
(max-discrepancy + relevance) against k random rules, each with a 95% bootstrap interval.
Ratings per second are measured in the same run on --speed-pairs fresh pairs.

    python benchmarks/study_judges.py --work /tmp/judges --rate [--judge smollm2] \
        [--judge gemma3-270m=/path] [--judge gemma-few-shot=/path@few-shot]

A judge is `smollm2` (ramo's default) or `name=folder[@template]` (any causal LM folder, or
"default" for the default judge's weights; a ramo template such as few-shot; the answer
"Irrelevant" is read from the first token of either spelling, as for the default judge).
Output: benchmarks/results/judges_cpu.{json,md}. Skips (exit 0) when the data file is not
there.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402


def sample_pairs(data: Path, count: int, seed: int):
    """`count` pairs from the held-out part (pair 1,500 on), shuffled, sides swapped at random."""
    import dataclasses

    from ramo.io import load_pairs

    pool = [p for p in load_pairs(data, allow_empty_responses=True)[1500:]
            if p.response_a.strip() and p.response_b.strip()]
    rng = random.Random(seed)
    rng.shuffle(pool)
    out = []
    for p in pool[:count]:
        swap = rng.random() < 0.5
        out.append(dataclasses.replace(
            p, id=f"hh{p.id}", label=1 if swap else 0,
            response_a=p.response_b if swap else p.response_a,
            response_b=p.response_a if swap else p.response_b))
    return out


def load_judge(spec: str):
    """(name, RuleJudge) from "smollm2" (ramo's default judge) or "name=folder[@template]"
    (folder "default": the default judge's weights; template: a ramo template name)."""
    from transformers import AutoTokenizer

    from ramo.steps import load_judge as load

    name, _, rest = spec.partition("=")
    folder, _, template = rest.partition("@")
    settings = {"model": folder or "default", "template": template or "rule-last"}
    if not folder:
        if name != "smollm2":
            raise SystemExit(f"unknown judge {name!r}: give name=folder")
        return name, load(settings)
    if folder == "default":
        return name, load(settings)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    irrelevant = sorted({tokenizer(w, add_special_tokens=False)["input_ids"][0]
                         for w in ("Irrelevant", " Irrelevant")})
    return name, load(settings, answer_ids={"irrelevant": irrelevant})


def ratings_per_second(judge, pairs, rules) -> float:
    """Ratings per second of `ramo.rate.rate` on these pairs, from an empty store."""
    from ramo.rate import open_store, rate

    with tempfile.TemporaryDirectory() as scratch:
        with open_store(Path(scratch) / "speed.sqlite", judge) as store:
            start = time.perf_counter()
            rate(judge, pairs, rules, store, progress=False)
            seconds = time.perf_counter() - start
    return 2 * len(pairs) * len(rules) / seconds


def measure(ratings, labels, samples: int, seed: int) -> dict:
    """Every calibration's numbers on one split."""
    from ramo.study import CALIBRATIONS, calibrated, judge_agreement, selection_study

    out = {}
    for calibration in CALIBRATIONS:
        scores = calibrated(ratings, calibration)
        row = judge_agreement(scores, labels, samples=samples, seed=seed)
        if calibration == "response-centered":  # the all-rule sum is 0 on both sides
            row.update(all_rules=None, all_rules_low=None, all_rules_high=None)
        for study in selection_study(scores, labels, ratings.pair_relevance(), ks=(5,),
                                     strategies=("max-discrepancy + relevance", "random"),
                                     samples=samples, seed=seed):
            key = "method_k5" if study.strategy != "random" else "random_k5"
            row.update({key: study.agreement, f"{key}_low": study.low,
                        f"{key}_high": study.high})
        out[calibration] = row
    return out


def _cell(row: dict, key: str) -> str:
    if row.get(key) is None:
        return "—"
    return f"{100 * row[key]:.1f} [{100 * row[key + '_low']:.1f}, {100 * row[key + '_high']:.1f}]"


def markdown(results: dict, command: str, settings: dict) -> str:
    lines = ["# Judges: agreement of rule labels with human safety preferences (CPU)", "",
             f"`{command}`", "", "Settings: " + ", ".join(f"{k} {v}" for k, v in settings.items()),
             "", "Agreement in percent [95% bootstrap interval]; a tie is a disagreement. "
             "single rule: the mean (and best) over the 100 rules of one rule's label. "
             "method k = 5: max-discrepancy + relevance; random k = 5: the mean of 20 draws.",
             ""]
    for judge, entry in results.items():
        lines += [f"## {judge}", "", f"- ratings per second (`ramo rate`, "
                  f"{settings['speed_pairs']} pairs x 2 x 100 rules, from an empty store): "
                  f"{entry['ratings_per_s']:.1f}", ""]
        for split, by_calibration in entry["splits"].items():
            n = next(iter(by_calibration.values()))["pairs"]
            lines += [f"### {split} ({n} pairs)", "",
                      "| calibration | single rule: mean (best) | all rules | method k = 5 | "
                      "random k = 5 |", "| --- | ---: | ---: | ---: | ---: |"]
            for calibration, row in by_calibration.items():
                lines.append(
                    f"| {calibration} | {100 * row['single_rule_mean']:.1f} "
                    f"({100 * row['single_rule_best']:.1f}) | {_cell(row, 'all_rules')} | "
                    f"{_cell(row, 'method_k5')} | {_cell(row, 'random_k5')} |")
            lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, type=Path, help="folder for the ratings stores")
    parser.add_argument("--judge", action="append", default=None,
                        help="smollm2, or name=folder (repeatable; default: smollm2)")
    parser.add_argument("--pairs", type=int, default=200, help="HH-RLHF pairs, half dev, half test")
    parser.add_argument("--demo-run", type=Path, default=None,
                        help="a `ramo demo` folder: its pairs and ratings as one more split "
                        "(the default judge's)")
    parser.add_argument("--speed-pairs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", action="store_true",
                        help="rate what the stores lack (else: study the completed pairs)")
    common.add_hh_rlhf_flag(parser)
    args = parser.parse_args()
    command = common.command_line(__file__)
    if common.skip_without_hh_rlhf(args.data):
        return 0

    import torch

    from ramo.io import load_pairs, load_rules
    from ramo.io.atomic import write_json, write_text
    from ramo.rate import open_store, rate
    from ramo.ratings import RatingStore, read_ratings

    rules = load_rules("default")
    rule_ids = [r.id for r in rules]
    pairs = sample_pairs(args.data, args.pairs, args.seed)
    splits = {"HH-RLHF dev": pairs[:len(pairs) // 2], "HH-RLHF test": pairs[len(pairs) // 2:]}
    args.work.mkdir(parents=True, exist_ok=True)
    results = {}
    for spec in args.judge or ["smollm2"]:
        name, judge = load_judge(spec)
        store_path = args.work / f"{name}.sqlite"
        if args.rate:
            with open_store(store_path, judge) as store:
                rate(judge, pairs, rules, store)
        with RatingStore.open_existing(store_path) as store:
            done = store.completed_pairs(rule_ids)
        entry = {"judge": judge.describe(), "fingerprint": judge.fingerprint(),
                 "ratings_per_s": ratings_per_second(judge, pairs[-args.speed_pairs:], rules),
                 "splits": {}}
        for split, members in splits.items():
            members = [p for p in members if p.id in done]
            if not members:
                continue
            ratings = read_ratings(store_path, members, rules)
            labels = torch.tensor([p.label for p in members])
            entry["splits"][split] = measure(ratings, labels, args.samples, args.seed)
        if args.demo_run is not None and name == "smollm2":
            demo = [p for p in load_pairs(args.demo_run / "data" / "pairs.jsonl")
                    if p.label is not None]
            ratings = read_ratings(args.demo_run / "ratings.sqlite", demo, rules)
            entry["splits"]["ramo demo pairs"] = measure(
                ratings, torch.tensor([p.label for p in demo]), args.samples, args.seed)
        results[name] = entry
        print(json.dumps({name: {s: v["none"] for s, v in entry["splits"].items()}}, indent=1))
    settings = {"pairs": args.pairs, "seed": args.seed, "samples": args.samples,
                "speed_pairs": args.speed_pairs, "threads": torch.get_num_threads(),
                "torch": torch.__version__, "machine": common.describe_machine()}
    out = common.RESULTS
    write_json(out / "judges_cpu.json", {"command": command, "settings": settings,
                                         "results": results})
    write_text(out / "judges_cpu.md", markdown(results, command, settings))
    print(f"wrote {out / 'judges_cpu.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
