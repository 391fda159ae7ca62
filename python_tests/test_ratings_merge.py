"""Building a ratings store from others (ramo/ratings/merge.py): merging shards, converting a
store of schema 1, and the `ramo ratings merge` / `ramo ratings migrate` commands."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from python_tests.test_ratings_store import JUDGE, RULES, _open, add, unit_rows
from ramo.cli import main
from ramo.ratings import (FIELDS, RatingStore, StoreError, StoreMismatchError, merge_stores,
                          migrate_store)


def _shard(path, units, **kwargs):
    with _open(path, single_writer=True, **kwargs) as store:
        for pair_id, side in units:
            add(store, unit_rows(pair_id, side, RULES[:5]))
    return path


def test_merge_equals_one_store_and_is_idempotent(tmp_path):
    units = [(f"p{i}", side) for i in range(6) for side in (0, 1)]
    shards = [_shard(tmp_path / f"rank-{r}.sqlite", units[r::3]) for r in range(3)]
    one = _shard(tmp_path / "one.sqlite", units)
    target = tmp_path / "merged.sqlite"
    assert merge_stores(target, shards) == (12, 12 * 5)
    assert merge_stores(target, shards) == (0, 0)  # merging again adds nothing
    with RatingStore.open_existing(target) as merged, RatingStore.open_existing(one) as single:
        assert merged.read() == single.read()
        assert merged.judge_fingerprint == JUDGE
    assert all(p.is_file() for p in shards)  # the sources are left as they were


def test_merge_refuses_mixed_judges_and_rebinding(tmp_path):
    a = _shard(tmp_path / "a.sqlite", [("p1", 0)])
    other_judge = _shard(tmp_path / "b.sqlite", [("p2", 0)], judge="judge:other")
    target = tmp_path / "merged.sqlite"
    with pytest.raises(StoreMismatchError, match="another judge or template"):
        merge_stores(target, [a, other_judge])
    assert not target.exists()  # refused before anything was written
    with _open(tmp_path / "c.sqlite") as store:  # p1 side 0 as another response
        store.bind([("p1", 0, "another text")])
    with pytest.raises(ValueError, match=r"'p1' side 0 is bound to one response in .*a\.sqlite "
                                         r"and to another in .*c\.sqlite.*nothing was merged"):
        merge_stores(target, [a, tmp_path / "c.sqlite"])
    assert not target.exists()  # checked before anything was written, a's units included
    merge_stores(target, [a])
    with RatingStore.open_existing(target) as store:
        before = store.read()
    d = _shard(tmp_path / "d.sqlite", [("p3", 0)])
    with pytest.raises(ValueError, match=r"c\.sqlite: pair 'p1' side 0 is bound in .*merged"):
        merge_stores(target, [d, tmp_path / "c.sqlite"])  # against the target's own binding
    with RatingStore.open_existing(target) as store:
        assert store.read() == before  # d's ratings were not merged either
    with pytest.raises(ValueError, match="into itself"):
        merge_stores(a, [a])
    with pytest.raises(ValueError, match="no stores"):
        merge_stores(target, [])


def _schema_1_store(path, rows):
    """A store as ramo wrote it before ratings were keyed by response."""
    with closing(sqlite3.connect(path)) as con:
        con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID")
        con.execute("CREATE TABLE ratings (pair_id TEXT NOT NULL, side INTEGER NOT NULL, "
                    "rule_id TEXT NOT NULL, " + "".join(f"{f} REAL NOT NULL, " for f in FIELDS)
                    + "PRIMARY KEY (pair_id, side, rule_id)) WITHOUT ROWID")
        con.executemany("INSERT INTO meta VALUES (?, ?)", [
            ("schema_version", "1"), ("judge_fingerprint", JUDGE),
            ("template_fingerprint", "template:rule-last:vocab"),
            ("judge_info", '{"model": "tiny"}'), ("template_info", None)])
        con.executemany(f"INSERT INTO ratings VALUES ({', '.join('?' * (3 + len(FIELDS)))})", rows)
        con.commit()
    return path


def test_a_schema_1_store_is_refused_and_converted(tmp_path):
    rows = unit_rows("p1", 0, RULES[:3]) + unit_rows("p1", 1, RULES[:3]) + unit_rows("p2", 0, RULES[:3])
    old = _schema_1_store(tmp_path / "old.sqlite", rows)
    for open_it in (lambda: _open(old), lambda: RatingStore.open_existing(old)):
        with pytest.raises(StoreError, match="schema version '1'.*ramo ratings migrate"):
            open_it()
    # p1's B and p2's A are one response: stored once after the conversion.
    responses = {("p1", 0): "x", ("p1", 1): "y", ("p2", 0): "y", ("p9", 0): "z"}
    new = tmp_path / "new.sqlite"
    with pytest.raises(ValueError, match=r"not in the pairs given, e\.g\. \[\('p1', 1\)\]"):
        migrate_store(old, new, {("p1", 0): "x", ("p2", 0): "y"})
    assert not new.exists()
    assert migrate_store(old, new, responses) == (3, 6)
    with RatingStore.open_existing(new) as store:
        assert store.judge_fingerprint == JUDGE and store.judge_info == {"model": "tiny"}
        assert store.count_rated() == (2, 6)
        read = store.read()
    kept = {r[:3]: r for r in rows}
    for r in read:  # p2 side 0 reads p1 side 1's ratings, the first of the shared response
        source = ("p1", 1, r.rule_id) if (r.pair_id, r.side) == ("p2", 0) else r[:3]
        assert r[3:] == kept[source][3:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.sqlite", "old.sqlite"]
    with pytest.raises(ValueError, match="exists"):
        migrate_store(old, new, responses)
    with pytest.raises(StoreError, match="nothing to convert"):
        migrate_store(new, tmp_path / "again.sqlite", responses)


def test_the_commands(tmp_path, capsys):
    import json

    from ramo.ratings import response_key

    shards = [_shard(tmp_path / f"rank-{r}.sqlite", [(f"p{r}", 0), (f"p{r}", 1)]) for r in (0, 1)]
    out = tmp_path / "merged.sqlite"
    assert main(["ratings", "merge", "--out", str(out), *map(str, shards)]) == 0
    assert "it holds 20 ratings of 4 responses" in capsys.readouterr().out
    assert main(["ratings", "merge", "--out", str(out), str(tmp_path / "missing")]) == 2
    assert "no ratings store" in capsys.readouterr().err

    pairs = tmp_path / "pairs.jsonl"
    texts = [{"id": "p1", "prompt": "q", "response_a": "a", "response_b": "b"},
             {"id": "p2", "prompt": "q", "response_a": "b", "response_b": "c"}]
    pairs.write_text("".join(json.dumps(p) + "\n" for p in texts))
    old = _schema_1_store(tmp_path / "old.sqlite", unit_rows("p1", 1, RULES[:2])
                          + unit_rows("p2", 0, RULES[:2]))
    new = tmp_path / "new.sqlite"
    assert main(["ratings", "migrate", "--ratings", str(old), "--pairs", str(pairs),
                 "--out", str(new)]) == 0
    assert "2 pair sides, 2 ratings" in capsys.readouterr().out  # one response: "b" for "q"
    with RatingStore.open_existing(new) as store:
        assert {u[2] for u in store.units()} == {response_key("q", "b")}


def test_merge_carries_rule_bindings_and_refuses_two_texts_for_one_id(tmp_path):
    a, b, target = tmp_path / "a.sqlite", tmp_path / "b.sqlite", tmp_path / "t.sqlite"
    for path, key in ((a, "k1"), (b, "k2")):
        with _open(path) as store:
            store.bind_rules([("r1", key), ("r9", "k9")])
    merge_stores(target, [a])
    with RatingStore.open_existing(target) as store:
        assert dict(store.rule_bindings()) == {"r1": "k1", "r9": "k9"}
    with pytest.raises(ValueError, match="rule 'r1' is bound in .* to another text"):
        merge_stores(target, [b])
    with pytest.raises(ValueError, match=r"rule 'r1' is bound to one text in .*a\.sqlite and "
                                         r"to another in .*b\.sqlite"):
        merge_stores(tmp_path / "new.sqlite", [a, b])
    assert not (tmp_path / "new.sqlite").exists()


def test_a_shard_whose_writer_was_killed_mid_commit_is_read_and_merged(tmp_path):
    """A single-writer store (a rank's shard) keeps a rollback journal; a writer killed in
    the middle of a commit leaves it hot, which a read-only connection may not roll back.
    open_existing rolls it back first (the killed transaction undone, the committed ones
    kept), so the documented resume, merging the shards, works."""
    import subprocess
    import sys

    shard = _shard(tmp_path / "rank-0.sqlite", [("p1", 0), ("p1", 1)])
    with RatingStore.open_existing(shard) as store:
        committed = store.read()
    # A transaction larger than the page cache spills to the file: the journal turns hot.
    code = (f"import os, sqlite3\ncon = sqlite3.connect({str(shard)!r}, isolation_level=None)\n"
            "con.execute('PRAGMA cache_size=1')\ncon.execute('BEGIN IMMEDIATE')\n"
            "for i in range(20000):\n"
            "    con.execute('INSERT INTO units VALUES (?, 0, ?)', (f'x{i:06d}' + 'y' * 50, 'k'))\n"
            "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "rank-0.sqlite-journal").stat().st_size > 0
    with RatingStore.open_existing(shard) as store:
        assert store.read() == committed
    assert merge_stores(tmp_path / "merged.sqlite", [shard]) == (2, 2 * 5)
