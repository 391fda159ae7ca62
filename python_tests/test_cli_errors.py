"""The command line's answers to bad paths, flags and missing extras: one `error:` line and
exit code 2, checked before any work (nothing written); a genuine bug keeps its traceback.
And its help: every flag has one, --version, the pairs' formats."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

from ramo.cli import COMMANDS, _parser, main

RULES = [{"id": "r1", "text": "never give weapon instructions"},
         {"id": "r2", "text": "do not insult people"}]


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def files(tmp_path):
    pairs = _jsonl(tmp_path / "pairs.jsonl", [
        {"id": f"p{i}", "prompt": "hi", "response_a": "sure", "response_b": "no"}
        for i in range(3)])
    selections = _jsonl(tmp_path / "sel.jsonl", [
        {"id": f"p{i}", "rule_ids": ["r1"], "reward_a": 1.0, "reward_b": 0.0, "margin": 1.0,
         "preference": 1} for i in range(3)])
    return {"pairs": str(pairs), "selections": str(selections),
            "rules": str(_jsonl(tmp_path / "rules.jsonl", RULES))}


def _one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ramo {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def no_judge(monkeypatch):
    """Fails the test if a command loads the judge: what is checked must be checked before."""
    import ramo.steps

    def load_judge(*args, **kwargs):
        raise AssertionError("the judge was loaded")

    monkeypatch.setattr(ramo.steps, "load_judge", load_judge)


# ---- paths the system refuses: one line, exit code 2 --------------------------------------

def test_label_out_is_a_folder(tmp_path, files, capsys):
    (tmp_path / "out").mkdir()
    assert main(["label", "--pairs", files["pairs"], "--selections", files["selections"],
                 "--out", str(tmp_path / "out")]) == 2
    line = _one_error_line(capsys, "label")
    assert line.endswith(f"--out {tmp_path / 'out'}: is a folder; give a file name")
    assert list((tmp_path / "out").iterdir()) == []


def test_label_out_under_a_file(files, capsys):
    out = Path(files["pairs"]) / "x.jsonl"
    assert main(["label", "--pairs", files["pairs"], "--selections", files["selections"],
                 "--out", str(out)]) == 2
    line = _one_error_line(capsys, "label")
    assert "pairs.jsonl" in line and ("File exists" in line or "Not a directory" in line)


def test_an_output_never_replaces_an_input(tmp_path, files, capsys, no_judge):
    """An --out (or --export) that names one of the command's inputs is refused before any
    work, the input left as it was: a select over its own store would replace it."""
    before = {name: Path(path).read_bytes() for name, path in files.items()}
    store = tmp_path / "ratings.jsonl"  # a store by another name: the same-file check, not
    store.write_bytes(b"SQLite format 3\0")  # the suffix, refuses it
    cases = [
        (["select", "--pairs", files["pairs"], "--rules", files["rules"], "--ratings", str(store),
          "--out", str(store)], "is also --ratings"),
        (["select", "--pairs", files["pairs"], "--rules", files["rules"], "--ratings", str(store),
          "--out", files["pairs"]], "is also --pairs"),
        (["label", "--pairs", files["pairs"], "--selections", files["selections"],
          "--out", str(Path(files["selections"]).parent / "." / "sel.jsonl")],
         "is also --selections"),
        (["rate", "--pairs", files["pairs"], "--rules", files["rules"],
          "--out", str(tmp_path / "r.sqlite"), "--export", files["pairs"]], "is also --pairs"),
        (["adapter", "apply", "--adapter", str(tmp_path), "--pairs", files["pairs"],
          "--rules", files["rules"], "--out", files["rules"]], "is also --rules")]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in _one_error_line(capsys, " ".join(argv[:2 if argv[0] == "adapter" else 1]))
    assert {name: Path(path).read_bytes() for name, path in files.items()} == before
    assert store.read_bytes() == b"SQLite format 3\0" and not (tmp_path / "r.sqlite").exists()


def test_a_folder_output_never_replaces_a_file(tmp_path, files, capsys):
    """adapter train (like rm train and rl) writes a folder: over a file it would have moved
    the file aside under a hidden name."""
    keep = tmp_path / "keep.jsonl"
    keep.write_text("precious\n")
    assert main(["adapter", "train", "--pairs", files["pairs"], "--rules", files["rules"],
                 "--selections", files["selections"], "--backbone", str(tmp_path / "none"),
                 "--out", str(keep), "--no-progress"]) == 2
    assert "keep.jsonl: exists and is not a folder" in _one_error_line(capsys, "adapter train")
    assert keep.read_text() == "precious\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        "keep.jsonl", "pairs.jsonl", "rules.jsonl", "sel.jsonl"]


def test_a_folder_output_never_holds_an_input(tmp_path, files, capsys):
    """A folder output is replaced whole when its step ends: an input inside it (the training
    data copied into the output folder, say) would be deleted with the old folder. Refused
    before any work, for adapter train, rm train and rl train; nothing is written."""
    out = tmp_path / "out"
    out.mkdir()
    inside = {name: out / Path(path).name for name, path in files.items()}
    for name, path in files.items():
        inside[name].write_bytes(Path(path).read_bytes())
    data = _jsonl(out / "labeled.jsonl", [{"prompt": "hi", "chosen": "no", "rejected": "sure"}])
    prompts = _jsonl(out / "prompts.jsonl", [{"prompt": "hi"}])
    before = {p: p.read_bytes() for p in out.iterdir()}
    cases = [
        (["adapter", "train", "--pairs", str(inside["pairs"]), "--rules", files["rules"],
          "--selections", files["selections"], "--backbone", str(tmp_path / "none"),
          "--out", str(out), "--no-progress"], "--pairs"),
        (["adapter", "train", "--pairs", files["pairs"], "--rules", files["rules"],
          "--selections", str(inside["selections"]), "--backbone", str(tmp_path / "none"),
          "--out", str(out), "--no-progress"], "--selections"),
        (["rm", "train", "--data", str(data), "--model", str(tmp_path / "none"),
          "--out", str(out), "--no-progress"], "train_file"),
        (["rm", "train", "--data", files["pairs"], "--model", str(tmp_path / "none"),
          "--heads", "rules", "--rules", str(inside["rules"]), "--out", str(out),
          "--no-progress"], "rules"),
        (["rl", "train", "--policy", str(tmp_path), "--reward", str(tmp_path),
          "--prompts", str(prompts), "--out", str(out), "--no-progress"], "prompts")]
    for argv, name in cases:
        assert main(argv) == 2, argv
        line = _one_error_line(capsys, " ".join(argv[:2]))
        assert f"{name} " in line and f"lies inside the output folder {out}" in line, line
    assert {p: p.read_bytes() for p in out.iterdir()} == before


def test_eval_never_writes_over_its_data(tmp_path, capsys):
    data = _jsonl(tmp_path / "ev.jsonl", [{"prompt": "hi", "chosen": "no", "rejected": "sure",
                                           "subset": "donotanswer"}])
    before = data.read_bytes()
    for flag in ("--out", "--markdown"):
        assert main(["eval", "--model", str(tmp_path / "none"), "--data", str(data), flag,
                     str(data), "--no-progress"]) == 2
        assert f"{flag} {data} is also --data" in _one_error_line(capsys, "eval")
    assert data.read_bytes() == before


@pytest.mark.parametrize("name", ["labeled.json", "labeled.parquet", "labeled.txt"])
def test_jsonl_outputs_are_named_so(tmp_path, files, capsys, name):
    """What select, label and adapter apply write is JSON lines; a name that readers would
    take for another format (`ramo rm train` reads .json as one JSON document) is refused."""
    assert main(["label", "--pairs", files["pairs"], "--selections", files["selections"],
                 "--out", str(tmp_path / name)]) == 2
    assert "must end in .jsonl or .jsonl.gz" in _one_error_line(capsys, "label")
    assert not (tmp_path / name).exists()
    upper = tmp_path / "LABELED.JSONL.GZ"  # any case: written gzipped, as it is read
    assert main(["label", "--pairs", files["pairs"], "--selections", files["selections"],
                 "--out", str(upper)]) == 0
    from ramo.io import load_preferences

    assert upper.read_bytes()[:2] == b"\x1f\x8b" and len(load_preferences(upper)) == 3


def test_a_write_error_names_the_output_not_its_temporary(tmp_path, monkeypatch):
    """An OSError about the hidden temporary (a full disk here) is raised under the output's
    own name: the temporary is gone, and its name would tell the user nothing."""
    import errno

    import ramo.io.atomic as atomic

    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(atomic, "_fsync_file", full)
    with pytest.raises(OSError) as info:
        atomic.write_jsonl(tmp_path / "out.jsonl", [{"a": 1}])
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "out.jsonl")
    assert list(tmp_path.iterdir()) == []


def test_folders_as_rules_and_config(tmp_path, files, capsys, no_judge):
    folder = tmp_path / "pool.jsonl"  # a folder named like a rule file
    folder.mkdir()
    assert main(["rate", "--pairs", files["pairs"], "--rules", str(folder),
                 "--out", str(tmp_path / "r.sqlite")]) == 2
    assert "pool.jsonl" in _one_error_line(capsys, "rate")
    assert not (tmp_path / "r.sqlite").exists()
    assert main(["pipeline", "--config", str(tmp_path)]) == 2
    assert "Is a directory" in _one_error_line(capsys, "pipeline")


def test_missing_extra_is_one_line(monkeypatch, files, capsys):
    import ramo.cli.rating

    def missing(args):
        raise ImportError("this needs foo: pip install foo")

    monkeypatch.setattr(ramo.cli.rating, "label", missing)
    assert main(["label", "--pairs", files["pairs"], "--selections", files["selections"],
                 "--out", "x.jsonl"]) == 2
    assert _one_error_line(capsys, "label").endswith("this needs foo: pip install foo")


def test_a_bug_keeps_its_traceback(monkeypatch, files):
    import ramo.cli.rating

    def bug(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(ramo.cli.rating, "label", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["label", "--pairs", files["pairs"], "--selections", files["selections"],
              "--out", "x.jsonl"])


def test_vllm_engine_without_vllm(tmp_path, files, capsys):
    pytest.importorskip("transformers")
    try:
        import vllm  # noqa: F401
        pytest.skip("vLLM is installed here")
    except ImportError:
        pass
    from python_tests.judge_models import tiny_llama, tiny_tokenizer

    tok = tiny_tokenizer(chat=True)
    tiny_llama(len(tok)).save_pretrained(tmp_path / "judge")
    tok.save_pretrained(tmp_path / "judge")
    capsys.readouterr()  # save_pretrained's bar
    out = tmp_path / "r.sqlite"
    assert main(["rate", "--pairs", files["pairs"], "--rules", files["rules"], "--judge",
                 str(tmp_path / "judge"), "--engine", "vllm", "--out", str(out),
                 "--no-progress"]) == 2
    assert "pip install 'ramo[vllm]'" in _one_error_line(capsys, "rate")
    assert not out.exists()


# ---- ramo rate: flags checked before the judge loads and before the store exists -----------

def test_rate_export_suffix_checked_first(tmp_path, files, capsys, no_judge):
    out = tmp_path / "r.sqlite"
    assert main(["rate", "--pairs", files["pairs"], "--rules", files["rules"], "--out", str(out),
                 "--export", str(tmp_path / "r2.csv")]) == 2
    assert "must end in .parquet, .jsonl or .jsonl.gz" in _one_error_line(capsys, "rate")
    assert not out.exists()


def test_rate_out_is_a_folder(tmp_path, files, capsys, no_judge):
    assert main(["rate", "--pairs", files["pairs"], "--rules", files["rules"],
                 "--out", str(tmp_path)]) == 2
    assert "is a folder; give the store's file name" in _one_error_line(capsys, "rate")


def test_rate_refuses_a_device_it_cannot_use(tmp_path, files, capsys):
    import torch

    devices = ["foo"] + ([] if torch.cuda.is_available() else ["cuda"])
    for device in devices:
        assert main(["rate", "--pairs", files["pairs"], "--rules", files["rules"],
                     "--out", str(tmp_path / "r.sqlite"), "--device", device]) == 2
        assert f"device {device!r}: " in _one_error_line(capsys, "rate")
    assert not (tmp_path / "r.sqlite").exists()


def test_rate_export_parquet_needs_pyarrow(tmp_path, files, capsys, monkeypatch, no_judge):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow raises ImportError
    out = tmp_path / "r.sqlite"
    assert main(["rate", "--pairs", files["pairs"], "--rules", files["rules"], "--out", str(out),
                 "--export", str(tmp_path / "r.parquet")]) == 2
    assert "needs pyarrow" in _one_error_line(capsys, "rate")
    assert not out.exists()


@pytest.mark.parametrize("flag", ["--commit-every", "--batch-size", "--judge-batch-size"])
def test_rate_counts_must_be_positive(tmp_path, files, capsys, no_judge, flag):
    out = tmp_path / "r.sqlite"
    with pytest.raises(SystemExit) as exit:
        main(["rate", "--pairs", files["pairs"], "--rules", files["rules"], "--out", str(out),
              flag, "0"])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and ": must be at least 1, got 0" in err, err
    assert not out.exists()


# ---- ramo rm train: the rule-head flags need --heads rules; flags named, not parameters ----

@pytest.mark.parametrize("extra, message", [
    (["--rules", "default"], "--rules: only for a rule-head reward model; add --heads rules"),
    (["-k", "3"], "-k: only for a rule-head reward model"),
    (["--ratings", "r.sqlite", "-k", "2"], "-k, --ratings: only for a rule-head reward model"),
    (["--heads", "rules"], "--heads rules needs the rule pool: give --rules"),
    (["--heads", "rules", "--rules", "default", "--regression-weight", "2"],
     "--regression-weight weighs the regression onto --ratings"),
])
def test_rm_train_rule_head_flags(tmp_path, capsys, extra, message):
    out = tmp_path / "rm"
    assert main(["rm", "train", "--data", str(tmp_path / "absent.jsonl"), "--out", str(out),
                 *extra]) == 2
    assert message in _one_error_line(capsys, "rm train")
    assert not out.exists()


@pytest.mark.parametrize("flag, value", [("--batch-size", "0"), ("--grad-accum", "0"),
                                         ("--epochs", "0"), ("--lr", "-1"), ("--max-steps", "0"),
                                         ("--lora", "0"), ("--max-length", "0")])
def test_rm_train_numbers_are_checked_by_flag(tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as exit:
        main(["rm", "train", "--data", str(tmp_path / "d.jsonl"), "--out", str(tmp_path / "rm"),
              flag, value])
    assert exit.value.code == 2
    assert f"ramo rm train: error: argument {flag}: " in capsys.readouterr().err


@pytest.mark.parametrize("argv, flag", [
    (["rm", "train", "--data", "d.jsonl", "--out", "rm", "--center-rewards=nan"],
     "--center-rewards"),
    (["rm", "train", "--data", "d.jsonl", "--out", "rm", "--regression-weight=inf"],
     "--regression-weight"),
    (["rl", "train", "--policy", "p", "--reward", "r", "--prompts", "q", "--out", "o",
      "--beta=nan"], "--beta"),
    (["select", "--pairs", "p", "--rules", "r", "--ratings", "s", "--out", "o.jsonl",
      "--relevance-weight=-inf"], "--relevance-weight"),
    (["study", "selection", "--synthetic", "--out", "o", "--noise", "0.1,inf"], "--noise")])
def test_non_finite_numbers_are_refused_by_flag(argv, flag, capsys):
    """NaN and infinities would reach the outputs' JSON only after the work, which cannot
    hold them: refused with the flag's name, first."""
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2
    assert f"error: argument {flag}: must be a finite number" in capsys.readouterr().err


# ---- ramo adapter apply: the judge flags of ramo rate ---------------------------------------

def test_adapter_apply_takes_the_judge_flags_of_rate(tmp_path, files, monkeypatch):
    import ramo.steps
    from ramo.adapter.model import RuleAdapter

    class Adapter:
        def check_rules(self, rules):
            pass

        def resolve_k(self, k):
            return 1

    seen = {}

    class Loaded(Exception):
        pass

    def load_judge(settings):
        seen.update(settings=settings)
        raise Loaded

    monkeypatch.setattr(RuleAdapter, "from_pretrained", classmethod(lambda cls, *a, **k: Adapter()))
    monkeypatch.setattr(ramo.steps, "load_judge", load_judge)
    with pytest.raises(Loaded):
        main(["adapter", "apply", "--adapter", str(tmp_path), "--pairs", files["pairs"],
              "--rules", files["rules"], "--out", str(tmp_path / "s.jsonl"),
              "--template", "rule-first", "--normalize", "choices", "--answer-word",
              "irrelevant=NA", "--answer-ids", "yes=5,6", "--judge-batch-size", "3",
              "--batch-size", "7"])
    assert {k: seen["settings"][k] for k in ("template", "normalize", "batch_size",
                                             "answer_words", "answer_ids")} == {
        "template": "rule-first", "normalize": "choices", "batch_size": 3,
        "answer_words": {"irrelevant": "NA"}, "answer_ids": {"yes": [5, 6]}}


def test_rate_and_apply_define_the_judge_flags_once():
    def options(words):
        parser = _parser(list(words))
        for word in words:
            parser = next(a for a in parser._actions
                          if isinstance(a, argparse._SubParsersAction)).choices[word]
        return {s: a for a in parser._actions for s in a.option_strings}

    rate, apply = options(("rate",)), options(("adapter", "apply"))
    for flag in ("--judge", "--dtype", "--template", "--normalize", "--answer-word",
                 "--answer-ids", "--max-length", "--on-overflow", "--engine"):
        assert rate[flag].help == apply[flag].help and rate[flag].default == apply[flag].default
    assert rate["--batch-size"].dest == rate["--judge-batch-size"].dest == "judge_batch_size"
    assert apply["--judge-batch-size"].dest == "judge_batch_size"
    assert apply["--batch-size"].dest == "batch_size"  # the adapter's own


# ---- help and --version ---------------------------------------------------------------------

def _command_parsers():
    for command in COMMANDS:
        parser = _parser(list(command))
        for word in command:
            parser = next(a for a in parser._actions
                          if isinstance(a, argparse._SubParsersAction)).choices[word]
        yield command, parser


def test_every_flag_has_help_and_shows_its_default():
    for command, parser in _command_parsers():
        for action in parser._actions:
            assert action.help, (command, action.option_strings or action.dest)
            shown = action.default not in (None, False, [], argparse.SUPPRESS)
            if shown and not action.required:
                assert "default" in action.help, (command, action.option_strings)


def test_pairs_help_says_folders_are_read():
    for command, parser in _command_parsers():
        if command in (("rate",), ("select",), ("adapter", "train"), ("adapter", "apply"),
                       ("explain",)):
            pairs = next(a for a in parser._actions if "--pairs" in a.option_strings)
            assert "folder" in pairs.help, command


def test_version_and_description(capsys):
    from importlib import metadata

    import ramo

    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    try:
        expected = metadata.version("ramo")
    except metadata.PackageNotFoundError:
        expected = ramo.__version__
    assert capsys.readouterr().out.strip() == f"ramo {expected}"
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "--version" in text and "ramo demo" in text and "reward model" in text
    assert "thin adapters" not in text


def test_no_progress_also_hides_the_libraries_own_bars(tmp_path, files, monkeypatch, capsys):
    import os

    from transformers.utils import logging

    for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
        monkeypatch.delenv(name, raising=False)
    assert logging.is_progress_bar_enabled()  # conftest restores it after every test
    # A command that fails on its input: the bars are off before any work starts.
    assert main(["select", "--pairs", files["pairs"], "--rules", files["rules"],
                 "--ratings", str(tmp_path / "missing.sqlite"),
                 "--out", str(tmp_path / "sel.jsonl"), "--no-progress"]) == 2
    assert not logging.is_progress_bar_enabled()  # imported already: switched off
    # Not imported yet (and child processes): their environment switches.
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    assert os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] == "1"


def test_a_folder_output_never_replaces_a_folder_it_did_not_write(tmp_path, files, capsys):
    """`--out models` over a folder of the user's (another model beside, notes) would have
    deleted all of it when training ended: refused before any work unless the folder is
    empty or holds this step's own record (an earlier run's output, which it replaces)."""
    mine = tmp_path / "models"
    (mine / "other_rm").mkdir(parents=True)
    (mine / "notes.txt").write_text("precious\n")
    data = _jsonl(tmp_path / "labeled.jsonl", [{"prompt": "hi", "chosen": "no", "rejected": "sure"}])
    cases = [
        (["adapter", "train", "--pairs", files["pairs"], "--rules", files["rules"],
          "--selections", files["selections"], "--backbone", str(tmp_path / "none"),
          "--out", str(mine), "--no-progress"], "ramo_adapter.json"),
        (["rm", "train", "--data", str(data), "--model", str(tmp_path / "none"),
          "--out", str(mine), "--no-progress"], "ramo_training.json"),
        (["rl", "train", "--policy", str(tmp_path), "--reward", str(tmp_path),
          "--prompts", str(data), "--out", str(mine), "--no-progress"], "ramo_rl.json")]
    for argv, marker in cases:
        assert main(argv) == 2, argv
        line = _one_error_line(capsys, " ".join(argv[:2]))
        assert f"{mine}: a folder that holds other files (notes.txt, other_rm), not an output " \
               f"of this step (no {marker})" in line, line
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt", "other_rm"]
    (mine / "ramo_training.json").write_text("{}")  # an earlier rm train's: replaced
    assert main(cases[1][0]) == 2
    assert "no such" in _one_error_line(capsys, "rm train")  # past the check: the absent model
