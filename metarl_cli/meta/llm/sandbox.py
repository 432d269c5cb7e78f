"""Running a candidate's job in a sandboxed child process, with a wall-clock timeout.

The parent never executes candidate code (not even its `def`, whose default arguments and
annotations would run): every job goes to a fresh `sandbox_runner` process with

* a fresh temp dir as its working directory, `HOME` and `TMPDIR`, removed afterwards (those
  of a killed parent by the next run: the parent's pid is in the name);
* a scrubbed environment (only PATH, locale, Python, JAX/XLA and CUDA variables, none named
  like a credential) and no inherited descriptor but its stdin/stdout pipes and stderr file;
* the confinement of `confine.py` (network namespace, Landlock, rlimits) and `audit.py` (the
  audit hook); where a layer of `confine.REQUIRED` is missing the job is refused
  (`SandboxError`) before candidate code runs, unless `allow_unconfined`
  (`--unsafe-no-sandbox`);
* a wall-clock timeout counted from the moment the child is ready (imports done, candidate not
  yet run); at the timeout the whole process group is killed.

Failures are turned into one message for the model: a timeout, running out of memory, a
crash (signal), or the exception the job reported.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metarl_cli.errors import MetarlError
from metarl_cli.meta.llm.confine import REFUSED_EXIT, UNCONFINED_ENV, host_lacking, refusal

_KEEP_ENV = ("PATH", "LANG", "LANGUAGE", "TZ", "PYTHONPATH", "VIRTUAL_ENV", "LD_LIBRARY_PATH")
_KEEP_PREFIXES = ("LC_", "JAX_", "XLA_", "CUDA_", "NVIDIA_", "TF_CPP_")
# Never passed on, even under a kept prefix (`NVIDIA_API_KEY`, `JAX_..._TOKEN`).
_SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSW", "CREDENTIAL", "AUTH", "COOKIE", "SESSION")
_MEMORY_SIGNS = ("MemoryError", "RESOURCE_EXHAUSTED", "bad_alloc", "Cannot allocate memory")
# Fatal lines of CPython, the C++ runtime and absl/XLA's logging (`F0102 12:00:00.1 ...`).
_FATAL = re.compile(r"(Fatal Python error|terminate called|F\d{4} \d\d:\d\d|Check failed)")


class SandboxError(MetarlError):
    """The sandbox itself could not start (not the candidate's fault)."""


@dataclass(frozen=True)
class Limits:
    """Limits of one sandboxed job.

    Attributes:
        timeout_s: wall-clock seconds the job may run once the child is ready.
        memory_bytes: how much the child's address space may grow (None: no limit).
        startup_s: seconds the child may take to start (import JAX, build envs).
    """

    timeout_s: float
    memory_bytes: int | None
    startup_s: float = 300.0


def child_env(temp: str, xla_devices: int | None) -> dict[str, str]:
    """The child's environment: only what Python, JAX and XLA need, nothing named like a
    credential."""
    env = {
        k: v
        for k, v in os.environ.items()
        if (k in _KEEP_ENV or k.startswith(_KEEP_PREFIXES))
        and not any(w in k.upper() for w in _SECRET_WORDS)
    }
    env.update(HOME=temp, TMPDIR=temp, PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    if xla_devices is not None:  # a CPU-only job (validation): never touch a GPU
        flags = [
            f for f in env.get("XLA_FLAGS", "").split()
            if not f.startswith("--xla_force_host_platform_device_count")
        ]  # fmt: skip
        flags.append(f"--xla_force_host_platform_device_count={xla_devices}")
        env["XLA_FLAGS"] = " ".join(flags)
        env["JAX_PLATFORMS"] = "cpu"
    return env


_PREFIX = "metarl-sandbox-"


def remove_stale_dirs() -> None:
    """Removes the temp dirs of sandbox parents that no longer run (a killed run cannot)."""
    import shutil

    root = Path(tempfile.gettempdir())
    for path in root.glob(f"{_PREFIX}*"):
        match = re.match(rf"{_PREFIX}(\d+)-", path.name)
        if match is None or int(match.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            continue  # alive, someone else's


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def spawn(argv: list[str], cwd: str, env: dict[str, str], stderr) -> subprocess.Popen:
    """Starts a sandbox child in its own session: its stdin and stdout are pipes to us (the
    channel), stderr the file `stderr`; no other descriptor is inherited."""
    return subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        cwd=cwd,
        env={**env, "METARL_SANDBOX_PARENT": str(os.getpid())},
        start_new_session=True,
        close_fds=True,
        pass_fds=(),
    )


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
    proc.wait()


def _died(proc: subprocess.Popen, stderr: str, limits: Limits) -> dict[str, Any]:
    code = proc.returncode
    how = f"signal {-code} ({signal.Signals(-code).name})" if code < 0 else f"exit code {code}"
    if any(s in stderr for s in _MEMORY_SIGNS) or code == -signal.SIGKILL:
        limit = f"{limits.memory_bytes / 2**30:g} GiB" if limits.memory_bytes else "the machine's"
        return {"ok": False, "stage": "memory", "error": f"ran out of memory (limit {limit})"}
    # Only a runtime's own fatal line goes back to the model, never other output (which could
    # be what the candidate printed, e.g. a file it read), and at most 200 characters of it.
    fatal = [ln.strip() for ln in stderr.splitlines() if _FATAL.match(ln.strip())][-1:] or [""]
    return {
        "ok": False,
        "stage": "crash",
        "error": f"the process running the function crashed ({how}) {fatal[0][:200]}".strip(),
    }


def run_job(
    job: dict[str, Any],
    limits: Limits,
    *,
    cache_dir: str | None = None,
    xla_devices: int | None = None,
    allow_unconfined: bool = False,
) -> dict[str, Any]:
    """Runs `job` (see `sandbox_runner`) in a confined child; returns its result dict.

    The result always has `ok`; on failure `stage` and `error` (the message for the model);
    and `wall_s`, `startup_s`, `confinement` (layers that took effect and those missing).
    `allow_unconfined` (`--unsafe-no-sandbox`): run even where a layer of `confine.REQUIRED`
    (Landlock reads and writes, network isolation) cannot take effect.

    Raises:
        SandboxError: the child could not start (broken installation, no JAX), or a required
            layer is missing and `allow_unconfined` is False (before any candidate code ran).
    """
    if not allow_unconfined and (lacking := host_lacking()):
        raise SandboxError(refusal(lacking))
    t0 = time.perf_counter()
    remove_stale_dirs()
    prefix = f"{_PREFIX}{os.getpid()}-"
    with tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as tmp:
        writable = [tmp] + ([cache_dir] if cache_dir else [])
        if cache_dir:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
        payload = {**job, "temp": tmp, "writable": writable, "cache_dir": cache_dir}
        payload["memory_bytes"] = limits.memory_bytes
        err_path = Path(tmp) / "stderr.log"
        with open(err_path, "wb") as err:
            env = child_env(tmp, xla_devices)
            if allow_unconfined:
                env[UNCONFINED_ENV] = "1"
            argv = [sys.executable, "-B", "-m", "metarl_cli.meta.llm.sandbox_runner"]
            proc = spawn(argv, tmp, env, err)
        lines: queue.Queue[bytes | None] = queue.Queue()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(payload).encode())
            proc.stdin.close()
            ready = _next(lines, limits.startup_s)
            t_ready = time.perf_counter()
            if not isinstance(ready, dict) or not ready.get("ready"):
                _kill(proc)
                last = (_tail(err_path, 600).strip().splitlines() or ["no output"])[-1]
                if proc.returncode == REFUSED_EXIT:  # a REQUIRED layer is missing
                    raise SandboxError(last)
                raise SandboxError(f"the sandbox process did not start: {last}")
            result = _next(lines, limits.timeout_s)
            if result == _TIMEOUT:
                result = {
                    "ok": False,
                    "stage": "timeout",
                    "error": f"did not finish within {limits.timeout_s:g} s of wall-clock "
                    "time, so it was stopped (an infinite or very long loop?)",
                }
            elif not isinstance(result, dict):
                proc.wait()
                result = _died(proc, _tail(err_path), limits)
        finally:
            _kill(proc)
        result["confinement"] = ready.get("confinement", {})
        result["startup_s"] = t_ready - t0
        result["wall_s"] = time.perf_counter() - t0
        return result


_TIMEOUT = "timeout"


def _next(lines: queue.Queue, timeout: float) -> dict[str, Any] | str | None:
    """The next JSON line within `timeout` s; `_TIMEOUT`; None at the end of output."""
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        return _TIMEOUT
    if line is None:
        return None
    try:
        return json.loads(line)
    except ValueError:
        return None
