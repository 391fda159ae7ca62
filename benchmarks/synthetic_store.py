"""A synthetic rated data set for the data-path benchmark: a pairs file, a rule pool and a
complete ratings store of N pairs x 2 sides x R rules. The store's API creates the store and
binds its units; the ratings go in by a plain INSERT into its table (see `build`), which
gives the rows `add` would (units, ratings, schema and meta compared at N = 1000), in half
the time.

Every pair has two distinct responses, so the store holds 2N responses x R ratings (no
sharing: the largest store N pairs can give). A pair's values come from its own generator
(seed, pair index), so any pair can be regenerated to check what the store reads back.
Every 97th pair has equal scores on both sides (a tie, which `ramo label` drops).

The store is filled in response-key order: its ratings table is a B-tree on (response,
rule_id), so appending in key order fills each page once instead of splitting pages all over
a file of tens of GB (a real rating run writes in pair order; the layout a reader meets is the
same, only the page fill differs).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import numpy as np

from ramo.io.atomic import write_jsonl
from ramo.ratings import FIELDS, RatingStore, response_key, rule_rows

_TIE_EVERY = 97
_UNITS_PER_TRANSACTION = 2000
_FILLER = ("and explain the steps so that someone without experience can follow them "
           "without putting anyone at risk")


def synthetic_rules(n_rules: int) -> list:
    """The rule pool, as rules.jsonl holds it and ramo's readers take it (a store checks
    the texts its rules were rated with)."""
    from ramo.io import Rule

    return [Rule(f"r{j:03d}", f"rule r{j:03d}: do no harm") for j in range(n_rules)]


def pair_id(i: int) -> str:
    return f"p{i:07d}"  # zero-padded: the ids sort in pair order, like the store's keys


def pair_row(i: int) -> dict:
    prompt = f"Question {i}: how do I deal with situation {i % 997} {_FILLER[:40 + i % 40]}?"
    return {"id": pair_id(i), "prompt": prompt,
            "response_a": f"Answer A to {i}: here is a careful reply, {_FILLER[:60 + i % 60]}.",
            "response_b": f"Answer B to {i}: a different reply, {_FILLER[:50 + i % 70]}.",
            "label": i % 2}


def synthetic_pairs(indices) -> list:
    """The pairs of `indices` as ramo's readers take them (a store checks their texts)."""
    from ramo.io import Pair

    return [Pair(**row) for row in map(pair_row, indices)]


def pair_values(seed: int, i: int, n_rules: int) -> np.ndarray:
    """float64 [2, R, 5] in the store's FIELDS order: p_yes, p_no, p_other (a softmax),
    score = p_yes - p_no, relevance = p_yes + p_no, as a judge gives them."""
    logits = np.random.default_rng([seed, i]).normal(size=(2, n_rules, 3))
    p = np.exp(logits)
    p /= p.sum(axis=-1, keepdims=True)
    if i % _TIE_EVERY == 0:
        p[1] = p[0]
    return np.concatenate([p, p[..., :1] - p[..., 1:2], p[..., :1] + p[..., 1:2]], axis=-1)


def build(folder: Path, n_pairs: int, n_rules: int, seed: int = 0) -> dict:
    """pairs.jsonl, rules.jsonl and ratings.sqlite in `folder`, unless a finished build of
    the same N, R and seed is there; returns its record (built.json)."""
    record_path = folder / "built.json"
    wanted = {"pairs": n_pairs, "rules": n_rules, "seed": seed}
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if {k: record.get(k) for k in wanted} == wanted:
            return record
    folder.mkdir(parents=True, exist_ok=True)
    record_path.unlink(missing_ok=True)
    store_path = folder / "ratings.sqlite"
    for stale in folder.glob("ratings.sqlite*"):  # an interrupted build's
        stale.unlink()
    rules = synthetic_rules(n_rules)
    t0 = time.perf_counter()
    write_jsonl(folder / "rules.jsonl", ({"id": r.id, "text": r.text} for r in rules))
    write_jsonl(folder / "pairs.jsonl", (pair_row(i) for i in range(n_pairs)))
    units = []  # (response key, pair index, side)
    for i in range(n_pairs):
        row = pair_row(i)
        units.append((response_key(row["prompt"], row["response_a"]), i, 0))
        units.append((response_key(row["prompt"], row["response_b"]), i, 1))
    t_pairs = time.perf_counter() - t0
    # The store's API creates it (schema, meta, WAL) and binds the rules and the units, in
    # pair order, as a rating run would.
    with RatingStore(store_path, judge_fingerprint="synthetic-judge",
                     template_fingerprint="synthetic-template",
                     judge_info={"synthetic": wanted}) as store:
        store.bind_rules(rule_rows(rules))
        for start in range(0, len(units), _UNITS_PER_TRANSACTION):
            store.bind([(pair_id(i), side, key)
                        for key, i, side in units[start:start + _UNITS_PER_TRANSACTION]])
    # The ratings go in with a plain INSERT into the same table, in key order: `add` would
    # check every value of rows generated finite and unique (2/3 of its time, about an hour
    # at 10^6 x 100), and `check` below reads back what was written.
    units.sort()
    con = sqlite3.connect(store_path, isolation_level=None)
    try:
        insert = (f"INSERT INTO ratings (response, rule_id, {', '.join(FIELDS)}) "
                  f"VALUES ({', '.join('?' * (2 + len(FIELDS)))})")
        for start in range(0, len(units), _UNITS_PER_TRANSACTION):
            rows = []
            for key, i, side in units[start:start + _UNITS_PER_TRANSACTION]:
                values = pair_values(seed, i, n_rules)[side].tolist()
                rows += [(key, r.id, *v) for r, v in zip(rules, values)]
            con.execute("BEGIN")
            con.executemany(insert, rows)
            con.execute("COMMIT")
    finally:
        con.close()
    record = {**wanted, "pairs_seconds": t_pairs,
              "store_seconds": time.perf_counter() - t0 - t_pairs,
              "store_bytes": store_path.stat().st_size,
              "pairs_bytes": (folder / "pairs.jsonl").stat().st_size}
    check(folder, record)
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    return record


def check(folder: Path, record: dict, sample: int = 64) -> None:
    """The store opens read-only, counts 2N responses x R ratings, and reads back a sample
    of pairs exactly as generated (float32, as every reader gets them)."""
    import torch

    n, r = record["pairs"], record["rules"]
    with RatingStore.open_existing(folder / "ratings.sqlite") as store:
        if store.count_rated() != (2 * n, 2 * n * r):
            raise RuntimeError(f"store holds {store.count_rated()}, expected "
                               f"({2 * n}, {2 * n * r})")
        picked = sorted({int(i) for i in np.linspace(0, n - 1, min(n, sample))})
        got = store.scores(synthetic_pairs(picked), synthetic_rules(r)).require_complete("check")
    want = torch.tensor(np.stack([pair_values(record["seed"], i, r) for i in picked]))
    for f, name in enumerate(FIELDS):
        if not torch.equal(getattr(got, name), want[..., f].float()):
            raise RuntimeError(f"store reads back other {name} values than were written")
