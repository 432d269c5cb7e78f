"""The sandbox child's confinement, exercised for real: a child started as `run_job` starts its
own (`sandbox.spawn`, `child_env`) confines itself with `confine_process` and then tries to read
what belongs to the parent, through Python, numpy and libc directly (as native code would).

Landlock must be present (Linux >= 5.13 with Landlock enabled): without it these tests fail, they
do not skip. The refusal to run without it is tested by simulating its absence in a child.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import metarl_cli
from metarl_cli.meta.llm import sandbox
from metarl_cli.meta.llm.confine import REFUSED_EXIT, UNCONFINED_ENV, landlock_abi
from metarl_cli.meta.llm.sandbox import Limits, SandboxError, child_env, run_job, spawn

SECRET = "sk-test-6f1c0ffee"

# Runs in the child: lists its descriptors, confines itself, then tries each read in argv[1].
CHILD = r"""
import ctypes, json, os, sys
fds = {}
for fd in os.listdir("/proc/self/fd"):
    try:
        fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
    except FileNotFoundError:  # listdir's own, closed since
        pass
from metarl_cli.meta.llm import confine
if len(sys.argv) > 2:
    confine.landlock_abi = lambda: 0  # simulate a kernel without Landlock
conf = confine.confine_process([os.getcwd()])
import numpy as np
libc = ctypes.CDLL(None, use_errno=True)

def attempt(how, path):
    try:
        if how == "open":
            open(path, "rb").read(1)
        elif how == "fromfile":
            np.fromfile(path, dtype=np.uint8, count=1)
        elif how == "listdir":
            os.listdir(path)
        elif how == "libc":  # what native code does: no Python in between
            fd = libc.open(path.encode(), os.O_RDONLY)
            if fd < 0:
                raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
            os.close(fd)
        return "ok"
    except OSError as e:
        return type(e).__name__
out = {"fds": fds, "layers": conf.layers, "lacking": conf.lacking, "env": sorted(os.environ)}
out["reads"] = [[how, path, attempt(how, path)] for how, path in json.loads(sys.argv[1])]
with open("/proc/self/environ", "rb") as f:
    out["own_environ"] = f.read().decode("utf-8", "replace")
import jax.numpy as jnp
out["jax_sum"] = float(jnp.ones(3).sum())
print(json.dumps(out))
"""


def _child(tmp: Path, reads: list[tuple[str, str]], *extra: str, env: dict | None = None):
    """Starts CHILD as run_job starts the runner; returns (exit code, stdout JSON, stderr)."""
    box = tmp / "sandbox"
    box.mkdir(exist_ok=True)
    with open(box / "stderr.log", "wb") as err:
        argv = [sys.executable, "-B", "-c", CHILD, json.dumps(reads), *extra]
        proc = spawn(argv, str(box), env or child_env(str(box), 1), err)
    out, _ = proc.communicate(timeout=300)
    text = (box / "stderr.log").read_text()
    return proc.returncode, (json.loads(out) if proc.returncode == 0 else None), text


@pytest.fixture
def secrets(tmp_path, monkeypatch):
    """A parent with API keys in its environment, a home and a working directory with files."""
    for name in ("OPENAI_API_KEY", "NVIDIA_API_KEY", "JAX_AUTH_TOKEN", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, SECRET)
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    for d in (home, cwd):
        d.mkdir()
        (d / "secret.txt").write_text(SECRET)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    return home, cwd


def test_landlock_is_available_here():
    """These tests must run where Landlock is (the sandbox refuses to run elsewhere)."""
    assert landlock_abi() >= 1, "no Landlock: the sandbox would refuse to run on this machine"


def test_child_reads_nothing_of_the_parent_but_runs_jax(secrets, tmp_path):
    home, cwd = secrets
    checkout = Path(metarl_cli.__file__).resolve().parent.parent
    denied = [
        f"/proc/{os.getpid()}/environ",
        f"/proc/{os.getpid()}/cmdline",
        "/proc/1/environ",
        "/etc/passwd",
        str(home / "secret.txt"),
        str(cwd / "secret.txt"),
        str(checkout / "pyproject.toml"),  # the checkout around an editable metarl_cli
    ]
    reads = [(how, p) for p in denied for how in ("open", "fromfile", "libc")]
    dirs = [str(home), str(cwd), pwd.getpwuid(os.getuid()).pw_dir, f"/proc/{os.getpid()}", "/etc"]
    reads += [("listdir", d) for d in dirs]
    allowed = [
        ("open", "/proc/self/status"),
        ("fromfile", str(Path(metarl_cli.__file__))),  # the package itself
        ("libc", str(Path(json.__file__))),  # the standard library
        ("listdir", "/usr/lib"),
    ]
    rc, out, err = _child(tmp_path, reads + allowed)
    assert rc == 0, err
    assert any("Landlock" in layer and "read only in" in layer for layer in out["layers"])
    assert out["lacking"] == []
    results = {(how, path): got for how, path, got in out["reads"]}
    for how, path in reads:
        assert results[(how, path)] == "PermissionError", (how, path, results[(how, path)])
    for how, path in allowed:
        assert results[(how, path)] == "ok", (how, path, results[(how, path)])
    assert out["jax_sum"] == 3.0  # JAX imports and computes under the read rules
    # No API key reaches the child, by name or in anything it can read of its own.
    for name in ("OPENAI_API_KEY", "NVIDIA_API_KEY", "JAX_AUTH_TOKEN", "AWS_SECRET_ACCESS_KEY"):
        assert name not in out["env"]
    assert SECRET not in out["own_environ"] and SECRET not in json.dumps(out)


def test_child_inherits_only_its_channel(tmp_path):
    """stdin and stdout are the pipes to the parent, stderr the log; an inheritable descriptor
    of the parent does not pass."""
    leak = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(leak, True)
    try:
        rc, out, err = _child(tmp_path, [])
    finally:
        os.close(leak)
    assert rc == 0, err
    fds = out["fds"]
    assert sorted(fds) == ["0", "1", "2"], fds
    assert fds["0"].startswith("pipe:") and fds["1"].startswith("pipe:")
    assert fds["2"].endswith("/sandbox/stderr.log")


def test_child_env_drops_credentials_even_under_kept_prefixes(monkeypatch):
    keep = {"PATH": "/usr/bin", "XLA_FLAGS": "--x", "JAX_ENABLE_X64": "1", "LC_ALL": "C"}
    drop = ["OPENAI_API_KEY", "NVIDIA_API_KEY", "CUDA_TOKEN", "JAX_SECRET", "XLA_PASSWORD"]
    drop += ["LC_SESSION_COOKIE", "AWS_ACCESS_KEY_ID", "GITHUB_TOKEN", "TF_CPP_AUTH"]
    for name, value in keep.items():
        monkeypatch.setenv(name, value)
    for name in drop:
        monkeypatch.setenv(name, SECRET)
    env = child_env("/tmp/x", None)
    assert {k: env[k] for k in keep} == keep
    assert not set(drop) & set(env) and SECRET not in json.dumps(env)


def test_child_refuses_to_run_without_landlock(tmp_path):
    """With Landlock simulated away, the child stops before anything else runs, with one line
    naming the missing layers and the flag; with the flag it runs and records what is missing."""
    rc, out, err = _child(tmp_path, [], "no-landlock")
    assert rc == REFUSED_EXIT and out is None
    line = err.strip()
    assert "\n" not in line and "Landlock read rules" in line and "--unsafe-no-sandbox" in line
    env = {**child_env(str(tmp_path / "sandbox"), 1), UNCONFINED_ENV: "1"}
    rc, out, err = _child(tmp_path, [("open", "/etc/passwd")], "no-landlock", env=env)
    assert rc == 0, err
    assert out["lacking"] == ["landlock-read", "landlock-write"]
    assert out["reads"][0][2] == "ok"  # unconfined indeed: the flag is not a formality


_JOB = {
    "kind": "validate",
    "algo": "lpo",
    "source": "def drift(ratio, advantage, epsilon):\n    return jnp.zeros_like(ratio)\n",
    "lr": 1e-3,
}


def test_run_job_refuses_where_a_required_layer_is_missing(monkeypatch):
    started = []
    monkeypatch.setattr(sandbox, "host_lacking", lambda: ["landlock-read", "landlock-write"])
    monkeypatch.setattr(sandbox, "spawn", lambda *a: started.append(a) or 1 / 0)
    with pytest.raises(SandboxError) as info:
        run_job(_JOB, Limits(10, None), xla_devices=1)
    message = str(info.value)
    assert "\n" not in message and "Landlock read rules" in message
    assert "--unsafe-no-sandbox" in message and started == []  # no child was started
    with pytest.raises(ZeroDivisionError):  # allowed: the child starts, told to run unconfined
        run_job(_JOB, Limits(10, None), xla_devices=1, allow_unconfined=True)
    assert started[0][2][UNCONFINED_ENV] == "1"


def test_run_job_maps_the_childs_refusal_to_a_sandbox_error(monkeypatch):
    """A layer found missing only in the child (here Landlock, simulated there) stops the job
    before the candidate runs: a SandboxError with the child's one line, not a crash result."""
    real = sandbox.spawn
    simulate = (
        "import metarl_cli.meta.llm.confine as c; c.landlock_abi = lambda: 0; "
        "from metarl_cli.meta.llm.sandbox_runner import main; main()"
    )
    monkeypatch.setattr(
        sandbox, "spawn", lambda argv, *a: real([sys.executable, "-B", "-c", simulate], *a)
    )
    with pytest.raises(SandboxError, match=r"missing: Landlock read rules.*--unsafe-no-sandbox"):
        run_job(_JOB, Limits(30, None), xla_devices=1)


def test_run_job_confines_reads_and_validates(tmp_path):
    """The real runner under the read rules loads, checks and compiles a candidate."""
    result = run_job(_JOB, Limits(60, 4 << 30), xla_devices=1)
    assert result["ok"], result.get("error")
    layers = " ".join(result["confinement"]["layers"])
    assert "Landlock" in layers and "read only in" in layers and "audit hook" in layers
    assert not any("Landlock" in m for m in result["confinement"]["missing"])


@pytest.mark.parametrize("target", ["/proc/self/environ", "secret"])
def test_candidate_errors_carry_no_file_contents(secrets, target):
    """numpy's text readers put what they could not parse in their error, which goes back to
    the model: the candidate may read neither the parent's files nor its own /proc."""
    home, _ = secrets
    path = str(home / "secret.txt") if target == "secret" else target
    body = f"    x = np.loadtxt({path!r})\n    return jnp.zeros_like(ratio)\n"
    source = f"def drift(ratio, advantage, epsilon):\n{body}"
    result = run_job({**_JOB, "source": source}, Limits(60, 4 << 30), xla_devices=1)
    assert not result["ok"] and "is not allowed" in result["error"]
    assert SECRET not in result["error"] and "PATH=" not in result["error"]


def test_crash_message_carries_no_output_of_the_candidate():
    """A crash reports the signal and a runtime's fatal line, never what the child printed."""
    proc = SimpleNamespace(returncode=-signal.SIGABRT)
    stderr = f"{SECRET}\nroot:x:0:0:root:/root:/bin/bash\nFatal Python error: Aborted\n{SECRET}"
    error = sandbox._died(proc, stderr, Limits(1, None))["error"]
    assert "SIGABRT" in error and "Fatal Python error: Aborted" in error
    assert SECRET not in error and "root:x" not in error
