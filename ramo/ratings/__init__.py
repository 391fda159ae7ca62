"""Judge ratings on disk (design.md §5): a resumable, process-safe sqlite store that holds
one judge's ratings under one template, and its Parquet / JSONL exports."""

from ramo.ratings.export import COLUMNS, export_rows
from ramo.ratings.store import (
    DuplicateRatingError,
    Rating,
    RatingStore,
    StoreError,
    StoreMismatchError,
)

__all__ = ["COLUMNS", "DuplicateRatingError", "Rating", "RatingStore", "StoreError",
           "StoreMismatchError", "export_rows"]
