"""The guard of a multi-process run: a small parent process that turns the runtime's abort into
one line.

When a peer dies, JAX's distributed runtime ends every other process from a C++ thread
(`LOG(FATAL)`, SIGABRT, a stack trace); no Python code runs, and the runtime client's callback
cannot be set from Python (jaxlib 0.10.2 aborts converting its status). So each process of a
multi-process run is two: the guard (this module, no JAX) re-runs the same command as a worker
and waits for it. The worker writes its own output to the guard's stderr as usual, but its
C++ stderr (fd 2) goes through a pipe to the guard: runtime log lines are passed on after a
second, unless the runtime's fatal report follows them; then the guard prints instead
"error: process P of the run is gone ...; process I stops too; <how to resume>" and exits
`distributed.EXIT_PEER_LOST` (the runtime's report is shown with --verbose).

The worker tells the guard how to resume through marker lines on the same pipe; a pipe the
other way (the lifeline) ends the worker if the guard is killed. Ctrl-C reaches the guard and
is passed on once (the worker has its own session).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Any

ENV_GUARD = "METARL_GUARD"  # "TERM_FD,LIFELINE_FD" in a worker
MARK = b"metarl-guard: "
HOLD_S = 1.0
_ARGV: list[str] = []
_FATAL = "Terminating process because the JAX distributed service"
_UNHEALTHY = re.compile(r"unhealthy \(stopped sending heartbeats\):\s*((?:\d+\s*)+)")


def remember_argv(argv: list[str]) -> None:
    """The command line of this `metarl` call (`cli/app.py`); a guard re-runs it."""
    _ARGV[:] = argv


def is_worker() -> bool:
    return ENV_GUARD in os.environ


def lost_process(report: str, process_id: int) -> int | None:
    """The process a fatal runtime report is about: the tasks it lists as unhealthy, else
    process 0 when the coordination service (on process 0) cannot be reached."""
    found = _UNHEALTHY.search(report)
    if found:
        others = [int(t) for t in found.group(1).split() if int(t) != process_id]
        return others[0] if others else None
    if "coordination service" in report and process_id != 0:
        return 0
    return None


# --- the guard --------------------------------------------------------------------------------


class _Runtime:
    """The worker's C++ stderr: held for `HOLD_S`, then passed on, unless a fatal report
    follows; and the worker's marker lines (how to resume)."""

    def __init__(self) -> None:
        self.held: deque[tuple[float, bytes]] = deque()
        self.report: list[bytes] = []
        self.info: dict[str, Any] = {}
        self.fatal = False
        self.lock = threading.Lock()

    def read(self, stream: Any) -> None:
        for line in iter(stream.readline, b""):
            with self.lock:
                if line.startswith(MARK):
                    with contextlib.suppress(ValueError):  # a line cut by another writer
                        self.info.update(json.loads(line[len(MARK) :]))
                    continue
                if _FATAL.encode() in line:
                    self.fatal = True
                if self.fatal:
                    self.report.append(line)
                else:
                    self.held.append((time.monotonic(), line))

    def flush(self, everything: bool = False) -> None:
        with self.lock:
            if self.fatal and not everything:
                return
            now = time.monotonic()
            while self.held and (everything or now - self.held[0][0] > HOLD_S):
                sys.stderr.buffer.write(self.held.popleft()[1])
            sys.stderr.flush()


def guard(process_id: int, verbose: bool) -> int:
    """Runs this command again as the worker and returns its exit status, or
    `EXIT_PEER_LOST` with one line when the runtime aborted it for a lost peer."""
    from metarl_cli.distributed import EXIT_PEER_LOST

    term = os.dup(2)
    life_r, life_w = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "metarl_cli", *_ARGV],
        env={**os.environ, ENV_GUARD: f"{term},{life_r}"},
        stderr=subprocess.PIPE,
        pass_fds=(term, life_r),
        start_new_session=True,
    )
    os.close(term)
    os.close(life_r)
    runtime = _Runtime()
    reader = threading.Thread(target=runtime.read, args=(proc.stderr,), daemon=True)
    reader.start()
    previous = {s: signal.signal(s, lambda n, _f: proc.send_signal(n)) for s in _FORWARDED}
    try:
        while proc.poll() is None:
            runtime.flush()
            time.sleep(0.1)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    reader.join(timeout=5)
    os.close(life_w)
    code = proc.returncode
    if code in (-signal.SIGABRT, 134) and runtime.fatal:
        report = b"".join(runtime.report).decode(errors="replace")
        if verbose:
            runtime.flush(everything=True)
            sys.stderr.write(report)
        sys.stderr.write(f"error: {_lost_line(report, process_id, runtime.info)}\n")
        sys.stderr.flush()
        return EXIT_PEER_LOST
    runtime.flush(everything=True)
    if runtime.report:
        sys.stderr.buffer.write(b"".join(runtime.report))
        sys.stderr.flush()
    return 128 - code if code < 0 else code


_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _lost_line(report: str, process_id: int, info: dict[str, Any]) -> str:
    who = lost_process(report, process_id)
    name = "a peer process" if who is None else f"process {who}"
    what = "the runtime's heartbeat" if "heartbeat" in report else "the runtime"
    line = f"{name} of the run is gone ({what} noticed: it died, was killed or lost its network)"
    line += f"; process {process_id} stops too"
    saved = _saved(info.get("run_dir"))
    if info.get("resume"):
        line += f"; {saved}{info.get('how', 'resume with')}: {info['resume']}"
    return line


def _saved(run_dir: str | None) -> str:
    if not run_dir:
        return ""
    try:
        from metarl_cli.meta.es.rundir import RunDir

        saved = RunDir(run_dir).read_saved()
    except Exception:  # unreadable: resuming will say so
        return ""
    return "" if saved is None else f"generation {saved[1]} is checkpointed in {run_dir}; "


# --- the worker side --------------------------------------------------------------------------


def become_worker(info: dict[str, Any]) -> None:
    """In a worker: Python's output to the terminal the guard handed over, the C++ stderr to
    the guard; tells the guard `info` (resume, how, run_dir); ends this process when the guard
    is gone."""
    term, lifeline = (int(x) for x in os.environ[ENV_GUARD].split(","))
    sys.stderr.flush()
    sys.stderr = os.fdopen(term, "w", buffering=1, encoding="utf-8", errors="backslashreplace")
    os.write(2, MARK + json.dumps(info).encode() + b"\n")

    def watch() -> None:
        while os.read(lifeline, 1):
            pass
        os._exit(1)  # the guard was killed: nobody would see this process's end

    threading.Thread(target=watch, daemon=True).start()
