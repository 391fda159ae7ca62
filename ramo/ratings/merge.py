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
        bound = written = 0
        with RatingStore(target, judge_fingerprint=first.judge_fingerprint,
                         template_fingerprint=first.template_fingerprint,
                         judge_info=first.judge_info, template_info=first.template_info,
                         single_writer=single_writer) as out:
            for store in opened:
                # Bindings first: a rating is only ever read through one. Shards that rated a
                # rule id with different texts are refused here, nothing of that shard written.
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


