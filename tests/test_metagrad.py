"""`metarl train metagrad` end to end: exact resume, the manifest, refusals; `evaluate a2c`."""

from __future__ import annotations

import json

import numpy as np

from metarl_cli.artefacts import load_artefact
from metarl_cli.cli.app import main

TINY = [
    "train", "metagrad", "--algo", "lpg", "--envs", "gridworld/debug", "--preset", "smoke",
    "--num-agents", "4", "--num-mini-batches", "2", "--hsize", "8", "--num-envs", "4",
    "--agent-updates", "2", "--lifetime", "3", "--eval-runs", "2", "--save-every-k", "2",
]  # fmt: skip


def test_resumed_meta_training_is_bit_identical(tmp_path, capsys):
    full, part = tmp_path / "full.safetensors", tmp_path / "part.safetensors"
    assert main([*TINY, "--meta-steps", "4", "-o", str(full)]) == 0
    assert main([*TINY, "--meta-steps", "2", "-o", str(part)]) == 0
    assert main([*TINY, "--meta-steps", "4", "-o", str(part), "--resume"]) == 0, (
        capsys.readouterr().err
    )
    (m_full, t_full), (_, t_part) = load_artefact(full), load_artefact(part)
    flat_full = {k: np.asarray(v) for k, v in _flat(t_full).items()}
    flat_part = {k: np.asarray(v) for k, v in _flat(t_part).items()}
    assert flat_full.keys() == flat_part.keys()
    assert all(np.array_equal(flat_full[k], flat_part[k]) for k in flat_full)
    assert m_full.meta_learner.name == "metagrad" and m_full.generation == 4
    assert m_full.slot == "update_rule" and m_full.training_envs == ["gridworld/debug"]
    cfg = m_full.meta_learner.config
    assert cfg["value_baseline"] == "trained" and cfg["lpg_max_grad_norm"] is None
    assert "decisions" in cfg and len(cfg["evals"]) == 2  # evaluations at steps 2 and 4
    lines = (tmp_path / "part.run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 4]
    # Lifetimes of 3 updates at 2 per step: every agent restarted once; theta moved.
    init = load_artefact(tmp_path / "full.run" / "step_00002.safetensors")[1]
    assert not np.array_equal(_flat(init)["y_head/kernel"], flat_full["y_head/kernel"])


def _flat(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_metagrad_refuses_what_it_cannot_train(tmp_path, capsys):
    out = str(tmp_path / "x.safetensors")
    assert main(["train", "metagrad", "--algo", "lpo", "--envs", "gridworld/debug", "-o", out]) == 2
    assert "train es --algo lpo" in capsys.readouterr().err
    args = [*TINY, "--num-agents", "5", "-o", out]
    assert main(args) == 2
    assert "num_mini_batches" in capsys.readouterr().err
    assert not (tmp_path / "x.run").exists()


def test_a2c_baseline_learns_through_evaluate(tmp_path, capsys):
    result = tmp_path / "a2c.json"
    code = main(
        [
            "evaluate", "a2c", "--envs", "gridworld/debug", "-n", "2", "--timesteps", "400",
            "--set", "num_envs=4", "--set", "num_steps=10", "--set", "num_minibatches=1",
            "-o", str(result),
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    data = json.loads(result.read_text())
    assert data["target"]["name"] == "a2c" and len(data["envs"][0]["final_returns"]) == 2
