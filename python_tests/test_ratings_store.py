"""The ratings store (ramo/ratings): round trips, one judge and template per store, all-or-nothing
adds, atomic exports, dense reads (complete and partial), read-only opens beside a writer,
concurrent writer processes and SIGKILL safety."""

from __future__ import annotations

import gzip
import json
import math
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
import zlib
from contextlib import closing
from pathlib import Path

import pytest
import torch

from ramo.ratings import (
    COLUMNS,
    FIELDS,
    DuplicateRatingError,
    Rating,
    Ratings,
    RatingStore,
    StoreError,
    StoreMismatchError,
    export_rows,
    read_ratings,
    response_key,
)
from python_tests.rating_rows import dense, missing, sparse
from ramo.io import Pair, Rule, as_pairs
from ramo.ratings.rows import BATCH_ROWS

ROOT = Path(__file__).resolve().parents[1]
JUDGE, TEMPLATE = "judge:3f9a", "template:rule-last:vocab"
RULES = [f"r{i:03d}" for i in range(100)]
PAIRS = [f"p{i:03d}" for i in range(100)]


def _open(path, judge=JUDGE, template=TEMPLATE, **kwargs) -> RatingStore:
    return RatingStore(path, judge_fingerprint=judge, template_fingerprint=template, **kwargs)


def _values(pair_id: str, side: int, rule_id: str) -> tuple[float, ...]:
    """Deterministic made-up judge output; crc32 is the same in every process (hash() is not)."""
    h = zlib.crc32(f"{pair_id}/{side}/{rule_id}".encode())
    a, b, c = 1 + h % 97, 1 + (h >> 8) % 89, 1 + (h >> 16) % 83
    p_yes, p_no, p_other = a / 1000, b / 1000, c / 1000
    return p_yes, p_no, p_other, p_yes - p_no, (p_yes + p_no) / (p_yes + p_no + p_other)


def unit_rows(pair_id: str, side: int, rule_ids=RULES) -> list[tuple]:
    """One unit of work: one response rated on every rule."""
    return [(pair_id, side, r, *_values(pair_id, side, r)) for r in rule_ids]


def pair(pair_id: str) -> Pair:
    """The made-up pair of an id in these tests: a prompt and two texts of its own."""
    return Pair(pair_id, f"prompt of {pair_id}", f"response A of {pair_id}",
                f"response B of {pair_id}")


def pairs_of(pair_ids) -> list[Pair]:
    """The made-up pairs (`pair`) of these ids: what the reads of values are given."""
    return [pair(pair_id) for pair_id in pair_ids]


def rules_of(rule_ids) -> list[Rule]:
    """Rules of these ids with made-up texts: what the reads of values are given (these
    tests' stores bind no rule texts, so any text passes their check)."""
    return [Rule(rule_id, f"rule {rule_id}") for rule_id in rule_ids]


def unit_key(p: Pair, side: int) -> str:
    """The response key of a pair's side, as `ramo rate` binds it."""
    return response_key(p.prompt, (p.response_a, p.response_b)[side])


def key(pair_id: str, side: int) -> str:
    """The response key of a unit of the made-up pair `pair(pair_id)`: every unit its own."""
    return unit_key(pair(pair_id), side)


def add(store: RatingStore, rows, *, pairs=(), **kwargs) -> int:
    """store.add, after binding each unit of the rows to its response: that of its pair in
    `pairs` (`Pair`s, or dicts with a pair file's columns) when it is there, else that of
    the made-up `pair`. Rows that are not well formed are left to `add` to refuse."""
    rows = list(rows)
    units = {(r[0], r[1]) for r in rows if isinstance(r, tuple) and len(r) > 1
             and isinstance(r[0], str) and r[0] and r[1] in (0, 1) and not isinstance(r[1], bool)}
    units |= {(r["pair_id"], r["side"]) for r in rows if isinstance(r, dict)
              and isinstance(r.get("pair_id"), str) and r.get("side") in (0, 1)}
    given = {p.id: p for p in as_pairs(list(pairs))}
    store.bind([(pair_id, side, unit_key(given.get(pair_id) or pair(pair_id), side))
                for pair_id, side in sorted(units)])
    return store.add(rows, **kwargs)


def write_all(db, pair_ids=PAIRS, rule_ids=RULES, pause: float = 0.0) -> None:
    """A resumable rating loop: rates only the missing units, committing one unit at a time."""
    with _open(db) as store:
        for pair_id, side in store.missing_units(pair_ids, rule_ids):
            add(store, unit_rows(pair_id, side, rule_ids))
            time.sleep(pause)


def _count(db: Path) -> int:
    """Rows committed so far, read without creating or locking anything."""
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
            return con.execute("SELECT COUNT(*) FROM ratings").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def _unit_sizes(db: Path) -> set[int]:
    with closing(sqlite3.connect(db)) as con:
        return {n for (n,) in con.execute("SELECT COUNT(*) FROM ratings GROUP BY response")}


# ---- round trip, meta, resumption ---------------------------------------------------------------


def test_round_trip_and_reopen(tmp_path):
    db = tmp_path / "sub" / "ratings.db"  # missing folders are created
    rows = unit_rows("b", 1, RULES[:3]) + unit_rows("a", 0, RULES[:3]) + [
        {"pair_id": "a", "side": 1, "rule_id": "r000", "p_yes": 0.25, "p_no": 0.5,
         "p_other": 0.25, "score": -0.25, "relevance": 0.75}]
    with _open(db, judge_info={"model": "tiny", "dtype": "float32"},
               template_info={"template": "rule-last"}) as store:
        assert add(store, rows) == 7
        assert add(store, []) == 0
        assert store.count() == 7
    with _open(db) as store:  # info is recorded once, at creation
        assert store.judge_info == {"model": "tiny", "dtype": "float32"}
        assert store.template_info == {"template": "rule-last"}
        got = store.read()
    expected = sorted(tuple(r.values()) if isinstance(r, dict) else r for r in rows)
    assert got == expected and all(isinstance(r, Rating) for r in got)
    assert got[0].pair_id == "a" and got[0].side == 0
    with closing(sqlite3.connect(db)) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()  # closing twice is harmless
    with pytest.raises(ValueError, match="closed"):
        store.count()


def test_missing_units_and_completed_pairs(tmp_path):
    with _open(tmp_path / "r.db") as store:
        add(store, unit_rows("p1", 0) + unit_rows("p1", 1))
        add(store, unit_rows("p2", 1))
        add(store, unit_rows("p3", 0, RULES[:50]))  # a unit from a smaller rule pool
        add(store, unit_rows("p4", 0, ["other"]))   # a rule not asked about is ignored
        assert store.missing_units(["p3", "p1", "p2", "p4"], RULES) == [
            ("p3", 0), ("p3", 1), ("p2", 0), ("p4", 0), ("p4", 1)]
        assert store.missing_units(["p3", "p1", "p2"], RULES[:50]) == [("p3", 1), ("p2", 0)]
        assert store.missing_units([], RULES) == []
        assert store.completed_pairs(RULES) == {"p1"}
        assert store.completed_pairs(["other"]) == set()
        with pytest.raises(ValueError, match="twice"):
            store.missing_units(["p1", "p1"], RULES)
        with pytest.raises(ValueError, match="empty"):
            store.missing_units(["p1"], [])
        # Completing the partial unit: its stored rows are kept, only the new ones written.
        assert add(store, unit_rows("p3", 0), skip_existing=True) == 50
        assert store.missing_units(["p3"], RULES) == [("p3", 1)]


# ---- one judge, one template --------------------------------------------------------------------


@pytest.mark.parametrize("judge, template, named", [
    ("judge:other", TEMPLATE, ["judge:3f9a", "judge:other"]),
    (JUDGE, "template:rule-first:vocab", ["template:rule-last:vocab", "template:rule-first:vocab"]),
    ("judge:other", "template:x", ["judge:other", "template:x"]),
])
def test_another_judge_or_template_is_refused(tmp_path, judge, template, named):
    db = tmp_path / "r.db"
    with _open(db, judge_info={"model": "a"}) as store:
        add(store, unit_rows("p1", 0))
    with pytest.raises(StoreMismatchError) as err:
        _open(db, judge=judge, template=template)
    assert isinstance(err.value, ValueError)
    assert all(repr(name) in str(err.value) for name in named), str(err.value)
    with _open(db) as store:  # untouched
        assert store.count() == len(RULES) and store.judge_info == {"model": "a"}


def test_what_is_not_a_store_is_refused_and_left_alone(tmp_path):
    text = tmp_path / "notes.db"
    text.write_text("not a database, just some text that is long enough " * 20)
    with pytest.raises(StoreError, match="not a ratings store"):
        _open(text)
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as con:
        con.execute("CREATE TABLE t (x)")
        con.commit()
    with pytest.raises(StoreError, match="not a ratings store"):
        _open(other)
    with closing(sqlite3.connect(other)) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    with pytest.raises(ValueError, match="judge_fingerprint"):
        _open(tmp_path / "new.db", judge="")
    with pytest.raises(ValueError, match="JSON"):
        _open(tmp_path / "new.db", judge_info={"x": object()})
    assert not (tmp_path / "new.db").exists()  # bad arguments create nothing


# ---- all or nothing -----------------------------------------------------------------------------


BAD_ROWS = {
    "side 2": ("p", 2, "r", 0.1, 0.2, 0.7, -0.1, 0.3),
    "side -1": ("p", -1, "r", 0.1, 0.2, 0.7, -0.1, 0.3),
    "side bool": ("p", True, "r", 0.1, 0.2, 0.7, -0.1, 0.3),
    "side str": ("p", "0", "r", 0.1, 0.2, 0.7, -0.1, 0.3),
    "nan": ("p", 0, "r", float("nan"), 0.2, 0.7, -0.1, 0.3),
    "inf": ("p", 0, "r", 0.1, 0.2, 0.7, -0.1, float("inf")),
    "str value": ("p", 0, "r", "0.1", 0.2, 0.7, -0.1, 0.3),
    "None value": ("p", 0, "r", 0.1, None, 0.7, -0.1, 0.3),
    "empty pair id": ("", 0, "r", 0.1, 0.2, 0.7, -0.1, 0.3),
    "empty rule id": ("p", 0, "", 0.1, 0.2, 0.7, -0.1, 0.3),
    "int pair id": (7, 0, "r", 0.1, 0.2, 0.7, -0.1, 0.3),
    "short": ("p", 0, "r", 0.1, 0.2, 0.7, -0.1),
    "not a row": "p0r",
    "dict missing key": {"pair_id": "p", "side": 0, "rule_id": "r", "p_yes": 0.1},
    "dict extra key": dict(zip(COLUMNS + ("relevence",), ("p", 0, "r", 0.1, 0.2, 0.7, -0.1, 0.3, 0.3))),
}


@pytest.mark.parametrize("name", BAD_ROWS)
def test_a_bad_row_writes_nothing(tmp_path, name):
    with _open(tmp_path / "r.db") as store:
        add(store, unit_rows("p0", 0, RULES[:2]))
        with pytest.raises(ValueError, match="row 3") as err:
            add(store, unit_rows("p1", 0, RULES[:3]) + [BAD_ROWS[name]] + unit_rows("p2", 0, RULES[:3]))
        assert "nothing was written" in str(err.value)
        assert store.count() == 2


def test_duplicates_are_refused_never_stored(tmp_path):
    """Decision: adding a stored key is an error (the loop writes only missing units, so a
    duplicate means overlapping shards or a bug); skip_existing=True skips stored keys. A
    stored rating is never replaced and no key is ever stored twice."""
    with _open(tmp_path / "r.db") as store:
        add(store, unit_rows("p1", 0))
        before = store.read()
        again = [("p1", 0, RULES[5], 0.9, 0.05, 0.05, 0.85, 0.95)]
        with pytest.raises(DuplicateRatingError, match="'p1', 0, 'r005'"):
            add(store, unit_rows("p2", 0) + again)  # the new unit is not written either
        with pytest.raises(DuplicateRatingError, match="rows 0 and 2"):
            add(store, unit_rows("p3", 0, ["x", "y"]) + unit_rows("p3", 0, ["x"]))
        assert store.read() == before
        assert add(store, unit_rows("p2", 0) + again, skip_existing=True) == len(RULES)
        assert store.count() == 2 * len(RULES)
        assert [r for r in store.read() if r.pair_id == "p1"] == before


# ---- export -------------------------------------------------------------------------------------


def _read_export(path: Path) -> list[tuple]:
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        opened = gzip.open if path.suffix == ".gz" else open
        with opened(path, "rt", encoding="utf-8") as f:
            return [tuple(json.loads(line)[c] for c in COLUMNS) for line in f]
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    assert table.column_names == list(COLUMNS)
    return list(zip(*(table.column(c).to_pylist() for c in COLUMNS)))


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".jsonl.gz"])
def test_export_round_trip(tmp_path, suffix):
    db = tmp_path / "r.db"
    with _open(db) as store:
        target = tmp_path / f"out{suffix}"
        store.export(target)  # an empty store exports an empty table
        assert _read_export(target) == []
        add(store, unit_rows("é/ü", 1, RULES[:7]) + unit_rows("p0", 0, RULES[:7]))
        assert store.export(target) == target  # replaces the previous export
        assert _read_export(target) == store.read()  # bit-exact floats, sorted
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out" + suffix, "r.db"]


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_export_is_atomic(tmp_path, suffix):
    target = tmp_path / f"out{suffix}"

    def failing_rows(n):
        for i in range(n):
            yield unit_rows(f"p{i}", 0, RULES[:1])[0]
        raise RuntimeError("the disk went away")

    # Fails in the first batch and, for Parquet, after a whole row group was written.
    for n in (3, BATCH_ROWS + 5):
        with pytest.raises(RuntimeError, match="disk went away"):
            export_rows(failing_rows(n), target)
        assert list(tmp_path.iterdir()) == []  # no target, no temporary file
    export_rows(unit_rows("p", 0, RULES[:2]), target)
    previous = target.read_bytes()
    with pytest.raises(RuntimeError):
        export_rows(failing_rows(3), target)
    assert target.read_bytes() == previous and list(tmp_path.iterdir()) == [target]


def test_export_refuses_other_suffixes(tmp_path):
    with _open(tmp_path / "r.db") as store:
        for name in ("out.csv", "out.json", "out", "out.parquet.gz"):
            with pytest.raises(ValueError, match=".parquet, .jsonl or .jsonl.gz"):
                store.export(tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.db"]


# ---- dense reads --------------------------------------------------------------------------------


def _same(a: Ratings, b: Ratings) -> bool:
    """Equal ids and bit-equal fields, NaN where NaN (Ratings has no ==: tensors are elementwise)."""
    return (a.pair_ids == b.pair_ids and a.rule_ids == b.rule_ids
            and all(torch.equal(getattr(a, f).view(torch.int32), getattr(b, f).view(torch.int32))
                    for f in FIELDS))


def test_scores_and_require_complete(tmp_path):
    pairs, rules = ["p2", "p0", "p1"], ["r003", "r000", "r007", "r001"]
    db = tmp_path / "r.db"
    with _open(db) as store:
        for pair_id in pairs + ["unasked"]:
            add(store, unit_rows(pair_id, 0, RULES[:10]) + unit_rows(pair_id, 1, RULES[:10]))
        ratings = store.scores(pairs_of(pairs), rules_of(rules))
        assert ratings.require_complete(str(store.path)) is ratings
        assert ratings.pair_ids == tuple(pairs) and ratings.rule_ids == tuple(rules)
        assert len(ratings) == 3 and ratings.valid.all()
        # Filled in float64, as stored, and rounded once to float32.
        expected = torch.tensor([[[_values(p, side, r) for r in rules] for side in (0, 1)]
                                 for p in pairs], dtype=torch.float64).float()
        for k, name in enumerate(FIELDS):
            value = getattr(ratings, name)
            assert value.shape == (3, 2, 4) and value.dtype == torch.float32
            assert torch.equal(value, expected[..., k]), name
        empty = store.scores([], rules_of(rules)).require_complete(str(store.path))
        assert _same(read_ratings(db, pairs_of(pairs), [Rule(r, r) for r in rules]), ratings)
        assert empty.score.shape == empty.relevance.shape == (0, 2, 4) and len(empty) == 0
        missing = r"10 of 16 ratings are missing from .*r\.db: \('p0', 0, 'r099'\).* and 5 more"
        with pytest.raises(ValueError, match=missing):
            store.scores(pairs_of(["p0", "p9"]),
                         rules_of(rules[:3] + ["r099"])).require_complete(str(store.path))
        pool = rules_of(rules)
        for bad_pairs, bad_rules, what in (
                (pairs_of(["p0", "p0"]), pool, "twice"), (pairs_of(pairs), [], "empty"),
                ("p0", pool, "not the string"), ([7], pool, "pairs themselves"),
                (pairs, pool, "pairs themselves .* got str 'p2'"),  # ids are not enough
                ([Pair(7, "q", "a", "b")], pool, "must be a non-empty string"),
                (pairs_of(pairs), rules, "rules themselves .* got str 'r003'"),  # nor for rules
                (pairs_of(pairs), "r003", "not the string"),
                (pairs_of(pairs), pool + pool[:1], "lists 'r003' twice")):
            with pytest.raises(ValueError, match=what):
                store.scores(bad_pairs, bad_rules)


def test_scores_of_a_partly_rated_store(tmp_path):
    rules = RULES[:4]
    with _open(tmp_path / "r.db") as store:
        add(store, unit_rows("p1", 0, rules) + unit_rows("p1", 1, rules))
        add(store, unit_rows("p2", 1, rules))
        add(store, unit_rows("p3", 0, [rules[0], rules[2]]) + unit_rows("p3", 1, ["other"]))
        pairs = ["p3", "p4", "p1", "p2"]  # p4: nothing stored
        ratings = store.scores(pairs_of(pairs), rules_of(rules))
        stored = {row[:3]: row[3:] for row in store.read()}
        for i, pair_id in enumerate(pairs):
            for side in (0, 1):
                for j, rule_id in enumerate(rules):
                    values = stored.get((pair_id, side, rule_id))
                    assert bool(ratings.valid[i, side, j]) == (values is not None)
                    got = [float(getattr(ratings, f)[i, side, j]) for f in FIELDS]
                    if values is None:
                        assert all(math.isnan(v) for v in got)
                    else:
                        assert got == [float(torch.tensor(v).float()) for v in values]
        absent = missing(ratings)
        assert absent == [(p, side, r) for p in pairs for side in (0, 1) for r in rules
                           if (p, side, r) not in stored]
        assert len(absent) == 2 + 4 + 8 + 0 + 4  # p3 side 0, p3 side 1, p4, p1, p2 side 0
        # The sparse view is the stored rows of these pairs and rules, in the arguments' order.
        assert list(sparse(ratings)) == [
            Rating(p, side, r, *(float(torch.tensor(v).float()) for v in stored[(p, side, r)]))
            for p in pairs for side in (0, 1) for r in rules if (p, side, r) in stored]
        assert _same(dense(store.read(), pairs, rules), ratings)
        assert sorted({(p, side) for p, side, _ in absent}) == sorted(
            store.missing_units(pairs, rules))
        with pytest.raises(ValueError, match=r"18 of 32 ratings are missing"):
            ratings.require_complete(str(store.path))


# ---- read-only opens -----------------------------------------------------------------------------


def test_open_existing_reads_and_never_writes(tmp_path):
    db = tmp_path / "r.db"
    with _open(db, judge_info={"model": "tiny"}) as store:
        add(store, unit_rows("p1", 0) + unit_rows("p1", 1) + unit_rows("p2", 0))
        written = store.read()
    before = db.read_bytes()
    with RatingStore.open_existing(db) as reader:
        assert (reader.judge_fingerprint, reader.template_fingerprint) == (JUDGE, TEMPLATE)
        assert reader.judge_info == {"model": "tiny"}
        assert reader.read() == written and reader.count() == len(written)
        assert reader.missing_units(["p2", "p1"], RULES) == [("p2", 1)]
        assert reader.completed_pairs(RULES) == {"p1"}
        assert _same(reader.scores(pairs_of(["p1", "p2"]), rules_of(RULES)),
                     dense(written, ["p1", "p2"], RULES))
        assert reader.export(tmp_path / "out.jsonl") == tmp_path / "out.jsonl"
        with pytest.raises(StoreError, match=r"r\.db was opened read-only"):
            add(reader, unit_rows("p2", 1))
        with pytest.raises(StoreError, match="read-only"):
            add(reader, [])  # refused as such, not merely because there is nothing to add
        assert reader.count() == len(written)
    assert db.read_bytes() == before  # not even the header changed
    # ... and sqlite's -wal / -shm files, which a read-only reader cannot remove, are gone:
    # nobody else had the store open.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "r.db"]
    with closing(sqlite3.connect(db)) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with _open(db) as store:  # a writer after a reader: as before
        add(store, unit_rows("p2", 1))
        assert store.missing_units(["p1", "p2"], RULES) == []


def test_open_existing_beside_a_writer(tmp_path):
    """Readers get in while a writer holds the write lock and has uncommitted rows: WAL lets
    them read the last commit; they never wait for the writer nor make it wait."""
    db = tmp_path / "r.db"
    with _open(db) as writer:
        add(writer, unit_rows("p1", 0))
        writer.bind([("p1", 1, key("p1", 1))])
        writer._con.execute("BEGIN IMMEDIATE")
        writer._con.executemany(
            f"INSERT INTO ratings VALUES ({', '.join('?' * (len(COLUMNS) - 1))})",
            [(key("p1", 1), *row[2:]) for row in unit_rows("p1", 1)])
        start = time.monotonic()
        with RatingStore.open_existing(db, timeout=30) as reader:
            assert reader.read() == sorted(unit_rows("p1", 0))  # the last commit only
            assert reader.missing_units(["p1"], RULES) == [("p1", 1)]
            ratings = reader.scores(pairs_of(["p1"]), rules_of(RULES))
            assert ratings.valid[0, 0].all() and not ratings.valid[0, 1].any()
            assert reader.completed_pairs(RULES) == set()
            writer._con.execute("COMMIT")
            assert reader.missing_units(["p1"], RULES) == []  # each read sees the latest commit
            assert add(writer, unit_rows("p2", 0)) == len(RULES)  # an open reader blocks no writer
            assert reader.scores(pairs_of(["p2"]), rules_of(RULES)).valid[0, 0].all()
        assert time.monotonic() - start < 10  # nobody waited for the busy timeout
        # The reader's tidying left the writer's WAL alone: it still reads and writes.
        assert add(writer, unit_rows("p2", 1)) == len(RULES)
        assert writer.missing_units(["p1", "p2"], RULES) == []


def test_open_existing_refuses_what_is_not_a_store(tmp_path):
    with pytest.raises(FileNotFoundError, match="no ratings store"):
        RatingStore.open_existing(tmp_path / "missing" / "r.db")
    assert list(tmp_path.iterdir()) == []  # no folder created
    text = tmp_path / "notes.db"
    text.write_text("not a database, just some text that is long enough " * 20)
    with pytest.raises(StoreError, match="not a ratings store"):
        RatingStore.open_existing(text)
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as con:
        con.execute("CREATE TABLE t (x)")
        con.commit()
    with pytest.raises(StoreError, match=r"not a ratings store \(its tables: t\)"):
        RatingStore.open_existing(other)
    with closing(sqlite3.connect(other)) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    future = tmp_path / "future.db"
    _open(future).close()
    with closing(sqlite3.connect(future)) as con:
        con.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
        con.commit()
    with pytest.raises(StoreError, match="schema version '3'"):
        RatingStore.open_existing(future)


def test_open_existing_paths_that_need_escaping(tmp_path):
    db = tmp_path / "a?b#c %41 é" / "r.db"  # "?", "#" and "%" mean something in a URI
    with _open(db) as store:
        add(store, unit_rows("p1", 0, RULES[:2]))
    with RatingStore.open_existing(db) as reader:
        assert reader.count() == 2 and reader.path == db


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_open_existing_in_a_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    with _open(folder / "r.db") as store:
        add(store, unit_rows("p1", 0, RULES[:2]))
    # Readable only while the -shm file sqlite keeps beside a WAL database can be created.
    folder.chmod(0o555)
    try:
        with pytest.raises(StoreError, match="not writable"):
            RatingStore.open_existing(folder / "r.db")
    finally:
        folder.chmod(0o755)


# ---- processes ----------------------------------------------------------------------------------


def _shard_writer(db: str, shard: int, barrier) -> None:
    barrier.wait()  # both open the (not yet existing) store at the same moment
    write_all(db, PAIRS[shard::2], RULES[:20])


def test_two_writer_processes(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    db = tmp_path / "two.db"
    procs = [ctx.Process(target=_shard_writer, args=(str(db), shard, barrier)) for shard in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    write_all(tmp_path / "one.db", PAIRS, RULES[:20])
    with _open(db) as two, _open(tmp_path / "one.db") as one:
        assert two.count() == len(PAIRS) * 2 * 20
        assert two.read() == one.read()


def _python(code: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_midway_then_resume(tmp_path):
    killed, reference = tmp_path / "killed.db", tmp_path / "reference.db"
    total = len(PAIRS) * 2 * len(RULES)
    proc = _python("from python_tests.test_ratings_store import write_all\n"
                   f"write_all({str(killed)!r}, pause=0.002)")
    try:
        deadline = time.monotonic() + 60
        while _count(killed) < 10 * len(RULES) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
    finally:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err
    partial = _count(killed)
    assert 0 < partial < total, "the kill did not land mid-run"
    assert partial % len(RULES) == 0 and _unit_sizes(killed) == {len(RULES)}  # whole units only
    with RatingStore.open_existing(killed) as reader:  # a reader recovers the WAL it left too
        assert reader.count() == partial

    write_all(killed)  # the resumed run writes only what is missing
    write_all(reference)
    with _open(killed) as resumed, _open(reference) as uninterrupted:
        rows = resumed.read()
        assert len(rows) == total == len({r[:3] for r in rows})
        assert rows == uninterrupted.read()


_STALLED_ADD = """
import sys, time
from python_tests.test_ratings_store import _open, add, key, unit_rows, PAIRS
store = _open(sys.argv[1])
add(store, unit_rows("p000", 0))
store.bind([(p, side, key(p, side)) for p in PAIRS[1:] for side in (0, 1)])
store._con.execute("PRAGMA cache_size=10")  # spills the uncommitted rows into the WAL


class StallInsideTransaction:
    def __init__(self, con):
        self._c = con

    def __getattr__(self, name):
        return getattr(self._c, name)

    def executemany(self, sql, rows):
        if not sql.startswith("INSERT INTO ratings"):
            return self._c.executemany(sql, rows)
        rows = list(rows)
        self._c.executemany(sql, rows[: len(rows) // 2])
        print("inside", flush=True)
        time.sleep(60)


store._con = StallInsideTransaction(store._con)
store.add([row for p in PAIRS[1:] for side in (0, 1) for row in unit_rows(p, side)])
"""


def test_sigkill_inside_a_transaction_leaves_nothing_of_it(tmp_path):
    db = tmp_path / "r.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _STALLED_ADD, str(db)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        inside = proc.stdout.readline()
        wal_size = Path(f"{db}-wal").stat().st_size if inside else 0
    finally:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    assert inside == "inside\n", err
    assert wal_size > 200_000  # the half-written transaction really is in the WAL file
    assert proc.returncode == -signal.SIGKILL
    with _open(db) as store:
        assert store.read() == sorted(unit_rows("p000", 0))
        assert store.missing_units(PAIRS[:2], RULES) == [("p000", 1), ("p001", 0), ("p001", 1)]


# ---- keyed by response ---------------------------------------------------------------------------


def test_a_shared_response_is_rated_once(tmp_path):
    # p1's A and p2's B are one response (same prompt and text); p2's A another.
    p1, p2 = Pair("p1", "q", "x", "y"), Pair("p2", "q", "z", "x")
    x = unit_key(p1, 0)
    with _open(tmp_path / "r.db") as store:
        assert store.bind([("p1", 0, x), ("p2", 1, x), ("p2", 0, unit_key(p2, 0))]) == 3
        assert store.bind([("p1", 0, x)]) == 0  # bound the same way: nothing new
        assert store.missing_units(["p1", "p2"], RULES[:4]) == [("p1", 0), ("p1", 1),
                                                                 ("p2", 0), ("p2", 1)]
        assert store.add(unit_rows("p1", 0, RULES[:4])) == 4
        assert store.missing_units(["p1", "p2"], RULES[:4]) == [("p1", 1), ("p2", 0)]
        assert store.count() == 8 and store.count_rated() == (1, 4)
        shared = [r for r in store.read() if (r.pair_id, r.side) == ("p2", 1)]
        assert [r[2:] for r in shared] == [r[2:] for r in unit_rows("p1", 0, RULES[:4])]
        ratings = store.scores([p2, p1], rules_of(RULES[:4]))
        assert torch.equal(ratings.score[0, 1], ratings.score[1, 0])
        assert ratings.valid[0, 1].all() and not ratings.valid[0, 0].any()
        # Rating the other side of the shared response again is a duplicate of the same key.
        with pytest.raises(DuplicateRatingError, match="'p2', 1, 'r000'"):
            store.add(unit_rows("p2", 1, RULES[:1]))
        assert store.add(unit_rows("p2", 1, RULES[:1]), skip_existing=True) == 0
        with pytest.raises(DuplicateRatingError, match="share it"):  # two units, one response
            store.add(unit_rows("p1", 0, ["x"]) + unit_rows("p2", 1, ["x"]))


def test_a_pair_is_never_rebound_to_another_response(tmp_path):
    with _open(tmp_path / "r.db") as store:
        store.bind([("p1", 0, "resp-x")])
        add(store, unit_rows("p9", 0, RULES[:2]))
        before = store.read()
        with pytest.raises(ValueError, match="pair 'p1' side 0 is bound .* to another response"):
            store.bind([("p2", 0, "resp-z"), ("p1", 0, "resp-changed")])
        with pytest.raises(ValueError, match="two responses"):
            store.bind([("p3", 0, "a"), ("p3", 0, "b")])
        with pytest.raises(ValueError, match="unit row 0"):
            store.bind([("p3", 2, "a")])
        with pytest.raises(ValueError, match="'p5' side 1 is not bound"):
            store.add(unit_rows("p5", 1, RULES[:2]))
        assert store.read() == before
        assert store.missing_units(["p2"], RULES[:2]) == [("p2", 0), ("p2", 1)]  # not bound


def test_reads_refuse_a_pair_whose_text_changed(tmp_path):
    """Ratings are bound to the texts rated: a pair read with another prompt or response
    under the same id is refused by every read of values, naming the pair and side."""
    from dataclasses import replace

    db, rules = tmp_path / "r.db", RULES[:3]
    ids = ["p0", "p1", "p2", "p3"]
    with _open(db) as store:
        add(store, [row for p in ids for side in (0, 1) for row in unit_rows(p, side, rules)])
        unchanged = store.scores(pairs_of(ids), rules_of(rules))
    assert unchanged.valid.all()
    changed_b = [*pairs_of(ids[:2]), replace(pair("p2"), response_b="CHANGED"), pair("p3")]
    changed_prompt = [replace(pair("p1"), prompt="another prompt"), *pairs_of(["p0", "p2"])]
    with RatingStore.open_existing(db) as store:
        with pytest.raises(ValueError, match=r"pair 'p2' side 1 is bound in \S+r\.db to another "
                           r"response .*response B changed .*rate the new text under a new "
                           r"pair id, or into a new store$"):
            store.scores(changed_b, rules_of(rules))
        with pytest.raises(ValueError, match=r"pair 'p1' side 0 .*\(1 more of the 6 responses "
                           r"given differ too\).*prompt or response A changed"):
            store.scores(changed_prompt, rules_of(rules))
        # Streaming: the blocks before the changed pair's are read, then its block raises, and
        # the read transaction ends.
        blocks = store.score_blocks(changed_b, rules_of(rules), 2)
        assert _same(next(blocks), store.scores(pairs_of(ids[:2]), rules_of(rules)))
        with pytest.raises(ValueError, match="pair 'p2' side 1 is bound"):
            next(blocks)
        assert not store._db.in_transaction
        with pytest.raises(ValueError, match="pair 'p2' side 1 is bound"):
            list(store.score_blocks(changed_b, rules_of(rules)))
        # Unchanged texts read as before, in blocks too; a pair the store has no unit for,
        # whatever its text, is read as unrated.
        assert _same(store.scores(pairs_of(ids), rules_of(rules)), unchanged)
        blocks = list(store.score_blocks(pairs_of(ids), rules_of(rules), 3))
        assert [len(b) for b in blocks] == [3, 1]
        assert _same(blocks[1], store.scores([pair("p3")], rules_of(rules)))
        stranger = store.scores([Pair("p9", "q", "a", "b"), pair("p0")], rules_of(rules))
        assert not stranger.valid[0].any() and stranger.valid[1].all()
    with pytest.raises(ValueError, match="pair 'p2' side 1 is bound"):
        read_ratings(db, changed_b, [Rule(r, r) for r in rules])
    with pytest.raises(ValueError, match="pairs themselves"):
        read_ratings(db, ids, [Rule(r, r) for r in rules])  # ids alone cannot be checked
    with pytest.raises(ValueError, match="rules themselves"):
        read_ratings(db, pairs_of(ids), rules)  # nor can rule ids
    with _open(db) as store:  # rating the changed pair is refused as well
        with pytest.raises(ValueError, match="pair 'p2' side 1 is bound"):
            store.bind([("p2", 1, unit_key(changed_b[2], 1))])
        # a writer's read too
        assert _same(store.scores(pairs_of(ids), rules_of(rules)), unchanged)
    # A rating run that skips what another store (an earlier run's merged store) holds checks
    # the texts there first: a changed pair is refused, not skipped as done.
    from ramo.rate import rate

    with RatingStore.open_existing(db) as elsewhere, _open(tmp_path / "new.db") as fresh:
        elsewhere.check_texts(pairs_of(ids))
        with pytest.raises(ValueError, match="pair 'p2' side 1 is bound"):
            elsewhere.check_texts(changed_b)
        with pytest.raises(ValueError, match="pair 'p2' side 1 is bound"):
            rate(None, changed_b, [Rule(r, r) for r in rules], fresh, rated_elsewhere=elsewhere,
                 progress=False)


def test_a_single_writer_store_needs_no_shared_memory(tmp_path):
    db = tmp_path / "shard.db"
    with _open(db, single_writer=True) as store:
        add(store, unit_rows("p1", 0, RULES[:3]))
        assert not Path(f"{db}-shm").exists() and not Path(f"{db}-wal").exists()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            _open(db, timeout=0.1)  # it is the only writer while it is open
    with closing(sqlite3.connect(db)) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    with RatingStore.open_existing(db) as reader:
        assert reader.read() == sorted(unit_rows("p1", 0, RULES[:3]))
    with _open(db) as store:  # a shared open afterwards switches it back to WAL
        assert store.count() == 3
    with closing(sqlite3.connect(db)) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_shared_store_is_refused_when_ranks_span_hosts(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(StoreError, match=r"span hosts \(WORLD_SIZE=4, LOCAL_WORLD_SIZE=2\)"):
        _open(tmp_path / "r.db")
    assert list(tmp_path.iterdir()) == []  # refused before anything was created
    with _open(tmp_path / "rank-0.db", single_writer=True) as store:  # a rank's own store
        assert store.count() == 0
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # all on one host: WAL is fine
    _open(tmp_path / "r.db").close()


def test_a_rule_is_never_rebound_to_another_text(tmp_path):
    from ramo.ratings import rule_key, rule_rows

    rules = [Rule("r1", "be kind"), Rule("r2", "be honest")]
    db = tmp_path / "r.db"
    with _open(db) as store:
        assert store.bind_rules(rule_rows(rules)) == 2
        assert store.bind_rules(rule_rows(rules)) == 0  # the same texts: nothing new
        assert store.bind_rules(rule_rows([Rule("r3", "x")])) == 1  # a larger pool later
        reworded = [Rule("r1", "be kind"), Rule("r2", "be honest, always")]
        with pytest.raises(ValueError, match=r"rule 'r2' is bound in .* to another text than "
                                             r"the one given: the rule's text changed"):
            store.bind_rules(rule_rows(reworded + [Rule("r4", "new")]))
        assert dict(store.rule_bindings()) == {"r1": rule_key("be kind"),
                                               "r2": rule_key("be honest"), "r3": rule_key("x")}
        with pytest.raises(ValueError, match="two texts"):
            store.bind_rules([("r5", "a"), ("r5", "b")])
    with RatingStore.open_existing(db) as store:  # readers given the rules check them too
        store.check_rules(rule_rows(rules))
        with pytest.raises(ValueError, match="rule 'r2' is bound"):
            store.check_rules(rule_rows(reworded))
        # Every read of values does, before it reads: a reworded rule never gets the ratings
        # of its old text.
        assert store.scores(pairs_of(["p1"]), rules).rule_ids == ("r1", "r2")
        with pytest.raises(ValueError, match="rule 'r2' is bound"):
            store.scores(pairs_of(["p1"]), reworded)
        blocks = store.score_blocks(pairs_of(["p1", "p2"]), reworded, 1)
        with pytest.raises(ValueError, match="rule 'r2' is bound"):
            next(blocks)
        assert not store._db.in_transaction


def test_a_store_made_before_rules_were_bound_trusts_its_rules(tmp_path):
    from ramo.ratings import rule_rows

    db = tmp_path / "r.db"
    with _open(db) as store:
        add(store, unit_rows("p1", 0, RULES[:2]))
    with closing(sqlite3.connect(db)) as con, con:
        con.execute("DROP TABLE rules")  # as a store of an earlier ramo
    with RatingStore.open_existing(db) as store:
        store.check_rules(rule_rows([Rule(RULES[0], "any text")]))  # nothing to check against
        assert list(store.rule_bindings()) == []
    with _open(db) as store:  # the first writable open adds the table
        assert store.bind_rules(rule_rows([Rule(RULES[0], "a text")])) == 1


def test_rate_checks_the_rules_of_the_store_it_skips_from(tmp_path):
    from ramo.rate import rate
    from ramo.ratings import rule_rows

    db = tmp_path / "r.db"
    with _open(db) as store:
        store.bind_rules(rule_rows([Rule("r1", "be kind")]))
    with RatingStore.open_existing(db) as elsewhere, _open(tmp_path / "new.db") as fresh:
        with pytest.raises(ValueError, match="rule 'r1' is bound in .*r\\.db"):
            rate(None, pairs_of(["p0"]), [Rule("r1", "be kind, always")], fresh,
                 rated_elsewhere=elsewhere, progress=False)
        # Refused before this store bound anything: a rerun with the old text still works.
        assert list(fresh.rule_bindings()) == [] and list(fresh.units()) == []
