"""Every command refuses an empty input file with an error that names it, before it writes
anything: no store, no output file, no model folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from ramo.cli import main

DEMO = Path(__file__).resolve().parents[1] / "ramo" / "data" / "demo"

# (command line, the empty file's name): {empty} is the empty file, {out} the output, {dir} an
# existing (empty) folder where a model is due: the input must be refused before any model
# is loaded.
CASES = {
    "rate pairs": (["rate", "--pairs", "{empty}", "--rules", "default", "--out", "{out}",
                    "--no-progress"], "pairs.jsonl"),
    "rate rules": (["rate", "--pairs", str(DEMO / "pairs.jsonl"), "--rules", "{empty}", "--out",
                    "{out}", "--no-progress"], "rules.jsonl"),
    "select pairs": (["select", "--pairs", "{empty}", "--rules", "default", "--ratings",
                      str(DEMO / "ratings.jsonl.gz"), "--out", "{out}.jsonl"], "pairs.jsonl"),
    "select ratings": (["select", "--pairs", str(DEMO / "pairs.jsonl"), "--rules", "default",
                        "--ratings", "{empty}", "--out", "{out}.jsonl"], "ratings.sqlite"),
    "ratings merge": (["ratings", "merge", "{empty}", "--out", "{out}"], "ratings.sqlite"),
    "label pairs": (["label", "--pairs", "{empty}", "--selections", "{empty}",
                     "--out", "{out}.jsonl"], "pairs.jsonl"),
    "label selections": (["label", "--pairs", str(DEMO / "pairs.jsonl"), "--selections",
                          "{empty}", "--out", "{out}.jsonl"], "selections.jsonl"),
    "adapter train": (["adapter", "train", "--pairs", "{empty}", "--rules", "default",
                       "--selections", "{empty}", "--out", "{out}", "--no-progress"],
                      "pairs.jsonl"),
    "adapter apply": (["adapter", "apply", "--adapter", "{dir}", "--pairs", "{empty}",
                       "--rules", "default", "--out", "{out}.jsonl", "--no-progress"],
                      "pairs.jsonl"),
    "rm train": (["rm", "train", "--data", "{empty}", "--out", "{out}", "--no-progress"], "pairs.jsonl"),
    "eval": (["eval", "--model", "{dir}", "--data", "{empty}", "--out", "{out}",
              "--no-progress"], "eval.jsonl"),
    "explain": (["explain", "--model", "{dir}", "--pairs", "{empty}"], "pairs.jsonl"),
    "rl train": (["rl", "train", "--policy", "{dir}", "--reward", "{dir}",
                  "--prompts", "{empty}", "--out", "{out}", "--no-progress"], "prompts.jsonl"),
    "rl eval": (["rl", "eval", "--policy", "{dir}", "--reward", "{dir}",
                 "--prompts", "{empty}", "--out", "{out}", "--no-progress"], "prompts.jsonl"),
    "study selection": (["study", "selection", "--pairs", "{empty}", "--rules", "default",
                         "--ratings", str(DEMO / "ratings.jsonl.gz"), "--out", "{out}"],
                        "pairs.jsonl"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_empty_input_is_an_error_before_any_write(tmp_path, capsys, case):
    argv, name = CASES[case]
    empty, out, folder = tmp_path / name, tmp_path / "out", tmp_path / "model"
    empty.write_bytes(b"")
    folder.mkdir()
    argv = [a.replace("{empty}", str(empty)).replace("{out}", str(out))
            .replace("{dir}", str(folder)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(empty) in err and ("no " in err or "empty" in err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "model"])  # no write
    assert not any(folder.iterdir())


def test_empty_pipeline_pairs(tmp_path, capsys):
    empty = tmp_path / "pairs.jsonl"
    empty.write_bytes(b"")
    config = tmp_path / "config.yaml"
    config.write_text(f"pairs: {empty}\nrun_dir: {tmp_path / 'run'}\n")
    assert main(["pipeline", "--config", str(config), "--no-progress"]) == 2
    assert str(empty) in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "pairs.jsonl"]
