"""Judge ratings (docs/architecture.md, "Rating with a judge"): what a rating is (`Rating`, a
stored row; `Ratings`, the dense [N, 2, R] view), and the resumable, process-safe sqlite store
that holds one judge's ratings under one template, keyed by response, with its Parquet / JSONL
exports, merges of shards and conversion of older stores."""

from ramo.ratings.export import export_rows
from ramo.ratings.ratings import (COLUMNS, FIELDS, Rating, Ratings, require_complete_blocks,
                                  response_key, response_rows, rule_key, rule_rows)
from ramo.ratings.merge import merge_stores, migrate_store
from ramo.ratings.store import (
    DuplicateRatingError,
    RatingStore,
    StoreError,
    StoreMismatchError,
    read_ratings,
)

__all__ = ["COLUMNS", "DuplicateRatingError", "FIELDS", "Rating", "RatingStore", "Ratings",
           "StoreError", "StoreMismatchError", "export_rows", "merge_stores", "migrate_store",
           "read_ratings", "require_complete_blocks", "response_key", "response_rows",
           "rule_key", "rule_rows"]
