"""Bad input to every subcommand: one line on stderr, exit code 2, no traceback, nothing written.

Each case runs the CLI in-process. Nothing may train: the entry points of every run are replaced
by a function that fails the test, so a case the CLI wrongly accepts fails at once instead of
training. Outputs point into the test's empty `tmp_path`, which must stay empty; the shared
inputs (a valid teacher, a forged one, a FIFO, a binary file, ...) must stay unchanged.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from metarl_cli.cli.app import main

HUGE = "1180591620717411303424"  # 2**70
ES = ["train", "es", "--algo", "lpo", "--envs", "cartpole"]
MP = ["--num-processes", "2", "--process-id"]
DISCOVER = ["discover", "--algo", "lpo", "--envs", "cartpole", "--base-url", "http://127.0.0.1:9"]

# (argv, a fragment the message must contain). {i}: the inputs directory; {o}: an empty output
# directory; {t}: a valid LPO teacher artefact.
CASES: list[tuple[list[str], str]] = [
    # --- usage: typos, missing arguments, values of the wrong type -------------------------
    (["evalute", "ppo"], "Did you mean 'evaluate'"),
    (["trian", "es"], "Did you mean 'train'"),
    (["train", "ess"], "No such command 'ess'"),
    (["--bogus"], "No such option"),
    (["evaluate"], "Missing argument"),
    (["report"], "Missing argument"),
    (["inspect"], "Missing argument"),
    (["import"], "Missing argument"),
    (["distil"], "Missing argument"),
    (["symbolic"], "Missing argument"),
    (["evaluate", "ppo", "--num-runs", "abc"], "--num-runs"),
    (["evaluate", "ppo", "--seed", "1.5"], "--seed"),
    (["evaluate", "ppo", "--timesteps"], "requires an argument"),
    (["envs", "extra"], "unexpected extra argument"),
    (["envs", "--jsn"], "No such option"),
    (["bench", "--scale", "abc"], "--scale"),
    ([*ES], "Missing option"),
    ([*ES, "-o", "{o}/x.safetensors", "--num-generations", "abc"], "--num-generations"),
    (["discover", "--algo", "lpo"], "Missing option"),
    # --- evaluate ------------------------------------------------------------------------
    (["evaluate", "ppo", "--timesteps", "1e30"], "too large"),
    (["evaluate", "ppo", "--timesteps", "2e12"], "too large"),
    (["evaluate", "ppo", "--timesteps", "nan"], "total_timesteps"),
    (["evaluate", "ppo", "--timesteps", "inf"], "total_timesteps"),
    (["evaluate", "ppo", "--seed", HUGE], "--seed"),
    (["evaluate", "ppo", "--seed", "-1"], "--seed"),
    (["evaluate", "ppo", "--num-runs", "-1"], "num"),
    (["evaluate", "ppo", "--config", "{i}/binary.toml"], "not UTF-8"),
    (["evaluate", "ppo", "--config", "{i}/misspelt.toml"], "did you mean cartpole"),
    (["evaluate", "ppo", "--config", "{i}/nested.toml"], "quote an id"),
    (["evaluate", "ppo", "--config", "{i}/fifo"], "not a regular file"),
    (["evaluate", "ppo", "--config", "/dev/zero"], "not a regular file"),
    (["evaluate", "ppo", "--config", "{i}/missing.toml"], "not found"),
    (["evaluate", "ppo", "--config", "{i}"], "directory"),
    (["evaluate", "ppo", "--config", "{i}/broken.json"], "cannot parse"),
    (["evaluate", "ppo", "-o", "/proc/foo.json"], "does not take new files"),
    (["evaluate", "ppo", "-o", "/sys/x"], "does not take new files"),
    (["evaluate", "ppo", "-o", "/dev/full", "--force"], "not a regular file"),
    (["evaluate", "ppo", "-o", "{o}"], "is a directory"),
    (["evaluate", "ppo", "-o", "{o}/no/such/x.json"], "does not exist"),
    (["evaluate", "ppo", "-o", "{o}/" + "x" * 300], "cannot write"),
    (["evaluate", "/dev/zero"], "not a regular file"),
    (["evaluate", "{i}/fifo"], "not a regular file"),
    (["evaluate", "{i}/forged.safetensors"], "manifest was edited"),
    (["evaluate", "{i}/old.safetensors"], "re-export"),
    (["evaluate", "{i}/missing.safetensors"], "no such artefact"),
    (["evaluate", "ppo", "--envs", ""], "no environment given"),
    (["evaluate", "ppo", "--envs", ",,"], "no environment given"),
    (["evaluate", "ppo", "--suite", "nope"], "unknown"),
    (["evaluate", "ppo", "--suite", "paper", "--envs", "cartpole"], "not both"),
    # --- train es ------------------------------------------------------------------------
    ([*ES, "-o", "{o}/x.safetensors", "--timesteps", "1e30"], "too large"),
    ([*ES, "-o", "{o}/x.safetensors", "--seed", HUGE], "--seed"),
    ([*ES, "-o", "/proc/x.safetensors"], "does not take new files"),
    ([*ES, "-o", "/dev/full", "--force"], "not a regular file"),
    ([*ES, "-o", "{o}/x.safetensors", "--run-dir", "/proc/rd"], "does not take new files"),
    ([*ES, "-o", "{o}/x.safetensors", "--resume"], "nothing to resume"),
    ([*ES, "-o", "{o}/x.safetensors", "--run-dir", "{i}/binary.toml"], "is a file"),
    (["train", "es", "--algo", "lpo", "--envs", "", "-o", "{o}/x.st"], "no environment"),
    (["train", "es", "--algo", "lpx", "--envs", "cartpole", "-o", "{o}/x.st"], "did you mean"),
    ([*ES, "-o", "{o}/x.safetensors", "--strategy", "cmaes"], "strategy"),
    ([*ES, "-o", "{o}/x.safetensors", "--popsize", HUGE], "--popsize"),
    ([*ES, "-o", "{o}/x.safetensors", "--hsize", HUGE], "--hsize"),
    # --- train es over several processes, and launch --------------------------------------
    ([*ES, "-o", "{o}/x.st", "--coordinator", "nohost", *MP, "0"], "must be HOST:PORT"),
    ([*ES, "-o", "{o}/x.st", "--coordinator", "h:99999", *MP, "0"], "must be HOST:PORT"),
    ([*ES, "-o", "{o}/x.st", "--coordinator", "h:7", *MP, "2"], "between 0 and 1"),
    ([*ES, "-o", "{o}/x.st", "--coordinator", "h:7", *MP, "-1"], "between 0 and 1"),
    ([*ES, "-o", "{o}/x.st", "--coordinator", "h:7", "--process-id", "0"], "--num-processes"),
    ([*ES, "-o", "{o}/x.st", *MP, "0"], "--coordinator HOST:PORT is needed"),
    ([*ES, "-o", "{o}/x.st", "--num-processes", "abc"], "--num-processes"),
    ([*ES, "-o", "{o}/x.st", "--coordinator", "h:7", *MP, "0", "--peer-timeout", "0"], "1 second"),
    (["launch"], "Missing argument"),
    (["launch", "--", "evaluate", "ppo"], "launch runs train es"),
    (["launch", "-n", "0", "--", *ES], "-n must be between 1"),
    (["launch", "--", *ES, "--process-id", "1"], "launch sets"),
    (["launch", "--port", "70000", "--", *ES], "--port"),
    # --- distil --------------------------------------------------------------------------
    (["distil", "{i}/missing.safetensors", "-o", "{o}/x.st"], "no such artefact"),
    (["distil", "/dev/zero", "-o", "{o}/x.st"], "not a regular file"),
    (["distil", "{i}/fifo", "-o", "{o}/x.st"], "not a regular file"),
    (["distil", "{i}/forged.safetensors", "-o", "{o}/x.st"], "manifest was edited"),
    (["distil", "{i}/old.safetensors", "-o", "{o}/x.st"], "re-export"),
    (["distil", "{t}", "-o", "/proc/x.safetensors"], "does not take new files"),
    (["distil", "{t}", "-o", "{o}/x.st", "--resume"], "nothing to resume"),
    (["distil", "{t}", "-o", "{o}/x.st", "--timesteps", "1e30"], "too large"),
    (["distil", "{t}", "-o", "{o}/x.st", "--seed", HUGE], "--seed"),
    (["distil", "{t}", "-o", "{o}/x.st", "--envs", ""], "no environment"),
    (["distil", "{t}", "-o", "{o}/x.st", "--size", "enormous"], "size"),
    (["distil", "{t}", "-o", "{o}/x.st", "--batch-size", HUGE], "--batch-size"),
    # --- symbolic ------------------------------------------------------------------------
    (["symbolic", "{i}/missing.safetensors", "-o", "{o}/x.st"], "no such artefact"),
    (["symbolic", "{i}/fifo", "-o", "{o}/x.st"], "not a regular file"),
    (["symbolic", "{i}/old.safetensors", "-o", "{o}/x.st"], "re-export"),
    (["symbolic", "{t}", "-o", "{o}/x.st", "--backend", "nope"], "nope"),
    (["symbolic", "{t}", "-o", "{o}/x.st", "--resume"], "nothing to resume"),
    (["symbolic", "{t}", "-o", "{o}/x.st", "--timesteps", "1e30"], "too large"),
    (["symbolic", "{t}", "-o", "/sys/x.safetensors"], "does not take new files"),
    (["symbolic", "{t}", "-o", "{o}/x.st", "--population", HUGE], "--population"),
    (["symbolic", "{t}", "-o", "{o}/x.st", "--threads", HUGE], "--threads"),
    # --- discover ------------------------------------------------------------------------
    ([*DISCOVER, "-o", "{o}/x.st", "--timesteps", "1e30"], "too large"),
    ([*DISCOVER, "-o", "{o}/x.st", "--seed", HUGE], "--seed"),
    ([*DISCOVER, "-o", "/proc/x.safetensors"], "does not take new files"),
    ([*DISCOVER, "-o", "{o}/x.st", "--replay", "{i}/fifo"], "not a regular file"),
    ([*DISCOVER, "-o", "{o}/x.st", "--replay", "/dev/zero"], "not a regular file"),
    ([*DISCOVER, "-o", "{o}/x.st", "--resume"], "nothing to resume"),
    ([*DISCOVER, "-o", "{o}/x.st", "--price", "abc"], "--price"),
    (["discover", "--algo", "lpo", "--envs", "", "-o", "{o}/x.st"], "no environment"),
    # --- import --------------------------------------------------------------------------
    (["import", "bogus", "x"], "unknown import kind"),
    (["import", "code"], "needs a SOURCE"),
    (["import", "code", "{i}/kernel.py"], "--output"),
    (["import", "code", "{i}/fifo", "--algo", "lpo", "-o", "{o}/x.st"], "not a regular file"),
    (["import", "code", "/dev/zero", "--algo", "lpo", "-o", "{o}/x.st"], "not a regular file"),
    (["import", "code", "{i}/binary.toml", "--algo", "lpo", "-o", "{o}/x.st"], "not UTF-8"),
    (["import", "open", "{i}/fifo", "-o", "{o}/x.st"], "not a regular file"),
    (["import", "open", "{i}/binary.toml", "-o", "{o}/x.st"], ".npy"),
    (["import", "paper", "nope", "-o", "{o}/x.st"], "nope"),
    (["import", "paper", "log_poly_clip", "-o", "/proc/x.safetensors"], "does not take"),
    (["import", "code", "{i}/kernel.py", "--algo", "nope", "-o", "{o}/x.st"], "nope"),
    # --- inspect -------------------------------------------------------------------------
    (["inspect", "{i}/missing.safetensors"], "no such artefact"),
    (["inspect", "{i}/fifo"], "not a regular file"),
    (["inspect", "/dev/zero"], "not a regular file"),
    (["inspect", "{i}/forged.safetensors"], "manifest was edited"),
    (["inspect", "{i}/old.safetensors"], "re-export"),
    (["inspect", "{i}"], "directory"),
    # --- report --------------------------------------------------------------------------
    (["report", "{i}/missing.json", "-o", "{o}/r"], "no such result file"),
    (["report", "{i}/fifo", "-o", "{o}/r"], "not a regular file"),
    (["report", "/dev/zero", "-o", "{o}/r"], "not a regular file"),
    (["report", "{i}/binary.toml", "-o", "{o}/r"], "not valid JSON"),
    (["report", "{i}/broken.json", "-o", "{o}/r", "--reps", "10"], "--reps"),
    (["report", "{i}/broken.json", "-o", "{o}/r", "--label", "nolabel"], "--label"),
    # --- envs and bench ------------------------------------------------------------------
    (["envs", "--json", "x"], "unexpected extra argument"),
    (["bench", "--scale", "0"], "--scale"),
    (["bench", "--scale", "nan"], "--scale"),
    (["bench", "--scale", "1e300"], "too large"),
    (["bench", "--scale", "1e-9"], "total_timesteps"),
    (["bench", "--repeat", "0"], "--repeat"),
    (["bench", "-o", "/proc/bench.json"], "does not take new files"),
]


def _no_training(*args, **kwargs):
    raise AssertionError("a bad-input case reached a training run")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """The shared inputs: a valid teacher, edited ones, a FIFO, a binary file, bad configs."""
    import jax

    from metarl_cli.learned.base import get_algorithm
    from metarl_cli.learned.io import save_learned

    d = tmp_path_factory.mktemp("inputs")
    lpo = get_algorithm("lpo")
    theta = lpo.init(jax.random.key(0), hidden=16)
    teacher = d / "teacher.safetensors"
    save_learned(
        teacher, lpo, theta, architecture={"hidden": 16}, training_envs=["classic/cartpole"]
    )
    data = teacher.read_bytes()
    (d / "forged.safetensors").write_bytes(_edit_manifest(data, architecture={"hidden": 8}))
    (d / "old.safetensors").write_bytes(_edit_manifest(data, schema_version=1))
    os.mkfifo(d / "fifo")
    (d / "binary.toml").write_bytes(bytes(range(256)) * 4)
    (d / "misspelt.toml").write_text("lr = 0.1\n[cartpol]\nb1 = 0.8\n")
    (d / "nested.toml").write_text("[minatar.breakout]\nb1 = 0.8\n")
    (d / "broken.json").write_text("{nope")
    (d / "kernel.py").write_text("def drift(ratio, advantage, epsilon):\n    return 0 * ratio\n")
    return d


def _edit_manifest(data: bytes, **changes) -> bytes:
    """The file with its manifest edited and the header re-serialised (tensors untouched)."""
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    manifest = json.loads(header["__metadata__"]["metarl_manifest"]) | changes
    header["__metadata__"]["metarl_manifest"] = json.dumps(manifest)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + size :]


def _snapshot(d: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in d.iterdir()}


@pytest.fixture
def no_training(monkeypatch):
    for target in (
        "metarl_cli.rl.ppo.make_train",  # every RL run (evaluate's after its checks) builds one
        "metarl_cli.meta.es.train.train_es",
        "metarl_cli.meta.distil.train.distil",
        "metarl_cli.meta.symbolic.search.run_symbolic",
        "metarl_cli.meta.llm.loop.discover",
        "metarl_cli.bench.run_bench",
    ):
        monkeypatch.setattr(target, _no_training)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")


def test_the_corpus_is_large_and_covers_every_subcommand():
    commands = {argv[0] for argv, _ in CASES} | {" ".join(argv[:2]) for argv, _ in CASES}
    assert len(CASES) >= 60
    for command in ("train es", "distil", "symbolic", "discover", "evaluate", "import"):
        assert command in commands
    for command in ("inspect", "report", "envs", "bench", "evalute"):
        assert command in commands


@pytest.mark.parametrize(("argv", "message"), CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    argv, message, inputs, tmp_path, capsys, monkeypatch, no_training
):
    monkeypatch.chdir(tmp_path)
    subs = {"{i}": str(inputs), "{o}": str(tmp_path), "{t}": str(inputs / "teacher.safetensors")}
    argv = [re.sub(r"\{[iot]\}", lambda m: subs[m.group(0)], a) for a in argv]
    before = _snapshot(inputs)
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert message in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert list(tmp_path.iterdir()) == []
    assert _snapshot(inputs) == before


def test_verbose_shows_the_traceback_of_a_usage_error():
    from typer import TyperException

    with pytest.raises(TyperException, match="Did you mean 'evaluate'"):
        main(["--verbose", "evalute", "ppo"])


def test_no_command_prints_the_help(capsys):
    assert main([]) == 2
    captured = capsys.readouterr()
    assert "Usage: metarl" in captured.out + captured.err and "evaluate" in captured.out
