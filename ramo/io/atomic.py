"""Atomic outputs: a reader sees the previous file (or folder) or the complete new one.

Everything ramo writes goes through here. Data goes to a hidden temporary sibling of the
target (os.replace is only atomic within one file system), is fsynced, then renamed over the
target. A failed or interrupted write removes its temporary and leaves the target untouched;
only a SIGKILL in the middle can leave a stray `.<name>.<pid>.<random>.tmp` behind, which
`remove_temporaries` clears once nobody can be writing (`ramo pipeline` does, holding its run
folder's lock).
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from ramo.io.jsonl import is_gzip


def _temporary_sibling(target: Path) -> Path:
    # pid + random: concurrent writers (several ranks, say) never share a temporary.
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


# The names _temporary_sibling gives, and the ".old" a folder replacement parks its previous
# folder under.
TEMPORARY = re.compile(r"\..+\.\d+\.[0-9a-f]{8}\.(tmp|old)")


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Removes the temporaries (files or folders) that writes through this module left in
    `folder` and below, and returns them: what a SIGKILL leaves. Only for a caller that knows
    no other process is writing there."""
    removed = []
    for root, dirs, files in os.walk(folder):
        for name in [d for d in dirs if TEMPORARY.fullmatch(d)]:
            dirs.remove(name)  # not walked into
            shutil.rmtree(Path(root, name), ignore_errors=True)
            removed.append(Path(root, name))
        for name in files:
            if TEMPORARY.fullmatch(name):
                Path(root, name).unlink(missing_ok=True)
                removed.append(Path(root, name))
    return removed


@contextmanager
def scratch_dir(near: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder beside `near` (named as this module's temporaries are, so that
    `remove_temporaries` clears it after a SIGKILL), removed afterwards."""
    tmp = _temporary_sibling(Path(near))
    tmp.mkdir(parents=True)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path to write a file at; on success it replaces `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(target)
    try:
        yield tmp
        _fsync_file(tmp)  # the data must be on disk before the rename can expose it
        os.replace(tmp, target)
    except BaseException as exc:  # KeyboardInterrupt too: never leave the temporary behind
        with suppress(OSError):  # a read-only file system refuses even a missing one's unlink
            tmp.unlink(missing_ok=True)
        _raise_for_target(exc, tmp, target)
        raise
    _fsync_dir(target.parent)  # makes the rename itself survive a crash


def _raise_for_target(exc: BaseException, tmp: Path, target: Path) -> None:
    """An error about the hidden temporary (a read-only folder, a full disk) raised again as
    an OSError under the name the user gave: the temporary is an implementation detail, and
    gone. A file inside a temporary folder is named inside the target; a write that names no
    file (a full disk met by write()) names the target; a library's own error for a full disk
    (safetensors' "No space left on device (os error 28)") becomes the OSError it stands for."""
    if isinstance(exc, OSError):
        if exc.filename2 is not None:
            return
        if exc.filename is None:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise type(exc)(exc.errno, exc.strerror, str(target)) from exc
            return
        path = Path(exc.filename)
        if path == tmp or tmp in path.parents:
            raise type(exc)(exc.errno, exc.strerror,
                            str(target / path.relative_to(tmp))) from exc
    elif isinstance(exc, Exception) and ("os error 28" in str(exc)
                                         or "No space left on device" in str(exc)):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target)) from exc


def check_writable(target: str | os.PathLike) -> None:
    """The OSError a write of `target` would meet in a folder it may not write (permissions,
    a read-only file system), raised now, naming the target, instead of after the work. The
    nearest folder that exists is tried (a write creates the ones missing below it); a file
    in the way is left to the write's own error."""
    folder = Path(target).absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        return
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror, os.fspath(target)) from exc


def check_output_dir(target: str | os.PathLike,
                     inputs: Mapping[str, str | os.PathLike | Iterable | None] = {},
                     marker: str | None = None) -> None:
    """ValueError when an output folder's path is a file (the folder would take its place: a
    user's data moved aside under a hidden name); when, with `marker` (the file the step
    writes into every folder it makes), the folder exists, holds files and not that one (a
    user's folder, whose files `atomic_dir` would delete with it); or when one of the step's
    `inputs` (name -> path or paths) lies inside it (deleted with the old folder too). The
    folder itself may be an input (a model trained further and saved over itself: it is read
    before the folder is replaced). For the steps to call before their work."""
    given = Path(target)
    if given.exists() and not given.is_dir():
        raise ValueError(f"{os.fspath(target)}: exists and is not a folder; give a folder name")
    folder = given.resolve()
    if folder == Path.cwd() or folder in Path.cwd().parents:
        raise ValueError(f"{os.fspath(target)}: the output folder would replace the folder this "
                         "runs in; give a folder name")
    check_writable(target)
    for name, path in _input_paths(inputs):
        if path.exists() and folder in path.resolve().parents:
            raise ValueError(f"{name} {path} lies inside the output folder {os.fspath(target)}, "
                             "which is replaced whole when the step ends: move it out, or give "
                             "another output folder")
    if marker is not None and given.is_dir() and not (given / marker).is_file():
        held = sorted(p.name for p in given.iterdir())
        if held:
            raise ValueError(
                f"{os.fspath(target)}: a folder that holds other files ({', '.join(held[:3])}"
                f"{', ...' if len(held) > 3 else ''}), not an output of this step (no {marker}); "
                "the output replaces its folder whole: give a new folder name, or empty it")


def _input_paths(inputs: Mapping[str, str | os.PathLike | Iterable | None]
                 ) -> Iterator[tuple[str, Path]]:
    """(name, path) of each input path given; an input given as data, not as a path, has none."""
    for name, paths in inputs.items():
        if paths is None:
            continue
        for path in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
            if isinstance(path, (str, os.PathLike)):
                yield name, Path(path)


@contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yields an empty temporary folder to fill (a `save_pretrained`, say); on success it
    takes the place of `target`, replacing a previous folder there, never a file."""
    check_output_dir(target)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(target)
    try:
        tmp.mkdir()
    except OSError as exc:
        _raise_for_target(exc, tmp, target)
        raise
    try:
        yield tmp
        for path in tmp.rglob("*"):
            if path.is_file():
                _fsync_file(path)
        if target.exists():
            # Two renames: a folder cannot be replaced in one. A crash between them leaves
            # the old folder at `.<name>.old...`, never a half-written one at `target`.
            old = _temporary_sibling(target).with_suffix(".old")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _raise_for_target(exc, tmp, target)
        raise
    _fsync_dir(target.parent)


def write_text(target: str | os.PathLike, text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_json(target: str | os.PathLike, obj: Any) -> Path:
    return write_text(target, json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def write_jsonl(target: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> Path:
    """One JSON object per line; floats are written with repr, so they read back exactly.
    A name ending in .gz is gzip-compressed, with no timestamp in the header, so the same
    rows always give the same bytes (a regenerated file diffs clean)."""
    with atomic_path(target) as tmp, open(tmp, "xb") as raw:
        stream = (gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0)
                  if is_gzip(target) else raw)
        with io.TextIOWrapper(stream, encoding="utf-8", newline="\n") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False, allow_nan=False))
                f.write("\n")
    return Path(target)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (links and relative spellings included)."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_output(target: str | os.PathLike, flag: str,
                 inputs: Mapping[str, str | os.PathLike | Iterable | None] = {},
                 jsonl: bool = False) -> None:
    """Refuse, before any work, an output file that is a folder, that is one of the command's
    inputs (`inputs`: flag -> path or paths; writing it would replace that input), or, with
    jsonl, whose name does not end in .jsonl or .jsonl.gz (what is written is JSON lines, and
    readers take a file's format from its name)."""
    target = Path(target)
    if target.is_dir():
        raise ValueError(f"{flag} {target}: is a folder; give a file name")
    check_writable(target)
    if jsonl and not target.name.lower().endswith((".jsonl", ".jsonl.gz")):
        raise ValueError(f"{flag} {target}: the file name must end in .jsonl or .jsonl.gz "
                         "(JSON lines are written, and readers take the format from the name)")
    for name, path in _input_paths(inputs):
        # An input that is not a file ("default": ramo's own pool) cannot be replaced.
        if path.is_file() and same_file(target, path):
            raise ValueError(f"{flag} {target} is also {name}: writing it would replace "
                             "that input; give another name")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
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
