"""A fork server for tests that start (and kill) many `ramo` commands: one helper process
imports torch, transformers and ramo once, then forks a child per command, which runs
`ramo.cli.main` and exits. A fresh `python -m ramo` spends seconds on those imports alone.

The server imports only; it computes nothing with torch before forking, so no thread pool
(torch's OpenMP, tokenizers' rayon) exists yet to be broken by the fork: a child forked from
a process that has run torch ops can hang in libgomp at its first parallel op. Each child is
a separate process, as a rerun of a command is: a test may SIGKILL it at any moment.

Protocol: one JSON request per line on the server's stdin, one JSON reply per line on its
stdout. {"run": argv, "cwd": folder, "log": file} -> {"pid": pid}; the child's stdout and
stderr go to `log`, line-buffered, so a test can watch for a line. {"poll": pid} ->
{"exit": code or null while running}; {"wait": pid} -> {"exit": code}: a negative code is
the signal that ended it, as in subprocess. {"kill": pid} -> {}: SIGKILL, unless the child
was reaped already. The server sends it because only the server reaps: a pid it has not
reaped cannot have been reused by another process, so the signal cannot hit a stranger.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# What `ramo pipeline` imports along the way, so that no child pays for it.
PRELOAD = ("torch", "transformers", "transformers.trainer", "ramo.cli", "ramo.cli.run",
           "ramo.pipeline", "ramo.steps", "ramo.rate", "ramo.ratings", "ramo.select",
           "ramo.label", "ramo.adapter", "ramo.adapter.train", "ramo.reward",
           "ramo.reward.train", "ramo.evaluation", "ramo.models", "ramo.report", "ramo.study",
           "matplotlib.pyplot")


class ForkServer:
    """The test's end: starts the server (its imports run in the background until the first
    request) and sends it requests. env: extra environment, PYTHONHASHSEED say."""

    def __init__(self, log: Path, env: dict[str, str] | None = None):
        self._log = open(log, "wb")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "python_tests.fork_server"], cwd=REPO,
            env={**os.environ, "MPLBACKEND": "Agg", **(env or {})},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)

    def _ask(self, request: dict) -> dict:
        self._process.stdin.write((json.dumps(request) + "\n").encode())
        self._process.stdin.flush()
        reply = self._process.stdout.readline()
        if not reply:
            raise RuntimeError(f"the fork server died (exit {self._process.wait()}); "
                               f"see {self._log.name}")
        return json.loads(reply)

    def start(self, argv: list[str], cwd: Path, log: Path) -> int:
        return self._ask({"run": argv, "cwd": str(cwd), "log": str(log)})["pid"]

    def poll(self, pid: int) -> int | None:
        return self._ask({"poll": pid})["exit"]

    def kill(self, pid: int) -> None:
        self._ask({"kill": pid})

    def wait(self, pid: int) -> int:
        return self._ask({"wait": pid})["exit"]

    def close(self) -> None:
        # Killed, not asked to exit: it has nothing to save, and the interpreter's exit
        # (torch's and transformers' teardown) takes seconds.
        self._process.kill()
        self._process.wait()
        self._log.close()


def _child(request: dict) -> None:
    code = 1
    try:
        os.chdir(request["cwd"])
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        # stdin is the server's request pipe and stdout its reply pipe: never the child's.
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        sys.stdout.reconfigure(line_buffering=True)  # each log line is visible at once
        sys.stderr.reconfigure(line_buffering=True)
        from ramo.cli import main

        code = main(request["run"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # not the server's atexit handlers, nor its buffered output


def serve() -> None:
    for name in PRELOAD:
        importlib.import_module(name)

    ended: dict[int, int] = {}  # exit codes of the children reaped
    for line in sys.stdin:
        request = json.loads(line)
        if "run" in request:
            sys.stdout.flush()  # nothing buffered may be copied into the child
            pid = os.fork()
            if pid == 0:
                _child(request)
            reply = {"pid": pid}
        elif "poll" in request:
            pid = request["poll"]
            if pid not in ended:
                reaped, status = os.waitpid(pid, os.WNOHANG)
                if reaped:
                    ended[pid] = os.waitstatus_to_exitcode(status)
            reply = {"exit": ended.get(pid)}
        elif "kill" in request:
            if request["kill"] not in ended:
                os.kill(request["kill"], signal.SIGKILL)
            reply = {}
        else:
            pid = request["wait"]
            if pid not in ended:
                ended[pid] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            reply = {"exit": ended[pid]}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
