"""The streaming read of the ratings store (`RatingStore.score_blocks`,
`require_complete_blocks`) and the blocked select step (`select_blocks`, `ramo select`),
against the dense ones, on small stores of odd sizes with missing ratings and ties."""

from __future__ import annotations

import json
import re

import pytest
import torch
from python_tests.encoder_models import tiny_encoder_dir
from python_tests.rating_rows import dense, sparse
from python_tests.test_ratings_store import (RULES, _open, _same, add, pairs_of, rules_of,
                                              unit_rows)

from ramo.cli import main
from ramo.io import Pair, Rule
from ramo.io.selections import selections_from
from ramo.ops import select_rules
from ramo.ratings import FIELDS, Ratings, RatingStore, require_complete_blocks
from ramo.relevance import embedding_relevance
from ramo.select import select, select_blocks

STORED = [f"p{i}" for i in range(7)]


def _concat(blocks: list[Ratings]) -> Ratings:
    return Ratings(sum((b.pair_ids for b in blocks), ()), blocks[0].rule_ids,
                   *(torch.cat([getattr(b, f) for b in blocks]) for f in FIELDS))


@pytest.fixture
def partly_rated(tmp_path):
    """A store of STORED on RULES[:5], less: p1 side 1 (never bound), p3 side 0 on r002,
    p6 side 1 on r004 (the last pair's last rule)."""
    rules = RULES[:5]
    db = tmp_path / "r.db"
    with _open(db) as store:
        for pair_id in STORED:
            for side in (0, 1):
                rows = unit_rows(pair_id, side, rules)
                if (pair_id, side) == ("p1", 1):
                    continue
                if (pair_id, side) == ("p3", 0):
                    rows = [r for r in rows if r[2] != "r002"]
                if (pair_id, side) == ("p6", 1):
                    rows = rows[:-1]
                add(store, rows)
    return db


# Not in key order, and with a pair the store has never seen.
PAIRS = ["p5", "p0", "unseen", "p3", "p6", "p1", "p2", "p4"]
ORDER = ["r003", "r000", "r004", "r001", "r002"]


@pytest.mark.parametrize("block_pairs", [1, 2, 3, 7, 8, 10, None])
def test_score_blocks_equal_scores(partly_rated, block_pairs):
    with RatingStore.open_existing(partly_rated) as store:
        whole = store.scores(pairs_of(PAIRS), rules_of(ORDER))
        blocks = list(store.score_blocks(pairs_of(PAIRS), rules_of(ORDER), block_pairs))
        assert not store._db.in_transaction  # the read transaction ended with the last block
        expected = dense(store.read(), PAIRS, ORDER)
    size = block_pairs or len(PAIRS)
    assert [len(b) for b in blocks] == [min(size, len(PAIRS) - i)
                                        for i in range(0, len(PAIRS), size)]
    assert all(b.rule_ids == tuple(ORDER) for b in blocks)
    assert _same(_concat(blocks), whole) and _same(whole, expected)
    assert int((~whole.valid).sum()) == 2 * 5 + 5 + 1 + 1  # unseen, p1 side 1, p3, p6


def test_score_blocks_checks_its_arguments_at_the_call(partly_rated):
    with RatingStore.open_existing(partly_rated) as store:
        given = pairs_of(PAIRS)
        order = rules_of(ORDER)
        for pairs, rules, block_pairs, what in (
                (pairs_of(["p0", "p1", "p0"]), order, 1, "lists 'p0' twice"),  # across blocks
                (given, [], None, "rule ids is empty"), ("p0", order, None, "not the string"),
                (PAIRS, order, None, "pairs themselves"),  # ids alone cannot be checked
                (given, ORDER, None, "rules themselves"),  # nor for rules
                (given, order, 0, "block_pairs"), (given, order, True, "block_pairs"),
                (given, order, 2.0, "block_pairs")):
            with pytest.raises(ValueError, match=what):
                store.score_blocks(pairs, rules, block_pairs)
        assert list(store.score_blocks(pairs_of([]), rules_of(ORDER))) == []
        # A block is read when it is taken, and a `scores` call in between changes nothing.
        blocks = store.score_blocks(pairs_of(PAIRS), rules_of(ORDER), 3)
        first = next(blocks)
        store.scores(pairs_of(["p4"]), rules_of(["r001"]))
        rest = list(blocks)
        assert _same(_concat([first, *rest]), store.scores(pairs_of(PAIRS), rules_of(ORDER)))
        # One left unfinished ends its read transaction when closed.
        blocks = store.score_blocks(pairs_of(PAIRS), rules_of(ORDER), 3)
        next(blocks)
        assert store._db.in_transaction
        blocks.close()
        assert not store._db.in_transaction


def test_score_blocks_read_one_snapshot_while_a_writer_adds(partly_rated):
    rules = RULES[:5]
    with _open(partly_rated) as writer, RatingStore.open_existing(partly_rated) as reader:
        blocks = reader.score_blocks(pairs_of(["p0", "p1"]), rules_of(rules), 1)
        assert bool(next(blocks).valid.all())
        add(writer, unit_rows("p1", 1, rules))  # committed between the two blocks
        late = next(blocks)
        assert not late.valid[0, 1].any() and late.valid[0, 0].all()  # as when it began
        assert list(blocks) == []  # the end of the read
        # a new read sees it
        assert bool(reader.scores(pairs_of(["p1"]), rules_of(rules)).valid.all())


def _message(call) -> str:
    with pytest.raises(ValueError) as info:
        call()
    return str(info.value)


@pytest.mark.parametrize("block_pairs", [1, 2, 3, 8])
def test_require_complete_blocks_raises_as_on_the_whole(partly_rated, block_pairs):
    with RatingStore.open_existing(partly_rated) as store:
        dense = _message(lambda: store.scores(pairs_of(PAIRS), rules_of(ORDER))
                         .require_complete(store.path))
        blocked = _message(lambda: list(require_complete_blocks(
            store.score_blocks(pairs_of(PAIRS), rules_of(ORDER), block_pairs), store.path)))
        assert blocked == dense and dense.startswith("17 of 80 ratings are missing")
        # Only the last pair's last rule: the error comes at the last block, counted right.
        late = _message(lambda: list(require_complete_blocks(store.score_blocks(
            pairs_of(["p0", "p2", "p6"]), rules_of(ORDER), block_pairs), store.path)))
        assert late == _message(lambda: store.scores(pairs_of(["p0", "p2", "p6"]), rules_of(ORDER))
                                .require_complete(store.path))
        assert late.startswith("1 of 30 ratings are missing") and "('p6', 1, 'r004')" in late
        complete = ["p0", "p2", "p4", "p5"]
        got = list(require_complete_blocks(
            store.score_blocks(pairs_of(complete), rules_of(ORDER), block_pairs), store.path))
        assert _same(_concat(got), store.scores(pairs_of(complete), rules_of(ORDER)))


def _rated(n: int, r: int, seed: int) -> tuple[list[Pair], list[Rule], Ratings]:
    """Complete ratings with many ties: scores and relevance on a grid of 1/8, a pair whose
    sides are equal (a tied label), one whose scores are all equal (tied rules), one where B
    is better on every rule and one where A is."""
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randint(-8, 9, (n, 2, r), generator=gen).double() / 8
    relevance = torch.randint(0, 9, (n, 2, r), generator=gen).double() / 8
    scores[1, 1] = scores[1, 0]
    scores[2] = 0.25
    scores[3, 0], scores[3, 1] = -0.5, 0.5
    scores[4, 0], scores[4, 1] = 0.5, -0.5
    pairs = [Pair(f"q{i:02d}", f"prompt {i} about rule {i % r}", f"a {i}", f"b {i}", i % 2)
             for i in range(n)]
    rules = [Rule(f"rule{j}", f"rule text {j}") for j in range(r)]
    rows = [(p.id, side, rule.id, 0.5, 0.25, 0.25, float(scores[i, side, j]),
             float(relevance[i, side, j]))
            for i, p in enumerate(pairs) for side in (0, 1) for j, rule in enumerate(rules)]
    return pairs, rules, dense(rows, [p.id for p in pairs], [r.id for r in rules])


def _blocks(ratings: Ratings, size: int) -> list[Ratings]:
    return [Ratings(ratings.pair_ids[i:i + size], ratings.rule_ids,
                    *(getattr(ratings, f)[i:i + size] for f in FIELDS))
            for i in range(0, len(ratings), size)]


@pytest.mark.parametrize("relevance", ["judge", "none", "embedding"])
def test_select_blocks_equal_the_op_on_all_pairs(tmp_path, relevance):
    pairs, rules, ratings = _rated(11, 6, seed=1)
    options = {"k": 3, "relevance": relevance, "discrepancy_weight": 0.75,
               "relevance_weight": 0.5}
    if relevance == "embedding":
        options["encoder"] = tiny_encoder_dir(tmp_path / "enc")
    rel = {"judge": ratings.pair_relevance(), "none": None}.get(relevance)
    if relevance == "embedding":
        rel = embedding_relevance([p.prompt for p in pairs], [r.text for r in rules],
                                  encoder=options["encoder"])
    # What `select` ran before it took blocks: the op over every pair at once.
    op = select_rules(ratings.score[:, 0], ratings.score[:, 1], rel, k=3,
                      discrepancy_weight=0.75, relevance_weight=0.5)
    want = selections_from([p.id for p in pairs], [r.id for r in rules], op)
    assert {s.preference for s in want} == {-1, 0, 1}
    assert select(pairs, rules, ratings, **options) == want
    for size in (1, 4, 11, 20):
        assert list(select_blocks(pairs, rules, _blocks(ratings, size), **options)) == want


def test_select_blocks_refuses_blocks_of_other_pairs():
    pairs, rules, ratings = _rated(5, 4, seed=2)
    blocks = _blocks(ratings, 2)
    for wrong in (blocks[:-1], blocks[1:], [blocks[1], blocks[0], blocks[2]]):
        with pytest.raises(ValueError, match="not of these pairs and rules"):
            list(select_blocks(pairs, rules, wrong, k=2))
    with pytest.raises(ValueError, match="k must be"):  # at the call, before any block
        select_blocks(pairs, rules, iter(()), k=9)


def _files(tmp_path, pairs: list[Pair], rules: list[Rule], ratings: Ratings, leave_out=()):
    """pairs.jsonl, rules.jsonl and a store of `ratings`, less the keys in leave_out."""
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(
        {"id": p.id, "prompt": p.prompt, "response_a": p.response_a, "response_b": p.response_b,
         "label": p.label}) + "\n" for p in pairs))
    (tmp_path / "rules.jsonl").write_text("".join(
        json.dumps({"id": r.id, "text": r.text}) + "\n" for r in rules))
    db = tmp_path / "ratings.sqlite"
    with _open(db) as store:
        add(store, [row for row in sparse(ratings) if row[:3] not in leave_out], pairs=pairs)
    return tmp_path / "pairs.jsonl", tmp_path / "rules.jsonl", db


def test_select_command_reads_blocks(tmp_path, monkeypatch, capsys):
    pairs, rules, ratings = _rated(9, 5, seed=3)
    pairs_file, rules_file, db = _files(tmp_path, pairs, rules, ratings)

    def run(out, store=db):
        return main(["select", "--pairs", str(pairs_file), "--rules", str(rules_file),
                     "--ratings", str(store), "--out", str(out), "-k", "2"])

    assert run(tmp_path / "one.jsonl") == 0  # 2**21 ratings a block: one block here
    whole = capsys.readouterr().out
    monkeypatch.setattr("ramo.ratings.store._BLOCK_RATINGS", 2 * 2 * len(rules))  # 2 pairs
    assert run(tmp_path / "blocks.jsonl") == 0
    assert capsys.readouterr().out.replace("blocks.jsonl", "one.jsonl") == whole
    assert (tmp_path / "blocks.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    want = select(pairs, rules, ratings, k=2)
    assert [json.loads(line) for line in (tmp_path / "one.jsonl").read_text().splitlines()] \
        == [s.to_row() for s in want]

    # A rating missing from the last pair: the same error as the dense read, and no file.
    holey = tmp_path / "holey"
    holey.mkdir()
    _, _, holey_db = _files(holey, pairs, rules, ratings, leave_out={("q08", 1, "rule4")})
    assert run(tmp_path / "none.jsonl", holey_db) == 2
    err = capsys.readouterr().err
    assert re.search(r"1 of 90 ratings are missing from \S+holey/ratings\.sqlite: "
                     r"\('q08', 1, 'rule4'\)$", err.strip())
    assert not (tmp_path / "none.jsonl").exists()
    assert not any(p.name.startswith(".none.jsonl") for p in tmp_path.iterdir())
