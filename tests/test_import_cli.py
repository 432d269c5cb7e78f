"""`metarl import open` and `metarl evaluate` of imported OPEN optimisers, end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import TEST_DATA

from metarl_cli.cli.app import main
from metarl_cli.results import read_result

PRETRAINED = TEST_DATA


def test_import_inspect_and_evaluate(tmp_path, capsys):
    art = tmp_path / "asterix-open.safetensors"
    assert main(["import", "open", str(PRETRAINED / "asterix_OPEN.npy"), "-o", str(art)]) == 0
    assert "hidden 16, gru 8" in capsys.readouterr().out
    assert main(["inspect", str(art), "--json"]) == 0
    shown = capsys.readouterr().out
    assert '"algorithm": "open"' in shown and '"minatar/asterix"' in shown
    result_path = tmp_path / "r.json"
    tiny = ["--envs", "cartpole", "-n", "1", "--timesteps", "512", "--set", "num_steps=16"]
    assert main(["evaluate", str(art), *tiny, "-o", str(result_path)]) == 0
    result = read_result(result_path)
    assert result.target.algorithm == "open" and result.target.form == "neural"
    final = result.envs[0].final_returns[0]  # None would mean no episode finished
    assert final is not None and 8.0 <= final <= 500.0  # CartPole's range of episode returns


def test_import_of_the_larger_network(tmp_path, capsys):
    art = tmp_path / "multi.safetensors"
    assert main(["import", "open", str(PRETRAINED / "multi_OPEN.npy"), "-o", str(art)]) == 0
    assert "hidden 32, gru 16" in capsys.readouterr().out


def test_released_multi_open_is_the_black_box_entry_of_its_minatar_study(tmp_path):
    """Figure 6: the released OPEN was meta-trained with ES on MinAtar; the report must place it
    as black-box learning, in distribution on MinAtar, and normalise by it."""
    from metarl_cli.analysis.report import build_report
    from metarl_cli.artefacts import load_artefact

    art = tmp_path / "multi.safetensors"
    assert main(["import", "open", str(PRETRAINED / "multi_OPEN.npy"), "-o", str(art)]) == 0
    manifest, _ = load_artefact(art)
    assert manifest.meta_learner.name == "es" and manifest.meta_learner.config["imported"]
    assert manifest.training_envs == [
        "minatar/asterix", "minatar/breakout", "minatar/freeway", "minatar/spaceinvaders"
    ]  # fmt: skip
    tiny = ["--envs", "breakout", "-n", "2", "--timesteps", "256"]
    tiny += ["--set", "num_envs=4", "--set", "num_steps=8", "--set", "num_minibatches=2"]
    paths = []
    for target in (str(art), "ppo"):
        out = tmp_path / f"{Path(target).stem}.eval.json"
        assert main(["evaluate", target, *tiny, "-o", str(out)]) == 0
        paths.append(out)
    rep = build_report(paths, reps=100, gradients=False)
    assert rep.norm.mode == "black-box"
    released = next(e for e in rep.entries if not e.is_baseline)
    assert released.is_black_box and released.method == "Black-Box Learning"


def test_bad_imports_are_one_line_errors(tmp_path, capsys):
    bad = tmp_path / "short.npy"
    np.save(bad, np.zeros(100, np.float32))
    out = tmp_path / "x.safetensors"
    assert main(["import", "open", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "1211" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert main(["import", "lpo", str(bad), "-o", str(out)]) == 2
    assert "unknown import kind 'lpo'" in capsys.readouterr().err
