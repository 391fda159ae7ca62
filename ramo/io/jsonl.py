"""File reading shared by the rule and pair loaders: the format from the suffix, JSON Lines
(plain or gzip-compressed) and JSON."""

from __future__ import annotations

import gzip
import json
import os
import zlib
from pathlib import Path
from typing import Any

from ramo.io._problems import Problems

_BOM = b"\xef\xbb\xbf"
_SKIP = object()  # what _parse_line returns for a line that yields no record


def file_kind(path: str | os.PathLike, kinds: tuple[tuple[str, str], ...], what: str) -> str:
    """The kind of `path` from the first of `kinds` ((suffix, kind), longest suffixes first,
    so "x.jsonl.gz" is not taken for something shorter) that its name ends with; ValueError
    naming the file, `what` it should be and the known suffixes otherwise."""
    name = Path(path).name.lower()
    for suffix, kind in kinds:
        if name.endswith(suffix):
            return kind
    known = ", ".join(s for s, _ in kinds)
    raise ValueError(f"{os.fspath(path)}: unknown {what} format (expected one of {known})")


def is_gzip(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(".gz")


def read_jsonl(path: str | os.PathLike, problems: Problems) -> list[tuple[str, Any]]:
    """Every non-blank line of `path` as ("line N", parsed value), N counted from 1.

    Malformed lines go to `problems` and are left out, so one pass reports them all. Blank
    lines are skipped (editors leave a trailing one) but still counted, so N is the line an
    editor shows.
    """
    records: list[tuple[str, Any]] = []
    try:
        with _open_binary(path) as f:
            # Iterating bytes splits only at b"\n"; str.splitlines would also split inside
            # JSON strings holding U+2028 or U+0085, which JSON allows unescaped.
            for number, raw in enumerate(f, start=1):
                where = f"line {number}"
                value = _parse_line(raw, number, where, problems)
                if value is not _SKIP:
                    records.append((where, value))
    except (OSError, EOFError, zlib.error) as e:
        if isinstance(e, FileNotFoundError):
            raise
        # A truncated, corrupted or non-gzip .gz file: name the file instead of a bare gzip
        # error (a corrupted deflate stream raises zlib.error, which is not an OSError).
        raise ValueError(f"{os.fspath(path)}: cannot read: {e}") from e
    return records


def _open_binary(path: str | os.PathLike):
    return gzip.open(path, "rb") if is_gzip(path) else Path(path).open("rb")


def _parse_line(raw: bytes, number: int, where: str, problems: Problems) -> Any:
    if number == 1 and raw.startswith(_BOM):
        raw = raw[len(_BOM):]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        problems.add(where, f"not valid UTF-8 ({e.reason} at byte {e.start})")
        return _SKIP
    if not text.strip():
        return _SKIP
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        problems.add(where, _json_problem(e))
        return _SKIP


def _json_problem(e: ValueError | RecursionError) -> str:
    """Why json refused a text: malformed, or valid but more than Python reads: nested past
    the recursion limit, or an integer longer than sys.get_int_max_str_digits()."""
    if isinstance(e, json.JSONDecodeError):
        return f"malformed JSON: {e.msg} (column {e.colno})"
    if isinstance(e, RecursionError):
        return "JSON nested too deeply to read"
    return f"unreadable JSON: {e}"


def read_json(path: str | os.PathLike) -> Any:
    """A whole JSON document; a syntax error names the file and line."""
    try:
        with Path(path).open("r", encoding="utf-8-sig") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{os.fspath(path)}: line {e.lineno}: malformed JSON: {e.msg} (column {e.colno})"
        ) from e
    except UnicodeDecodeError as e:
        where = f"{os.fspath(path)}: not valid UTF-8"
        raise ValueError(f"{where} ({e.reason} at byte {e.start})") from e
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{os.fspath(path)}: {_json_problem(e)}") from e
