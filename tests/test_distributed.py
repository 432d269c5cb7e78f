"""Multi-process ES on JAX's own distributed runtime: real processes on 127.0.0.1, one CPU device
each, against a single-process run of the same command.

One scenario carries the expensive assertions (a module fixture): two processes started by hand
(process 1 a few seconds late), process 1 killed after a checkpoint, process 0 stopping on its
own with the resume command, then `metarl launch -n 2 -- ... --resume` finishing the run. Its
artefact and metrics must equal those of one process bit for bit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from metarl_cli.cli.app import main
from metarl_cli.distributed import EXIT_PEER_LOST, PeerLost, cluster_from, decode, encode, slice_of
from metarl_cli.errors import ConfigError

# The tiny ES of tests/test_es.py with `--chunk 1` (a run's result does not depend on which
# runs share a device), a 2-seed periodic evaluation every 2 generations.
ARGS = [
    "train", "es", "--algo", "lpo", "--envs", "cartpole", "--popsize", "8", "--timesteps", "512",
    "--noise-level", "1.0", "--hsize", "8", "--set", "num_envs=4", "--set", "num_steps=16",
    "--set", "num_minibatches=2", "--set", "update_epochs=4", "--chunk", "1",
    "--save-every-k", "2", "--eval-runs", "2",
]  # fmt: skip
GENERATIONS = 10
PEER_TIMEOUT = 4
SKEW_S = 2.0
TIMING = {"gen_s", "env_steps_per_s", "eta_s", "exchange_s", "slowest_slice_s"}


def _env() -> dict[str, str]:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    env["PYTHONUNBUFFERED"] = "1"
    return {k: v for k, v in env.items() if not k.startswith("METARL_") or k == "METARL_CACHE_DIR"}


def _metarl(*argv: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "metarl_cli", *argv],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _free_port() -> int:
    from metarl_cli.cli.launch import free_port

    return free_port()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The single-process reference and the killed-then-resumed two-process run."""
    from metarl_cli.meta.es.rundir import RunDir

    d = tmp_path_factory.mktemp("mp")
    ref, out = d / "ref.safetensors", d / "mp.safetensors"
    t0 = time.monotonic()
    assert main([*ARGS, "--num-generations", str(GENERATIONS), "-o", str(ref)]) == 0
    single_s = time.monotonic() - t0

    port, rd = _free_port(), RunDir(d / "mp.run")
    flags = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
    cut = [*ARGS, "--num-generations", "400", "-o", str(out), *flags]
    t0 = time.monotonic()
    leader = _metarl(*cut, "--process-id", "0", "--peer-timeout", str(PEER_TIMEOUT))
    time.sleep(SKEW_S)  # a host that starts late
    follower = _metarl(*cut, "--process-id", "1", "--peer-timeout", str(PEER_TIMEOUT))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and leader.poll() is None:
            saved = rd.read_saved() if rd.checkpoint.exists() else None
            if saved and saved[1] >= 2:
                break
            time.sleep(0.01)
        assert leader.poll() is None, leader.communicate()
        follower.send_signal(signal.SIGKILL)  # its guard; the worker follows it
        killed = time.monotonic()
        _, leader_err = leader.communicate(timeout=60)
        stop_s = time.monotonic() - killed
        follower.communicate(timeout=10)
    finally:
        for proc in (leader, follower):
            if proc.poll() is None:
                proc.kill()
    cut_generation = rd.read_saved()[1]
    cut_s = time.monotonic() - t0

    t0 = time.monotonic()
    launch = subprocess.run(
        [sys.executable, "-m", "metarl_cli", "launch", "-n", "2", "--", *ARGS,
         "--num-generations", str(GENERATIONS), "-o", str(out), "--resume"],
        env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    resume_s = time.monotonic() - t0
    print(f"single {single_s:.1f}s, cut {cut_s:.1f}s, stop {stop_s:.1f}s, resume {resume_s:.1f}s")
    return {
        "ref": ref, "out": out, "rd": rd, "leader": (leader.returncode, leader_err),
        "stop_s": stop_s, "cut_generation": cut_generation, "launch": launch,
    }  # fmt: skip


def _metrics(path):
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    return [{k: v for k, v in x.items() if k not in TIMING} for x in lines]


def test_two_processes_resumed_after_a_kill_equal_one_process_bit_for_bit(runs):
    from metarl_cli.artefacts import load_artefact

    launch = runs["launch"]
    assert launch.returncode == 0, launch.stderr[-3000:]
    assert 2 <= runs["cut_generation"] < GENERATIONS
    (m_ref, t_ref), (m_out, t_out) = load_artefact(runs["ref"]), load_artefact(runs["out"])
    assert m_ref.tensors_sha256 == m_out.tensors_sha256
    for key in t_ref:
        np.testing.assert_array_equal(t_ref[key], t_out[key])
    assert np.abs(t_ref["w1"]).max() > 0  # the search moved: the comparison is not trivial
    c_ref, c_out = m_ref.meta_learner.config, m_out.meta_learner.config
    for key in ("history", "evals", "chosen", "chosen_generation", "env_steps", "eval_env_steps"):
        assert c_ref[key] == c_out[key], key
    assert [e["generation"] for e in c_out["evals"]] == [2, 4, 6, 8, 10]
    assert m_ref.fitness_summary == m_out.fitness_summary and m_ref.generation == m_out.generation
    ref_metrics = _metrics(runs["ref"].with_suffix(".run") / "metrics.jsonl")
    assert ref_metrics == _metrics(runs["rd"].metrics)
    assert [x["generation"] for x in ref_metrics] == list(range(1, GENERATIONS + 1))


def test_a_killed_process_stops_the_other_with_the_resume_command(runs):
    code, stderr = runs["leader"]
    assert code == EXIT_PEER_LOST, stderr[-3000:]
    assert runs["stop_s"] < PEER_TIMEOUT + 20, runs["stop_s"]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: process 1 of the run is gone"), last
    assert f"generation {runs['cut_generation']} is checkpointed in" in last
    assert f"--process-id 0 --peer-timeout {PEER_TIMEOUT} --resume" in last
    assert "--coordinator 127.0.0.1:" in last
    # the runtime's own report (a C++ stack trace) is replaced by that line
    assert "Traceback" not in stderr and "Check failure" not in stderr


def test_launch_prefixes_output_and_only_process_0_writes(runs):
    launch = runs["launch"]
    assert "[p1] process 1 of 2: following process 0" in launch.stderr
    assert "[p0] wrote" in launch.stdout and "[p1] wrote" not in launch.stdout
    assert "[p1] process 1: done" in launch.stderr
    names = sorted(p.name for p in runs["rd"].path.iterdir())
    periodic = [f"gen_{g:04d}.safetensors" for g in range(2, GENERATIONS + 1, 2)]
    fixed = [".metarl.lock", "checkpoint.safetensors", "config.json", "metrics.jsonl"]
    assert names == sorted(fixed + periodic)


def test_launch_fails_when_its_processes_fail(tmp_path):
    bad = [*ARGS, "--peer-timeout", "0", "-o", str(tmp_path / "x.safetensors")]
    proc = _metarl("launch", "-n", "2", "--", *bad)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    for p in (0, 1):
        assert f"[p{p}] error: --peer-timeout must be at least 1 second, got 0" in err
        assert f"launch: process {p} exited with status 2" in err
    assert list(tmp_path.iterdir()) == []


# --- the pieces, without processes ------------------------------------------------------------


def test_cluster_settings_are_checked_before_jax_starts():
    assert cluster_from(None, None, None, env={}) is None
    assert cluster_from("h:1", 1, 0, env={}) is None  # one process: no runtime
    c = cluster_from("10.0.0.1:7000", 4, 3, peer_timeout=9, env={})
    assert (c.coordinator, c.num_processes, c.process_id) == ("10.0.0.1:7000", 4, 3)
    assert c.peer_timeout == 9
    assert not c.is_leader and cluster_from("[::1]:7000", 2, 0, env={}).is_leader
    slurm = {"SLURM_JOB_ID": "5", "SLURM_STEP_NODELIST": "n[1-4]", "SLURM_PROCID": "2",
             "SLURM_NTASKS": "4", "SLURM_LOCALID": "0"}  # fmt: skip
    s = cluster_from(None, None, None, env=slurm)
    assert (s.coordinator, s.num_processes, s.process_id, s.source) == (None, 4, 2, "slurm")
    jax_env = {"JAX_COORDINATOR_ADDRESS": "h:9"}
    assert cluster_from(None, None, None, env=jax_env) is None  # a variable alone: one process
    assert cluster_from(None, 2, 1, env=jax_env).coordinator == "h:9"
    for args, message in [
        (("h", 2, 0), "HOST:PORT"),
        (("h:0", 2, 0), "HOST:PORT"),
        (("h:1", 2, 2), "--process-id must be between 0 and 1"),
        (("h:1", None, 0), "--num-processes is needed"),
        ((None, 2, 0), "--coordinator HOST:PORT is needed"),
        (("h:1", 0, 0), "--num-processes must be at least 1"),
    ]:
        with pytest.raises(ConfigError, match=message):
            cluster_from(*args, env={})


def test_slices_cover_every_run_once_in_order():
    for n in range(0, 20):
        for count in range(1, 6):
            parts = [slice_of(n, p, count) for p in range(count)]
            assert np.concatenate(parts).tolist() == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_messages_round_trip_exactly():
    x = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    tensors, meta = decode(encode({"a": x, "e": np.zeros(0, np.float32)}, {"op": "runs", "n": 3}))
    assert meta == {"op": "runs", "n": 3} and tensors["e"].shape == (0,)
    assert tensors["a"].tobytes() == x.tobytes()
    assert str(PeerLost(1, "process 1 is gone")) == "process 1 is gone"


def test_a_follower_refuses_another_config_or_other_versions(tmp_path):
    from metarl_cli.meta.es.config import ESConfig
    from metarl_cli.meta.es.multihost import _versions, check_hello
    from metarl_cli.meta.es.train import plan_es

    cfg = ESConfig(algo="lpo", envs=["classic/cartpole"], architecture={"hidden": 8}, popsize=8)
    plan = plan_es(cfg, tmp_path / "x.safetensors", run_dir=None, resume=True, force=False,
                   writes=False)  # fmt: skip
    assert list(tmp_path.iterdir()) == []  # a follower checks no run dir, writes nothing

    def hello(**changes):
        config = cfg.model_copy(update=changes).model_dump(mode="json")
        return {"op": "hello", "config": config, "versions": _versions()}

    assert check_hello(plan, hello()) is None
    assert check_hello(plan, hello(num_generations=5)) is None  # only process 0 counts them
    refusal = check_hello(plan, hello(seed=3, popsize=16))
    assert "popsize: 16 -> 8; seed: 3 -> 0" in refusal and "same command" in refusal
    other = {**hello(), "versions": {**_versions(), "jax": "0.0.1"}}
    assert "install the same versions" in check_hello(plan, other)
