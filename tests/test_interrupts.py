"""Ctrl-C in any meta-learner: one error (`errors.Interrupted`), mapped once by `cli/app.py` to
exit code 130, "interrupted after ...; <where the state is>" and "resume with: <command>"."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from metarl_cli.cli.app import main
from metarl_cli.errors import Interrupted, MetarlError
from metarl_cli.fsutil import LOCK_NAME

LOCAL = "http://127.0.0.1:9"  # never called: the conversation is replaced below
TINY_ES = [
    "--algo", "lpo", "--envs", "cartpole", "--popsize", "4", "--timesteps", "512",
    "--hsize", "8", "--eval-runs", "0",
]  # fmt: skip


def _teacher(path: Path) -> Path:
    import jax

    from metarl_cli.learned.base import get_algorithm
    from metarl_cli.learned.io import save_learned

    lpo = get_algorithm("lpo")
    theta = lpo.init(jax.random.key(0), hidden=16)
    save_learned(path, lpo, theta, architecture={"hidden": 16}, training_envs=["classic/cartpole"])
    return path


def test_interrupted_is_not_a_user_error():
    e = Interrupted("generation 3", "checkpoint saved in runs/x")
    assert not isinstance(e, MetarlError)  # exit 130, not the user-error code 2
    assert str(e) == "interrupted after generation 3; checkpoint saved in runs/x"
    assert e.resume is None


@pytest.mark.parametrize("command", ["es", "distil", "symbolic"])
def test_each_command_gives_its_resume_command(command, tmp_path, capsys, monkeypatch):
    """The library raises `Interrupted`; the command adds its resume command, app.py prints."""
    out, run_dir = tmp_path / "out.safetensors", tmp_path / "x.run"
    target, argv = {
        "es": ("metarl_cli.meta.es.train.train_es", ["train", "es", *TINY_ES]),
        "distil": ("metarl_cli.meta.distil.train.distil", ["distil", "T", "--epochs", "1"]),
        "symbolic": ("metarl_cli.meta.symbolic.search.run_symbolic", ["symbolic", "T", "-n", "0"]),
    }[command]
    argv = [str(_teacher(tmp_path / "t.safetensors")) if a == "T" else a for a in argv]

    def stop(plan, **kwargs):
        raise Interrupted("step 3", f"state in {plan.run_dir.path}")

    monkeypatch.setattr(target, stop)
    code = main([*argv, "-o", str(out), "--run-dir", str(run_dir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 130, err
    assert err[-2] == f"interrupted after step 3; state in {run_dir}"
    resume = shlex.split(err[-1].removeprefix("resume with: "))
    assert err[-1].startswith("resume with: metarl ") and resume[-1] == "--resume"
    assert resume[1:3] == argv[:2] and resume[resume.index("--run-dir") + 1] == str(run_dir)


def test_discover_ctrl_c_goes_through_the_shared_run_dir(tmp_path, capsys, monkeypatch):
    """Ctrl-C during the conversation: the run dir was prepared (and locked) by the shared
    `RunDirBase`; the fallback resume command is the command line with --resume."""
    from metarl_cli.meta.llm import loop

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")

    def ctrl_c(plan, state, emit):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_converse", ctrl_c)
    out, run_dir = tmp_path / "out.safetensors", tmp_path / "d.run"
    argv = ["discover", "--algo", "lpo", "--envs", "cartpole", "--base-url", LOCAL]
    argv += ["-o", str(out), "--run-dir", str(run_dir)]
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 130, err
    assert err[-2] == f"interrupted after turn 0; the run is saved in {run_dir}"
    assert err[-1] == "resume with: " + shlex.join(["metarl", *argv, "--resume"])
    assert (run_dir / LOCK_NAME).exists() and not out.exists()
