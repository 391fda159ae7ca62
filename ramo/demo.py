"""The demo (`ramo demo`): the whole method on the embedded defaults, ending in a report with
plots.

Data: ramo's 200 demo safety pairs (ramo/data/demo/pairs.jsonl, written for this project):
three in four are rated on all 100 rules of the default pool; every fourth pair plays a new
pair, labeled through the Rule Adapter with k rules per side. The reward model is evaluated
on ramo's separate 100-pair evaluation set in RewardBench schema (eval.jsonl). Models: the
default judge (SmolLM2-135M-Instruct) and MiniLM-L6 as Rule Adapter and reward-model
backbones, all installed offline from PyPI.

Rating 150 pairs x 2 sides x 100 rules is 30,000 judge ratings: about 25 minutes on 2 CPU
cores. So the demo starts from the ratings that the default judge gave these pairs, shipped
with ramo (ratings.jsonl.gz), but only when the judge loaded here has the same fingerprint
and the pairs the same text; otherwise, or with --live-ratings, it rates them itself. The
adapter step always runs the judge live on the new pairs.

DIR ends up holding report.md, plots/, the Rule Adapter (adapter/), the reward model (rm/,
in save_pretrained form) and every intermediate file; `ramo pipeline --config DIR/config.yaml`
reruns or resumes it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

DATA = Path(__file__).parent / "data" / "demo"
SEED_ROWS = DATA / "ratings.jsonl.gz"
SEED_META = DATA / "ratings.meta.json"
# In a run folder whose store took the shipped ratings: its ratings are not a live run's.
SEEDED = "ratings.seeded"

# Sized to finish in under 10 minutes on 2 CPU cores (see the README for the measurement).
SETTINGS = {
    "select": {"k": 5, "relevance": "judge"},
    "adapter": {"epochs": 6, "learning_rate": 1.0e-4, "batch_size": 16, "max_length": 160,
                "holdout": 0.2, "seed": 0},
    "rm": {"epochs": 2, "learning_rate": 5.0e-5, "batch_size": 8, "max_length": 128, "seed": 0},
    "evaluation": {"batch_size": 32, "max_length": 128, "baseline": True, "human_labels": True},
}


def split(lines: list[str]) -> tuple[list[str], list[str]]:
    """(rated, new): every fourth pair is a new one."""
    return ([line for i, line in enumerate(lines) if i % 4 != 3],
            [line for i, line in enumerate(lines) if i % 4 == 3])


def pairs_digest(pairs) -> str:
    """sha256 of the pairs' ids and texts: ratings are keyed by id, so a seed must be for
    exactly these texts."""
    h = hashlib.sha256()
    for p in pairs:
        h.update(json.dumps([p.id, p.prompt, p.response_a, p.response_b]).encode())
    return h.hexdigest()


def prepare(out: Path):
    """Writes DIR/data/*.jsonl and DIR/config.yaml; returns the pipeline."""
    import yaml

    from ramo.io.atomic import write_text
    from ramo.pipeline import Config, Pipeline

    lines = (DATA / "pairs.jsonl").read_text(encoding="utf-8").splitlines()
    rated, new = split(lines)
    for name, rows in (("pairs.jsonl", rated), ("new_pairs.jsonl", new)):
        write_text(out / "data" / name, "".join(line + "\n" for line in rows))
    write_text(out / "data" / "eval.jsonl", (DATA / "eval.jsonl").read_text(encoding="utf-8"))
    raw = {"run_dir": ".", "rules": "default", "pairs": "data/pairs.jsonl",
           "new_pairs": "data/new_pairs.jsonl", "eval": "data/eval.jsonl", **SETTINGS}
    write_text(out / "config.yaml", "# written by `ramo demo`\n" + yaml.safe_dump(raw, sort_keys=False))
    return Pipeline(Config.from_dict(raw, out.resolve(), where=str(out / "config.yaml")))


def seed(pipeline, log=print) -> bool:
    """Puts the shipped ratings into the run's store when they are this judge's ratings of
    these pairs; says why not otherwise."""
    from ramo.io import rules_fingerprint
    from ramo.io._problems import Problems
    from ramo.io.atomic import write_text
    from ramo.io.jsonl import read_jsonl
    from ramo.rate import bind, open_store
    from ramo.ratings import rule_rows

    if not (SEED_META.is_file() and SEED_ROWS.is_file()):
        log("[demo] no shipped ratings in this installation: rating live (about 25 minutes "
            "on 2 CPU cores)")
        return False
    meta = json.loads(SEED_META.read_text(encoding="utf-8"))
    judge = pipeline.judge
    differ = [what for what, here in (
        ("judge", judge.fingerprint()), ("template", judge.template_fingerprint()),
        ("pairs", pairs_digest(pipeline.pairs)), ("rules", rules_fingerprint(pipeline.rules)))
        if meta[f"{what}_fingerprint"] != here]
    if differ:
        log(f"[demo] the shipped ratings are not for this {', '.join(differ)}: rating live "
            "(about 25 minutes on 2 CPU cores)")
        return False
    rows = [row for _, row in read_jsonl(SEED_ROWS, Problems(SEED_ROWS))]
    write_text(pipeline.path(SEEDED), f"{SEED_ROWS.name}\n")  # before any shipped row lands
    with open_store(pipeline.path("ratings.sqlite"), judge) as store:
        bind(store, pipeline.pairs, range(len(pipeline.pairs)))
        store.bind_rules(rule_rows(pipeline.rules))
        added = store.add(rows, skip_existing=True)
    log(f"[demo] {added} ratings taken from the shipped seed ({SEED_ROWS.name}; same judge "
        f"fingerprint {meta['judge_fingerprint']})")
    return True


def export_seed(pipeline, folder: Path) -> None:
    """Writes the run's ratings as the shipped seed (ratings.jsonl.gz + ratings.meta.json);
    refused for a run that took the shipped ratings (they would be exported as new)."""
    from ramo.io import rules_fingerprint
    from ramo.io.atomic import write_json, write_jsonl
    from ramo.ratings import COLUMNS, RatingStore

    check_live(pipeline)
    with RatingStore.open_existing(pipeline.path("ratings.sqlite")) as store:
        rows = store.read()
        meta = {"judge_fingerprint": store.judge_fingerprint,
                "template_fingerprint": store.template_fingerprint,
                "pairs_fingerprint": pairs_digest(pipeline.pairs),
                "rules_fingerprint": rules_fingerprint(pipeline.rules),
                "judge_info": store.judge_info, "template_info": store.template_info,
                "ratings": len(rows)}
    write_jsonl(folder / SEED_ROWS.name, (dict(zip(COLUMNS, row)) for row in rows))
    write_json(folder / SEED_META.name, meta)
    print(f"wrote {len(rows)} ratings to {folder / SEED_ROWS.name}")


def check_live(pipeline) -> None:
    """ValueError when the run's store holds the shipped ratings: what a live rating is asked
    for must not come from them."""
    if pipeline.path(SEEDED).exists():
        raise ValueError(f"{pipeline.dir} started from the shipped ratings "
                         f"({pipeline.path(SEEDED).name}): rate live into a new --out")


def run_demo(out: Path, *, live_ratings: bool = False, progress: bool = True):
    """The demo: writes the data and config into `out`, takes the shipped ratings when they
    fit (unless live_ratings: then a folder that took them is refused), and runs the
    pipeline; returns it."""
    pipeline = prepare(out)
    pipeline.progress = progress
    pipeline.check_inputs()
    if live_ratings:
        check_live(pipeline)
    if not live_ratings and pipeline.record("rate") is None:
        seed(pipeline)
    pipeline.run()
    return pipeline
