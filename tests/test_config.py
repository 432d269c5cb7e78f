"""Presets carry the paper's values; derived sizes and overrides validate with useful errors."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from metarl_cli.config import TrainConfig, build_config, parse_set, preset, preset_env_ids
from metarl_cli.envs import ENVS
from metarl_cli.errors import ConfigError


def test_every_registered_env_has_a_preset():
    assert preset_env_ids() == ENVS.names()


@pytest.mark.parametrize(
    ("env_id", "envs", "steps", "budget", "minibatches", "epochs", "ent", "act"),
    [
        ("minatar/breakout", 64, 128, 1e7, 8, 4, 0.01, "relu"),
        ("brax/ant", 2048, 10, 3e7, 32, 4, 0.0, "tanh"),
        ("classic/cartpole", 4, 128, 5e5, 4, 4, 0.01, "tanh"),
        ("craftax/classic", 1024, 20, 3e7, 16, 2, 0.01, "tanh"),
    ],
)
def test_table_2(env_id, envs, steps, budget, minibatches, epochs, ent, act):
    cfg = build_config(env_id)
    assert (cfg.num_envs, cfg.num_steps, cfg.total_timesteps) == (envs, steps, int(budget))
    assert (cfg.num_minibatches, cfg.update_epochs) == (minibatches, epochs)
    assert (cfg.ent_coef, cfg.activation, cfg.hidden_size, cfg.num_hidden_layers) == (
        ent,
        act,
        64,
        2,
    )
    assert (cfg.gamma, cfg.gae_lambda, cfg.clip_eps, cfg.vf_coef, cfg.max_grad_norm) == (
        0.99,
        0.95,
        0.2,
        0.5,
        0.5,
    )


@pytest.mark.parametrize(
    ("env_id", "lr", "b1", "b2", "sgd", "l2o"),
    [  # Tables 4-6
        ("minatar/asterix", 3e-3, 0.9, 0.999, 0.52, 3e-3),
        ("minatar/breakout", 1e-2, 0.9, 0.99, 1.02, 7e-3),
        ("minatar/freeway", 1e-3, 0.9, 0.99, 0.56, 1e-3),
        ("minatar/spaceinvaders", 7e-3, 0.9, 0.99, 1.17, 3e-3),
        ("brax/ant", 3e-4, 0.99, 0.99, 0.17, 3e-4),
        ("brax/humanoid", 3e-4, 0.9, 0.999, 0.053, 3e-4),
        ("brax/walker2d", 1e-3, 0.9, 0.999, 0.52, 1e-3),
        ("brax/hopper", 8e-4, 0.9, 0.999, 0.27, 8e-4),
        ("classic/cartpole", 1e-3, 0.9, 0.999, 2.5e-4, 3e-3),
        ("craftax/classic", 5e-4, 0.9, 0.999, 0.46, 5e-4),
    ],
)
def test_tables_4_to_6(env_id, lr, b1, b2, sgd, l2o):
    p = preset(env_id)
    assert (p["lr"], p["b1"], p["b2"], p["sgd_lr"], p["l2o_lr"]) == (lr, b1, b2, sgd, l2o)


def test_normalisers_of_the_original_code():
    assert preset("minatar/breakout")["ppo_normaliser"] == 50.0822
    assert preset("classic/cartpole")["ppo_normaliser"] == 475.0
    assert preset("brax/ant")["ppo_normaliser"] == 6517.31
    assert preset("craftax/classic")["ppo_normaliser"] is None


def test_derived_sizes():
    cfg = build_config("minatar/breakout")
    assert (cfg.batch_size, cfg.minibatch_size, cfg.num_updates) == (8192, 1024, 1220)
    assert build_config("brax/ant").num_updates == 1464
    assert build_config("classic/cartpole").num_updates == 976


def test_budget_strings_and_floats():
    assert build_config("classic/cartpole", timesteps="2e5").total_timesteps == 200_000
    assert build_config("classic/cartpole", timesteps=1e5).total_timesteps == 100_000


@pytest.mark.parametrize("bad", ["-5", "0", "abc", "1.5"])
def test_bad_budgets_are_rejected(bad):
    with pytest.raises(ValidationError, match="total_timesteps"):
        build_config("classic/cartpole", timesteps=bad)


def test_indivisible_minibatches_name_the_flag():
    with pytest.raises(ValidationError, match=r"num_minibatches.*--set"):
        build_config("classic/cartpole", overrides={"num_minibatches": 7})


def test_budget_below_one_update_names_the_minimum():
    with pytest.raises(ValidationError, match="at least 512"):
        build_config("classic/cartpole", timesteps=100)


def test_unknown_keys_are_rejected_and_configs_are_frozen():
    with pytest.raises(ValidationError, match="learning_rate"):
        build_config("classic/cartpole", overrides={"learning_rate": 1.0})
    cfg = build_config("classic/cartpole")
    with pytest.raises(ValidationError):
        cfg.lr = 1.0  # type: ignore[misc]
    assert hash(cfg) == hash(build_config("classic/cartpole"))


def test_parse_set_reads_json_values():
    assert parse_set(["lr=0.01", "activation=relu", "anneal_lr=false"]) == {
        "lr": 0.01,
        "activation": "relu",
        "anneal_lr": False,
    }
    with pytest.raises(ConfigError, match="key=value"):
        parse_set(["lr"])


def test_precedence_file_then_set_then_timesteps(tmp_path):
    from metarl_cli.config import read_config_file

    path = tmp_path / "c.toml"
    path.write_text('lr = 0.5\nnum_minibatches = 2\n["classic/cartpole"]\nb1 = 0.8\n')
    values = read_config_file(path)
    cfg = build_config(
        "classic/cartpole", timesteps=1024, overrides={"lr": 0.25}, file_values=values
    )
    assert (cfg.lr, cfg.num_minibatches, cfg.b1, cfg.total_timesteps) == (0.25, 2, 0.8, 1024)
    other = build_config("minatar/breakout", file_values=values)
    assert other.b1 == 0.9 and other.lr == 0.5


def test_config_file_errors(tmp_path):
    from metarl_cli.config import read_config_file

    with pytest.raises(ConfigError, match="not found"):
        read_config_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ConfigError, match="cannot parse"):
        read_config_file(bad)
    listy = tmp_path / "list.json"
    listy.write_text(json.dumps([1, 2]))
    with pytest.raises(ConfigError, match="table"):
        read_config_file(listy)


def test_env_id_cannot_be_overridden():
    with pytest.raises(ConfigError, match="env_id"):
        build_config("classic/cartpole", overrides={"env_id": "minatar/breakout"})


def test_config_module_does_not_import_jax():
    import subprocess
    import sys

    code = "import sys, metarl_cli.config; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_round_trip_through_json():
    cfg = build_config("brax/ant", timesteps=1e5)
    assert TrainConfig.model_validate_json(cfg.model_dump_json()) == cfg
