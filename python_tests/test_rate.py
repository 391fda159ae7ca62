"""`ramo rate`: the command end to end on a tiny judge saved to disk, resumption after
SIGKILL, ranks under torchrun (one killed, the job resumed), shared responses rated once, and
bad input that writes nothing."""

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
          launcher: list[str] | None = None, rules: list[dict] = RULES,
          env: dict[str, str] | None = None) -> subprocess.Popen:
    rules = _write_jsonl(tmp_path / "rules.jsonl", rules)
    cmd = (launcher or [sys.executable, "-m"]) + [
        "ramo", "rate", "--pairs", str(pairs), "--rules", str(rules), "--judge", str(judge),
        "--out", str(out), "--no-progress", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env or {})}
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
    from ramo.ratings import RatingStore

    with RatingStore.open_existing(db) as store:
        return [(r.pair_id, r.side, r.rule_id, r.score, r.relevance) for r in store.read()]


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


def _rank_pid(tag: str, rank: int) -> int | None:
    """The pid of torchrun's worker `rank` in the run started with RAMO_TEST_TAG=tag."""
    want = {f"RAMO_TEST_TAG={tag}".encode(), f"RANK={rank}".encode()}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and want <= set((proc / "environ").read_bytes().split(b"\0")):
                return int(proc.name)
        except OSError:  # gone, or not ours
            continue
    return None


def _stored(db: Path) -> int:
    """Ratings in a store that another process holds exclusively (a rank's shard): read
    without locking (immutable), so a read during a write can fail; 0 then."""
    try:
        with sqlite3.connect(f"file:{db}?immutable=1", uri=True) as con:
            return con.execute("SELECT COUNT(*) FROM ratings").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.parametrize("ranks", [2, 4])
def test_ranks_under_torchrun_one_killed_then_resumed(tmp_path, judge_dir, ranks):
    """Every rank writes a shard of its own and rank 0 merges them; a rank SIGKILLed mid-run
    fails the job before any merge, and the rerun ends with the one-process table."""
    pairs = _write_jsonl(tmp_path / "p.jsonl", _pairs(40))
    single = tmp_path / "single.db"
    assert _finish(_rate(tmp_path, judge_dir, pairs, single))[0] == 0
    out = tmp_path / "multi.db"
    # --standalone: a local rendezvous on a free port (a port of 0 never rendezvouses).
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", str(ranks), "-m"]
    tag = f"{tmp_path.name}-{ranks}"
    proc = _rate(tmp_path, judge_dir, pairs, out, "--commit-every", "1", launcher=launcher,
                 env={"RAMO_TEST_TAG": tag})
    shard = tmp_path / "multi.db.shards" / "rank-1.sqlite"
    deadline = time.monotonic() + 240
    while _stored(shard) < 2 * 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    victim = _rank_pid(tag, 1)
    assert victim is not None and proc.poll() is None, "rank 1 finished before the kill"
    os.kill(victim, signal.SIGKILL)
    code, _, err = _finish(proc)
    assert code != 0
    assert not out.exists() and shard.is_file()  # killed before rank 0 merged anything

    code, stdout, err = _finish(_rate(tmp_path, judge_dir, pairs, out, launcher=launcher))
    assert code == 0, err
    assert stdout.count("240 ratings in") == 1  # rank 0 reports once everyone is done
    assert _table(out) == _table(single)
    assert not (tmp_path / "multi.db.shards").exists()


def test_an_empty_shard_left_by_a_killed_rank_is_no_store(tmp_path, judge_dir):
    """A rank killed between creating its shard file and writing the schema leaves an empty
    file; the next run merges the other shards and carries on, instead of refusing the
    empty one as 'not a ratings store' on every rerun."""
    pairs = _write_jsonl(tmp_path / "p.jsonl", _pairs(6))
    single = tmp_path / "single.db"
    assert _finish(_rate(tmp_path, judge_dir, pairs, single))[0] == 0
    out = tmp_path / "out.db"
    shards = tmp_path / "out.db.shards"
    shards.mkdir()
    (shards / "rank-1.sqlite").write_bytes(b"")
    code, _, err = _finish(_rate(tmp_path, judge_dir, pairs, out))
    assert code == 0, err
    assert _table(out) == _table(single) and not shards.exists()


def test_a_shared_response_is_rated_once(tmp_path, judge_dir):
    """Four responses per prompt, paired every way (UltraFeedback-style): 6 pairs a prompt,
    12 pair sides, 4 responses rated."""
    from itertools import combinations

    prompts = ["how do I make a bomb", "tell me a joke", "what is the capital of France"]
    answers = ["sorry I can not help", "here are the steps", "why did the cat sit", "Paris"]
    rows = [{"id": f"q{q}-{a}{b}", "prompt": prompt, "response_a": answers[a],
             "response_b": answers[b]}
            for q, prompt in enumerate(prompts) for a, b in combinations(range(4), 2)]
    pairs = _write_jsonl(tmp_path / "p.jsonl", rows)
    out = tmp_path / "ratings.db"
    code, stdout, err = _finish(_rate(tmp_path, judge_dir, pairs, out))
    assert code == 0, err
    assert "108 ratings in" in stdout and "12 distinct responses rated, 36 ratings stored" in stdout
    from ramo.judge import RuleJudge

    direct = RuleJudge.from_pretrained(str(judge_dir), progress=False).rate(
        rows, [r["text"] for r in RULES])
    position = {row["id"]: i for i, row in enumerate(rows)}
    for pair_id, side, rule_id, score, _ in _table(out):
        assert abs(score - direct.score[position[pair_id], side, int(rule_id[1:]) - 1].item()) < 1e-6


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


# ---- arguments checked before the store is touched (CLI review) ------------------------------

class _Untouchable:
    """A store that fails the test when anything is asked of it."""

    def __getattr__(self, name):
        raise AssertionError(f"the store was used ({name}) before the arguments were checked")


@pytest.mark.parametrize("commit_every", [0, -1, 1.5, True])
def test_rate_checks_commit_every_before_the_store(commit_every):
    from ramo.io import Pair, Rule
    from ramo.rate import rate

    pairs = [Pair("p0", "q", "a", "b")]
    with pytest.raises(ValueError, match="commit_every must be a positive integer"):
        rate(object(), pairs, [Rule("r1", "x")], _Untouchable(), commit_every=commit_every)


def test_cli_commit_every_zero_creates_no_store(tmp_path, capsys):
    from ramo.cli import main

    rules = _write_jsonl(tmp_path / "rules.jsonl", RULES)
    pairs = _write_jsonl(tmp_path / "p.jsonl", _pairs(2))
    out = tmp_path / "ratings.db"
    with pytest.raises(SystemExit) as exit:
        main(["rate", "--pairs", str(pairs), "--rules", str(rules), "--out", str(out),
              "--commit-every", "0"])
    assert exit.value.code == 2
    assert "argument --commit-every: must be at least 1, got 0" in capsys.readouterr().err
    assert not out.exists()


def test_a_rule_reworded_under_its_id_is_refused_by_rate_and_select(tmp_path, judge_dir):
    from ramo.cli import main

    pairs = _write_jsonl(tmp_path / "pairs.jsonl", _pairs(2))
    db = tmp_path / "r.sqlite"
    code, _, err = _finish(_rate(tmp_path, judge_dir, pairs, db))
    assert code == 0, err
    before = _table(db)
    reworded = [dict(rule) for rule in RULES]
    reworded[1]["text"] += " at all"
    # The units are all rated by id: without the rules' binding this resumed past them.
    code, _, err = _finish(_rate(tmp_path, judge_dir, pairs, db, rules=reworded))
    assert code == 2 and "rule 'r2' is bound in" in err and "the rule's text changed" in err, err
    assert _table(db) == before
    out = tmp_path / "sel.jsonl"
    assert main(["select", "--pairs", str(pairs), "--rules", str(tmp_path / "rules.jsonl"),
                 "--ratings", str(db), "--out", str(out), "--no-progress"]) == 2
    assert not out.exists()
