"""Progress of long runs: `metarl evaluate` runs in host-side segments (`rl/progress.py`) with the
same results as in one program, and the study scripts of examples/ parse and refuse bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import tiny_config

from metarl_cli.cli._progress import duration_text, steps_text
from metarl_cli.envs import make_env
from metarl_cli.learned.base import get_algorithm
from metarl_cli.learned.lpo import LPODrift
from metarl_cli.rl import ppo
from metarl_cli.rl.parallel import ShardedRunner, make_mesh
from metarl_cli.rl.progress import ProgressRunner, _Segmented
from metarl_cli.rl.slots import Slots, Theta

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def trainer():
    cfg = tiny_config("classic/cartpole", num_envs=4, num_steps=8)
    cfg = cfg.model_copy(update={"total_timesteps": 4 * 8 * 7})  # 7 updates
    return ppo.make_train(cfg, make_env(cfg))


@pytest.mark.parametrize("chunk", [None, 1])
def test_segmented_runs_equal_one_program_bit_for_bit(trainer, chunk):
    keys = jax.random.split(jax.random.key(5), 3)  # 3 runs on 2 devices: padding
    plain, _ = ShardedRunner(trainer, make_mesh(3), chunk=chunk)(Theta(), keys)
    seen: list[float] = []
    # segment_s=0 etc.: segments of one update after the probes, the most boundaries there are
    mesh = make_mesh(3)
    runner = ProgressRunner(
        trainer,
        mesh,
        chunk=chunk,
        on_progress=seen.append,
        segment_s=0,
        fixed_share=float("inf"),
        short_s=0,
    )
    split, _ = runner(Theta(), keys)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(split), strict=True):
        np.testing.assert_array_equal(a, b)
    groups = runner.padded(3) // runner.group_size(3)
    # per group: probes of 1 and 2 updates, then 4 segments of 1
    assert len(seen) == 6 * groups and seen == sorted(seen) and seen[-1] == 1.0


def test_segmented_population_runs_equal_one_program_bit_for_bit():
    """ES fitness runs in segments (one θ per run): the same returns as one program."""
    cfg = tiny_config("classic/cartpole", num_envs=4, num_steps=8)
    cfg = cfg.model_copy(update={"total_timesteps": 4 * 8 * 5})  # 5 updates
    trainer = ppo.make_train(cfg, make_env(cfg), Slots(drift=LPODrift()))
    alg = get_algorithm("lpo")
    members = jax.vmap(lambda k: alg.init(k, hidden=4))(jax.random.split(jax.random.key(2), 3))
    thetas = Theta.for_slot("drift", members)
    keys = jax.random.split(jax.random.key(9), 3)
    plain, _ = ShardedRunner(trainer, make_mesh(3))(thetas, keys, per_run=True)
    runner = ProgressRunner(
        trainer, make_mesh(3), segment_s=0, fixed_share=float("inf"), short_s=0, min_updates=0
    )
    assert isinstance(runner._program(make_mesh(3), True), _Segmented)  # not one program
    split, _ = runner(thetas, keys, per_run=True)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(split), strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(plain.final_return).all()


def test_long_runs_go_in_segments_even_without_a_bar(trainer):
    """Segments keep memory flat (rl/progress.py), so a long run is segmented with no bar;
    a short one (under `min_updates`) stays one program unless a bar needs the segments."""
    mesh = make_mesh(2)  # the trainer makes 7 updates
    assert isinstance(ProgressRunner(trainer, min_updates=7)._program(mesh, False), _Segmented)
    assert not isinstance(ProgressRunner(trainer, min_updates=8)._program(mesh, False), _Segmented)
    bar = ProgressRunner(trainer, min_updates=8, on_progress=lambda f: None)
    assert isinstance(bar._program(mesh, False), _Segmented)


def test_segments_are_sized_so_their_fixed_cost_stays_small(trainer):
    runner = ProgressRunner(trainer, make_mesh(2), on_progress=lambda f: None)
    # probes of 1 and 2 updates took 1.0 and 1.5 s: 0.5 s per update, 0.5 s fixed per segment
    assert runner.segment_size(1.0, 1.5, remaining=1000) == 100  # fixed cost <= 1 % of each
    assert runner.segment_size(0.51, 1.01, remaining=1000) == 4  # no fixed cost: 2 s segments
    assert runner.segment_size(1.0, 1.5, remaining=40) == 40  # 20 s left: one segment
    assert runner.segment_size(1.0, 0.8, remaining=1000) == 5  # noisy probes: 0.4 s/update


def test_progress_text():
    assert [steps_text(x) for x in (789, 45_600, 1_234_567)] == ["789", "45.6k", "1.23M"]
    assert [duration_text(s) for s in (42, 185, 3720)] == ["42s", "3m05s", "1h02m"]


def test_study_scripts_parse_and_refuse_a_bad_scale(tmp_path):
    scripts = sorted((ROOT / "examples").glob("*.sh"))
    assert {p.name for p in scripts} >= {"lpo.sh", "nofeat.sh", "open_ff.sh", "open.sh"}
    for script in scripts:
        subprocess.run(["bash", "-n", str(script)], check=True)
    proc = subprocess.run(
        ["bash", str(ROOT / "examples" / "lpo.sh")],
        env={"PATH": "/usr/bin:/bin", "SCALE": "huge", "OUT": str(tmp_path / "out")},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: SCALE must be tiny, cpu or paper, got 'huge'"
    ]


def test_third_party_log_lines_stay_off_the_terminal_unless_verbose():
    from metarl_cli.cli._quiet import quiet_third_party

    env: dict[str, str] = {}
    quiet_third_party(True, env)
    assert env == {}
    quiet_third_party(False, env)
    assert env == {"TF_CPP_MIN_LOG_LEVEL": "3"}
    mine = {"TF_CPP_MIN_LOG_LEVEL": "0"}
    quiet_third_party(False, mine)
    assert mine == {"TF_CPP_MIN_LOG_LEVEL": "0"}  # the user's setting wins
    # XLA honours that level: its INFO lines (level 0, hundreds for one jit) all disappear
    code = "import jax; jax.jit(lambda x: x + 1)(1.0)"
    for level, noisy in (("0", True), (env["TF_CPP_MIN_LOG_LEVEL"], False)):
        env2 = {"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": level, "JAX_PLATFORMS": "cpu"}
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env2, capture_output=True, text=True, check=True
        )
        assert ("pjrt_client.cc" in proc.stderr) is noisy, proc.stderr[-500:]
