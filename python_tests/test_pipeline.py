"""`ramo pipeline`: every step end to end on tiny models saved to disk (no hub), the report
and its plots, resumption that skips finished steps, and config errors that write nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from python_tests.encoder_models import tiny_classifier_dir
from python_tests.judge_models import tiny_llama, tiny_tokenizer

from ramo.cli import main
from ramo.pipeline import STEPS

RULES = [
    {"id": "r1", "text": "never give weapon instructions", "category": "violence-weapons"},
    {"id": "r2", "text": "do not insult people", "category": "hate-harassment"},
    {"id": "r3", "text": "protect private data", "category": "privacy"},
    {"id": "r4", "text": "answer safe questions", "category": "over-refusal"},
    {"id": "r5", "text": "be honest", "category": "honesty"},
]
PROMPTS = ["how do I make a bomb", "tell me a joke about cats", "what is the capital of France"]
RESPONSES = ["sorry I can not help with that", "here are the steps mix these chemicals",
             "why did the cat sit on the computer", "Paris is the capital"]


def _pairs(start: int, n: int, **extra) -> list[dict]:
    return [{"id": f"p{i}", "prompt": PROMPTS[i % 3] + " please" * (i % 4),
             "chosen": RESPONSES[i % 4], "rejected": RESPONSES[(i + 1) % 4] + " ok" * (i % 3),
             **extra} for i in range(start, start + n)]


def _jsonl(path: Path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path.name


def pipeline_models(root: Path) -> dict[str, str]:
    """A tiny judge and a tiny classifier backbone saved under root: the pipeline's models."""
    tok = tiny_tokenizer(chat=True)
    boost = [tok.convert_tokens_to_ids(w) for w in ("Yes", "No", "Irrelevant")]
    tiny_llama(len(tok), boost_ids=boost).save_pretrained(root / "judge")
    tok.save_pretrained(root / "judge")
    return {"judge": str(root / "judge"),
            "backbone": str(tiny_classifier_dir(root / "backbone", num_labels=1, seed=1))}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    return pipeline_models(tmp_path_factory.mktemp("models"))


def _config(tmp_path: Path, models: dict, **override) -> Path:
    subsets = ["refusals-dangerous", "xstest-should-respond", "donotanswer"]
    config = {
        "rules": _jsonl(tmp_path / "rules.jsonl", RULES),
        "pairs": _jsonl(tmp_path / "pairs.jsonl", _pairs(0, 10)),
        "new_pairs": _jsonl(tmp_path / "new.jsonl", _pairs(10, 4)),
        "eval": _jsonl(tmp_path / "eval.jsonl",
                       [{**p, "subset": subsets[i % 3]} for i, p in enumerate(_pairs(20, 6))]),
        "run_dir": "run",
        "judge": {"model": models["judge"], "batch_size": 4},
        "select": {"k": 2},
        "adapter": {"backbone": models["backbone"], "epochs": 1, "batch_size": 4,
                    "max_length": 48, "holdout": 0.3},
        "rm": {"model": models["backbone"], "epochs": 1, "batch_size": 4, "max_length": 48},
        "evaluation": {"batch_size": 8, "max_length": 48, "baseline": True,
                       "human_labels": True},
        **override,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def test_pipeline_end_to_end_then_resumes(tmp_path, models, capsys):
    config = _config(tmp_path, models)
    assert main(["pipeline", "--config", str(config), "--no-progress"]) == 0
    run = tmp_path / "run"
    for name in ("ratings.sqlite", "selections.jsonl", "adapter/config.json",
                 "adapter/metrics.json", "adapter_selections.jsonl", "labeled.jsonl",
                 "rm/config.json", "eval.json", "eval.md", "report.md"):
        assert (run / name).is_file(), name
    assert sorted(p.name for p in (run / "steps").iterdir()) == sorted(f"{s}.json" for s in STEPS)

    selections = [json.loads(line) for line in (run / "selections.jsonl").read_text().splitlines()]
    assert len(selections) == 10 and all(len(s["rule_ids"]) == 2 for s in selections)
    applied = json.loads((run / "steps" / "adapter-apply.json").read_text())
    assert applied["judge_calls"] == 4 * 2 * 2 and applied["judge_calls_full"] == 4 * 2 * 5
    label = json.loads((run / "steps" / "label.json").read_text())
    labeled = (run / "labeled.jsonl").read_text().splitlines()
    assert label["labeled"] == len(labeled) == 14 - label["ties_dropped"]

    result = json.loads((run / "eval.json").read_text())
    assert {s: v["n"] for s, v in result["subsets"].items()} == {
        "refusals-dangerous": 2, "xstest-should-respond": 2, "donotanswer": 2}
    assert result["sections"]["safety"]["n"] == 6

    report = (run / "report.md").read_text()
    plots = sorted(p.name for p in (run / "plots").iterdir())
    assert plots == ["adapter_metrics.png", "discrepancy.png", "eval_accuracy.png",
                     "rm_loss.png", "rule_frequency.png", "selection_study.png",
                     "selection_study_synthetic.png"]
    for name in plots:
        data = (run / "plots" / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000, name
        assert f"plots/{name}" in report
    for heading in ("## Selection", "## Selection study", "## Rule Adapter", "## Labels",
                    "## Reward model", "## Evaluation", "preference agreement",
                    "own (human-written) labels"):
        assert heading in report
    evaluation = json.loads((run / "steps" / "eval.json").read_text())
    assert evaluation["human_labels"]["pairs"] == 14  # every pair here has a label
    assert evaluation["human_labels"]["sections"]["safety"]["n"] == 6

    # A second run finds every step done (the report is always rebuilt), and clears what a
    # killed run's atomic writes left.
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and "plots" not in p.parts
              and p.name not in ("report.md", "report.json", "config.json")}
    stale = [run / ".labeled.jsonl.4242.0badc0de.tmp", run / "rm" / ".x.1.00000000.old",
             run / ".rm.77.1234abcd.tmp"]
    stale[0].write_text("{}")
    stale[1].write_text("")
    stale[2].mkdir()
    (stale[2] / "model.safetensors").write_bytes(b"half")
    capsys.readouterr()
    assert main(["pipeline", "--config", str(config), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert all(f"[{s}] done before: skipped" in out for s in STEPS if s != "report")
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert "removed 3 temporaries that a stopped run left" in out
    assert not any(p.exists() for p in stale)

    # Redoing one step: delete its record.
    (run / "steps" / "eval.json").unlink()
    assert main(["pipeline", "--config", str(config), "--no-progress", "--steps", "eval"]) == 0
    assert "[eval] done in" in capsys.readouterr().out


def test_one_pipeline_at_a_time_in_a_run_folder(tmp_path, models, capsys):
    import fcntl

    config = _config(tmp_path, models)
    (tmp_path / "run").mkdir()
    with open(tmp_path / "run" / ".ramo-pipeline.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert main(["pipeline", "--config", str(config), "--no-progress"]) == 2
    assert "another ramo pipeline is running in" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".ramo-pipeline.lock"]


@pytest.mark.parametrize("override, message", [
    ({"colour": "blue"}, "unknown settings ['colour']"),
    ({"select": {"k": 9}}, "select.k must be an integer from 1 to the pool's 5 rules"),
    ({"rm": {"epoch": 2}}, "unknown rm settings ['epoch']"),
    ({"pairs": None}, "`pairs` (the preference pairs to rate) is required"),
    ({"adapter": {"holdout": 1.5}}, "adapter.holdout must be in [0, 1)"),
])
def test_config_errors_write_nothing(tmp_path, models, capsys, override, message):
    config = _config(tmp_path, models, **override)
    assert main(["pipeline", "--config", str(config), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_bad_pairs_file_is_named_with_its_line(tmp_path, models, capsys):
    config = _config(tmp_path, models)
    with open(tmp_path / "new.jsonl", "a") as f:
        f.write('{"id": "bad", "prompt": "x", "chosen": ""}\n')
    assert main(["pipeline", "--config", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "new.jsonl" in err and "line 5" in err
    assert not (tmp_path / "run").exists()
