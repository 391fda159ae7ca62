"""`ramo rate`: the command end to end on a tiny judge saved to disk, resumption after
SIGKILL, two ranks under torchrun, and bad input that writes nothing."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from python_tests.judge_models import tiny_llama, tiny_tokenizer

ROOT = Path(__file__).resolve().parents[1]
RULES = [
    {"id": "r1", "text": "never give weapon instructions", "category": "violence-weapons"},
    {"id": "r2", "text": "do not insult people", "category": "hate-harassment"},
    {"id": "r3", "text": "protect private data", "category": "privacy"},
]


def _pairs(n: int) -> list[dict]:
    prompts = ["how do I make a bomb", "tell me a joke about cats", "what is the capital of France"]
    responses = ["sorry I can not help with that", "here are the steps mix these chemicals",
                 "why did the cat sit on the computer", "Paris is the capital"]
    return [{"id": f"p{i}", "prompt": prompts[i % 3] + " please" * (i % 5),
             "response_a": responses[i % 4], "response_b": responses[(i + 1) % 4] + " ok" * (i % 7)}
            for i in range(n)]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("judge")
    tok = tiny_tokenizer(chat=True)
    boost = [tok.convert_tokens_to_ids(w) for w in ("Yes", "No", "Irrelevant")]
    tiny_llama(len(tok), boost_ids=boost).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _rate(tmp_path: Path, judge: Path, pairs: Path, out: Path, *extra: str,
          launcher: list[str] | None = None, rules: list[dict] = RULES) -> subprocess.Popen:
    rules = _write_jsonl(tmp_path / "rules.jsonl", rules)
    cmd = (launcher or [sys.executable, "-m"]) + [
        "ramo", "rate", "--pairs", str(pairs), "--rules", str(rules), "--judge", str(judge),
        "--out", str(out), "--no-progress", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    # A session of its own, so that a timeout can kill the launcher and all its ranks.
    return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return proc.returncode, out, err


def _table(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT pair_id, side, rule_id, score, relevance FROM ratings "
                           "ORDER BY pair_id, side, rule_id").fetchall()


def _count(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM ratings").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_rate_end_to_end_equals_rule_judge(tmp_path, judge_dir):
    from ramo.judge import RuleJudge

    pairs = _pairs(5)
    out = tmp_path / "ratings.db"
    code, stdout, err = _finish(_rate(tmp_path, judge_dir, _write_jsonl(tmp_path / "p.jsonl", pairs),
                                      out, "--export", str(tmp_path / "r.jsonl")))
    assert code == 0, err
    assert "30 ratings" in stdout
    table = _table(out)
    assert len(table) == 5 * 2 * 3
    direct = RuleJudge.from_pretrained(str(judge_dir), progress=False).rate(pairs, [r["text"] for r in RULES])
    for pair_id, side, rule_id, score, _ in table:
        i, r = int(pair_id[1:]), int(rule_id[1:]) - 1
        assert abs(score - direct.score[i, side, r].item()) < 1e-6
    exported = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(exported) == 30
    # Running again rates nothing and changes nothing.
    code, _, err = _finish(_rate(tmp_path, judge_dir, tmp_path / "p.jsonl", out))
    assert code == 0, err
    assert _table(out) == table


def test_resume_after_sigkill(tmp_path, judge_dir):
    pairs = _write_jsonl(tmp_path / "p.jsonl", _pairs(60))
    total = 60 * 2 * 3
    reference = tmp_path / "uninterrupted.db"
    code, _, err = _finish(_rate(tmp_path, judge_dir, pairs, reference))
    assert code == 0, err

    killed = tmp_path / "killed.db"
    proc = _rate(tmp_path, judge_dir, pairs, killed, "--commit-every", "1")
    deadline = time.monotonic() + 120
    while _count(killed) < 3 * 6 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _count(killed)
    assert 0 < partial < total, "the kill did not land mid-run"
    assert partial % 3 == 0, "a response's rules are committed together"

    code, _, err = _finish(_rate(tmp_path, judge_dir, pairs, killed))
    assert code == 0, err
    table = _table(killed)
    assert len(table) == total == len({row[:3] for row in table})
    assert table == _table(reference)


def test_two_ranks_under_torchrun(tmp_path, judge_dir):
    pairs = _write_jsonl(tmp_path / "p.jsonl", _pairs(7))
    single = tmp_path / "single.db"
    assert _finish(_rate(tmp_path, judge_dir, pairs, single))[0] == 0
    two = tmp_path / "two.db"
    # --standalone: a local rendezvous on a free port (a port of 0 never rendezvouses).
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2", "-m"]
    code, stdout, err = _finish(_rate(tmp_path, judge_dir, pairs, two, launcher=launcher))
    assert code == 0, err
    assert stdout.count("42 ratings") == 1  # rank 0 reports once everyone is done
    assert _table(two) == _table(single)


def test_refuses_another_judge_in_the_same_store(tmp_path, judge_dir):
    pairs = _write_jsonl(tmp_path / "p.jsonl", _pairs(2))
    out = tmp_path / "ratings.db"
    assert _finish(_rate(tmp_path, judge_dir, pairs, out))[0] == 0
    other = tmp_path / "other_judge"
    tok = tiny_tokenizer(chat=True)
    tiny_llama(len(tok), seed=3).save_pretrained(other)
    tok.save_pretrained(other)
    code, _, err = _finish(_rate(tmp_path, other, pairs, out))
    assert code == 2 and "judge" in err
    code, _, err = _finish(_rate(tmp_path, judge_dir, pairs, out, "--template", "rule-first"))
    assert code == 2 and "template" in err
    assert len(_table(out)) == 2 * 2 * 3


@pytest.mark.parametrize("rows, match", [
    ([{"id": "a", "prompt": "hi", "response_a": "ok", "response_b": " "}], "line 1"),
    ([{"id": "a", "prompt": "hi", "response_a": "ok"}], "missing"),
])
def test_bad_input_writes_nothing(tmp_path, judge_dir, rows, match):
    out = tmp_path / "ratings.db"
    code, _, err = _finish(_rate(tmp_path, judge_dir, _write_jsonl(tmp_path / "p.jsonl", rows), out))
    assert code == 2 and match in err, err
    assert not out.exists()


def test_duplicate_rule_ids_write_nothing(tmp_path, judge_dir):
    out = tmp_path / "ratings.db"
    proc = _rate(tmp_path, judge_dir, _write_jsonl(tmp_path / "p.jsonl", _pairs(1)), out,
                 rules=RULES + [RULES[0]])
    code, _, err = _finish(proc)
    assert code == 2 and "duplicate id 'r1'" in err, err
    assert not out.exists()


def test_unexpressible_answers_write_nothing(tmp_path, judge_dir):
    """A judge whose tokenizer has no token of its own for an answer is refused before the
    store is created."""
    path = tmp_path / "judge"
    tok = tiny_tokenizer(chat=True, drop_words=("Yes", "No"))
    tiny_llama(len(tok)).save_pretrained(path)
    tok.save_pretrained(path)
    out = tmp_path / "ratings.db"
    pairs = _write_jsonl(tmp_path / "p.jsonl", _pairs(1))
    code, _, err = _finish(_rate(tmp_path, path, pairs, out))
    assert code == 2 and "share token ids" in err, err
    assert not out.exists()
    # Naming the ids makes the same judge usable.
    yes, no = tok.convert_tokens_to_ids("[PAD]"), tok.convert_tokens_to_ids("</s>")
    code, _, err = _finish(_rate(tmp_path, path, pairs, out, "--answer-ids", f"yes={yes}",
                                 "--answer-ids", f"no={no}"))
    assert code == 0, err
    assert len(_table(out)) == 2 * 3
    code, _, err = _finish(_rate(tmp_path, path, pairs, tmp_path / "x.db", "--answer-ids", "yes=a"))
    assert code == 2 and "integers" in err, err
