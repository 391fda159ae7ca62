"""Building one ratings store from others: merging the shards of a multi-host job, and
converting a store of schema 1 (ratings keyed by pair and side) to the response-keyed one.

Both write through `RatingStore`'s own checks (fingerprints, bindings, values), so a merge
never mixes judges or templates and never rebinds a pair to another response. A merge is
idempotent (stored keys are skipped), so a merge that was stopped is finished by running it
again; a conversion writes a new file and moves it into place only when it is complete.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

from ramo.ratings.ratings import FIELDS
from ramo.ratings.rows import batched, from_json
from ramo.ratings.store import RatingStore, StoreError, StoreMismatchError


def merge_stores(target: str | os.PathLike, sources: Sequence[str | os.PathLike], *,
                 single_writer: bool = False) -> tuple[int, int]:
    """Adds every binding and rating of the stores `sources` to the store `target` (created
    when absent). All must hold the same judge and template (StoreMismatchError names the
    first that does not, before anything is written). single_writer: open the target as
    the only writer (what rank 0 of a multi-host job does). Returns (units bound, ratings
    written) now; both are 0 for a merge that was already done."""
    target = Path(target)
    paths = [Path(p) for p in sources]
    if not paths:
        raise ValueError("no stores to merge")
    for p in paths:
        if p.resolve() == target.resolve():
            raise ValueError(f"{p} is the target store; it cannot be merged into itself")
    opened: list[RatingStore] = []
    try:
        for p in paths:
            opened.append(RatingStore.open_existing(p))
        first = opened[0]
        for store in opened[1:]:
            if (store.judge_fingerprint, store.template_fingerprint) != (
                    first.judge_fingerprint, first.template_fingerprint):
                raise StoreMismatchError(
                    f"{store.path} holds another judge or template than {first.path}; "
                    "stores of different judges or templates cannot be merged")
        _check_bindings_agree(target, opened)
        bound = written = 0
        with RatingStore(target, judge_fingerprint=first.judge_fingerprint,
                         template_fingerprint=first.template_fingerprint,
                         judge_info=first.judge_info, template_info=first.template_info,
                         single_writer=single_writer) as out:
            for store in opened:
                # Bindings first: a rating is only ever read through one.
                out.bind_rules(list(store.rule_bindings()))
                for chunk in batched(store.units()):
                    bound += out.bind(chunk)
                for chunk in batched(store.response_ratings()):
                    written += out.add_response_ratings(chunk)
                for chunk in batched(store.response_cuts()):
                    out.add_response_cuts(chunk)
        return bound, written
    finally:
        for store in opened:
            store.close()


def _check_bindings_agree(target: Path, stores: Sequence[RatingStore]) -> None:
    """ValueError, before anything is written, when two of the stores, or one of them and
    the store at `target` (when there is one), bind a pair side to different responses or a
    rule id to different texts (a text changed under its id between two ratings), naming
    both: so a refused merge leaves `target` as it was, or absent. The stores' units are
    gathered in an anonymous scratch database (on disk when large), not in memory."""
    def refused(what: str, first: Path, second: Path) -> ValueError:
        return ValueError(f"{what} is bound to one {'text' if 'rule' in what else 'response'} "
                          f"in {first} and to another in {second}: its text changed under the "
                          "same id between the two ratings; nothing was merged (merge the "
                          "stores of one text)")

    rules: dict[str, tuple[str, Path]] = {}
    out = RatingStore.open_existing(target) if target.is_file() else None
    seen = sqlite3.connect("")
    try:
        seen.execute("CREATE TABLE units (pair_id, side, response, source,"
                     " PRIMARY KEY (pair_id, side)) WITHOUT ROWID")
        seen.execute("CREATE TABLE chunk (pair_id, side, response)")
        for index, store in enumerate(stores):
            for rule_id, key in store.rule_bindings():
                first_key, first_path = rules.setdefault(rule_id, (key, store.path))
                if first_key != key:
                    raise refused(f"rule {rule_id!r}", first_path, store.path)
            for chunk in batched(store.units()):
                if out is not None:
                    try:
                        out.check_units(chunk)
                    except ValueError as exc:
                        raise ValueError(f"{store.path}: {exc}; nothing was merged") from None
                seen.execute("DELETE FROM chunk")
                seen.executemany("INSERT INTO chunk VALUES (?, ?, ?)", chunk)
                clash = seen.execute(
                    "SELECT c.pair_id, c.side, u.source FROM chunk c JOIN units u"
                    " ON u.pair_id = c.pair_id AND u.side = c.side"
                    " WHERE u.response != c.response LIMIT 1").fetchone()
                if clash:
                    raise refused(f"pair {clash[0]!r} side {clash[1]}",
                                  stores[clash[2]].path, store.path)
                seen.execute("INSERT OR IGNORE INTO units SELECT pair_id, side, response, ?"
                             " FROM chunk", (index,))
        if out is not None:
            try:
                out.check_rules([(rule_id, key) for rule_id, (key, _) in rules.items()])
            except ValueError as exc:
                raise ValueError(f"{exc}; nothing was merged") from None
    finally:
        seen.close()
        if out is not None:
            out.close()


def migrate_store(source: str | os.PathLike, target: str | os.PathLike,
                  responses: Mapping[tuple[str, int], str]) -> tuple[int, int]:
    """Converts the schema 1 store `source` into a new store at `target`.

    responses: {(pair_id, side): response key} for every unit the source holds (from the
    pairs it was rated on, `ramo.ratings.response_key`); ValueError names the first missing
    one before anything is written. Ratings of a response that several units share are
    taken once (the first in key order). Returns (units, response ratings) written.
    """
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise FileNotFoundError(f"no ratings store at {source}")
    if target.exists():
        raise ValueError(f"{target} exists; give a new path for the converted store")
    meta, rows = _read_schema_1(source)
    units = {(pair_id, side) for pair_id, side, *_ in rows}
    missing = sorted(units - set(responses))
    if missing:
        raise ValueError(f"{len(missing)} rated pair sides of {source} are not in the pairs "
                         f"given, e.g. {missing[:3]}; give the pairs it was rated on")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with RatingStore(tmp, judge_fingerprint=meta["judge_fingerprint"],
                         template_fingerprint=meta["template_fingerprint"],
                         judge_info=from_json(meta.get("judge_info")),
                         template_info=from_json(meta.get("template_info")),
                         single_writer=True) as out:
            bound = out.bind((pair_id, side, responses[(pair_id, side)])
                             for pair_id, side in sorted(units))
            written = out.add_response_ratings(
                (responses[(pair_id, side)], rule_id, *values)
                for pair_id, side, rule_id, *values in rows)
        os.replace(tmp, target)  # single_writer: a rollback journal, no -wal file to move
    finally:
        for leftover in (tmp, Path(f"{tmp}-journal")):
            leftover.unlink(missing_ok=True)
    return bound, written


def _read_schema_1(path: Path) -> tuple[dict, list[tuple]]:
    con = sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True)
    try:
        meta = dict(con.execute("SELECT key, value FROM meta"))
        if meta.get("schema_version") != "1":
            raise StoreError(f"{path} has schema version {meta.get('schema_version')!r}, "
                             "not '1': there is nothing to convert")
        rows = con.execute(f"SELECT pair_id, side, rule_id, {', '.join(FIELDS)} FROM ratings"
                           " ORDER BY pair_id, side, rule_id").fetchall()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a ratings store: {exc}") from exc
    finally:
        con.close()
    return meta, rows


