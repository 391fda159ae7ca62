"""A full disk (issue 16): writing the ratings store and the atomic outputs onto a small tmpfs
fails with a clear error, leaves the previous state intact, and resumes once space returns.
Skipped where mounting a tmpfs is not allowed (it needs root or CAP_SYS_ADMIN)."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest

from python_tests.test_rate import judge_dir  # noqa: F401 (the fixture)
from python_tests.test_rate import _finish, _pairs, _rate, _table, _write_jsonl
from ramo.io.atomic import write_jsonl


def _mount(path: Path, size: str, *options: str) -> bool:
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([*options, f"size={size}"]),
                           "tmpfs", str(path)], capture_output=True, text=True)
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of 128 KiB at tmp_path/disk (the store's first commits fit, its write-ahead
    log soon does not), and a function that resizes it."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if not _mount(disk, "128k"):
        pytest.skip("mounting a tmpfs is not allowed here (needs root or CAP_SYS_ADMIN)")

    def resize(size: str) -> None:
        assert _mount(disk, size, "remount"), f"remount to {size} failed"

    yield disk, resize
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_atomic_output_on_a_full_disk(small_disk):
    disk, resize = small_disk
    target = disk / "labeled.jsonl"
    write_jsonl(target, [{"id": "old", "text": "x"}])
    before = target.read_bytes()
    rows = [{"id": str(i), "text": "y" * 1000} for i in range(200)]  # about 200 KB
    with pytest.raises(OSError) as raised:
        write_jsonl(target, rows)
    assert raised.value.errno == errno.ENOSPC
    assert target.read_bytes() == before  # the previous file, whole
    assert sorted(p.name for p in disk.iterdir()) == ["labeled.jsonl"]  # no temporary left
    resize("1m")
    write_jsonl(target, rows)
    assert len(target.read_text().splitlines()) == 200


def test_ratings_store_on_a_full_disk_resumes(tmp_path, small_disk, judge_dir):  # noqa: F811
    disk, resize = small_disk
    pairs = _write_jsonl(tmp_path / "p.jsonl", _pairs(120))
    reference = tmp_path / "reference.sqlite"
    code, _, err = _finish(_rate(tmp_path, judge_dir, pairs, reference, "--commit-every", "1"))
    assert code == 0, err
    store = disk / "ratings.sqlite"
    code, _, err = _finish(_rate(tmp_path, judge_dir, pairs, store, "--commit-every", "1"))
    assert code == 1 and "ramo rate: error: no space left on the disk" in err, err
    assert "Traceback" not in err
    kept = _table(store)  # what was committed is readable and correct
    assert 0 < len(kept) < len(_table(reference))
    assert set(kept) <= set(_table(reference))
    resize("4m")
    code, _, err = _finish(_rate(tmp_path, judge_dir, pairs, store, "--commit-every", "1"))
    assert code == 0, err
    assert _table(store) == _table(reference)


def _fill(disk: Path) -> None:
    """Takes every free block of the disk."""
    with open(disk / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_a_store_that_cannot_be_written_is_an_os_error_naming_it(tmp_path, small_disk):
    """sqlite's own errors about the file (a full disk at creation or at BEGIN, a read-only
    file system, a reader that cannot create its -shm file) come as the OSError any output
    gives, naming the store, so the CLI prints one line instead of a traceback."""
    from python_tests.test_ratings_store import _open, add, unit_rows
    from ramo.ratings import RatingStore

    disk, resize = small_disk
    resize("1m")
    with _open(disk / "old.sqlite") as store:  # a complete store, before the disk fills
        add(store, unit_rows("p000", 0, ["r000"]))
    _fill(disk)
    with pytest.raises(OSError) as raised:
        _open(disk / "new.sqlite")
    assert raised.value.errno == errno.ENOSPC and "ratings store" in str(raised.value)
    assert str(disk / "new.sqlite") in str(raised.value)
    with pytest.raises(OSError) as raised:  # the writer's BEGIN on a full disk
        with _open(disk / "old.sqlite") as store:
            add(store, unit_rows("p001", 0, ["r000"]))
    assert raised.value.errno in (errno.ENOSPC, errno.EIO), raised.value
    assert str(disk / "old.sqlite") in str(raised.value)
    with pytest.raises(OSError) as raised:  # a reader must create the -shm file
        RatingStore.open_existing(disk / "old.sqlite").close()
    assert str(disk / "old.sqlite") in str(raised.value)
    (disk / "filler").unlink()
    (disk / "new.sqlite").unlink(missing_ok=True)
    resize("1m")
    assert _mount(disk, "1m", "remount", "ro")
    for make in (lambda: _open(disk / "new.sqlite"),
                 lambda: add(_open(disk / "old.sqlite"), unit_rows("p001", 0, ["r000"]))):
        with pytest.raises(OSError) as raised:
            make()
        assert raised.value.errno in (errno.EACCES, errno.EIO), raised.value
        assert "ratings store" in str(raised.value)


def test_a_folder_output_on_a_full_disk_is_an_os_error_naming_it(small_disk):
    """safetensors reports a full disk as its own error ("No space left on device (os error
    28)"), which reached the CLI as a traceback after a whole training run: inside atomic_dir
    it is the ENOSPC OSError, naming the output; nothing is left behind."""
    import torch
    from safetensors.torch import save_file

    from ramo.io.atomic import atomic_dir, atomic_path

    disk, _ = small_disk
    with pytest.raises(OSError) as raised:
        with atomic_dir(disk / "model") as tmp:
            save_file({"w": torch.zeros(64, 1024)}, str(tmp / "model.safetensors"))  # 256 KB
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(disk / "model")
    with pytest.raises(OSError) as raised:  # write() names no file: the target is named
        with atomic_path(disk / "big.bin") as tmp, open(tmp, "wb", buffering=0) as f:
            for _ in range(64):
                f.write(b"\0" * 4096)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(disk / "big.bin")
    assert list(disk.iterdir()) == []


def test_an_output_that_cannot_be_written_is_refused_before_the_work(tmp_path, small_disk,
                                                                      capsys):
    """On a read-only file system (where even root may not write) an output is refused when
    the command starts, naming it, not when the work is done: a file (label), a folder
    (adapter train: refused before its backbone, which does not exist, is looked at) and one
    in a folder still to be made."""
    from python_tests.test_cli_errors import RULES, _jsonl, _one_error_line
    from ramo.cli import main

    disk, _ = small_disk
    assert _mount(disk, "128k", "remount", "ro")
    pairs = _jsonl(tmp_path / "pairs.jsonl", [
        {"id": "p0", "prompt": "hi", "response_a": "sure", "response_b": "no"}])
    selections = _jsonl(tmp_path / "sel.jsonl", [
        {"id": "p0", "rule_ids": ["r1"], "reward_a": 1.0, "reward_b": 0.0, "margin": 1.0,
         "preference": 1}])
    rules = _jsonl(tmp_path / "rules.jsonl", RULES)
    for out in (disk / "labeled.jsonl", disk / "new" / "labeled.jsonl"):
        assert main(["label", "--pairs", str(pairs), "--selections", str(selections),
                     "--out", str(out)]) == 2
        assert _one_error_line(capsys, "label").endswith(f"{out}: Read-only file system")
    assert main(["adapter", "train", "--pairs", str(pairs), "--rules", str(rules),
                 "--selections", str(selections), "--backbone", str(tmp_path / "absent"),
                 "--out", str(disk / "adapter"), "--no-progress"]) == 2
    assert _one_error_line(capsys, "adapter train").endswith(
        f"{disk / 'adapter'}: Read-only file system")
    with pytest.raises(OSError) as raised:  # a write past the checks names the target too
        write_jsonl(disk / "labeled.jsonl", [{"id": "p0"}])
    assert raised.value.filename == str(disk / "labeled.jsonl")
