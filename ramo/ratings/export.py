"""Writing a ratings table to Parquet or JSONL, atomically (ramo.io.atomic)."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from ramo.io.atomic import atomic_path

# The row layout shared by the store, its exports and its readers.
COLUMNS = ("pair_id", "side", "rule_id", "p_yes", "p_no", "p_other", "score", "relevance")

_BATCH_ROWS = 65536  # bounds memory for large stores: Parquet is written one row group per batch


def export_rows(rows: Iterable[Sequence], path: str | os.PathLike) -> Path:
    """Write rows laid out as COLUMNS to `path`; the format comes from the suffix.

    Raises ValueError for a suffix other than .parquet or .jsonl, before anything is written.
    """
    path = Path(path)
    writer = _writer_for(path)
    with atomic_path(path) as tmp:
        writer(rows, tmp)
    return path


def _writer_for(path: Path) -> Callable[[Iterable[Sequence], Path], None]:
    writers = {".parquet": _write_parquet, ".jsonl": _write_jsonl}
    writer = writers.get(path.suffix.lower())
    if writer is None:
        raise ValueError(f"cannot export ratings to {path}: the file name must end in "
                         f"{' or '.join(writers)}")
    return writer


def _batches(rows: Iterable[Sequence]) -> Iterator[list[Sequence]]:
    it = iter(rows)
    while batch := list(itertools.islice(it, _BATCH_ROWS)):
        yield batch


def _write_parquet(rows: Iterable[Sequence], tmp: Path) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pyarrow is an optional dependency (ramo[judge])
        raise ImportError("exporting ratings to .parquet needs pyarrow: pip install pyarrow") from exc

    schema = pa.schema([("pair_id", pa.string()), ("side", pa.int64()), ("rule_id", pa.string())]
                       + [(name, pa.float64()) for name in COLUMNS[3:]])
    # Written even when there are no rows: an empty store exports a valid, empty table.
    with pq.ParquetWriter(str(tmp), schema) as writer:
        for batch in _batches(rows):
            columns = list(zip(*batch))
            arrays = [pa.array(col, type=field.type) for col, field in zip(columns, schema)]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))


def _write_jsonl(rows: Iterable[Sequence], tmp: Path) -> None:
    # "x": the name is fresh, so an existing file there would mean something is badly wrong.
    with open(tmp, "x", encoding="utf-8", newline="\n") as f:
        for row in rows:
            # json writes floats with repr, so they read back bit for bit.
            f.write(json.dumps(dict(zip(COLUMNS, row)), ensure_ascii=False, allow_nan=False))
            f.write("\n")
