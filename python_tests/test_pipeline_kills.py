"""Kills at every step (issue 16): `ramo pipeline` SIGKILLed at a seeded random moment inside
each step, then (a) nothing under a final name is partial and (b) a rerun finishes with the
artefacts of an uninterrupted run.

Every run is a child of a fork server (python_tests/fork_server.py), so a run costs its work,
not seconds of imports. The uninterrupted reference runs on one server, everything else on
another with another PYTHONHASHSEED: an artefact that depended on set order, or on anything
else that differs between processes, would differ. A second, step-by-step run (one process
per step) gives each step's duration when a run resumes at it, and the run folder before it:
a kill test starts from that folder, so it spends its time on its own step and those after.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import time
from collections import defaultdict
from pathlib import Path

import pytest
from python_tests.fork_server import ForkServer
from python_tests.test_pipeline import _config, pipeline_models

from ramo.io.atomic import TEMPORARY  # a SIGKILL can leave these (a folder being replaced: .old)
from ramo.pipeline import STEPS

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

SEEDS = (0, 1, 2)
# What each step writes (under the run folder); its record, steps/<step>.json, comes last.
OUTPUTS = {
    "rate": ("ratings.sqlite",),
    "select": ("selections.jsonl",),
    "adapter-train": ("adapter",),
    "adapter-apply": ("adapter_ratings.sqlite", "adapter_selections.jsonl"),
    "label": ("labeled.jsonl",),
    "rm-train": ("rm",),
    "eval": ("eval.json", "eval.md"),
    "report": ("report.md", "plots"),
}
STORES = ("ratings.sqlite", "adapter_ratings.sqlite")
# sqlite's own files beside a store: a killed writer leaves its WAL for the next to recover.
STORE_FILES = re.compile(r".+\.sqlite-(wal|shm|journal)$")
LOCK = ".ramo-pipeline.lock"  # held by the running pipeline; stays, empty
RUN_TIMEOUT = 600  # seconds; a hung child fails the test instead of hanging it


class Runs:
    """The work folder (config, inputs, run/), the server that runs the pipeline in it, and
    what the kill tests compare with."""

    def __init__(self, name: str, root: Path, server: ForkServer, config: Path):
        self.name, self.root, self.server, self.config = name, root, server, config
        self.work = config.parent
        self.run_dir = self.work / "run"
        self.reference = root / "reference"
        self.before: dict[str, Path | None] = {}  # run folder before each step
        self.seconds: dict[str, float] = {}  # each step's duration when a run resumes at it
        self._count = 0

    def start(self, *extra: str) -> tuple[int, Path]:
        self._count += 1
        log = self.root / f"{self.name}{self._count}.log"
        log.write_bytes(b"")  # there before the child, for _wait_for_line to read
        argv = ["pipeline", "--config", str(self.config), "--no-progress", *extra]
        return self.server.start(argv, self.work, log), log

    def complete(self, *extra: str) -> None:
        pid, log = self.start(*extra)
        code = self.server.wait(pid)
        assert code == 0, f"exit {code}:\n{log.read_text()}"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Two fork servers, started first so that their imports overlap the models' building.
    Their children write scratch folders (the trainers' output_dir, the model trained on the
    pairs' own labels) into tmp/, not the machine's: a killed child cannot remove its own."""
    root = tmp_path_factory.mktemp("kills")
    (root / "tmp").mkdir()
    started = [ForkServer(root / f"server{n}.log",
                          {"PYTHONHASHSEED": str(n), "TMPDIR": str(root / "tmp")}) for n in (1, 2)]
    yield root, started
    for server in started:
        server.close()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    return pipeline_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def runs(servers, models):
    root, (first, second) = servers
    work = root / "work"
    work.mkdir()
    config = _config(work, models)
    uninterrupted = Runs("uninterrupted", root, first, config)
    uninterrupted.complete()
    uninterrupted.run_dir.rename(uninterrupted.reference)

    runs = Runs("run", root, second, config)
    for step in STEPS:
        runs.before[step] = None
        if runs.run_dir.exists():
            runs.before[step] = root / "before" / step
            shutil.copytree(runs.run_dir, runs.before[step])
        runs.complete("--steps", step)
        runs.seconds[step] = _record(runs.run_dir, step)["seconds"]
    check_run(runs.run_dir, runs.reference, finished=True)
    return runs


def _record(run: Path, step: str) -> dict | None:
    path = run / "steps" / f"{step}.json"
    return json.loads(path.read_text()) if path.is_file() else None


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("step", STEPS)
def test_killed_inside_a_step_then_rerun(runs, step, seed, request):
    shutil.rmtree(runs.run_dir, ignore_errors=True)
    if runs.before[step] is not None:
        shutil.copytree(runs.before[step], runs.run_dir)
    pid, log = runs.start()
    _wait_for_line(runs.server, pid, log, f"[{step}] ...")
    # A string seed: the same delays on every machine and under every PYTHONHASHSEED.
    time.sleep(random.Random(f"{step}/{seed}").uniform(0, runs.seconds[step]))
    runs.server.kill(pid)
    code = runs.server.wait(pid)
    inside = _record(runs.run_dir, step) is None
    # The kill may land after the step (or the whole run) ended: then this tests the resume.
    # What happened goes into the test's report (`-o junit_family=xunit1 --junitxml=...`).
    request.node.user_properties.append(("killed_inside_step", inside))
    assert code == -signal.SIGKILL or (code == 0 and not inside), log.read_text()

    check_run(runs.run_dir, runs.reference, finished=False)
    request.node.user_properties.append(("stray_temporaries", sorted(
        str(p.relative_to(runs.run_dir)) for p in runs.run_dir.rglob(".*"))))
    runs.complete()
    check_run(runs.run_dir, runs.reference, finished=True)


def _wait_for_line(server: ForkServer, pid: int, log: Path, line: str) -> None:
    """Returns as soon as the child's log has `line` (the child writes it line-buffered)."""
    deadline = time.monotonic() + RUN_TIMEOUT
    for n in itertools.count():
        if line + "\n" in log.read_text(errors="replace"):
            return
        # Asking the server wakes it: not every millisecond. An exit between the read above
        # and this poll shows in the log read next.
        if n % 100 == 0 and (code := server.poll(pid)) is not None:
            text = log.read_text(errors="replace")
            assert line + "\n" in text, f"the run ended (exit {code}) before {line!r}:\n{text}"
            return
        if time.monotonic() > deadline:
            server.kill(pid)
            pytest.fail(f"no {line!r} after {RUN_TIMEOUT} s:\n{log.read_text()}")
        time.sleep(0.001)


# ---- what a run folder may hold ----------------------------------------------------------

def check_run(run: Path, reference: Path, *, finished: bool) -> None:
    """finished: the run folder holds exactly the reference's artefacts. Otherwise (after a
    kill) every final name present is complete and equal to the reference's (a store: whole
    units of the reference's ratings), and every step with a record has all its outputs."""
    if not run.exists():  # killed before the run folder was made
        assert not finished
        return
    names = set()
    for path in run.iterdir():
        if TEMPORARY.fullmatch(path.name) or STORE_FILES.fullmatch(path.name):
            continue
        names.add(path.name)
        _check_entry(path, reference / path.name, finished=finished)
    for record in (run / "steps").glob("*.json"):
        assert record.stem in STEPS and isinstance(json.loads(record.read_text()), dict)
    done = [step for step in STEPS if _record(run, step) is not None]
    # Steps run in order (every one is configured here), so the records are a prefix.
    assert done == list(STEPS[:len(done)]), f"records of {done}"
    if finished:
        assert names == {p.name for p in reference.iterdir()}, sorted(names)
        assert done == list(STEPS)
    for step in done:
        assert set(OUTPUTS[step]) <= names, f"{step} has a record but not all its outputs"
    assert not any(p.name.startswith(".") and not TEMPORARY.fullmatch(p.name)
                   and p.name != LOCK for p in run.rglob(".*")), \
        "a hidden file that is no atomic temporary"
    if finished:  # the rerun cleared what the killed run left
        assert not any(TEMPORARY.fullmatch(p.name) for p in run.rglob(".*")), "a stray temporary"


def _check_entry(path: Path, ref: Path, *, finished: bool) -> None:
    name = path.name
    assert ref.exists(), f"{name}: not an artefact of the reference run"
    if name in STORES:
        _check_store(path, ref, finished=finished)
    elif name == "steps":
        pass  # records: check_run
    elif name in ("adapter", "rm"):
        _check_model_folder(path, ref, finished=finished)
    elif name == "plots":
        for plot in path.iterdir():
            if not TEMPORARY.fullmatch(plot.name):
                assert plot.read_bytes() == (ref / plot.name).read_bytes(), plot
        if finished:
            assert sorted(p.name for p in path.iterdir() if not p.name.startswith(".")) == \
                sorted(p.name for p in ref.iterdir())
    elif name == "report.md":
        assert _stable_report(path) == _stable_report(ref)
    else:  # config.json, the selections, the labels, eval.json and eval.md
        assert path.read_bytes() == ref.read_bytes(), name


def _stable_report(path: Path) -> str:
    """The report less what tells runs apart: the Run section (the steps' seconds, how many
    ratings this run made) and the judge calls the adapter step made in this run."""
    text = re.sub(r"## Run\n.*?\n(?=## )", "", path.read_text(), flags=re.S)
    return re.sub(r"\(\d+ made in this run\)", "", text)


def _check_model_folder(path: Path, ref: Path, *, finished: bool) -> None:
    """All of it, equal to the reference's, or (killed between the adapter's save and its
    held-out metrics) the model without metrics.*; and it loads."""
    files = {p.name for p in path.iterdir() if not TEMPORARY.fullmatch(p.name)}
    expected = {p.name for p in ref.iterdir()}
    if finished or path.name == "rm":
        assert files == expected, path
    else:
        assert expected - {"metrics.json", "metrics.md"} <= files <= expected, path
    for name in files:
        if name == "ramo_training.json":  # the reward model's record holds its runtime
            mine, theirs = (json.loads((folder / name).read_text()) for folder in (path, ref))
            assert mine.pop("runtime_s") >= 0 and theirs.pop("runtime_s") >= 0
            assert mine == theirs
        else:
            assert (path / name).read_bytes() == (ref / name).read_bytes(), path / name
    if path.name == "adapter":
        from ramo.adapter import RuleAdapter

        assert RuleAdapter.from_pretrained(path).num_rules == 5
    else:
        from ramo.models import load_reward_model

        assert load_reward_model(path, require_head=True)[0].config.num_labels == 1


def _check_store(path: Path, ref: Path, *, finished: bool) -> None:
    """The store opens, and holds whole units (a response with all the rules it is rated
    on) of the reference's ratings: all of them when finished."""
    from ramo.ratings import RatingStore

    if not finished:
        # A copy, as the next writer finds it (the file, its WAL or journal): reading must
        # not change what the rerun sees, and a hot journal needs a writer to roll it back.
        scratch = path.parent.parent / f"{path.name}.check"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        for side in path.parent.glob(path.name + "*"):
            if not side.name.endswith("-shm"):
                shutil.copy(side, scratch / side.name)
        path = scratch / path.name
        with sqlite3.connect(path) as con:
            tables = con.execute("SELECT name FROM sqlite_master").fetchall()
        con.close()
        if not tables:  # killed before the store's first transaction committed
            return
    with RatingStore.open_existing(path) as store:
        rows = store.read()
    with RatingStore.open_existing(ref) as store:
        expected = store.read()
    if finished:
        assert rows == expected, path
        return
    assert set(rows) <= set(expected), f"{path}: ratings the reference does not have"
    units, expected_units = defaultdict(set), defaultdict(set)
    for mine, rows_of in ((units, rows), (expected_units, expected)):
        for r in rows_of:
            mine[(r.pair_id, r.side)].add(r.rule_id)
    assert all(rules == expected_units[unit] for unit, rules in units.items()), \
        f"{path}: part of a unit"
