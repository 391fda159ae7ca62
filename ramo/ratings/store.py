"""The ratings store: one sqlite file holding one judge's ratings under one template.

Ratings are keyed by response: one row per (response, rule_id) with the judge's p_yes, p_no,
p_other, score and relevance for that rule on that response, where a response is the key
`response_key(prompt, text)`. A pair's sides are bound to their responses (`bind`: pair_id,
side 0 for response A and 1 for response B -> response key), so a response shared by several
pairs is rated once, and every read goes through the binding: callers see one row per
(pair_id, side, rule_id), as if each pair had been rated alone.

Guarantees, and what gives them:
- One judge, one template: the meta table records both fingerprints when the store is
  created; opening it with others raises StoreMismatchError, so ratings are never mixed.
- No duplicates: (response, rule_id) is the primary key. Adding a key that is already
  stored raises DuplicateRatingError (or is skipped with skip_existing=True); a stored
  rating is never overwritten. A (pair_id, side) bound to one response is never rebound to
  another, and the reads of values take the pairs themselves, not their ids, and check
  their texts against the binding: a pair whose text changed under the same id is refused,
  by `ramo rate` and by every reader, not read stale. Rule ids are bound to their texts the
  same way (`bind_rules` when rating, `check_rules` for readers given the rules).
- All or nothing: `add` validates every row first, then writes them in one transaction.
  A killed process loses at most its uncommitted transaction and never leaves part of one.
- Several processes on one host may write at once: WAL lets readers run beside the one
  writer, and writers wait for each other for up to `timeout` seconds. WAL needs every
  process on one host (its index is shared memory), so a shared open is refused in a job whose
  ranks span hosts (WORLD_SIZE != LOCAL_WORLD_SIZE): there every rank writes a store of its
  own (`single_writer=True`: an exclusive lock and a rollback journal, no shared memory) and
  the shards are merged afterwards (`ramo.ratings.merge`).
- Readers that hold no judge (`ramo select`, metrics, reports) use `open_existing`: a
  read-only connection that takes no write lock and changes nothing, so it can run while
  `ramo rate` is still writing.

The rating loop works in units of one response (pair, side) with all R rules (one judge
prefill serves them all) and commits whole units, so `missing_units` is what it resumes from.
`scores` is the one read of values: a dense `Ratings`, NaN where nothing is stored yet;
`score_blocks` reads the same a block of pairs at a time, for readers of a whole large store,
and `read_ratings` opens a store and reads it complete. Each is given the pairs (id, prompt,
response_a, response_b) and recomputes their response keys, a block at a time: a side bound
to another response is a ValueError naming it (`_refuse_changed`, the check `bind` makes too).

A response too long for the judge's context is rated on a cut text (ramo.judge.context); the
table `cuts` records which, with its length before and after the cut, written in the same
transaction as the response's ratings (stores made before it get the table on their first
writable open).
"""

from __future__ import annotations

import errno
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ramo.checks import positive_integer
from ramo.ratings.export import export_rows
from ramo.ratings.ratings import FIELDS, Rating, Ratings, response_key, rule_rows
from ramo.ratings.rows import (BATCH_ROWS, DuplicateRatingError, check_fingerprint,
                               check_float, check_id, check_rows, check_side, from_json, to_json)

# 1: ratings keyed by (pair_id, side, rule_id); 2: keyed by (response, rule_id).
SCHEMA_VERSION = "2"
# Ratings per block of `score_blocks`: 40 MiB of float32 fields, and a few fetches.
_BLOCK_RATINGS = 1 << 21

_CREATE = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID",
    # WITHOUT ROWID: a table is stored in key order, so reads in key order need no sort
    # and per-pair or per-response lookups are range scans.
    "CREATE TABLE units ("
    " pair_id TEXT NOT NULL CHECK (length(pair_id) > 0),"
    " side INTEGER NOT NULL CHECK (side IN (0, 1)),"
    " response TEXT NOT NULL CHECK (length(response) > 0),"
    " PRIMARY KEY (pair_id, side)) WITHOUT ROWID",
    "CREATE TABLE ratings ("
    " response TEXT NOT NULL CHECK (length(response) > 0),"
    " rule_id TEXT NOT NULL CHECK (length(rule_id) > 0),"
    + "".join(f" {name} REAL NOT NULL," for name in FIELDS)
    + " PRIMARY KEY (response, rule_id)) WITHOUT ROWID",
)
_CREATE_CUTS = ("CREATE TABLE IF NOT EXISTS cuts ("
                " response TEXT PRIMARY KEY CHECK (length(response) > 0),"
                " tokens INTEGER NOT NULL CHECK (tokens > 0),"
                " kept INTEGER NOT NULL CHECK (kept > 0)) WITHOUT ROWID")
# Which text each rule id was rated with (`rule_key`): ratings are kept by rule id, so a
# rule reworded under its id would otherwise be read, and resumed past, with the old text's
# ratings. Stores made before it get the table on their first writable open.
_CREATE_RULES = ("CREATE TABLE IF NOT EXISTS rules ("
                 " rule_id TEXT PRIMARY KEY CHECK (length(rule_id) > 0),"
                 " text_key TEXT NOT NULL CHECK (length(text_key) > 0)) WITHOUT ROWID")
_RESPONSE_COLUMNS = ("response", "rule_id") + FIELDS
_INSERT = (f"INSERT INTO ratings ({', '.join(_RESPONSE_COLUMNS)}) "
           f"VALUES ({', '.join('?' * len(_RESPONSE_COLUMNS))})")
# The (pair_id, side, rule_id) view every reader sees: units in key order, each with its
# response's ratings in rule order (the primary keys give both orders).
_SELECT_ALL = ("SELECT u.pair_id, u.side, r.rule_id, "
               + ", ".join(f"r.{name}" for name in FIELDS)
               + " FROM units u JOIN ratings r ON r.response = u.response"
               " ORDER BY u.pair_id, u.side, r.rule_id")


class StoreError(ValueError):
    """The path is not a ratings store this code can use."""


class StoreMismatchError(StoreError):
    """The store holds ratings from another judge or another template."""


class RatingStore:
    """Judge ratings in one sqlite file, for one judge fingerprint and one template fingerprint.

    judge_info / template_info: JSON-serialisable descriptions, recorded when the store is
    created (later opens neither need nor change them). timeout: seconds a writer waits for
    another process's transaction before giving up. single_writer: this connection is the
    only one while it is open (an exclusive lock and a rollback journal instead of WAL, so no
    shared memory: safe on any file system, the way each rank of a multi-host job writes its
    shard); without it, writers share the file through WAL, which needs them on one host.

    A connection belongs to the process (and thread) that opened the store: open it after
    forking, not before. `open_existing` opens a store for reading only.
    """

    _read_only = False

    def __init__(self, path: str | os.PathLike, *, judge_fingerprint: str,
                 template_fingerprint: str, judge_info: Any = None, template_info: Any = None,
                 timeout: float = 60.0, single_writer: bool = False):
        self.path = Path(path)
        self.single_writer = bool(single_writer)
        if not self.single_writer:
            refuse_shared_across_hosts(self.path)
        # Everything the caller gave is checked before the file is created or touched.
        wanted = {
            "schema_version": SCHEMA_VERSION,
            "judge_fingerprint": check_fingerprint("judge_fingerprint", judge_fingerprint),
            "template_fingerprint": check_fingerprint("template_fingerprint", template_fingerprint),
            "judge_info": to_json("judge_info", judge_info),
            "template_info": to_json("template_info", template_info),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con: sqlite3.Connection | None = None
        try:
            # isolation_level=None: no implicit transactions; every one is explicit (_write).
            self._con = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
            self._meta = self._open(wanted, timeout)
        except BaseException as exc:
            self.close()
            _raise_as_os_error(exc, self.path)
            raise

    @classmethod
    def open_existing(cls, path: str | os.PathLike, *, timeout: float = 60.0) -> RatingStore:
        """An existing store, read-only, for its own judge and template (as recorded in it):
        for readers (`ramo select`, adapter metrics, reports) that hold no judge.

        Takes no write lock and never writes the database file, so it opens and reads while
        another process is writing (WAL lets readers in beside the writer); every read sees
        the ratings committed when it starts. `add` raises StoreError. Like any reader of a
        WAL database it needs the -wal and -shm files beside the store: when no writer has
        them open, sqlite creates them (so the folder must be writable) and, being read-only,
        leaves them there for the next writer to remove. timeout: seconds to wait while the
        database is locked exclusively (only while a store is being created or switched to
        WAL). Raises FileNotFoundError when there is no file, StoreError when it is not a store.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no ratings store at {path}")
        if path.stat().st_size == 0:  # sqlite would read it as a database with no tables
            raise StoreError(f"{path} is an empty file, not a ratings store")
        if Path(f"{path}-journal").is_file():
            # A single-writer store (a rank's shard) whose writer was killed mid-commit leaves
            # a hot journal, which only a connection that may write can roll back (a read-only
            # one fails: "attempt to write a readonly database"); an ordinary connection's
            # first read rolls it back, as the next writer would: the killed transaction
            # undone, the committed ones kept. A journal of a writer still at work is not hot
            # and is left alone; in a read-only folder the read-only open then says why.
            _read_once(path, timeout)
        store = cls.__new__(cls)
        store.path, store._read_only, store._con = path, True, None
        # mode=ro: sqlite refuses every write, so a reader can never create the store, lock
        # it for writing or convert it. The URI is built by pathlib, which escapes "?", "#"
        # and "%" in the path (an f-string "file:{path}" would not).
        uri = path.absolute().as_uri() + "?mode=ro"
        try:
            store._con = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
            store._meta = store._read_meta()
        except BaseException as exc:
            store.close()
            _raise_as_os_error(exc, path)
            raise
        return store

    # ---- opening -----------------------------------------------------------------------------

    def _read_meta(self) -> dict[str, str | None]:
        """The meta of a store opened read-only, after checking that it is a store this code
        reads; the fingerprints are taken from it, so there is nothing to compare them with."""
        con = self._con
        try:
            con.execute("PRAGMA temp_store=MEMORY")  # the join tables of the reads
            # One read transaction, so the tables and the meta come from the same snapshot.
            con.execute("BEGIN")
            try:
                tables = {name for (name,) in con.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")}
                if not {"meta", "ratings"} <= tables:  # a schema 1 store has no units
                    raise StoreError(f"{self.path} is an sqlite database but not a ratings store "
                                     f"(its tables: {', '.join(sorted(tables)) or 'none'})")
                meta = dict(con.execute("SELECT key, value FROM meta"))
            finally:
                if con.in_transaction:
                    con.execute("ROLLBACK")  # it only read
        except sqlite3.OperationalError as exc:
            reason = _READ_ONLY_BLOCKED.get(getattr(exc, "sqlite_errorcode", None))
            if reason:
                raise StoreError(f"cannot read ratings store {self.path} read-only: "
                                 + reason.format(name=self.path.name)) from exc
            raise  # locked past the timeout...: not a statement about the file
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a ratings store: {exc}") from exc
        _check_schema(self.path, meta)
        return meta

    def _open(self, wanted: dict[str, str | None], timeout: float) -> dict[str, str | None]:
        con = self._con
        if self.single_writer:
            # Before the first read: the lock, once taken, is held until close.
            con.execute("PRAGMA locking_mode=EXCLUSIVE")
        # Durability. WAL with synchronous=NORMAL would already survive a SIGKILL: COMMIT
        # returns once the transaction is in the WAL file (in the OS page cache, which outlives
        # the process), and recovery ignores frames of a transaction without its commit frame,
        # so a partial transaction never shows. NORMAL can still lose the last commits to an OS
        # crash or power loss. FULL fsyncs the WAL at every commit, so a returned commit
        # survives those too; its price, one fsync per transaction, is nothing next to the
        # judge work a transaction holds (at least one prefill over R rules).
        try:
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA temp_store=MEMORY")
            # Checked, or created, before switching to WAL: a database that is not a store
            # is left exactly as it was. IMMEDIATE serialises concurrent first opens, so
            # exactly one of them creates the schema and the others check against it.
            with self._write():
                tables = {name for (name,) in con.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")}
                if not tables:
                    for statement in _CREATE:
                        con.execute(statement)
                    con.execute(_CREATE_CUTS)
                    con.execute(_CREATE_RULES)
                    con.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", wanted.items())
                    meta = wanted
                elif {"meta", "ratings"} <= tables:  # a store (of some schema)
                    meta = dict(con.execute("SELECT key, value FROM meta"))
                    self._check_meta(meta, wanted)
                    con.execute(_CREATE_CUTS)
                    con.execute(_CREATE_RULES)
                else:
                    raise StoreError(f"{self.path} is an sqlite database but not a ratings store "
                                     f"(its tables: {', '.join(sorted(tables))})")
        except sqlite3.OperationalError:
            raise  # locked past the timeout, disk full...: not a statement about the file
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a ratings store: {exc}") from exc
        if self.single_writer:
            # A rollback journal: no -shm index in shared memory, which a network file system
            # cannot provide. Switching out of WAL is possible: this connection is alone.
            con.execute("PRAGMA journal_mode=DELETE").fetchone()
        else:
            _enable_wal(con, self.path, timeout)
        return meta

    def _check_meta(self, meta: dict[str, str | None], wanted: dict[str, str | None]) -> None:
        _check_schema(self.path, meta)
        differ = [what for what in ("judge", "template")
                  if meta.get(f"{what}_fingerprint") != wanted[f"{what}_fingerprint"]]
        if differ:
            details = "; ".join(f"{what} fingerprint: the store has "
                                f"{meta.get(f'{what}_fingerprint')!r}, this run has "
                                f"{wanted[f'{what}_fingerprint']!r}" for what in differ)
            raise StoreMismatchError(
                f"ratings store {self.path} holds ratings from another {' and '.join(differ)} "
                f"({details}); a store holds one judge and one template, so use another path")

    def check_judge(self, judge_fingerprint: str, template_fingerprint: str) -> None:
        """StoreMismatchError unless the store holds this judge's ratings under this template:
        for callers handed an open store (the adapter's application)."""
        self._check_meta(self._meta, {"judge_fingerprint": judge_fingerprint,
                                      "template_fingerprint": template_fingerprint,
                                      "schema_version": SCHEMA_VERSION})

    # ---- properties ----------------------------------------------------------------------------

    @property
    def judge_fingerprint(self) -> str:
        return self._meta["judge_fingerprint"]

    @property
    def template_fingerprint(self) -> str:
        return self._meta["template_fingerprint"]

    @property
    def judge_info(self) -> Any:
        """The description recorded when the store was created, or None."""
        return from_json(self._meta.get("judge_info"))

    @property
    def template_info(self) -> Any:
        return from_json(self._meta.get("template_info"))

    # ---- writing -----------------------------------------------------------------------------

    def bind(self, units: Iterable[Sequence]) -> int:
        """Record which response each (pair_id, side) is: rows (pair_id, side, response key),
        the key from `response_key(prompt, text)`. Rows already bound the same way are
        skipped; a unit bound to another response raises ValueError (the pair's text changed
        under the same id) and nothing is written. Returns the number of units bound now.
        """
        self._check_writable()
        checked, given = [], {}
        for i, row in enumerate(units):
            try:
                pair_id, side, response = row
                unit = (check_id("pair_id", pair_id), check_side(side))
                response = check_id("response", response)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"unit row {i}: {exc} (expected pair_id, side, response key); "
                                 "nothing was written") from None
            if given.setdefault(unit, response) != response:
                raise ValueError(f"unit {unit} is given two responses; nothing was written")
            checked.append((*unit, response))
        if not checked:
            return 0
        con = self._db
        with self._write():
            self._refuse_changed([(*unit, response) for unit, response in given.items()])
            # rowcount, not total_changes: that also counts the temporary table's rows.
            return con.executemany("INSERT INTO units (pair_id, side, response) VALUES (?, ?, ?)"
                                   " ON CONFLICT (pair_id, side) DO NOTHING", checked).rowcount

    def check_texts(self, pairs: Sequence) -> None:
        """The check every read of values makes, alone: ValueError when a side of one of
        `pairs` is bound here to another response than its texts give now. For a caller that
        acts on this store's bindings without reading its values (`rate`'s rated_elsewhere)."""
        pairs, pair_ids = _checked_pairs(pairs)
        self._refuse_changed(_unit_keys(pairs, pair_ids))

    def _refuse_changed(self, units: Sequence[tuple[str, int, str]]) -> None:
        """ValueError when a unit of `units`, (pair_id, side, response key), each unit once,
        is bound to another response: the one check, for `bind` and for every read of
        values, that a pair's ratings are of the text given now. Units not bound pass."""
        changed = self._changed_bindings("units", ("pair_id", "side"), "response", units)
        if changed:
            (pair_id, side), more = changed[0], len(changed) - 1
            others = (f" ({more} more of the {len(units)} responses given differ too)"
                      if more else "")
            raise ValueError(
                f"pair {pair_id!r} side {side} is bound in {self.path} to another response "
                f"than the one given{others}: the pair's prompt or response "
                f"{'AB'[side]} changed under the same id since it was rated, so the stored "
                "ratings are of the old text; rate the new text under a new pair id, or into "
                "a new store")

    def _changed_bindings(self, table: str, keys: tuple[str, ...], bound: str,
                          rows: Sequence[tuple]) -> list[tuple]:
        """The keys of `rows` (keys..., bound value), each key once, that `table` binds to
        another value, in the order given: the one comparison behind the pairs' and the
        rules' refusals. It goes through a connection-private temporary table, which a
        read-only connection can write too."""
        con = self._db
        given = f"temp.given_{table}"
        con.execute(f"CREATE TEMP TABLE IF NOT EXISTS given_{table} ({', '.join(keys)}, {bound},"
                    f" pos INTEGER, PRIMARY KEY ({', '.join(keys)})) WITHOUT ROWID")
        con.execute(f"DELETE FROM {given}")
        places = ", ".join("?" * (len(keys) + 2))
        con.executemany(f"INSERT OR IGNORE INTO {given} VALUES ({places})",
                        ((*row, pos) for pos, row in enumerate(rows)))
        on = " AND ".join(f"b.{key} = g.{key}" for key in keys)
        return con.execute(f"SELECT {', '.join('g.' + key for key in keys)} FROM {given} g"
                           f" JOIN {table} b ON {on} WHERE b.{bound} != g.{bound}"
                           " ORDER BY g.pos").fetchall()

    def bind_rules(self, rules: Iterable[Sequence]) -> int:
        """Record which text each rule id is rated with: rows (rule_id, `rule_key(text)`),
        `rule_rows(rules)`. Rules already bound the same way are skipped; a rule bound to
        another text raises ValueError (its text changed under the same id) and nothing is
        written. Returns the number of rules bound now. `rate` binds the rules it rates."""
        self._check_writable()
        checked = self._checked_rule_rows(rules)
        if not checked:
            return 0
        with self._write():
            self._refuse_changed_rules(checked)
            return self._db.executemany("INSERT INTO rules (rule_id, text_key) VALUES (?, ?)"
                                        " ON CONFLICT (rule_id) DO NOTHING", checked).rowcount

    def check_units(self, units: Sequence[tuple[str, int, str]]) -> None:
        """ValueError when one of `units`, rows (pair_id, side, response key), each unit once,
        is bound here to another response (what `bind` would refuse), writing nothing."""
        self._refuse_changed(list(units))

    def check_rules(self, rules: Iterable[Sequence]) -> None:
        """ValueError when one of `rules`, rows (rule_id, `rule_key(text)`), is bound here to
        another text: for readers given the rules (`ramo select`, the pipeline's select).
        Rules not bound (a store made before rules were bound) pass."""
        checked = self._checked_rule_rows(rules)
        if checked and self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'"
                                        " AND name = 'rules'").fetchone():
            self._refuse_changed_rules(checked)

    def rule_bindings(self) -> Iterator[tuple[str, str]]:
        """Every bound rule, (rule_id, text key), in id order: what a merge carries over."""
        if not self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'"
                                " AND name = 'rules'").fetchone():
            return iter(())
        return self._iter_rows("SELECT rule_id, text_key FROM rules ORDER BY rule_id")

    @staticmethod
    def _checked_rule_rows(rules: Iterable[Sequence]) -> list[tuple[str, str]]:
        checked, given = [], {}
        for i, row in enumerate(rules):
            try:
                rule_id, key = row
                rule_id, key = check_id("rule_id", rule_id), check_id("text key", key)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"rule row {i}: {exc} (expected rule_id, text key); nothing "
                                 "was written") from None
            if given.setdefault(rule_id, key) != key:
                raise ValueError(f"rule {rule_id!r} is given two texts; nothing was written")
            checked.append((rule_id, key))
        return checked

    def _refuse_changed_rules(self, rows: Sequence[tuple[str, str]]) -> None:
        changed = [rule_id for (rule_id,) in
                   self._changed_bindings("rules", ("rule_id",), "text_key", rows)]
        if changed:
            more = (f" ({len(changed) - 1} more of the {len(rows)} rules given differ too)"
                    if len(changed) > 1 else "")
            raise ValueError(
                f"rule {changed[0]!r} is bound in {self.path} to another text than the one "
                f"given{more}: the rule's text changed under the same id since this store "
                "rated it (or was asked to), so its ratings are of the old text; rate the new "
                "text under a new rule id, or into a new store")

    def _bound(self, units: Sequence[tuple[str, int]]) -> dict[tuple[str, int], str]:
        """{(pair_id, side): response} for the given units that are bound."""
        con = self._db
        con.execute("CREATE TEMP TABLE IF NOT EXISTS want_units "
                    "(pair_id TEXT, side INTEGER, PRIMARY KEY (pair_id, side)) WITHOUT ROWID")
        con.execute("DELETE FROM temp.want_units")
        con.executemany("INSERT OR IGNORE INTO temp.want_units VALUES (?, ?)", units)
        return {(pair_id, side): response for pair_id, side, response in con.execute(
            "SELECT u.pair_id, u.side, u.response FROM temp.want_units w"
            " JOIN units u ON u.pair_id = w.pair_id AND u.side = w.side")}

    def add(self, rows: Iterable[Sequence | Mapping], *, skip_existing: bool = False,
            cuts: Iterable[Sequence] = ()) -> int:
        """Store rows in one transaction: all of them or, on any error, none.

        Each row is a tuple (pair_id, side, rule_id, p_yes, p_no, p_other, score, relevance)
        or a dict with exactly those keys, for a (pair_id, side) bound to its response
        (`bind`); the rating is stored under the response, so every pair bound to it has it.
        Ids must be non-empty strings, side 0 or 1, the values finite numbers; a bad row, or
        a unit not bound, raises ValueError before anything is written. A (response, rule)
        given twice, or already stored, raises DuplicateRatingError and writes nothing; with
        skip_existing=True stored keys are skipped instead (the stored values are kept; of
        two pairs in the call that share a response the first's row is taken, while one
        (pair, side, rule) given twice is still refused). Returns the number of ratings
        written.

        cuts: (pair_id, side, tokens, kept) of the responses among the rows that the judge
        read cut to fit its context (`ramo.judge.context.Truncation`), recorded with them.
        """
        self._check_writable()
        checked = check_rows(rows)
        cut_rows = [_check_cut(i, row) for i, row in enumerate(cuts)]
        if not checked:
            if cut_rows:
                raise ValueError("cut records are stored with their ratings; no rows were given")
            return 0
        con = self._db
        with self._write():
            bound = self._bound(list({row[:2]: None for row in checked}))
            keyed, first = [], {}
            for i, row in enumerate(checked):
                response = bound.get(row[:2])
                if response is None:
                    raise ValueError(f"rating row {i}: pair {row[0]!r} side {row[1]} is not "
                                     "bound to a response (RatingStore.bind); nothing was written")
                key = (response, row[2])
                if key in first:
                    if skip_existing:
                        continue
                    raise DuplicateRatingError(
                        f"rating rows {first[key]} and {i} rate the same response on rule "
                        f"{row[2]!r} (pairs {checked[first[key]][:2]} and {row[:2]} share it); "
                        "nothing was written")
                first[key] = i
                keyed.append((response, *row[2:]))
            if not skip_existing:
                # Checked inside the write transaction, so nobody can add one in between.
                stored = self._first_stored([row[:2] for row in keyed])
                if stored is not None:
                    raise DuplicateRatingError(
                        f"rating {checked[stored][:3]} is already in {self.path}; nothing from "
                        "this add was written (stored ratings are never replaced; "
                        "skip_existing=True skips them)")
            written = con.executemany(_INSERT + " ON CONFLICT (response, rule_id) DO NOTHING",
                                      keyed).rowcount
            rated = {row[0] for row in keyed}
            cut_keys = []
            for pair_id, side, tokens, kept in cut_rows:
                response = bound.get((pair_id, side))
                if response not in rated:
                    raise ValueError(f"cut record of pair {pair_id!r} side {side}: no rating "
                                     "row of that response is given; nothing was written")
                cut_keys.append((response, tokens, kept))
            con.executemany("INSERT INTO cuts (response, tokens, kept) VALUES (?, ?, ?)"
                            " ON CONFLICT (response) DO NOTHING", cut_keys)
            return written

    def _first_stored(self, keys: list[tuple[str, str]]) -> int | None:
        """The position of the first (response, rule_id) of `keys` that is stored, or None."""
        con = self._db
        con.execute("CREATE TEMP TABLE IF NOT EXISTS new_keys "
                    "(pos INTEGER, response TEXT, rule_id TEXT)")
        con.execute("DELETE FROM temp.new_keys")
        con.executemany("INSERT INTO temp.new_keys VALUES (?, ?, ?)",
                        ((i, *k) for i, k in enumerate(keys)))
        found = con.execute("SELECT MIN(n.pos) FROM temp.new_keys n JOIN ratings r"
                            " ON r.response = n.response AND r.rule_id = n.rule_id").fetchone()[0]
        return found

    def _check_writable(self) -> None:
        if self._read_only:
            raise StoreError(f"ratings store {self.path} was opened read-only (open_existing); "
                             "open it with RatingStore(path, judge_fingerprint=..., "
                             "template_fingerprint=...) to add ratings")

    @contextmanager
    def _write(self) -> Iterator[None]:
        con = self._db
        try:
            # IMMEDIATE takes the write lock up front, where the busy timeout applies; a
            # deferred transaction that upgrades from reading to writing can fail at once
            # with SQLITE_BUSY. Inside the try: on a full disk BEGIN itself can fail.
            con.execute("BEGIN IMMEDIATE")
            try:
                yield
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:  # a failed COMMIT can leave it open
                    con.execute("ROLLBACK")
                raise
        except BaseException as exc:
            _raise_as_os_error(exc, self.path)
            raise

    # ---- reading -----------------------------------------------------------------------------

    def count(self) -> int:
        """The (pair_id, side, rule_id) ratings the store answers for (what `read` returns)."""
        return self._db.execute(
            "SELECT COUNT(*) FROM units u JOIN ratings r ON r.response = u.response").fetchone()[0]

    def cut_units(self) -> list[tuple[str, int, int, int]]:
        """(pair_id, side, tokens, kept) of every unit whose response the judge read cut to
        fit its context, in key order (none for a store made before cuts were recorded)."""
        if not self._has_cuts():
            return []
        return self._db.execute("SELECT u.pair_id, u.side, c.tokens, c.kept FROM units u"
                                " JOIN cuts c ON c.response = u.response"
                                " ORDER BY u.pair_id, u.side").fetchall()

    def _has_cuts(self) -> bool:
        return self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'"
                                " AND name = 'cuts'").fetchone() is not None

    def count_rated(self) -> tuple[int, int]:
        """(responses rated, ratings stored): what the judge was asked, each response once."""
        return self._db.execute(
            "SELECT COUNT(DISTINCT response), COUNT(*) FROM ratings").fetchone()

    def read(self) -> list[Rating]:
        """Every (pair_id, side, rule_id) rating, sorted by those keys."""
        return [Rating(*row) for row in self._db.execute(_SELECT_ALL)]

    def missing_units(self, pair_ids: Sequence[str],
                      rule_ids: Sequence[str]) -> list[tuple[str, int]]:
        """The (pair_id, side) units that lack a rating for at least one of rule_ids.

        In the order of pair_ids, then side: what a resumed rating loop still has to do.
        Ratings of rules not in rule_ids are ignored. A unit that has some of the rules
        (stored when the pool was smaller) is listed; its stored rows are kept, so add the
        new ones with skip_existing=True or only the missing rules.
        """
        pair_ids = self._load_ids("want_pairs", "pair_ids", pair_ids, allow_empty=True)
        n_rules = len(self._load_ids("want_rules", "rule_ids", rule_ids))
        complete = {(pos, side) for pos, side, n in self._db.execute(
            "SELECT p.pos, u.side, COUNT(*) FROM temp.want_pairs p"
            " CROSS JOIN units u ON u.pair_id = p.id"
            " JOIN ratings r ON r.response = u.response"
            " JOIN temp.want_rules w ON w.id = r.rule_id"
            " GROUP BY p.pos, u.side") if n == n_rules}
        return [(pair_id, side) for pos, pair_id in enumerate(pair_ids) for side in (0, 1)
                if (pos, side) not in complete]

    def completed_pairs(self, rule_ids: Sequence[str]) -> set[str]:
        """Pairs rated on both sides for every one of rule_ids."""
        n_rules = len(self._load_ids("want_rules", "rule_ids", rule_ids))
        return {pair_id for (pair_id,) in self._db.execute(
            "SELECT u.pair_id FROM units u JOIN ratings r ON r.response = u.response"
            " JOIN temp.want_rules w ON w.id = r.rule_id"
            " GROUP BY u.pair_id HAVING COUNT(*) = ?", (2 * n_rules,))}

    def scores(self, pairs: Sequence, rules: Sequence) -> Ratings:
        """The stored ratings of these pairs on these rules, dense, in the order of the
        arguments: NaN (and `valid` False) wherever nothing is stored, so it never raises for
        missing ratings. `.require_complete(store.path)` is the read that needs them all.

        Both are given themselves, not their ids, so that no read returns another text's
        ratings. pairs: `ramo.io.Pair`, or anything with id, prompt, response_a and
        response_b; a pair's ratings are read only when its sides are bound to the responses
        its texts give now (`response_key`); a side bound to another response (the pair's
        prompt or text changed under the same id since it was rated) is a ValueError naming
        it. A pair the store has no unit for is read as unrated. rules: `ramo.io.Rule`, or
        anything with id and text; a rule bound here to another text (reworded under its id
        since it was rated, `check_rules`) is a ValueError. Ids must be strings, each listed
        once; rules must not be empty.
        """
        pairs, pair_ids = _checked_pairs(pairs)
        rows, rule_ids = _checked_rules(rules)
        with self._reading():
            self.check_rules(rows)
            return self._checked_scores(pairs, pair_ids, rule_ids)

    def score_blocks(self, pairs: Sequence, rules: Sequence,
                     block_pairs: int | None = None) -> Iterator[Ratings]:
        """`scores` of pairs a block of consecutive pairs at a time, in order, all from one
        snapshot: the streaming read, whose memory is one block's however many pairs there
        are. block_pairs: pairs per block; None: as many as hold about 2**21 ratings (40 MiB
        of float32 fields). No pairs, no blocks.

        The ids are checked here; the rules' texts when the first block is taken, the pairs'
        texts (as `scores` checks them) and the ratings of a block when it is taken, inside
        one read transaction, so add nothing through this store before the last one. A
        changed text raises at its block: blocks before it have been yielded, so a reader
        that must not act on part of the pairs writes atomically.
        """
        pairs, pair_ids = _checked_pairs(pairs)
        rows, rule_ids = _checked_rules(rules)
        if block_pairs is None:
            block_pairs = max(1, _BLOCK_RATINGS // (2 * len(rule_ids)))
        else:
            positive_integer("block_pairs", block_pairs)
        return self._blocks(pairs, pair_ids, rows, rule_ids, block_pairs)

    def _blocks(self, pairs: list, pair_ids: list[str], rule_keys: list[tuple[str, str]],
                rule_ids: list[str], block_pairs: int) -> Iterator[Ratings]:
        with self._reading():  # one read transaction: every block from the same snapshot
            self.check_rules(rule_keys)
            for start in range(0, len(pair_ids), block_pairs):
                end = start + block_pairs
                yield self._checked_scores(pairs[start:end], pair_ids[start:end], rule_ids)

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """One read transaction around the statements inside (the text check and the ratings
        then come from one snapshot), or the one already open (a `scores` between two
        blocks); ended, when it began here, even when the store was closed first."""
        con = self._db
        if con.in_transaction:
            yield
            return
        con.execute("BEGIN")
        try:
            yield
        finally:
            if self._con is con and con.in_transaction:
                con.execute("ROLLBACK")  # it only read

    def _checked_scores(self, pairs: Sequence, pair_ids: list[str],
                        rule_ids: list[str]) -> Ratings:
        """The ratings of these pairs (checked ids) after `_refuse_changed` on their texts."""
        self._refuse_changed(_unit_keys(pairs, pair_ids))
        # Both tables each time: a `scores` call between two blocks refills them.
        self._fill_ids("want_pairs", pair_ids)
        self._fill_ids("want_rules", rule_ids)
        return self._loaded_scores(pair_ids, rule_ids)

    def _loaded_scores(self, pair_ids: list[str], rule_ids: list[str]) -> Ratings:
        """The ratings of the ids in temp.want_pairs and temp.want_rules (given here in their
        order), dense. One statement, so one snapshot, even while another process writes;
        the join gives each row its flat position in [N, 2, R] (the keys are unique, so none
        twice), and its rows go into the dense tensors a fetch at a time."""
        return Ratings._from_flat(pair_ids, rule_ids, self._fetched(
            "SELECT (p.pos * 2 + u.side) * ? + w.pos, "
            + ", ".join(f"r.{name}" for name in FIELDS)
            + " FROM temp.want_pairs p CROSS JOIN units u ON u.pair_id = p.id"
            " JOIN ratings r ON r.response = u.response"
            " JOIN temp.want_rules w ON w.id = r.rule_id", (len(rule_ids),)))

    def _load_ids(self, table: str, what: str, ids: Iterable[str],
                  allow_empty: bool = False) -> list[str]:
        """Check ids and put them with their positions into a connection-private temporary
        table to join on."""
        ids = _checked_ids(what, ids, allow_empty)
        self._fill_ids(table, ids)
        return ids

    def _fill_ids(self, table: str, ids: list[str]) -> None:
        """Temporary tables live in the connection's own temp database (in memory), which a
        read-only connection can write too."""
        con = self._db
        con.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} "
                    "(pos INTEGER NOT NULL, id TEXT PRIMARY KEY) WITHOUT ROWID")
        con.execute(f"DELETE FROM temp.{table}")
        con.executemany(f"INSERT INTO temp.{table} (pos, id) VALUES (?, ?)", enumerate(ids))

    def export(self, path: str | os.PathLike) -> Path:
        """Write every row, sorted, to a .parquet, .jsonl or .jsonl.gz file (by suffix), atomically.

        The export is one consistent snapshot even while other processes keep writing.
        """
        return export_rows(self._iter_rows(), path)

    def _iter_rows(self, sql: str = _SELECT_ALL) -> Iterator[tuple]:
        for batch in self._fetched(sql):
            yield from batch

    def _fetched(self, sql: str, parameters: Sequence = ()) -> Iterator[list[tuple]]:
        """The statement's rows, BATCH_ROWS a fetch. One statement, one read transaction:
        under WAL it sees a single snapshot throughout."""
        cursor = self._db.execute(sql, parameters)
        try:
            while batch := cursor.fetchmany(BATCH_ROWS):
                yield batch
        finally:
            cursor.close()

    # ---- the response-keyed tables, for merging stores ------------------------------------------

    def units(self) -> Iterator[tuple[str, int, str]]:
        """Every bound unit, (pair_id, side, response key), in key order."""
        return self._iter_rows("SELECT pair_id, side, response FROM units ORDER BY pair_id, side")

    def response_ratings(self) -> Iterator[tuple]:
        """Every stored rating as (response key, rule_id, *FIELDS), in key order."""
        return self._iter_rows(f"SELECT {', '.join(_RESPONSE_COLUMNS)} FROM ratings"
                               " ORDER BY response, rule_id")

    def response_cuts(self) -> Iterator[tuple]:
        """Every cut record as (response key, tokens, kept), in key order."""
        if not self._has_cuts():
            return iter(())
        return self._iter_rows("SELECT response, tokens, kept FROM cuts ORDER BY response")

    def add_response_cuts(self, rows: Iterable[Sequence]) -> int:
        """Store (response key, tokens, kept) rows (another store's `response_cuts`) in one
        transaction, skipping responses already recorded. Returns the number written."""
        self._check_writable()
        checked = [_check_cut(i, row, key="response") for i, row in enumerate(rows)]
        with self._write():
            return self._db.executemany("INSERT INTO cuts (response, tokens, kept)"
                                        " VALUES (?, ?, ?) ON CONFLICT (response) DO NOTHING",
                                        checked).rowcount

    def add_response_ratings(self, rows: Iterable[Sequence]) -> int:
        """Store (response key, rule_id, *FIELDS) rows (another store's `response_ratings`)
        in one transaction, skipping keys already stored; every row is validated first.
        Returns the number written."""
        self._check_writable()
        checked = []
        for i, row in enumerate(rows):
            try:
                response, rule_id, *values = row
                if len(values) != len(FIELDS):
                    raise ValueError(f"expected {len(_RESPONSE_COLUMNS)} values")
                checked.append((check_id("response", response), check_id("rule_id", rule_id),
                                *(check_float(n, v) for n, v in zip(FIELDS, values))))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"response rating row {i}: {exc}; nothing was written") from None
        with self._write():
            return self._db.executemany(
                _INSERT + " ON CONFLICT (response, rule_id) DO NOTHING", checked).rowcount

    # ---- life cycle --------------------------------------------------------------------------

    @property
    def _db(self) -> sqlite3.Connection:
        if self._con is None:
            raise ValueError(f"ratings store {self.path} is closed")
        return self._con

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
            if self._read_only:
                _tidy_wal(self.path)

    def __enter__(self) -> RatingStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        meta = getattr(self, "_meta", {})  # absent when opening failed
        state = "closed" if self._con is None else "open"
        return (f"RatingStore({str(self.path)!r}, "
                f"judge_fingerprint={meta.get('judge_fingerprint')!r}, "
                f"template_fingerprint={meta.get('template_fingerprint')!r}, {state})")


def read_ratings(path: str | os.PathLike, pairs: Sequence, rules: Sequence) -> Ratings:
    """The complete ratings of these pairs on these rules from the store at `path`, opened
    read-only: what the steps after rating read. Both are given themselves, not their ids:
    the pairs as `RatingStore.scores` takes them, the rules with their texts (anything with
    id and text), checked against the texts they were rated with (`check_rules`).
    ValueError names what is missing, or a pair or rule whose text changed since it was
    rated; FileNotFoundError when there is no store."""
    with RatingStore.open_existing(path) as store:
        return store.scores(pairs, rules).require_complete(store.path)


def _checked_pairs(pairs: Iterable) -> tuple[list, list[str]]:
    """(pairs as a list, their checked ids): pairs must be the pairs, not their ids."""
    if isinstance(pairs, (str, bytes)):
        raise ValueError(f"pairs must be a sequence of pairs, not the string {pairs!r}")
    pairs = list(pairs)
    try:
        ids = [p.id for p in pairs]
    except AttributeError:
        bad = next(p for p in pairs if not hasattr(p, "id"))
        raise ValueError(
            f"pairs must be the pairs themselves (ramo.io.Pair, or anything with id, prompt, "
            f"response_a and response_b), got {type(bad).__name__} {bad!r}: a pair's ratings "
            "are read only after checking that its texts are the ones rated") from None
    return pairs, _checked_ids("pair ids", ids, allow_empty=True)


def _checked_rules(rules: Iterable) -> tuple[list[tuple[str, str]], list[str]]:
    """(`rule_rows` of the rules, their checked ids): rules must be the rules, not their ids."""
    if isinstance(rules, (str, bytes)):
        raise ValueError(f"rules must be a sequence of rules, not the string {rules!r}")
    rules = list(rules)
    bad = next((r for r in rules
                if not (hasattr(r, "id") and isinstance(getattr(r, "text", None), str))), None)
    if bad is not None:
        raise ValueError(
            f"rules must be the rules themselves (ramo.io.Rule, or anything with id and text), "
            f"not their ids; got {type(bad).__name__} {bad!r}: a rule's ratings are read only "
            "with the text they were rated on")
    return rule_rows(rules), _checked_ids("rule ids", [r.id for r in rules])


def _unit_keys(pairs: Sequence, pair_ids: Sequence[str]) -> list[tuple[str, int, str]]:
    """(pair_id, side, response key) of both sides of each pair, from its texts now."""
    try:
        return [(pair_id, side, response_key(p.prompt, text))
                for p, pair_id in zip(pairs, pair_ids)
                for side, text in enumerate((p.response_a, p.response_b))]
    except AttributeError as exc:
        raise ValueError(f"pairs must have id, prompt, response_a and response_b: {exc}") from None


def _checked_ids(what: str, ids: Iterable[str], allow_empty: bool = False) -> list[str]:
    """ids as a list, after checking that each is a non-empty string listed once."""
    if isinstance(ids, str):
        raise ValueError(f"{what} must be a sequence of ids, not the string {ids!r}")
    ids = list(ids)
    if not ids and not allow_empty:
        raise ValueError(f"{what} is empty")
    seen: set[str] = set()
    for i in ids:
        check_id(what, i)
        if i in seen:
            raise ValueError(f"{what} lists {i!r} twice")
        seen.add(i)
    return ids


def _check_schema(path: Path, meta: dict[str, str | None]) -> None:
    version = meta.get("schema_version")
    if version == "1":
        raise StoreError(
            f"ratings store {path} has schema version '1' (ratings keyed by pair and side); "
            "this ramo keys them by response, so a response shared by pairs is rated once. "
            f"Convert it with `ramo ratings migrate --ratings {path} --pairs PAIRS --out NEW` "
            "(PAIRS: the pairs it was rated on), or rate again into a new store")
    if version != SCHEMA_VERSION:
        raise StoreError(f"ratings store {path} has schema version {version!r}; "
                         f"this ramo reads {SCHEMA_VERSION!r}")


def _raise_as_os_error(exc: BaseException, path: Path) -> None:
    """sqlite's errors about the file itself (a full disk, a file or folder it may not write,
    an I/O error) raised again as the OSError every other output gives, naming the store and
    what to do; other errors are left to the caller to re-raise."""
    if not isinstance(exc, sqlite3.OperationalError):
        return
    text = str(exc)
    # SQLITE_FULL is 13; sqlite_errorcode exists from Python 3.11, the message everywhere.
    if getattr(exc, "sqlite_errorcode", None) == 13 or "disk is full" in text:
        raise OSError(errno.ENOSPC, f"ratings store {path}: the disk is full (sqlite: {text}); "
                      "the ratings committed before are kept: free space and run the same "
                      "command to resume") from exc
    if "unable to open database file" in text or "readonly database" in text:
        raise OSError(errno.EACCES, f"ratings store {path}: sqlite cannot "
                      f"{'write' if 'readonly' in text else 'open'} it ({text}): the file and "
                      "its folder must be writable (a reader too creates the -wal and -shm "
                      "files beside it)") from exc
    if "disk I/O error" in text:
        raise OSError(errno.EIO, f"ratings store {path}: sqlite: {text} (a full disk, or a "
                      "folder where it cannot create the -wal and -shm files)") from exc


def refuse_shared_across_hosts(path: Path) -> None:
    """StoreError in a job whose ranks span hosts: there a store file must not be shared.

    torchrun (and accelerate) set WORLD_SIZE (all ranks) and LOCAL_WORLD_SIZE (this host's).
    WAL keeps its index in shared memory, which processes on different hosts do not share,
    and over a network file system sqlite's locks have corrupted databases; a file system
    can even answer "wal" to the journal-mode switch there, so the danger cannot be detected
    from the file. The job's own description is what tells.
    """
    world, local = os.environ.get("WORLD_SIZE"), os.environ.get("LOCAL_WORLD_SIZE")
    if world and local and world != local:
        raise StoreError(
            f"ratings store {path}: this job's ranks span hosts (WORLD_SIZE={world}, "
            f"LOCAL_WORLD_SIZE={local}), and processes on different hosts cannot share one "
            "sqlite file safely; give each rank a store of its own (single_writer=True) and "
            "merge them afterwards (`ramo rate` does this by itself; `ramo ratings merge`)")


# sqlite's extended result code for a read-only open of a WAL database that could not create
# the -shm file, and for one that found a hot journal it may not roll back; the sqlite3 module
# names them from Python 3.11 on.
_SQLITE_READONLY_DIRECTORY = getattr(sqlite3, "SQLITE_READONLY_DIRECTORY", 1544)
_SQLITE_READONLY_ROLLBACK = getattr(sqlite3, "SQLITE_READONLY_ROLLBACK", 776)
# Why a read-only open failed, by that code: both need a folder the reader may write.
_READ_ONLY_BLOCKED = {
    # A WAL database is read through its -shm index, which sqlite keeps next to the file.
    _SQLITE_READONLY_DIRECTORY: "its folder is not writable and {name}-shm, which sqlite needs "
    "beside a WAL database, does not exist and cannot be created; copy the store to a "
    "writable folder",
    _SQLITE_READONLY_ROLLBACK: "a writer was stopped in the middle of a commit and left "
    "{name}-journal, which only a writer can roll back, and its folder is not writable; copy "
    "the store with its -journal file to a writable folder and read it there"}


def _tidy_wal(path: Path) -> None:
    """After a read-only reader: remove sqlite's -wal / -shm files when the WAL is empty and
    nobody else has the store open, so reading a run folder leaves it as it was.

    A read-only connection cannot delete them itself; the last ordinary connection to close
    does, after checkpointing an empty WAL (which writes nothing to the database). If another
    process has the store open, or the folder is read-only, the files stay, as they would.
    """
    wal = Path(f"{path}-wal")
    if not wal.is_file() or wal.stat().st_size:
        return
    _read_once(path, timeout=0)


def _read_once(path: Path, timeout: float) -> None:
    """One ordinary (writable) connection that reads once and closes, for what sqlite does
    only then: roll back a hot journal on the first read, remove an empty WAL's files on the
    last close. Errors are left to the caller's next open to report."""
    try:
        con = sqlite3.connect(path, timeout=timeout, isolation_level=None)
        try:
            con.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        pass


def _enable_wal(con: sqlite3.Connection, path: Path, timeout: float) -> None:
    # Persistent in the file, so a no-op after the first open. Switching needs the database
    # to itself for a moment; retried because concurrent first opens can hold it briefly and
    # this pragma does not always wait through the busy handler.
    deadline = time.monotonic() + timeout
    while True:
        try:
            mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    if mode.lower() != "wal":
        raise StoreError(f"{path}: sqlite cannot use WAL here (journal mode {mode!r}); "
                         "a ratings store needs a local file system")



def _check_cut(i: int, row: Sequence, key: str = "pair_id") -> tuple:
    """A cut record (pair_id, side, tokens, kept), or (response, tokens, kept) with
    key="response", checked."""
    try:
        *ids, tokens, kept = row
        positive_integer("tokens", tokens)
        positive_integer("kept", kept)
        if key == "response":
            (response,) = ids
            return check_id("response", response), tokens, kept
        pair_id, side = ids
        return check_id("pair_id", pair_id), check_side(side), tokens, kept
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cut record {i}: {exc} (expected {key}, "
                         f"{'' if key == 'response' else 'side, '}tokens, kept); "
                         "nothing was written") from None
