"""`metarl discover`: the real `openai` client against a scripted chat-completions server.

The scripted replies include the paper's own functions (Supplement C.2), the start of the
Supplement E conversation (its `jax.lax.cond` error and the recovery), and a hostile corpus;
server errors, a killed run, replay, cost limits and the prompts are covered too. RL budgets are
tiny (CartPole, 384 steps, 2 seeds); one module-scoped run is forked for the later tests.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from llm_server import ScriptedServer, raw, reply, slow, status

from metarl_cli.artefacts import load_artefact
from metarl_cli.cli.app import main
from metarl_cli.learned.base import ALGORITHMS, get_algorithm
from metarl_cli.learned.library import PAPER
from metarl_cli.learned.source_check import load_function
from metarl_cli.meta.llm import prompts
from metarl_cli.meta.llm.candidate import combine
from metarl_cli.meta.llm.client import PRICES, cost_usd, find_api_key, price_for
from metarl_cli.meta.llm.config import DiscoverConfig
from metarl_cli.meta.llm.loop import plan_discover
from metarl_cli.meta.llm.sandbox import Limits, run_job

TINY = ["--num-runs", "2", "--timesteps", "384"] + [  # 256: a run may finish no episode
    x for kv in ("num_envs=4", "num_steps=8", "num_minibatches=2", "update_epochs=1")
    for x in ("--set", kv)
]  # fmt: skip
get_algorithm("lpo")  # imports every algorithm module, so the registry is complete


def candidate(name: str, body: str, thought: str = "a scripted candidate") -> dict:
    code = f"def {name}(ratio, advantage, epsilon):\n{body}"
    return reply({"thought": thought, "name": name, "code": code})


def discover_args(out: Path, run_dir: Path, turns: int, *extra: str) -> list[str]:
    return ["discover", "--algo", "lpo", "--envs", "cartpole", "-o", str(out),
            "--run-dir", str(run_dir), "--turns", str(turns), *TINY, *extra]  # fmt: skip


def read_state(run_dir: Path) -> dict:
    return json.loads((run_dir / "conversation.json").read_text())


@pytest.fixture(scope="module")
def server():
    srv = ScriptedServer()
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.setenv("METARL_LLM_BACKOFF", "0.01")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the repository is read


# --- Supplement E: the conversation, its jax.lax.cond error and the recovery -----------------

LAX_COND = """def log_clip_penalty(
ratio: float,
advantage: float,
epsilon: float
) -> jnp.ndarray:
    # Compute the log deviation from identity
    delta = jnp.log(ratio)
    # Define branch for positive advantage: apply penalty when delta > epsilon
    def pos_branch():
        # Penalty is proportional to squared excess deviation scaled by |advantage|
        return jnp.abs(advantage) * (delta - epsilon) ** 2
    # Define branch for negative advantage: apply penalty when delta < -epsilon
    def neg_branch():
        return jnp.abs(advantage) * (-epsilon - delta) ** 2
    # Use jax.lax.cond to select the right branch, otherwise use 0
    penalty_pos = jax.lax.cond(
        (advantage > 0) and (delta > epsilon),
        lambda: pos_branch(),
        lambda: 0.0
    )
    penalty_neg = jax.lax.cond(
        (advantage < 0) and (delta < -epsilon),
        lambda: neg_branch(),
        lambda: 0.0
    )
    # The drift is the sum of the penalties, ensuring non-negativity
    drift = penalty_pos + penalty_neg
    return drift"""
E_TURN_1 = {
    "thought": "I decided to use the logarithm of the ratio to measure deviation from 1, since "
    "log(1)=0. [...] I call this function 'log_clip_penalty'.",
    "name": "log_clip_penalty",
    "code": LAX_COND,
}
E_TURN_2 = {
    "thought": "I replaced the conditional branches with jnp.where to avoid relying on Python's "
    "boolean operations on arrays. [...] I name this function 'log_clip_penalty_v2'.",
    "name": "log_clip_penalty_v2",
    "code": PAPER.get("log_clip_penalty_v2").text,
}
# The third reply as the paper prints it: its opening `{"thought": "` is missing. The
# original loop's json.loads would have crashed here; ours answers with a correction.
E_TURN_3 = (
    "This new function uses a squared quadratic penalty on the logarithm of the ratio. [...] "
    "aligning well with drift function properties described in the literature such as in "
    'modified PPO formulations.", "name": "squared_log_clip", "code": "def squared_log_clip(\n'
    "ratio: float,\nadvantage: float,\nepsilon: float\n) -> jnp.ndarray:\n"
    "    delta = jnp.log(ratio)\n    term = jnp.maximum(jnp.abs(delta) - epsilon, 0.0)\n"
    '    drift = jnp.abs(advantage) * term ** 2\n    return drift"}'
)
TRUTH_VALUE = (
    "The truth value of an array with more than one element is ambiguous. Use a.any() or a.all()"
)


@pytest.fixture(scope="module")
def e_run(server, tmp_path_factory):
    """Supplement E's first three replies, through the CLI (2 RL evaluations)."""
    base = tmp_path_factory.mktemp("e_run")
    out, run_dir = base / "lpo-llm.safetensors", base / "run"
    first = len(server.requests)
    server.push(reply(E_TURN_1), reply(E_TURN_2), reply(E_TURN_3))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)
        mp.delenv("OPENAI_API_KEY", raising=False)
        t = time.perf_counter()
        rc = main(discover_args(out, run_dir, 3, "--base-url", server.base_url))
        wall = time.perf_counter() - t
    assert rc == 0
    return {"out": out, "run_dir": run_dir, "requests": server.requests[first:], "wall": wall}


def fork(e_run: dict, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the E run to continue (its warm start and 3 turns already done)."""
    run_dir = tmp_path / "run"
    shutil.copytree(e_run["run_dir"], run_dir)
    return tmp_path / "out.safetensors", run_dir


def test_supplement_e_error_recovery_and_artefact(e_run, capsys):
    state = read_state(e_run["run_dir"])
    archive = state["archive"]
    assert [(e["turn"], e["status"]) for e in archive] == [
        (0, "evaluated"), (1, "invalid"), (2, "evaluated"), (3, "malformed")
    ]  # fmt: skip
    warm, t1, t2, t3 = archive
    assert warm["name"] == "PPO_clip" and warm["fitness"] > 0
    # Turn 1: the paper's error, as the model saw it, and the loop went on.
    assert t1["validation"]["stage"] == "call"
    assert t1["feedback"].startswith("Code not valid. Error:\n")
    assert TRUTH_VALUE in t1["feedback"]
    assert t1["feedback"].endswith("Please generate the next one.")
    assert t2["feedback"] == f"Fitness: {t2['fitness']}.\nPlease generate the next one."
    assert t2["times"]["evaluation_s"] > 0 and t2["times"]["validation_s"] > 0
    assert t3["error"] == "the reply contains no JSON object" and '"code"' in t3["feedback"]
    # What the model was sent: the system prompt and the warm start's fitness first, then each
    # answer after its own reply.
    reqs = e_run["requests"]
    assert len(reqs) == 3
    first = reqs[0]["body"]
    assert first["model"] == "o3-mini" and first["response_format"] == {"type": "json_object"}
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    assert json.dumps(warm["fitness"]) in first["messages"][1]["content"]
    assert reqs[1]["body"]["messages"][-1]["content"] == t1["feedback"]
    assert reqs[2]["body"]["messages"][-1]["content"] == t2["feedback"]
    roles = [m["role"] for m in state["messages"]]
    assert roles == ["system", "user"] + ["assistant", "user"] * 3
    # Token usage and cost (o3-mini's price), recorded per turn.
    p_in, p_out = PRICES["o3-mini"]
    u = t2["usage"]
    assert u["prompt_tokens"] > 0 and t2["replayed"] is False
    assert cost_usd(u, price_for("o3-mini")) == pytest.approx(
        (u["prompt_tokens"] * p_in + u["completion_tokens"] * p_out) / 1e6
    )
    # The artefact: the best candidate as code, with its name and thought.
    manifest, tensors = load_artefact(e_run["out"])
    assert manifest.form == "code" and manifest.kernel_format == "stablehlo/1"
    assert set(tensors["code"]) == {"primal", "vjp"}  # the program; the source is for reading
    assert manifest.source == E_TURN_2["code"]
    assert "primal_b64" not in json.dumps(state["messages"])  # the model never sees the bytes
    assert manifest.meta_learner.name == "llm"
    assert manifest.meta_learner.config["name"] == "log_clip_penalty_v2"
    assert manifest.meta_learner.config["thought"] == E_TURN_2["thought"]
    assert manifest.fitness_summary["fitness"] == t2["fitness"]
    assert manifest.generation == 2 and manifest.training_envs == ["classic/cartpole"]
    assert main(["inspect", str(e_run["out"])]) == 0
    shown = capsys.readouterr().out
    assert "log_clip_penalty_v2" in shown and "positive_term = jnp.where(" in shown
    assert (
        json.loads((e_run["run_dir"] / "archive.json").read_text())[2]["fitness"] == t2["fitness"]
    )


def test_replay_is_offline_and_deterministic(e_run, server, tmp_path, capsys):
    requests = len(server.requests)
    conversation = e_run["run_dir"] / "conversation.json"
    out, run_dir = tmp_path / "replayed.safetensors", tmp_path / "replay"
    rc = main(discover_args(out, run_dir, 3, "--replay", str(conversation), "--json"))
    assert rc == 0
    assert len(server.requests) == requests  # no model was called, and no key was needed
    summary = json.loads(capsys.readouterr().out)
    assert summary["replay_check"] == {"compared": 4, "identical": 4, "differences": []}
    old, new = read_state(e_run["run_dir"]), read_state(tmp_path / "replay")
    assert [m["content"] for m in new["messages"]] == [m["content"] for m in old["messages"]]
    assert [e.get("fitness") for e in new["archive"]] == [e.get("fitness") for e in old["archive"]]
    assert all(e["replayed"] for e in new["archive"][1:])
    assert summary["totals"]["cost_usd"] == 0.0


# --- the hostile corpus ----------------------------------------------------------------------


def hostile_corpus(tmp_path: Path, port: int) -> tuple[list[tuple[dict, str]], tuple[Path, ...]]:
    """(reply, words of the expected rejection) for code a model must not get away with."""
    outside = tmp_path / "escape.npy"
    outside_tmp = Path("/tmp") / f"metarl-escape-{uuid.uuid4().hex}.bin"
    secret = tmp_path / "secret.env"
    secret.write_text("OPENAI_API_KEY=sk-secret\n")
    ok = "    return jnp.maximum(jnp.log(ratio), 0.0) ** 2 * jnp.abs(advantage)\n"
    url = f"http://127.0.0.1:{port}/escape"
    table = [  # (name, body or whole source, expected)
        ("spin", "    while True:\n        pass\n", "did not finish within"),
        (
            "xla_spin",
            "    f = lambda c: (c[0] + 1, c[1])\n"
            "    return lax.while_loop(lambda c: c[0] == c[0], f, (0, ratio))[1]\n",
            "did not finish within",
        ),
        ("f", "import os\ndef f(ratio, advantage, epsilon):\n    return ratio\n", "of 'os'"),
        ("sp", "    import subprocess\n" + ok, "import of 'subprocess'"),
        ("sock", "    import socket\n" + ok, "import of 'socket'"),
        ("w", f"    open({str(outside)!r}, 'w').write('x')\n" + ok, "name 'open'"),
        ("imp", "    __import__('os').system('true')\n" + ok, "attribute 'system'"),
        ("imp2", "    __import__('os')\n" + ok, "'__import__'"),
        ("mro", "    c = ratio.__class__.__mro__[-1]\n" + ok, "dunder attribute '__mro__'"),
        ("ga", "    getattr(ratio, '__cla' + 'ss__')\n" + ok, "name 'getattr'"),
        ("bi", "    b = __builtins__\n" + ok, "'__builtins__'"),
        ("save", f"    np.save({str(outside)!r}, np.zeros(3))\n" + ok, "is not allowed"),
        ("tofile", f"    np.asarray(ratio).tofile({str(outside_tmp)!r})\n" + ok, "not allow"),
        ("net", f"    np.lib.npyio.DataSource(None).open({url!r})\n" + ok, "is not allowed"),
        ("peek", f"    np.loadtxt({str(secret)!r})\n" + ok, "is not allowed"),
        ("big_jax", "    x = jnp.zeros((12_500_000_000,))\n    return ratio + x[0]\n", "memory"),
        ("big_np", "    x = np.ones((6_250_000_000,))\n    return ratio + x[0]\n", "memory"),
        ("nan", "    return jnp.log(ratio - 10.0) ** 2\n", "NaN or infinite"),
        ("sig", "def sig(ratio, advantage):\n    return ratio\n", "do not match the slot's"),
        (
            "pyif",
            "    if float(jnp.mean(ratio)) > 1.0:\n        return 0 * ratio\n" + ok,
            "jax.jit",
        ),
        ("syn", "def syn(ratio, advantage, epsilon)\n    return ratio\n", "syntax error on line"),
        ("neg", "    return -((ratio - 1.0) ** 2) * jnp.abs(advantage)\n", "drift is negative"),
        ("kink", "    return jnp.abs(ratio - 1.0) * jnp.abs(advantage)\n", "non-zero slope"),
        ("scalar", "    return jnp.sum((ratio - 1.0) ** 2)\n", "has shape ()"),
        (
            "nograd",
            "    return jnp.where(ratio > 0, (ratio - 1.0) ** 2, jnp.sqrt(ratio - 10.0))\n",
            "gradient of the drift",
        ),
        (
            "dflt",
            "def dflt(ratio, advantage, epsilon=[0] * 10**11):\n    return ratio\n",
            "executing the definition failed: MemoryError",
        ),
        ("nojit", "    jax.config.update('jax_disable_jit', True)\n" + ok, "attribute 'config'"),
        ("nojit2", "    from jax import config\n    config.update('x', 1)\n" + ok, "'config'"),
        ("osfrom", "    from jax.numpy import os\n" + ok, "importing 'os'"),
        ("cb", "    jax.pure_callback(print, ratio, ratio)\n" + ok, "'pure_callback'"),
        ("patch", "    jnp.mean = jnp.max\n" + ok, "assigning to an attribute"),
    ]
    corpus = []
    for name, code, expected in table:
        if code.startswith(("def ", "import ")):
            corpus.append((reply({"thought": "", "name": name, "code": code}), expected))
        else:
            corpus.append((candidate(name, code), expected))
    return corpus, (outside, outside_tmp)


def test_hostile_corpus_is_rejected_and_nothing_escapes(e_run, server, tmp_path):
    out, run_dir = fork(e_run, tmp_path)
    corpus, sentinels = hostile_corpus(tmp_path, server.port)
    assert len(corpus) >= 20
    before = {p.name for p in tmp_path.iterdir()}
    server.push(*(r for r, _ in corpus))
    total = 3 + len(corpus)
    rc = main(discover_args(out, run_dir, total, "--resume", "--base-url", server.base_url,
                            "--validate-timeout", "8"))  # fmt: skip
    assert rc == 0  # the loop finished (its best is still Supplement E's v2)
    archive = read_state(run_dir)["archive"]
    assert len(archive) == 1 + total
    for entry, (_, expected) in zip(archive[4:], corpus, strict=True):
        assert entry["status"] == "invalid", entry["name"]
        assert expected in entry["error"], (entry["name"], entry["error"])
        assert entry["feedback"] == prompts.invalid_message(entry["error"])
    for path in sentinels:
        assert not path.exists()
    assert server.gets == []  # the sandboxed request never reached the server
    after = {p.name for p in tmp_path.iterdir()}
    assert after - before == {"out.safetensors"}
    assert sorted(p.name for p in run_dir.iterdir()) == [
        ".metarl.lock", "archive.json", "conversation.json"
    ]  # fmt: skip
    checks = {e["name"]: e["validation"] for e in archive[4:]}
    assert checks["spin"]["stage"] == checks["xla_spin"]["stage"] == "timeout"
    assert checks["f"]["stage"] == checks["sock"]["stage"] == "ast"  # rejected before any child
    assert checks["big_np"]["stage"] == "call" and checks["kink"]["stage"] == "validity"
    layers = " ".join(checks["big_np"]["confinement"]["layers"])
    assert "audit hook" in layers and "address space" in layers


PPO_BODY = (
    "    clipped = ratio - jnp.clip(ratio, 1 - epsilon, 1 + epsilon)\n"
    "    drift = nn.relu(clipped * advantage)\n"
)
# Behaves as PPO in the sandbox (one device) and as something else on the 2-device host.
TROJAN = PPO_BODY + (
    "    if len(jax.devices()) > 1:\n"
    "        return drift + 1000.0 * (ratio - 1.0) ** 2\n"
    "    return drift\n"
)
# Prints a forged fitness result, as the old single-child design would have read it.
FORGED = json.dumps(
    {"ok": True, "envs": [{"env_id": "classic/cartpole", "final_returns": [950.0, 950.0],
                           "diverged": [False, False], "env_steps_per_run": 256,
                           "compile_s": 0.0, "run_s": 0.0}]}
)  # fmt: skip
FORGER = PPO_BODY + f"    print({FORGED!r})\n    print({FORGED!r}, file=None)\n    return drift\n"


def test_trojans_and_forged_results_score_what_the_sandbox_traced(e_run, server, tmp_path):
    """Python runs once, in the validation child; the fitness worker runs its StableHLO."""
    out, run_dir = fork(e_run, tmp_path)
    secret = f"sk-{uuid.uuid4().hex}"
    server.push(candidate("trojan", TROJAN), candidate("forger", FORGER))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("METARL_TEST_SECRET", secret)
        rc = main(discover_args(out, run_dir, 5, "--resume", "--base-url", server.base_url))
    assert rc == 0
    archive = read_state(run_dir)["archive"]
    warm, trojan, forger = archive[0], archive[4], archive[5]
    assert (trojan["name"], forger["name"]) == ("trojan", "forger")
    # Both are PPO's drift as traced in the sandbox: exactly the warm start's training.
    assert trojan["status"] == forger["status"] == "evaluated"
    assert trojan["fitness"] == forger["fitness"] == warm["fitness"]
    assert forger["returns"]["classic/cartpole"] != [950.0, 950.0]
    assert all(secret not in json.dumps(r) for r in server.requests)


# --- server errors, malformed replies, kill and resume ----------------------------------------


def test_server_errors_are_retried_and_bad_replies_corrected(e_run, server, tmp_path):
    out, run_dir = fork(e_run, tmp_path)
    (tmp_path / ".env").write_text('export OPENAI_API_KEY="sk-from-dotenv"\n')
    first = len(server.requests)
    server.push(
        status(429, retry_after=0), status(500), slow(3.0, reply("late")), raw(b"not json{"),
        candidate("after_errors", "    import os\n    return ratio\n"),
        reply("I think the next function should use tanh."),
        reply({"thought": "no code key", "name": "x"}),
        reply({"thought": 1, "name": "x", "code": "def x(ratio, advantage, epsilon): pass"}),
        reply("```json\n" + json.dumps({"thought": "fenced", "name": "fenced",
              "code": "import sys\ndef f(ratio, advantage, epsilon):\n    return ratio\n"})
              + "\n```"),
    )  # fmt: skip
    rc = main(discover_args(out, run_dir, 8, "--resume", "--base-url", server.base_url,
                            "--request-timeout", "1", "--retries", "5"))  # fmt: skip
    assert rc == 0
    reqs = server.requests[first:]
    assert len(reqs) == 9
    assert {r["headers"].get("authorization") for r in reqs} == {"Bearer sk-from-dotenv"}
    t4, t5, t6, t7, t8 = read_state(run_dir)["archive"][4:]
    assert t4["attempts"] == 5 and t4["status"] == "invalid" and "import of 'os'" in t4["error"]
    errs = " | ".join(t4["request_errors"])
    for words in ("429", "500", "timed out", "not JSON"):
        assert words in errs
    assert t4["times"]["model_s"] >= 1.0  # the timeout was waited for
    assert [t["status"] for t in (t5, t6, t7)] == ["malformed"] * 3
    assert t5["error"] == "the reply contains no JSON object"
    assert t6["error"] == "missing key code" and t7["error"] == "thought must be a string"
    assert t8["status"] == "invalid" and "import of 'sys'" in t8["error"]  # fence accepted
    assert reqs[-1]["body"]["messages"][-1]["content"] == t7["feedback"]


def test_exhausted_retries_stop_with_one_line_and_resume_loses_nothing(
    e_run, server, tmp_path, capsys
):
    out, run_dir = fork(e_run, tmp_path)
    server.push(status(500), status(502), status(503))
    args = discover_args(out, run_dir, 4, "--resume", "--base-url", server.base_url,
                         "--retries", "2")  # fmt: skip
    assert main(args) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: no answer from the model after 3 tries") and "--resume" in line
    assert len(read_state(run_dir)["archive"]) == 4  # nothing half-written
    server.push(candidate("bad_import", "    import socket\n    return ratio\n"))
    assert main(args) == 0
    archive = read_state(run_dir)["archive"]
    assert [e["turn"] for e in archive] == [0, 1, 2, 3, 4]


def _children(pid: int, marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if marker in cmd and ppid == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killed_run_resumes_without_losing_a_turn(e_run, server, tmp_path):
    out, run_dir = fork(e_run, tmp_path)
    first = len(server.requests)
    server.push(candidate("spin", "    while True:\n        pass\n"))
    args = discover_args(out, run_dir, 5, "--resume", "--base-url", server.base_url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "metarl_cli", *args, "--validate-timeout", "120"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        sandbox = []
        while time.time() < deadline and not sandbox:
            time.sleep(0.2)
            state = read_state(run_dir)
            if state["archive"][-1]["status"] == "pending":
                sandbox = _children(proc.pid, "metarl_cli.meta.llm.sandbox_runner")
        assert sandbox, "the candidate never reached the sandbox"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and _alive(sandbox[0]):
        time.sleep(0.1)
    assert not _alive(sandbox[0])  # the spinning child died with its parent
    state = read_state(run_dir)
    assert state["archive"][-1]["turn"] == 4 and state["archive"][-1]["status"] == "pending"
    assert len(server.requests) == first + 1

    server.push(reply({"thought": "Supplement C.2", "name": "log_poly_clip",
                       "code": PAPER.get("log_poly_clip").text}))  # fmt: skip
    assert main([*args, "--validate-timeout", "5"]) == 0
    archive = read_state(run_dir)["archive"]
    assert [(e["turn"], e["status"]) for e in archive[4:]] == [(4, "invalid"), (5, "evaluated")]
    assert "did not finish within 5 s" in archive[4]["error"]
    assert len(server.requests) == first + 2  # turn 4's reply was not asked for again
    assert not list(Path("/tmp").glob(f"metarl-sandbox-{proc.pid}-*"))  # cleaned up after it
    manifest, _ = load_artefact(out)
    best = max(archive[1:], key=lambda e: e.get("fitness") or -1)
    assert manifest.meta_learner.config["name"] == best["name"]


# --- cost, keys, run dirs ----------------------------------------------------------------------


def test_max_cost_stops_before_the_call(e_run, server, tmp_path, capsys):
    out, run_dir = fork(e_run, tmp_path)
    first = len(server.requests)
    args = discover_args(out, run_dir, 10, "--resume", "--base-url", server.base_url,
                         "--model", "local-coder", "--json")  # fmt: skip
    state = read_state(run_dir)
    tokens = sum(
        (e["usage"]["prompt_tokens"] + e["usage"]["completion_tokens"])
        for e in state["archive"][1:]
    )
    spent = tokens * 1000 / 1e6
    assert main([*args, "--price", "1000,1000", "--max-cost", f"{spent + 0.001}"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert len(server.requests) == first  # stopped before asking
    assert "--max-cost" in summary["stopped"]
    assert summary["totals"]["cost_usd"] == pytest.approx(spent)
    # An unlisted model has no known cost: --max-cost needs --price.
    args[args.index("-o") + 1] = str(tmp_path / "other.safetensors")
    rc = main([*args, "--max-cost", "1"])
    assert rc == 2
    assert "--price" in capsys.readouterr().err


def test_a_refused_connection_fails_in_seconds_before_any_rl(tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out, run_dir = tmp_path / "o.safetensors", tmp_path / "run"
    t = time.perf_counter()
    rc = main(discover_args(out, run_dir, 1, "--base-url", f"http://127.0.0.1:{port}/v1"))
    wall = time.perf_counter() - t
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and wall < 20, wall
    assert f"cannot reach the model server 127.0.0.1:{port}" in err[-1]
    assert not out.exists() and "warm start" not in " ".join(err)


def test_no_key_is_a_one_line_error(tmp_path, capsys):
    rc = main(discover_args(tmp_path / "x.safetensors", tmp_path / "run", 2))
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "OPENAI_API_KEY" in err and "--base-url" in err
    assert "--replay" in err and ".env" in err
    assert not (tmp_path / "run").exists()


def test_run_dir_needs_resume_and_same_fitness_settings(e_run, server, tmp_path, capsys):
    out, run_dir = fork(e_run, tmp_path)
    base = ["--base-url", server.base_url]
    assert main(discover_args(out, run_dir, 4, *base)) == 2
    assert "pass --resume" in capsys.readouterr().err
    args = discover_args(out, run_dir, 4, "--resume", *base)
    args[args.index("--num-runs") + 1] = "3"
    assert main(args) == 2
    assert "num_runs: saved 2, now 3" in capsys.readouterr().err


def test_api_key_from_env_or_dotenv(tmp_path, monkeypatch):
    assert find_api_key(tmp_path) is None
    (tmp_path / ".env").write_text("# keys\nexport OPENAI_API_KEY='sk-file'\nOTHER=1\n")
    assert find_api_key(tmp_path) == "sk-file"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    assert find_api_key(tmp_path) == "sk-env"
    assert price_for("o3-mini-2025-01-31") == PRICES["o3-mini"]
    assert price_for("gpt-4o-mini") == PRICES["gpt-4o-mini"] != PRICES["gpt-4o"]
    assert price_for("qwen2.5-coder") is None and price_for("x", (1.0, 2.0)) == (1.0, 2.0)
    assert cost_usd({"prompt_tokens": 10}, None) is None


def test_api_key_reaches_the_server_only(e_run, server, tmp_path, monkeypatch, capsys):
    out, run_dir = fork(e_run, tmp_path)
    secret = f"sk-metarl-{uuid.uuid4().hex}"
    monkeypatch.setenv("METARL_TEST_LLM_KEY", secret)
    first = len(server.requests)
    echo = candidate("echo", "    import os\n    return ratio\n", thought=f"the key is {secret}")
    server.push(status(500), echo)
    args = discover_args(out, run_dir, 4, "--resume", "--base-url", server.base_url,
                         "--api-key-env", "METARL_TEST_LLM_KEY")  # fmt: skip
    assert main(args) == 0
    shown = capsys.readouterr()
    notice = f"sending the API key from $METARL_TEST_LLM_KEY to 127.0.0.1:{server.port} (http)"
    assert shown.err.splitlines().count(notice) == 1
    assert secret not in shown.out + shown.err
    reqs = server.requests[first:]
    assert len(reqs) == 2  # the 500, then the retry
    assert {r["headers"]["authorization"] for r in reqs} == {f"Bearer {secret}"}
    for r in reqs:  # the bearer token is the only place it travels
        others = {k: v for k, v in r["headers"].items() if k != "authorization"}
        assert secret not in json.dumps(r["body"]) + json.dumps(others)
    files = [p for p in [out, *run_dir.rglob("*")] if p.is_file()]
    assert {"conversation.json", "archive.json", out.name} <= {p.name for p in files}
    for path in files:
        assert secret.encode() not in path.read_bytes(), path
    state = read_state(run_dir)
    assert state["archive"][4]["reply"].count("the key is ***") == 1  # the echo was redacted
    assert state["config"]["api_key_env"] == "METARL_TEST_LLM_KEY"
    # Unset: the server gets a placeholder, and the notice says so.
    monkeypatch.delenv("METARL_TEST_LLM_KEY")
    server.push(candidate("no_key", "    import os\n    return ratio\n"))
    args[args.index("--turns") + 1] = "5"
    assert main([*args, "--force"]) == 0  # --force: overwrite the output
    assert server.requests[-1]["headers"]["authorization"] == "Bearer EMPTY"
    assert (
        f"no API key ($METARL_TEST_LLM_KEY is unset): sending 127.0.0.1:{server.port} (http) "
        "the placeholder 'EMPTY' instead" in capsys.readouterr().err.splitlines()
    )


def test_api_key_env_is_validated_and_named(tmp_path, monkeypatch, capsys):
    from metarl_cli.meta.llm.client import OpenAIChat

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    chat = OpenAIChat("m", base_url=None, api_key="sk-file", timeout_s=1, retries=0, key_env="K")
    assert chat.key_notice() == "sending the API key from K in .env to api.openai.com"
    assert chat._redact("a sk-file b") == "a *** b"
    args = discover_args(tmp_path / "x.safetensors", tmp_path / "run", 2)
    assert main([*args, "--api-key-env", "NOT A NAME"]) == 2
    assert "api_key_env" in capsys.readouterr().err
    monkeypatch.setenv("OPENAI_API_KEY", "sk-unused")
    assert main([*args, "--api-key-env", "METARL_UNSET_KEY"]) == 2  # no key, no --base-url
    err = capsys.readouterr().err
    assert "export METARL_UNSET_KEY=..." in err and "sk-unused" not in err
    assert not (tmp_path / "run").exists()


# --- prompts, parsing, the paper's functions in the sandbox -----------------------------------


@pytest.mark.parametrize(
    "name", sorted(n for n in ALGORITHMS.names() if "code" in get_algorithm(n).forms)
)
def test_prompt_is_generated_from_the_algorithm(name):
    alg = get_algorithm(name)
    text = prompts.system_prompt(alg, "FITNESS-TEXT")
    example = prompts.example(alg)
    fn = load_function(example["code"], alg.code_parameters, trusted=True)  # our own example
    assert fn.__name__ == example["name"]
    assert json.dumps(example["code"]) in text and "FITNESS-TEXT" in text
    for param in alg.code_parameters:
        assert f"{param}: " in example["code"]
    for term in alg.code_inputs:
        assert f"'{term}' is " in text
    if alg.slot == "optimiser":
        assert "m <- b * m + (1 - b) * g" in text  # what the code computes (reference §7.2)
        assert "(1-x.y) * m_x_y" not in text
        assert "'lr' is tuned per environment" in text
    else:
        assert "non-negative everywhere, zero at identity (when r=1)" in text
    assert "a_min" not in text  # removed from jnp.clip in current JAX
    msg = prompts.results_message([{"name": "SGD", "code": alg.warm_start, "fitness": 0.5}])
    assert json.loads(msg.split("obtained: \n", 1)[1].rsplit("\n\nPlease", 1)[0])[0]["fitness"]


@pytest.mark.parametrize(
    "content,expected",
    [
        ('{"thought": "t", "name": "n", "code": "def f(): pass"}', "def f(): pass"),
        ('Here it is:\n{"thought": "t", "name": "n", "code": "x"} thanks', "x"),
        ('```json\n{"thought": "t", "name": "n", "code": "a\nb"}\n```', "a\nb"),  # raw newline
        ("", "the reply was empty"),
        ("[1, 2]", "no JSON object"),
        ('{"thought": "t", "name": "n", "code": ', "invalid JSON"),
        ('{"thought": "t"}', "missing keys name, code"),
        ('{"thought": "t", "name": ["n"], "code": "x"}', "name must be a string"),
        ('{"thought": "t", "name": "n", "code": "  "}', '"code" is empty'),
        (E_TURN_3, "no JSON object"),
    ],
)
def test_parse_reply(content, expected):
    try:
        got = prompts.parse_reply(content).code
    except prompts.ReplyError as e:
        got = str(e)
    assert expected in got


def test_paper_functions_pass_the_sandbox():
    """Supplement C.2's functions pass every check: the sandbox rejects none of the paper's own
    code. (The validation is the loop's: a confined child per function.)"""
    kernels = [PAPER.get(n) for n in PAPER.names()]
    jobs = [(k.algorithm, k.name, k.text) for k in kernels if k.form == "code"]
    assert len(jobs) == 7  # 2 per algorithm, recurrent OPEN 1

    def validate(job):
        algo, name, text = job
        result = run_job({"kind": "validate", "algo": algo, "source": text, "lr": 1e-3},
                         Limits(60, 4 << 30), xla_devices=1)  # fmt: skip
        return name, result

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(pool.map(validate, jobs))
    for name, result in results.items():
        assert result["ok"], (name, result.get("error"))
        assert "jit" in result["checks"]
    assert "drift validity" in results["log_poly_clip"]["checks"]


@pytest.mark.parametrize(
    "algo,normaliser,lr",
    [
        ("lpo", 475.0, None),
        ("open", 475.0, 3e-3),
        ("open_ff", 500.0, 2.5e-4),
        ("nofeat", 500.0, 2.5e-4),
    ],
)
def test_fitness_is_normalised_by_the_warm_starts_reference(algo, normaliser, lr, tmp_path):
    """PPO-with-Adam return for LPO and recurrent OPEN, PPO-with-SGD return for OPEN-FF and No
    Features (reference §7.1); optimisers are checked with the env's tuned lr."""
    cfg = DiscoverConfig(algo=algo, envs=["classic/cartpole"], base_url="http://127.0.0.1:9/v1")
    plan = plan_discover(cfg, tmp_path / "x.safetensors")
    assert plan.normalisers == {"classic/cartpole": normaliser}
    if lr is not None:
        assert plan.lr == lr
    env = {"env_id": "classic/cartpole", "diverged": [False, False]}
    fit, per_env, _, problem = combine(plan, {"envs": [{**env, "final_returns": [100.0, 300.0]}]})
    assert fit == per_env["classic/cartpole"] == 200.0 / normaliser and problem == ""
    fit, _, _, problem = combine(plan, {"envs": [{**env, "final_returns": [0.0, 0.0]}]})
    assert fit == 0.0 and problem == ""  # a fitness of 0 is a fitness (the original: failure)
    fit, _, _, problem = combine(plan, {"envs": [{**env, "final_returns": [1.0, None]}]})
    assert fit is None and "no episode finished" in problem and "1 of 2 runs" in problem
    diverged = {**env, "final_returns": [None, 1.0], "diverged": [True, False]}
    fit, _, _, problem = combine(plan, {"envs": [diverged]})
    assert fit is None and "diverged" in problem


# --- --prompt paper: Supplement D as printed ------------------------------------------------


@pytest.mark.parametrize("name", ["lpo", "nofeat", "open_ff", "open"])
def test_paper_prompt_is_supplement_d(name):
    alg = get_algorithm(name)
    text = prompts.system_prompt(alg, "FITNESS-TEXT", style="paper")
    assert text.startswith("You are a machine learning researcher who is designing a new ")
    assert text.endswith("Your goal is to maximize performance.")
    assert "FITNESS-TEXT" not in text and "sandbox" not in text  # the paper names neither
    if alg.slot == "drift":
        assert "'A' is the GAE advantage estimate of the policy." in text
        assert '"name": "tanh_clip"' in text
    else:  # the momentum formula as the paper prints it (the inverse of the code's)
        assert "m_x_y = (x.y) * g + (1-x.y) * m_x_y." in text
        assert "Note that 'lr' is tuned per environment" in text
        assert "{application}" not in text and "{lr_desc}" not in text
    assert ("'var' is a recurrent variable" in text) == (name == "open")
    assert ("'dorm' refers to the dormancy" in text) == (name in ("open", "open_ff"))
    # the example is a function the sandbox accepts, with the slot's exact interface
    example = json.loads(text[text.index("{\n") : text.index("\n}") + 2])
    from metarl_cli.learned.source_check import check_parameters

    check_parameters(example["code"], alg.code_parameters)
    warm = {"name": "PPO_clip", "code": alg.warm_start, "fitness": 0.5}
    first = prompts.results_message([warm], style="paper")
    assert first.startswith("Here are some results we've obtained:\n")
    assert json.loads(first.split("\n", 1)[1])["Fitness"] == 0.5
    assert prompts.fitness_message(0.25, {"a": 1.0, "b": 2.0}, style="paper") == "Fitness: 0.25."


def test_paper_prompt_checks_only_finiteness_and_shape():
    """An invalid drift (a kink at r = 1) passes with --prompt paper, fails without."""
    from metarl_cli.meta.llm.export import export_job

    kink = (
        "def kink(ratio, advantage, epsilon):\n"
        "    return jnp.abs(ratio - 1.0) * jnp.abs(advantage)\n"
    )
    lpo = get_algorithm("lpo")
    strict = export_job(lpo, kink, strict=True)
    assert not strict["ok"] and strict["stage"] == "validity"
    paper = export_job(lpo, kink, strict=False)
    assert paper["ok"] and "validity" not in " ".join(paper["checks"])
    nan = kink.replace("jnp.abs(ratio - 1.0)", "jnp.log(ratio - 10.0)")
    assert export_job(lpo, nan, strict=False)["stage"] == "finite"
