"""Writing a ratings table to Parquet or JSONL, atomically.

A reader of the target path sees either the previous file or the complete new one, never a
partial file: rows go to a hidden temporary file in the target's own directory (os.replace
is only atomic within one file system), which is fsynced and then renamed over the target.
A failed or interrupted export removes its temporary file and leaves the target untouched;
only a SIGKILL in the middle can leave a stray `.<name>.<pid>.<random>.tmp` behind.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

# The row layout shared by the store, its exports and its readers.
COLUMNS = ("pair_id", "side", "rule_id", "p_yes", "p_no", "p_other", "score", "relevance")

_BATCH_ROWS = 65536  # bounds memory for large stores: Parquet is written one row group per batch


def export_rows(rows: Iterable[Sequence], path: str | os.PathLike) -> Path:
    """Write rows laid out as COLUMNS to `path`; the format comes from the suffix.

    Raises ValueError for a suffix other than .parquet or .jsonl, before anything is written.
    """
    path = Path(path)
    writer = _writer_for(path)
    with _atomic_target(path) as tmp:
        writer(rows, tmp)
    return path


def _writer_for(path: Path) -> Callable[[Iterable[Sequence], Path], None]:
    writers = {".parquet": _write_parquet, ".jsonl": _write_jsonl}
    writer = writers.get(path.suffix.lower())
    if writer is None:
        raise ValueError(f"cannot export ratings to {path}: the file name must end in "
                         f"{' or '.join(writers)}")
    return writer


@contextmanager
def _atomic_target(target: Path) -> Iterator[Path]:
    # pid + random: concurrent exporters (several ranks, say) never share a temporary file.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        _fsync_file(tmp)  # the data must be on disk before the rename can expose it
        os.replace(tmp, target)
    except BaseException:  # KeyboardInterrupt too: never leave the temporary file behind
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)  # makes the rename itself survive a crash


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync there; NTFS journals renames
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
