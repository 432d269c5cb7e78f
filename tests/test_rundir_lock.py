"""Run directories are locked: a second process on a run dir in use is refused, never interleaved.

The holder is a separate process that takes the same advisory `flock` a run takes; killing it
with SIGKILL must free the run dir (the kernel drops the lock), after which `--resume` works.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from metarl_cli.cli.app import main
from metarl_cli.errors import RunDirLockedError
from metarl_cli.fsutil import LOCK_NAME, lock_run_dir, unlock_run_dir

HOLD = (
    "import fcntl, os, sys\n"
    "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX)\n"
    "print('held', flush=True)\n"
    "sys.stdin.read()\n"
)
LOCAL = "http://127.0.0.1:9"  # never called: the run is refused first
TINY_ES = [
    "--algo", "lpo", "--envs", "cartpole", "--popsize", "4", "--timesteps", "128",
    "--hsize", "8", "--set", "num_envs=4", "--set", "num_steps=16",
    "--set", "num_minibatches=2", "--set", "update_epochs=1", "--eval-runs", "0",
    "--save-every-k", "1",
]  # fmt: skip


class Holder:
    """Another process holding a run dir's lock until `kill()`."""

    def __init__(self, run_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(run_dir / LOCK_NAME)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout.readline().strip() == "held"

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no clean-up in the holder; the kernel drops its flock
        self.proc.wait(timeout=30)

    def __enter__(self) -> Holder:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.kill()


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def test_lock_is_exclusive_across_processes_and_freed_by_kill(tmp_path):
    assert lock_run_dir(tmp_path, create=False) is False  # no lock file: nothing written
    assert list(tmp_path.iterdir()) == []
    with Holder(tmp_path) as holder:
        with pytest.raises(RunDirLockedError, match="in use by another metarl run"):
            lock_run_dir(tmp_path, create=True)
        holder.kill()
        assert lock_run_dir(tmp_path, create=False) is True
    assert lock_run_dir(tmp_path, create=True) is True  # re-entrant within a process
    try:
        # Now this process holds it: another process cannot take it.
        probe = HOLD.replace("fcntl.LOCK_EX)", "fcntl.LOCK_EX | fcntl.LOCK_NB)")
        out = subprocess.run(
            [sys.executable, "-c", probe, str(tmp_path / LOCK_NAME)],
            capture_output=True,
            text=True,
            input="",
        )
        assert out.returncode != 0 and "BlockingIOError" in out.stderr
    finally:
        unlock_run_dir(tmp_path)


def _teacher(path: Path) -> Path:
    import jax

    from metarl_cli.learned.base import get_algorithm
    from metarl_cli.learned.io import save_learned

    lpo = get_algorithm("lpo")
    theta = lpo.init(jax.random.key(0), hidden=16)
    save_learned(path, lpo, theta, architecture={"hidden": 16}, training_envs=["classic/cartpole"])
    return path


@pytest.mark.parametrize("command", ["es", "distil", "symbolic", "discover"])
def test_a_run_dir_in_use_is_refused_before_anything_is_written(
    command, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")
    run_dir = tmp_path / "busy.run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text("{}\n")
    out, teacher = tmp_path / "out.safetensors", tmp_path / "t.safetensors"
    if command in ("distil", "symbolic"):
        _teacher(teacher)
    argv = {
        "es": ["train", "es", *TINY_ES],
        "distil": ["distil", str(teacher), "--epochs", "1"],
        "symbolic": ["symbolic", str(teacher), "-n", "0"],
        "discover": ["discover", "--algo", "lpo", "--envs", "cartpole", "--base-url", LOCAL],
    }[command]
    with Holder(run_dir):
        before = _files(run_dir)
        for extra in (["--resume"], ["--force"]):
            code = main([*argv, "-o", str(out), "--run-dir", str(run_dir), *extra])
            err = capsys.readouterr().err
            assert code == 2, err
            assert err.startswith("error: run dir ") and "in use by another metarl run" in err
            assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
            assert not out.exists() and _files(run_dir) == before  # --force removed nothing


def test_resume_waits_for_the_holder_then_continues(tmp_path, capsys):
    from metarl_cli.artefacts import load_artefact

    first, second, run_dir = tmp_path / "a.safetensors", tmp_path / "b.safetensors", None
    assert main(["train", "es", *TINY_ES, "--num-generations", "1", "-o", str(first)]) == 0
    run_dir = first.with_suffix(".run")
    assert (run_dir / LOCK_NAME).exists()  # the run took the lock (released when main returned)
    resume = ["train", "es", *TINY_ES, "--num-generations", "2", "--run-dir", str(run_dir)]
    capsys.readouterr()
    with Holder(run_dir) as holder:
        before = _files(run_dir)
        code = main([*resume, "-o", str(second), "--resume"])
        err = capsys.readouterr().err
        assert code == 2 and "in use by another metarl run" in err, err
        assert not second.exists() and _files(run_dir) == before
        holder.kill()
        assert main([*resume, "-o", str(second), "--resume"]) == 0
    manifest, _ = load_artefact(second)
    assert manifest.generation == 2
