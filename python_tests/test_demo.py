"""The demo's shipped data and seed ratings, and how `ramo demo` decides to use the seed.

(The demo itself runs the real default judge and MiniLM for minutes: it is run by hand and
in the README's main command, not here. The pipeline it drives is tested end to end on tiny
models in test_pipeline.py.)"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from types import SimpleNamespace

import pytest

from ramo import demo
from ramo.evaluation import load_eval_pairs
from ramo.io import load_pairs, load_rules, rules_fingerprint


def test_demo_pairs_cover_the_pool_categories():
    pairs = load_pairs(demo.DATA / "pairs.jsonl")
    assert len(pairs) == 200 and all(p.label == 0 for p in pairs)
    categories = Counter(p.extra["category"] for p in pairs)
    assert set(categories) == {r.category for r in load_rules("default")}
    assert min(categories.values()) >= 10


def test_demo_eval_set_is_rewardbench_safety():
    pairs = load_eval_pairs(demo.DATA / "eval.jsonl")
    assert Counter(p.extra["subset"] for p in pairs) == {
        "refusals-dangerous": 20, "refusals-offensive": 20, "xstest-should-refuse": 20,
        "xstest-should-respond": 25, "donotanswer": 15}
    train_prompts = {p.prompt for p in load_pairs(demo.DATA / "pairs.jsonl")}
    assert not train_prompts & {p.prompt for p in pairs}


def test_split_is_three_rated_to_one_new():
    rated, new = demo.split([f"line {i}" for i in range(8)])
    assert rated == ["line 0", "line 1", "line 2", "line 4", "line 5", "line 6"]
    assert new == ["line 3", "line 7"]


@pytest.mark.skipif(not demo.SEED_META.is_file(), reason="no shipped seed ratings")
def test_seed_is_for_the_shipped_pairs_and_pool(tmp_path):
    """Editing pairs.jsonl or the default pool without regenerating the seed fails here."""
    meta = json.loads(demo.SEED_META.read_text())
    pipeline = demo.prepare(tmp_path / "demo")
    assert meta["pairs_fingerprint"] == demo.pairs_digest(pipeline.pairs)
    assert meta["rules_fingerprint"] == rules_fingerprint(load_rules("default"))
    with gzip.open(demo.SEED_ROWS, "rt") as f:
        rows = [json.loads(line) for line in f]
    assert len(rows) == meta["ratings"] == len(pipeline.pairs) * 2 * 100
    assert {r["pair_id"] for r in rows} == {p.id for p in pipeline.pairs}


def test_seed_is_refused_for_another_judge(tmp_path):
    pipeline = demo.prepare(tmp_path / "demo")
    if not demo.SEED_META.is_file():
        pytest.skip("no shipped seed ratings")
    judge = SimpleNamespace(fingerprint=lambda: "0" * 16, template_fingerprint=lambda: "1" * 16)
    pipeline._judge = judge
    said = []
    assert demo.seed(pipeline, log=said.append) is False
    assert "not for this judge, template" in said[0]
    assert not (tmp_path / "demo" / "ratings.sqlite").exists()


def test_prepare_writes_a_config_the_pipeline_reads(tmp_path):
    from ramo.pipeline import Config

    out = tmp_path / "demo"
    demo.prepare(out)
    config = Config.from_file(out / "config.yaml")
    assert config.run_dir == out.resolve()
    assert len(load_pairs(config.pairs)) == 150 and len(load_pairs(config.new_pairs)) == 50
    assert config.select["k"] == 5 and config.rm["model"] == "default"


@pytest.mark.parametrize("live", [False, True])
def test_export_seed_alone_exports_and_with_live_ratings_runs_first(tmp_path, monkeypatch, live):
    from ramo.cli import main

    calls = []
    monkeypatch.setattr(demo, "run_demo", lambda out, **kw: calls.append(("run", kw)) or "run")
    monkeypatch.setattr(demo, "prepare", lambda out: "prepared")
    monkeypatch.setattr(demo, "export_seed", lambda p, folder: calls.append(("export", p)))
    argv = ["demo", "--out", str(tmp_path / "d"), "--export-seed", str(tmp_path / "seed")]
    if not live:  # alone, it needs an earlier run's store, checked before anything is written
        assert main(argv) == 2 and not (tmp_path / "d").exists() and calls == []
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "ratings.sqlite").touch()
    assert main(argv + (["--live-ratings"] if live else [])) == 0
    if live:  # the run, then its ratings exported
        assert [c[0] for c in calls] == ["run", "export"] and calls[1][1] == "run"
        assert calls[0][1]["live_ratings"] is True
    else:  # an earlier run's ratings, nothing run
        assert calls == [("export", "prepared")]


def test_a_folder_that_took_the_shipped_ratings_is_neither_rated_live_nor_exported(
        tmp_path, monkeypatch, capsys):
    from ramo.cli import main
    from ramo.pipeline import Pipeline

    out = tmp_path / "demo"
    demo.prepare(out)
    (out / demo.SEEDED).write_text(demo.SEED_ROWS.name + "\n")  # as seed() leaves it
    (out / "ratings.sqlite").touch()
    monkeypatch.setattr(Pipeline, "run", lambda self, *a, **k: pytest.fail("the demo ran"))
    for extra in (["--live-ratings"], ["--export-seed", str(tmp_path / "seed")],
                  ["--live-ratings", "--export-seed", str(tmp_path / "seed")]):
        assert main(["demo", "--out", str(out), "--no-progress", *extra]) == 2
        err = capsys.readouterr().err
        assert "started from the shipped ratings (ratings.seeded): rate live into a new --out" \
            in err, err
    assert not (tmp_path / "seed").exists()
