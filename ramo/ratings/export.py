"""Writing a ratings table to Parquet or JSONL, atomically (ramo.io.atomic)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from ramo.io.atomic import atomic_path, write_jsonl
from ramo.ratings.ratings import COLUMNS
from ramo.ratings.rows import batched


def export_rows(rows: Iterable[Sequence], path: str | os.PathLike) -> Path:
    """Write rows laid out as COLUMNS to `path`; the format comes from the suffix
    (`export_format`, which raises before anything is written)."""
    path = Path(path)
    if export_format(path) == "jsonl":  # ramo's one JSONL writer; floats read back bit for bit
        write_jsonl(path, (dict(zip(COLUMNS, row)) for row in rows))
    else:
        with atomic_path(path) as tmp:
            _write_parquet(rows, tmp)
    return path


def export_format(path: str | os.PathLike) -> str:
    """"jsonl" (.jsonl, or .jsonl.gz, gzipped) or "parquet" from the file name; ValueError
    for any other."""
    name = Path(path).name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    raise ValueError(f"cannot export ratings to {path}: the file name must end in .parquet, "
                     ".jsonl or .jsonl.gz")


def _write_parquet(rows: Iterable[Sequence], tmp: Path) -> None:
    from ramo.io.arrow import import_pyarrow

    pa = import_pyarrow("exporting ratings to .parquet (or to .jsonl)")
    pq = pa.parquet

    schema = pa.schema([("pair_id", pa.string()), ("side", pa.int64()), ("rule_id", pa.string())]
                       + [(name, pa.float64()) for name in COLUMNS[3:]])
    # Written even when there are no rows: an empty store exports a valid, empty table.
    with pq.ParquetWriter(str(tmp), schema) as writer:
        for batch in batched(rows):  # one row group per batch: bounded memory
            columns = list(zip(*batch))
            arrays = [pa.array(col, type=field.type) for col, field in zip(columns, schema)]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
