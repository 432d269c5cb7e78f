"""The CLI as a user drives it: help, version, evaluate end to end, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from metarl_cli.cli.app import main
from metarl_cli.results import read_result


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_lists_commands_without_importing_jax():
    code = (
        "import sys; from metarl_cli.cli.app import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('JAX_IMPORTED' if 'jax' in sys.modules else 'NO_JAX')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "NO_JAX" in out.stdout
    for command in ("evaluate", "envs", "bench"):
        assert command in out.stdout


def test_version(capsys):
    from metarl_cli import __version__

    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"metarl {__version__}"


def test_envs_json(capsys):
    code, out, _ = run(capsys, "envs", "--json")
    rows = json.loads(out)
    assert code == 0 and {r["env_id"] for r in rows} >= {"brax/ant", "craftax/classic"}
    assert next(r for r in rows if r["env_id"] == "minatar/breakout")["aliases"] == ["breakout"]


TINY = ["--set", "num_steps=16", "--set", "num_minibatches=2", "--timesteps", "256"]


def test_evaluate_end_to_end_writes_a_valid_result(tmp_path, capsys):
    path = tmp_path / "cp.eval.json"
    code, out, _ = run(
        capsys, "evaluate", "ppo", "--envs", "cartpole", "-n", "3", *TINY, "-o", str(path)
    )
    assert code == 0
    result = read_result(path)
    env = result.envs[0]
    assert (result.num_runs, env.env_id, len(env.final_returns)) == (3, "classic/cartpole", 3)
    assert env.config["num_steps"] == 16 and env.env_steps_per_run == 256
    assert result.target.name == "ppo" and result.devices["count"] == 2
    assert "classic/cartpole" in out and "wrote" in out


def test_evaluate_json_output_is_the_result(tmp_path, capsys):
    code, out, _ = run(capsys, "evaluate", "ppo", "--envs", "cartpole", "-n", "1", *TINY, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["envs"][0]["env_id"] == "classic/cartpole"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--envs", "cartpol"], "did you mean cartpole"),
        (["--timesteps", "-5"], "total_timesteps"),
        (["--timesteps", "abc"], "not a number"),
        (["--timesteps", "100"], "less than one update"),
        (["--set", "num_minibatches=7"], "does not divide"),
        (["--set", "nonsense=1"], "nonsense"),
        (["--num-runs", "0"], "--num-runs"),
        (["--chunk", "0"], "--chunk"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_file(tmp_path, capsys, argv, message):
    path = tmp_path / "out.json"
    code, _, err = run(capsys, "evaluate", "ppo", *argv, "-o", str(path))
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_refused_and_kept(tmp_path, capsys):
    path = tmp_path / "out.json"
    path.write_text("precious")
    code, _, err = run(capsys, "evaluate", "ppo", *TINY, "-o", str(path))
    assert code == 2 and "--force" in err
    assert path.read_text() == "precious"


def test_unknown_baseline_and_corrupted_artefact(tmp_path, capsys):
    code, _, err = run(capsys, "evaluate", "adamw")
    assert code == 2 and "unknown baseline" in err
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    code, _, err = run(capsys, "evaluate", str(bad))
    assert code == 2 and "not a readable metarl artefact" in err
    code, _, err = run(capsys, "evaluate", str(tmp_path / "missing.safetensors"))
    assert code == 2 and "no such artefact" in err


def test_verbose_shows_the_traceback(capsys):
    with pytest.raises(Exception, match="cartpol"):
        main(["--verbose", "evaluate", "ppo", "--envs", "cartpol"])


def test_console_script_exit_code(tmp_path):
    exe = subprocess.run(
        [sys.executable, "-m", "metarl_cli", "evaluate", "ppo", "--envs", "nope"],
        capture_output=True,
        text=True,
    )
    assert exe.returncode == 2
    assert exe.stderr.startswith("error: unknown environment 'nope'")
