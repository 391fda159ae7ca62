"""`ramo ratings merge` and `ramo ratings migrate`: building a ratings store from others."""

from __future__ import annotations

import argparse
from pathlib import Path


def merge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path,
                        help="the store to merge into (created when absent)")
    parser.add_argument("stores", nargs="+", type=Path, metavar="STORE",
                        help="ratings stores (sqlite files) to merge, all of one judge and "
                        "template, e.g. the shards OUT.shards/rank-*.sqlite (left as they are)")


def merge(args: argparse.Namespace) -> int:
    """Merge ratings stores of one judge and template into one.

    What a multi-process `ramo rate` does by itself at the end; by hand for shards rated on
    different machines, or a job that was stopped before rank 0 merged. Every store must hold
    the same judge and template, and a pair side bound to one response in one store must not
    be bound to another in the next (checked before anything is written). Merging again adds
    nothing. The stores merged are left as they are.
    """
    from ramo.ratings import RatingStore, merge_stores

    bound, written = merge_stores(args.out, args.stores)
    with RatingStore.open_existing(args.out) as store:
        responses, stored = store.count_rated()
        print(f"merged {len(args.stores)} stores into {args.out}: {written} new ratings, "
              f"{bound} new pair sides; it holds {stored} ratings of {responses} responses")
    return 0


def migrate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ratings", required=True, type=Path,
                        help="a store of schema 1 (ratings keyed by pair and side)")
    parser.add_argument("--pairs", required=True, action="append", type=Path,
                        help="the pairs it was rated on (repeatable)")
    parser.add_argument("--out", required=True, type=Path, help="the new store (must not exist)")


def migrate(args: argparse.Namespace) -> int:
    """Convert a ratings store of schema 1 (ramo before ratings were keyed by response).

    Each stored pair side is bound to its response from the pairs it was rated on (the same
    ids, the same texts); the ratings move under the response, once for a response that
    several pairs share. The old store is left as it was; the new one appears complete or
    not at all.
    """
    from ramo.io import load_pairs
    from ramo.ratings import migrate_store, response_key

    responses = {}
    for path in args.pairs:
        for pair in load_pairs(path):
            for side, text in enumerate((pair.response_a, pair.response_b)):
                responses[(pair.id, side)] = response_key(pair.prompt, text)
    units, written = migrate_store(args.ratings, args.out, responses)
    print(f"converted {args.ratings} into {args.out}: {units} pair sides, {written} ratings")
    return 0
