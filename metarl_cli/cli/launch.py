"""`metarl launch -n N -- train es ...`: a multi-process run as N processes on this machine.

For trying a multi-process run on one machine (and for the tests): the processes join on a
free local port, each sees `cores / N` CPU devices (unless XLA_FLAGS is set), their output is
streamed with a `[pI]` prefix, and the launch exits non-zero if any process fails (with the
first failure's status). A process that fails makes the others stop by themselves (the
runtime's heartbeat, `--peer-timeout`); any still running `GRACE_S` later are terminated.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import IO, Annotated

import typer

from metarl_cli.cli._output import err

SUPPORTED = (("train", "es"),)
MAX_PROCESSES = 64
GRACE_S = 900.0
_OWN_FLAGS = ("--coordinator", "--num-processes", "--process-id")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _check(command: list[str], n: int) -> None:
    from metarl_cli.errors import ConfigError

    if not 1 <= n <= MAX_PROCESSES:
        raise ConfigError(f"-n must be between 1 and {MAX_PROCESSES}, got {n}")
    if tuple(command[:2]) not in SUPPORTED:
        names = ", ".join(" ".join(c) for c in SUPPORTED)
        got = " ".join(command[:2]) or "nothing"
        raise ConfigError(f"launch runs {names} as several processes, not {got}: metarl launch "
                          "-n 2 -- train es ...")  # fmt: skip
    own = [f for f in command if f.split("=")[0] in _OWN_FLAGS]
    if own:
        raise ConfigError(f"launch sets {', '.join(_OWN_FLAGS)} itself; drop {own[0]}")


def _pump(stream: IO[str], sink: IO[str], prefix: str, lock: threading.Lock) -> None:
    for line in stream:
        with lock:
            sink.write(prefix + line)
            sink.flush()


def _status(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def launch(
    command: Annotated[
        list[str], typer.Argument(help="The metarl command every process runs, after --.")
    ],
    num_processes: Annotated[
        int, typer.Option("--num-processes", "-n", help="Processes to start.")
    ] = 2,
    port: Annotated[
        int | None, typer.Option(help="Port of process 0 (default: a free one).", max=65535)
    ] = None,
) -> None:
    """Run a multi-process command as N processes on this machine: metarl launch -n 2 -- train
    es ... (see docs/distributed.md for several hosts)."""
    _check(command, num_processes)
    coordinator = f"127.0.0.1:{port or free_port()}"
    prefix = shlex.join(["metarl", "launch", "-n", str(num_processes), "--"])
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "METARL_LAUNCH": prefix}
    env.update(METARL_COORDINATOR=coordinator, METARL_NUM_PROCESSES=str(num_processes))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    every_core = f"--xla_force_host_platform_device_count={max(1, cores)}"  # `metarl`'s own
    if os.environ.get("XLA_FLAGS", every_core) == every_core:  # not the user's: share the cores
        per = max(1, cores // num_processes)
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={per}"
    env.setdefault("COLUMNS", "160")  # rich wraps piped output at 80 columns otherwise
    err.print(f"launch: {num_processes} processes joining at {coordinator}")
    lock, procs, pumps = threading.Lock(), [], []
    for i in range(num_processes):
        proc = subprocess.Popen(
            [sys.executable, "-m", "metarl_cli", *command],
            env={**env, "METARL_PROCESS_ID": str(i)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        procs.append(proc)
        for stream, sink in ((proc.stdout, sys.stdout), (proc.stderr, sys.stderr)):
            t = threading.Thread(target=_pump, args=(stream, sink, f"[p{i}] ", lock), daemon=True)
            t.start()
            pumps.append(t)
    code = _wait(procs)
    for t in pumps:
        t.join(timeout=5)
    if code:
        raise typer.Exit(code)


def _wait(procs: list[subprocess.Popen]) -> int:
    """Waits for every process; returns 0, or the first failure's status (128 + signal for a
    killed process). Processes still running `GRACE_S` after a failure are terminated."""
    first: tuple[int, int] | None = None
    failed_at = None
    try:
        while any(p.poll() is None for p in procs):
            for i, p in enumerate(procs):
                if first is None and p.returncode not in (None, 0):
                    first, failed_at = (i, p.returncode), time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > GRACE_S:
                for p in procs:
                    if p.poll() is None:
                        p.terminate()
            time.sleep(0.1)
    except KeyboardInterrupt:  # the processes got the same Ctrl-C; let them save and stop
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        _report(procs)
        return 130
    for i, p in enumerate(procs):
        if first is None and p.returncode != 0:
            first = (i, p.returncode)
    if first is None:
        return 0
    _report(procs)
    code = first[1]
    return 128 - code if code < 0 else code


def _report(procs: list[subprocess.Popen]) -> None:
    for i, p in enumerate(procs):
        if p.returncode != 0:
            err.print(f"launch: process {i} {_status(p.returncode)}")
