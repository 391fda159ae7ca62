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

    # Each record holds the settings its step used; a rerun with others is refused, naming
    # them and the records from that step on, before anything is written.
    assert json.loads((run / "steps" / "select.json").read_text())["config"]["select.k"] == 2
    assert set(json.loads((run / "steps" / "eval.json").read_text())["inputs"]) == {
        "eval", "pairs", "new_pairs"}  # human_labels: it trains on the pairs' labels too
    assert "judge.device" not in json.loads((run / "steps" / "rate.json").read_text())["config"]
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    changed = _config(tmp_path, models, select={"k": 3})
    assert main(["pipeline", "--config", str(changed), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "select: select.k 2 -> 3; adapter-train: select.k 2 -> 3; adapter-apply: select.k " \
           "2 -> 3" in err, err
    assert ("delete the records steps/select.json, steps/adapter-train.json, "
            "steps/adapter-apply.json, steps/label.json, steps/rm-train.json, steps/eval.json, "
            "steps/report.json") in err
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before

    # A step redone (its record deleted, a setting of its own changed) makes every later
    # step run again: they read its outputs (the labels were made from the old selections).
    (run / "steps" / "select.json").unlink()
    changed = _config(tmp_path, models, select={"k": 2, "relevance": "none"})
    assert main(["pipeline", "--config", str(changed), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "[rate] done before: skipped" in out and "[select] done in" in out
    for step in ("adapter-train", "adapter-apply", "label", "rm-train", "eval"):
        assert f"[{step}] an earlier step ran again after it: redone" in out, step
    assert main(["pipeline", "--config", str(changed), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert all(f"[{s}] done before: skipped" in out for s in STEPS if s != "report"), out


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
    # every setting's type, before anything runs (not at the step that reads it)
    ({"adapter": {"epochs": "five"}}, "adapter.epochs must be a number, got 'five' (str)"),
    ({"select": {"k": 2.5}}, "select.k must be an integer, got 2.5 (float)"),
    ({"rm": {"bf16": "yes"}}, "rm.bf16 must be true or false, got 'yes' (str)"),
    ({"rm": {"learning_rate": "fast"}}, "rm.learning_rate must be a number, got 'fast' (str)"),
    ({"judge": {"batch_size": "4"}}, "judge.batch_size must be an integer, got '4' (str)"),
    ({"evaluation": {"max_length": True}},
     "evaluation.max_length must be an integer or null, got True (bool)"),
    ({"judge": {"engine_options": [1]}},
     "judge.engine_options must be a mapping or null, got [1] (list)"),
    # every setting's value by its step's own checks, before an earlier step writes anything
    ({"select": {"relevance": "foo"}}, "select.relevance must be one of"),
    ({"rm": {"margin": "bad"}}, "rm.margin must be one of"),
    ({"rm": {"epochs": -1}}, "rm.epochs must be a positive number, got -1"),
    ({"adapter": {"batch_size": 0}}, "adapter.batch_size must be a positive integer, got 0"),
    ({"adapter": {"lora": -2}}, "adapter.lora must be a positive integer, got -2"),
    ({"judge": {"normalize": "all"}}, "judge.normalize must be 'vocab' or 'choices'"),
    ({"judge": {"template": "rule-middle"}}, "judge: unknown judge template 'rule-middle'"),
    ({"judge": {"engine": "onnx"}}, "judge.engine must be one of transformers, vllm"),
    ({"judge": {"on_overflow": "drop"}}, "judge.on_overflow must be 'truncate' or 'error'"),
    ({"judge": {"batch_size": -3}}, "judge.batch_size must be a positive integer, got -3"),
    ({"judge": {"max_length": -3}}, "judge.max_length must be a positive integer, got -3"),
    ({"judge": {"dtype": "float64"}},
     "judge.dtype must be one of float32, bfloat16, float16, not 'float64'"),
    ({"judge": {"device": "foo"}}, "judge.device 'foo': not a device torch knows"),
    ({"judge": {"model": "m", "answer_ids": {"maybe": [3]}}},
     "judge.answer_ids names unknown answer 'maybe'"),
    ({"judge": {"model": "m", "answer_ids": {"yes": []}}}, "judge: answer_ids['yes'] = []: give"),
    ({"judge": {"model": "m", "answer_words": "NA"}},
     "judge.answer_words must be a mapping or null"),
    ({"evaluation": {"weights": "equal"}}, "evaluation.weights must be one of"),
    ({"evaluation": {"batch_size": -3}}, "evaluation.batch_size must be a positive integer"),
    ({"evaluation": {"max_length": 0}}, "evaluation.max_length must be a positive integer, got 0"),
    # the paths must be text
    ({"run_dir": ["a", "b"]}, "`run_dir` must be a path (a string), got ['a', 'b'] (list)"),
    ({"pairs": 5}, "`pairs` must be a path (a string), got 5 (int)"),
    ({"eval": {"file": "x"}}, "`eval` must be a path (a string)"),
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


# ---- settings type-checked up front; records compared with the config (CLI review) ----------

def test_the_judge_takes_its_answers_from_the_config(tmp_path, models):
    """judge.answer_words / judge.answer_ids, as `ramo rate`'s --answer-word / --answer-ids,
    for a judge whose answer words are not one token each."""
    from ramo.pipeline import Config, Pipeline

    config = _config(tmp_path, models, judge={"model": models["judge"], "batch_size": 4,
                                              "answer_ids": {"irrelevant": [3, 5]}})
    pipeline = Pipeline(Config.from_file(config))
    pipeline.check_inputs()
    assert pipeline.judge.answer_token_ids("irrelevant") == [3, 5]
    assert pipeline.step_settings("rate")["judge.answer_ids"] == {"irrelevant": [3, 5]}


def test_numbers_written_as_text_are_read_as_numbers(tmp_path, models):
    """PyYAML reads 2e-5 as text (YAML 1.1 wants a dot): a float setting takes it as a number,
    before any step."""
    import yaml

    from ramo.pipeline import Config, Pipeline

    _jsonl(tmp_path / "pairs.jsonl", _pairs(0, 4))
    text = "pairs: pairs.jsonl\nrm: {learning_rate: 2e-5, epochs: 2}\nselect: {k: 1}\n"
    assert yaml.safe_load(text)["rm"]["learning_rate"] == "2e-5"
    (tmp_path / "config.yaml").write_text(text)
    pipeline = Pipeline(Config.from_file(tmp_path / "config.yaml"))
    pipeline.check_inputs()
    assert pipeline.config.rm["learning_rate"] == 2e-5
    assert isinstance(pipeline.config.rm["learning_rate"], float)
    assert pipeline.config.rm["epochs"] == 2 and pipeline.config.select["k"] == 1
    pipeline.check_inputs()  # again (as the demo does): the same values


def _fake_run(tmp_path, models, record: dict, **override):
    config = _config(tmp_path, models, **override)
    (tmp_path / "run" / "steps").mkdir(parents=True)
    (tmp_path / "run" / "steps" / "select.json").write_text(json.dumps(record))
    return config


@pytest.mark.parametrize("record", [
    {"config": {"select.k": 3, "select.relevance": "judge"}},
    {"settings": {"k": 3, "relevance": "judge"}},  # a record of an older ramo
])
def test_a_changed_setting_of_a_done_step_is_refused(tmp_path, models, capsys, record):
    config = _fake_run(tmp_path, models, record)
    assert main(["pipeline", "--config", str(config), "--no-progress", "--steps", "select"]) == 2
    err = capsys.readouterr().err
    assert "other settings or inputs than this config's (select: select.k 3 -> 2)" in err, err
    assert "Use a new run_dir, or delete the records steps/select.json to redo" in err
    assert "ratings stores" not in err
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["steps"]


def test_changed_input_files_of_a_done_step_are_refused(tmp_path, models, capsys):
    from ramo.pipeline import Config, Pipeline

    digests = Pipeline(Config.from_file(_config(tmp_path, models))).input_digests("select")
    assert set(digests) == {"rules", "pairs"} and all(len(d) == 64 for d in digests.values())
    config = _fake_run(tmp_path, models, {"config": {"select.k": 2}, "inputs": digests})
    # The same bytes (the config rewrote them): skipped.
    assert main(["pipeline", "--config", str(config), "--no-progress", "--steps", "select"]) == 0
    assert "[select] done before: skipped" in capsys.readouterr().out

    pairs = _pairs(0, 10)
    pairs[3]["chosen"] += " (edited)"
    _jsonl(tmp_path / "pairs.jsonl", pairs)
    assert main(["pipeline", "--config", str(config), "--no-progress", "--steps", "select"]) == 2
    err = capsys.readouterr().err
    assert "other settings or inputs than this config's (select: pairs file changed)" in err, err
    assert ("delete the records steps/select.json (and ratings.sqlite if a pair's text changed "
            "under the same id: a store keeps the texts it rated) to redo") in err


def _label_record(tmp_path, inputs: dict) -> None:
    (tmp_path / "run" / "steps").mkdir(parents=True, exist_ok=True)
    (tmp_path / "run" / "steps" / "label.json").write_text(json.dumps({"inputs": inputs}))


@pytest.mark.parametrize("change, said", [
    ({"new_pairs": None}, "label: new_pairs file added"),
    ({"rules": "0" * 64}, "label: rules file changed"),
])
def test_each_input_file_change_is_named(tmp_path, models, capsys, change, said):
    from ramo.pipeline import Config, Pipeline

    config = _config(tmp_path, models)
    digests = Pipeline(Config.from_file(config)).input_digests("label")
    assert set(digests) == {"rules", "pairs", "new_pairs"}
    _label_record(tmp_path, {**digests, **change})  # a record with inputs and no config
    assert main(["pipeline", "--config", str(config), "--no-progress", "--steps", "label"]) == 2
    err = capsys.readouterr().err
    assert f"({said})" in err, err
    if "rules" in change:  # the stores keep ratings by rule id: they must go too
        assert "and the ratings stores (ratings.sqlite, adapter_ratings.sqlite) if a rule's" in err


def test_a_removed_input_is_a_change_and_the_default_pool_is_digested(tmp_path, models, capsys):
    import hashlib

    from ramo.io.rules import rule_pool_path
    from ramo.pipeline import Config, Pipeline

    config = _config(tmp_path, models, rules="default", new_pairs=None)
    pipeline = Pipeline(Config.from_file(config))
    digests = pipeline.input_digests("label")
    pool = hashlib.sha256(rule_pool_path("default").read_bytes()).hexdigest()
    assert digests["rules"] == pool and digests["new_pairs"] is None
    # eval trains on the pairs' own labels too (evaluation.human_labels): their digests count
    assert set(pipeline.input_digests("eval")) == {"eval", "pairs", "new_pairs"}
    _label_record(tmp_path, {**digests, "new_pairs": "0" * 64})
    assert main(["pipeline", "--config", str(config), "--no-progress", "--steps", "label"]) == 2
    assert "(label: new_pairs file removed)" in capsys.readouterr().err


def test_a_record_without_settings_is_trusted(tmp_path, models, capsys):
    config = _fake_run(tmp_path, models, {"pairs": 10})
    assert main(["pipeline", "--config", str(config), "--no-progress", "--steps", "select"]) == 0
    assert "[select] done before: skipped" in capsys.readouterr().out


def test_settings_of_speed_and_place_may_change(tmp_path, models):
    from ramo.pipeline import Config, Pipeline

    config = Config.from_file(_config(tmp_path, models))
    pipeline = Pipeline(config)
    rate, evaluation = pipeline.step_settings("rate"), pipeline.step_settings("eval")
    assert rate["judge.model"] == models["judge"] and "judge.template" in rate
    assert not {"judge.device", "judge.batch_size", "judge.engine_options"} & set(rate)
    assert "evaluation.batch_size" not in evaluation and "rm.learning_rate" in evaluation
    assert pipeline.step_settings("adapter-train")["select.k"] == 2
    assert pipeline.step_settings("label") == {} == pipeline.step_settings("report")


@pytest.mark.parametrize("setting, message", [
    ("rm: {learning_rate: .inf}", "rm.learning_rate must hold finite numbers only, got inf"),
    ("select: {relevance_weight: -.inf}", "select.relevance_weight must hold finite numbers"),
    ("select: {discrepancy_weight: .nan}", "select.discrepancy_weight must hold finite"),
    ("judge: {engine_options: {gpu_memory_utilization: .inf}}",
     "judge.engine_options must hold finite numbers only"),
])
def test_non_finite_numbers_are_refused_before_anything_is_written(tmp_path, capsys, setting,
                                                                   message):
    _jsonl(tmp_path / "pairs.jsonl", _pairs(0, 4))
    (tmp_path / "config.yaml").write_text(f"pairs: pairs.jsonl\n{setting}\n")
    assert main(["pipeline", "--config", str(tmp_path / "config.yaml"), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_null_rule_pool_is_the_default_one(tmp_path):
    from ramo.pipeline import Config

    assert Config.from_dict({"pairs": "p.jsonl", "rules": None}, tmp_path).rules == "default"


@pytest.mark.parametrize("steps, message", [
    ("", "no steps given; the steps are rate,select,"),
    (" , ", "no steps given"),
    ("label,select", "steps label,select: name each step once, in the pipeline's order: "
                     "select,label"),
    ("select,select", "name each step once"),
    ("select,sort", "unknown steps ['sort']"),
])
def test_steps_in_another_order_or_none_are_refused(tmp_path, models, capsys, steps, message):
    config = _config(tmp_path, models)
    assert main(["pipeline", "--config", str(config), "--no-progress", "--steps", steps]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_pairs_in_a_folder_of_shards_are_digested(tmp_path, models):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    from ramo.pipeline import Config, Pipeline

    shards = tmp_path / "shards"
    shards.mkdir()
    rows = _pairs(0, 10)
    for n, part in enumerate((rows[:6], rows[6:])):
        pq.write_table(pa.Table.from_pylist(part), shards / f"part-{n}.parquet")

    def pipeline():
        return Pipeline(Config.from_file(_config(tmp_path, models, pairs="shards")))

    def digests():
        return pipeline().input_digests("select")["pairs"]

    read = pipeline()
    read.check_inputs()  # the folder is read as `ramo select` reads it
    assert [p.id for p in read.pairs] == [r["id"] for r in rows]
    first = digests()
    assert len(first) == 64 and digests() == first
    (shards / ".DS_Store").write_bytes(b"not data")
    assert digests() == first
    (shards / "part-1.parquet").rename(shards / "part-2.parquet")  # same bytes, another name
    renamed = digests()
    assert renamed != first
    pq.write_table(pa.Table.from_pylist(rows[6:9]), shards / "part-2.parquet")
    assert digests() not in (first, renamed)


def test_a_small_pool_is_reported_and_a_short_max_length_refused_before_the_store(
        tmp_path, models, capsys):
    """A judge.max_length that leaves no room for the judge's instructions is refused before
    the ratings store is made (a store made under it would refuse the corrected rerun); a
    pool of fewer rules than the study's k = 5 still gets its report."""
    small = {"rules": _jsonl(tmp_path / "small.jsonl", RULES[:3]), "new_pairs": None,
             "eval": None}
    config = _config(tmp_path, models, **small,
                     judge={"model": models["judge"], "batch_size": 4, "max_length": 5})
    steps = ["--steps", "rate,select,report"]
    assert main(["pipeline", "--config", str(config), "--no-progress", *steps]) == 2
    err = capsys.readouterr().err
    assert "max_length 5 leaves 0 tokens for the conversation" in err
    assert "judge.max_length in a pipeline config" in err
    run = tmp_path / "run"
    assert not (run / "ratings.sqlite").exists() and not (run / "steps").exists()

    config = _config(tmp_path, models, **small, judge={"model": models["judge"],
                                                      "batch_size": 4})
    assert main(["pipeline", "--config", str(config), "--no-progress", *steps]) == 0
    report = (run / "report.md").read_text()
    assert "## Selection study" in report
    assert "At k = 2 (select.k) the method's labels are" in report
