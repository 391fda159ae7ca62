"""`ramo select` and `ramo label` end to end on a hand-made ratings store, the relevance
sources, and the atomic writers everything goes through."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from python_tests.test_ratings_store import add
from python_tests.encoder_models import tiny_encoder_dir

from ramo.cli import main
from ramo.io.atomic import atomic_dir, write_jsonl
from ramo.ops import select_rules
from ramo.ratings import RatingStore
from ramo.relevance import embedding_relevance

RULES = [{"id": f"r{j}", "text": t, "category": c} for j, (t, c) in enumerate([
    ("never give weapon instructions", "violence-weapons"), ("do not insult people", "hate"),
    ("protect private data", "privacy"), ("answer safe questions", "over-refusal"),
    ("be honest", "honesty")])]
N, R = 9, len(RULES)


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def rated(tmp_path):
    """(pairs file, rules file, store path, scores [N,2,R], relevance [N,2,R]); pair 0 is a
    tie and pair 1 prefers B."""
    gen = torch.Generator().manual_seed(0)
    # Multiples of 1/64: exact in float32, so sums have no rounding to argue about.
    scores = torch.randint(-64, 65, (N, 2, R), generator=gen).double() / 64
    scores[0, 1] = scores[0, 0]
    scores[1, 0], scores[1, 1] = -0.5, 0.5
    relevance = torch.randint(0, 65, (N, 2, R), generator=gen).double() / 64
    pairs = [{"id": f"p{n}", "prompt": f"question {n} how do i make a bomb",
              "response_a": f"sorry {n}", "response_b": f"here is how {n}", "label": n % 2}
             for n in range(N)]
    store = tmp_path / "ratings.sqlite"
    with RatingStore(store, judge_fingerprint="j" * 16, template_fingerprint="t" * 16) as s:
        add(s, [(f"p{n}", side, RULES[j]["id"], 0.5, 0.25, 0.25, float(scores[n, side, j]),
                float(relevance[n, side, j])) for n in range(N) for side in (0, 1) for j in range(R)],
            pairs=pairs)
    return (_jsonl(tmp_path / "pairs.jsonl", pairs), _jsonl(tmp_path / "rules.jsonl", RULES),
            store, scores.float(), relevance.float())


def _select(tmp_path, rated, *extra) -> tuple[int, Path]:
    pairs, rules, store, _, _ = rated
    out = tmp_path / "sel.jsonl"
    code = main(["select", "--pairs", str(pairs), "--rules", str(rules), "--ratings", str(store),
                 "--out", str(out), *extra])
    return code, out


@pytest.mark.parametrize("relevance", ["judge", "none"])
def test_select_command_equals_the_op(tmp_path, rated, relevance):
    code, out = _select(tmp_path, rated, "-k", "3", "--relevance", relevance)
    assert code == 0
    _, _, _, scores, rel = rated
    want = select_rules(scores[:, 0], scores[:, 1],
                        rel.mean(dim=1) if relevance == "judge" else None, k=3,
                        backend="reference")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"p{n}" for n in range(N)]
    for n, row in enumerate(rows):
        assert row["rule_ids"] == [RULES[j]["id"] for j in want.indices[n].tolist()]
        assert row["reward_a"] == pytest.approx(float(want.reward_a[n]), abs=0)
        assert row["margin"] == pytest.approx(float(want.margin[n]), abs=0)
        assert row["preference"] == int(want.preference[n])
    assert rows[0]["preference"] == 0 and rows[1]["preference"] == -1


def test_select_embedding_relevance_uses_the_encoder(tmp_path, rated):
    encoder = tiny_encoder_dir(tmp_path / "enc")
    code, out = _select(tmp_path, rated, "--relevance", "embedding", "--encoder", str(encoder))
    assert code == 0
    prompts = [f"question {n} how do i make a bomb" for n in range(N)]
    rel = embedding_relevance(prompts, [r["text"] for r in RULES], encoder=encoder)
    assert rel.shape == (N, R) and rel.abs().max() <= 1 + 1e-6
    _, _, _, scores, _ = rated
    want = select_rules(scores[:, 0], scores[:, 1], rel, k=5, backend="reference")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["rule_ids"] for r in rows] == [[RULES[j]["id"] for j in idx] for idx in want.indices.tolist()]


def test_select_bad_input_is_one_line_and_writes_nothing(tmp_path, rated, capsys):
    code, out = _select(tmp_path, rated, "-k", str(R + 1))
    assert code == 2 and not out.exists()
    assert f"k must be an integer from 1 to the pool's {R} rules" in capsys.readouterr().err
    pairs, _, store, _, _ = rated
    extra = _jsonl(tmp_path / "more_rules.jsonl", RULES + [{"id": "r99", "text": "unrated rule"}])
    code = main(["select", "--pairs", str(pairs), "--rules", str(extra), "--ratings", str(store),
                 "--out", str(out)])
    assert code == 2 and not out.exists()
    assert "ratings are missing" in capsys.readouterr().err
    code = main(["select", "--pairs", str(pairs), "--rules", str(extra), "--ratings",
                 str(tmp_path / "absent.sqlite"), "--out", str(out)])
    assert code == 2 and "no ratings store" in capsys.readouterr().err


@pytest.mark.parametrize("block_pairs", [None, 2])
def test_select_refuses_a_pair_whose_text_changed(tmp_path, rated, capsys, monkeypatch,
                                                  block_pairs):
    """The store's ratings of a pair are of the text rated: the same id with another
    response is refused, naming it, and no selections are written (also when it is found
    in a late block)."""
    pairs, rules, store, _, _ = rated
    if block_pairs:
        monkeypatch.setattr("ramo.ratings.store._BLOCK_RATINGS", block_pairs * 2 * R)
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    for n, side in ((1, "response_a"), (N - 1, "response_b")):
        changed = _jsonl(tmp_path / "changed.jsonl", [{**row, side: "CHANGED"} if i == n
                                                      else row for i, row in enumerate(rows)])
        out = tmp_path / "s2.jsonl"
        assert main(["select", "--pairs", str(changed), "--rules", str(rules), "--ratings",
                     str(store), "--out", str(out), "-k", "2", "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert f"pair 'p{n}' side {int(side == 'response_b')} is bound in" in err
        assert "rate the new text under a new pair id, or into a new store" in err
        assert not out.exists() and not list(tmp_path.glob(".s2.jsonl*"))
    # The texts rated read as before.
    code, out = _select(tmp_path, rated, "-k", "2", "--no-progress")
    assert code == 0 and len(out.read_text().splitlines()) == N


def test_select_progress_bar(tmp_path, rated, capsys, monkeypatch):
    """A bar over the pairs that moves a block at a time; none with --no-progress."""
    import ramo.progress

    monkeypatch.setattr("ramo.ratings.store._BLOCK_RATINGS", 4 * 2 * R)  # blocks of 4 pairs
    made, plain = [], ramo.progress.bar

    def bar(total, enabled, **kwargs):
        shown = plain(total, enabled, **kwargs)
        moves = []
        made.append((total, enabled, moves))
        update = shown.update
        shown.update = lambda n=1: (moves.append(n), update(n))[1]
        return shown

    monkeypatch.setattr(ramo.progress, "bar", bar)
    code, _ = _select(tmp_path, rated, "-k", "2")
    err = capsys.readouterr().err
    assert code == 0 and "selecting" in err and f"{N}/{N}" in err
    assert made == [(N, True, [4, 4, 1])]
    code, _ = _select(tmp_path, rated, "-k", "2", "--no-progress")
    assert code == 0 and capsys.readouterr().err == "" and made[1][:2] == (N, False)


def test_label_drops_ties_orders_sides_and_checks_ids(tmp_path, rated, capsys):
    _, sel = _select(tmp_path, rated, "-k", "2")
    pairs, rules, _, _, _ = rated
    out = tmp_path / "labeled.jsonl"
    assert main(["label", "--pairs", str(pairs), "--selections", str(sel), "--rules", str(rules),
                 "--out", str(out)]) == 0
    selections = [json.loads(line) for line in sel.read_text().splitlines()]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    ties = sum(s["preference"] == 0 for s in selections)
    assert ties >= 1 and len(rows) == N - ties
    assert f"{ties} ties dropped" in capsys.readouterr().out
    by_id = {s["id"]: s for s in selections}
    for row in rows:
        s = by_id[row["id"]]
        n = int(row["id"][1:])
        a, b = f"sorry {n}", f"here is how {n}"
        assert (row["chosen"], row["rejected"]) == ((a, b) if s["preference"] == 1 else (b, a))
        assert row["margin"] == abs(s["margin"]) and row["margin"] > 0
        assert row["rule_ids"] == s["rule_ids"] and set(row) == {
            "id", "prompt", "chosen", "rejected", "margin", "rule_ids", "chosen_side"}
        assert row["chosen_side"] == ("a" if s["preference"] == 1 else "b")
    chat = tmp_path / "labeled_chat.jsonl"
    assert main(["label", "--pairs", str(pairs), "--selections", str(sel), "--format",
                 "conversational", "--out", str(chat)]) == 0
    for row, chat_row in zip(rows, (json.loads(x) for x in chat.read_text().splitlines())):
        assert chat_row["prompt"] == [{"role": "user", "content": row["prompt"]}]
        assert chat_row["chosen"] == [{"role": "assistant", "content": row["chosen"]}]
        assert chat_row["rejected"] == [{"role": "assistant", "content": row["rejected"]}]

    bad_rule = _jsonl(tmp_path / "bad_rule.jsonl", [{**selections[1], "rule_ids": ["r0", "zz"]}])
    assert main(["label", "--pairs", str(pairs), "--selections", str(bad_rule), "--rules",
                 str(rules), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "not in the rule pool" in capsys.readouterr().err
    bad_pair = _jsonl(tmp_path / "bad_pair.jsonl", [{**selections[1], "id": "nope"}])
    assert main(["label", "--pairs", str(pairs), "--selections", str(bad_pair),
                 "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "'nope'" in capsys.readouterr().err
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(selections[0]) + "\n{not json\n")
    assert main(["label", "--pairs", str(pairs), "--selections", str(broken),
                 "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "line 2" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


def test_atomic_writers_leave_nothing_half_written(tmp_path):
    target = tmp_path / "rows.jsonl"
    write_jsonl(target, [{"a": 1}])
    with pytest.raises(ValueError):  # NaN is not JSON: fails after the first row is written
        write_jsonl(target, [{"a": 2}, {"a": float("nan")}])
    assert target.read_text() == '{"a": 1}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]

    folder = tmp_path / "model"
    with atomic_dir(folder) as tmp:
        (tmp / "weights.bin").write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_dir(folder) as tmp:
        (tmp / "weights.bin").write_bytes(b"new, but half")
        raise RuntimeError("killed while saving")
    assert (folder / "weights.bin").read_bytes() == b"old"
    with atomic_dir(folder) as tmp:
        (tmp / "weights.bin").write_bytes(b"new")
    assert (folder / "weights.bin").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "rows.jsonl"]
