"""`metarl evaluate --suite/--timesteps-scale` and `metarl report`, end to end on small real
results: a PPO baseline, an ES-made LPO artefact (small random theta), and the paper's symbolic
and LLM-proposed LPO kernels, each evaluated with tiny budgets on CartPole and Breakout."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess

import jax
import numpy as np
import pytest
from conftest import export_code
from PIL import Image

from metarl_cli.analysis.gradients import objective_gradient, ppo_drift
from metarl_cli.analysis.report import build_report
from metarl_cli.artefacts import MetaLearnerInfo
from metarl_cli.cli.app import main
from metarl_cli.envs.registry import resolve_suite
from metarl_cli.evaluation import evaluate
from metarl_cli.learned.base import get_algorithm
from metarl_cli.learned.io import save_kernel, save_learned
from metarl_cli.learned.library import PAPER
from metarl_cli.results import read_result, write_result

ENVS = ["classic/cartpole", "minatar/breakout"]
TINY = {"num_envs": 4, "num_steps": 8, "num_minibatches": 2, "update_epochs": 1, "curve_points": 4}
PALETTE_BLUE = (0x4C, 0x72, 0xB0)  # the first approach's colour in every figure


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Four real result files (and their artefacts) in one directory."""
    d = tmp_path_factory.mktemp("results")
    lpo = get_algorithm("lpo")
    theta = lpo.init(jax.random.key(0), hidden=16)
    theta = jax.tree.map(lambda x: 0.1 * jax.random.normal(jax.random.key(1), x.shape), theta)
    es_info = MetaLearnerInfo(name="es", config={"env_steps": 123456, "wall_s": 42.5})
    save_learned(
        d / "lpo-es.safetensors",
        lpo,
        theta,
        architecture={"hidden": 16},
        meta_learner=es_info,
        training_envs=["classic/cartpole"],
    )
    for name, stem, learner in (
        ("lpo_symbolic_ant", "lpo-sym", "symbolic"),
        ("log_clip_penalty_v2", "lpo-llm", "llm"),
    ):
        entry = PAPER.get(name)
        save_kernel(
            d / f"{stem}.safetensors",
            lpo,
            entry.form,
            entry.text,
            code=export_code(lpo, entry.text) if entry.form == "code" else None,
            meta_learner=MetaLearnerInfo(name=learner, config={"source": entry.origin}),
            training_envs=["classic/cartpole"],
        )
    paths = {}
    for target, stem in (
        ("ppo", "ppo"),
        (str(d / "lpo-es.safetensors"), "lpo-es"),
        (str(d / "lpo-sym.safetensors"), "lpo-sym"),
        (str(d / "lpo-llm.safetensors"), "lpo-llm"),
    ):
        r = evaluate(target, ENVS, num_runs=4, timesteps=256, overrides=TINY)
        paths[stem] = d / f"{stem}.eval.json"
        write_result(r, paths[stem], force=False)
    return paths


@pytest.fixture(scope="module")
def report_dir(results, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report"
    code = main(["report", *map(str, results.values()), "-o", str(out), "--reps", "2000"])
    assert code == 0
    return out


# --- suites and budgets ----------------------------------------------------------------------


def test_paper_suite_is_the_ten_meta_test_envs():
    name, envs = resolve_suite("PAPER")
    assert name == "paper" and len(envs) == 10
    assert {"minatar/freeway", "brax/humanoid", "craftax/classic", "classic/cartpole"} <= set(envs)
    assert resolve_suite("minatar")[1] == [
        "minatar/asterix",
        "minatar/breakout",
        "minatar/freeway",
        "minatar/spaceinvaders",
    ]


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--suite", "classic", "--envs", "cartpole"], "not both"),
        (["--suite", "papr"], "did you mean paper"),
        (["--suite", "classic", "--timesteps-scale", "0.1", "--timesteps", "1e4"], "not both"),
        (["--suite", "paper", "--timesteps-scale", "1e-5"], "less than one update"),
        (["--timesteps-scale", "-1"], "must be positive"),
    ],
)
def test_bad_suite_and_budget_flags(capsys, argv, needle):
    assert main(["evaluate", "ppo", *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_evaluate_suite_records_suite_scale_and_provenance(results, tmp_path, capsys):
    out = tmp_path / "s.json"
    sets = [x for k, v in TINY.items() for x in ("--set", f"{k}={v}")]
    art = results["lpo-es"].parent / "lpo-es.safetensors"
    argv = ["evaluate", str(art), "--suite", "classic", "--timesteps-scale", "0.002", "-n", "2"]
    assert main([*argv, *sets, "-o", str(out)]) == 0
    r = read_result(out)
    # 5e5 x 0.002 = 1000 steps -> 31 whole updates of 4 x 8.
    assert (r.suite, r.timesteps_scale, r.envs[0].env_steps_per_run) == ("classic", 0.002, 992)
    t = r.target
    assert t.training_envs == ["classic/cartpole"] and t.meta_learner == "es"
    assert t.meta_train == {"env_steps": 123456, "wall_s": 42.5} and t.num_parameters == 7 * 16 + 16
    # A result of another suite cannot be reported with the two-env results.
    code = main(["report", str(out), str(results["ppo"]), "-o", str(tmp_path / "r")])
    assert code == 2 and "different suites" in capsys.readouterr().err


# --- the report ------------------------------------------------------------------------------


def test_report_writes_every_figure_and_table(report_dir, results):
    summary = json.loads((report_dir / "summary.json").read_text())
    names = {f["name"] for f in summary["figures"]}
    assert names == {
        "aggregate_lpo-cartpole",
        "per_env_lpo-cartpole",
        "curves_lpo-cartpole",
        "lpo_gradients",
    }
    html = (report_dir / "index.html").read_text()
    md = (report_dir / "report.md").read_text()
    for f in summary["figures"]:
        png = (report_dir / f["png"]).read_bytes()
        img = Image.open(report_dir / f["png"])
        assert img.format == "PNG" and img.size == (f["width"], f["height"])
        pixels = np.asarray(img.convert("RGB"), dtype=np.int32)
        assert pixels.std() > 10 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
        assert (report_dir / f["svg"]).read_text().lstrip().startswith("<?xml")
        # The HTML embeds exactly these bytes and links the files; the Markdown shows the PNG.
        assert base64.b64encode(png).decode() in html
        assert f"href='{f['svg']}'" in html and f"]({f['png']})" in md
    # The palette's first colour (Black-Box Learning) is drawn in the bar figures.
    agg = np.asarray(Image.open(report_dir / "aggregate_lpo-cartpole.png").convert("RGB"))
    assert (np.abs(agg - PALETTE_BLUE).sum(axis=-1) < 30).sum() > 500
    rows = json.loads((report_dir / "table1.json").read_text())
    by = {r["approach"]: r for r in rows}
    assert set(by) == {
        "Black-Box Learning",
        "Symbolic Distillation",
        "LLM Proposal",
        "PPO (hand-designed)",
    }
    assert by["Black-Box Learning"]["samples"] == 123456
    assert by["Black-Box Learning"]["meta_train_s"] == 42.5
    assert by["Black-Box Learning"]["interpretability_text"] == "low (128 parameters)"
    assert by["Symbolic Distillation"]["interpretability"] == "medium"
    assert by["Symbolic Distillation"]["samples_text"] == "no extra (synthetic data)"
    assert by["LLM Proposal"]["program_unit"] == "lines" and by["LLM Proposal"]["samples"] is None
    run_s = sum(e.run_s for e in read_result(results["ppo"]).envs)
    assert by["PPO (hand-designed)"]["meta_test_run_s"] == pytest.approx(run_s, abs=1e-3)
    assert "def log_clip_penalty_v2(" in md and "Discovered symbolic program for LPO" in md
    assert (
        (report_dir / "aggregate.csv")
        .read_text()
        .startswith("study,panel,envs,approach,file,normalise_by,iqm,ci_low,ci_high")
    )


def test_aggregates_are_black_box_normalised_iqms(report_dir, results):
    rows = json.loads((report_dir / "aggregate.json").read_text())
    assert {r["normalise_by"] for r in rows} == {"black-box"}
    bb = read_result(results["lpo-es"])
    llm = read_result(results["lpo-llm"])
    panels = ("In Distribution (Cartpole)", "Out Of Distribution (Cartpole)")
    for panel, env in zip(panels, ENVS, strict=True):
        bb_r = _finals(bb, env)
        scores = _finals(llm, env) / np.nanmean(bb_r)
        row = next(r for r in rows if r["panel"] == panel and r["approach"] == "LLM Proposal")
        from scipy.stats import trim_mean

        assert row["iqm"] == pytest.approx(trim_mean(scores[np.isfinite(scores)], 0.25))
        assert row["envs"] == env and row["ci_low"] <= row["iqm"] <= row["ci_high"]


def _finals(result, env_id):
    env = next(e for e in result.envs if e.env_id == env_id)
    return np.array([np.nan if v is None else v for v in env.final_returns])


def test_figures_have_titles_legends_and_no_empty_panels(results):
    rep = build_report(list(results.values()), normalise_by="ppo", reps=500)
    assert rep.norm.mode == "ppo"
    figs = {f.name: f.figure for f in rep.figures}
    approaches = ["Black-Box Learning", "LLM Proposal", "Symbolic Distillation"]
    approaches.append("PPO (hand-designed)")
    agg = figs["aggregate_lpo-cartpole"]
    assert agg._suptitle.get_text() == "LPO, meta-trained on Cartpole"
    assert [ax.get_title() for ax in agg.axes] == [
        "In Distribution (Cartpole)",
        "Out Of Distribution (Cartpole)",
    ]
    assert sorted(t.get_text() for t in agg.legends[0].get_texts()) == sorted(approaches)
    assert all(ax.get_ylabel() == "Return / PPO-Adam return (IQM)" for ax in agg.axes)
    for name in ("aggregate_lpo-cartpole", "per_env_lpo-cartpole", "curves_lpo-cartpole"):
        panels = [ax for ax in figs[name].axes if ax.axison]
        assert panels and all(ax.patches or ax.lines or ax.collections for ax in panels), name
    assert [ax.get_title() for ax in figs["per_env_lpo-cartpole"].axes] == ["cartpole", "breakout"]
    grads = figs["lpo_gradients"]
    images = [ax.images[0] for ax in grads.axes if ax.images]
    assert len(images) == 4  # PPO reference + the three LPO kernels
    assert all(np.isfinite(np.ma.filled(im.get_array(), np.nan)).mean() > 0.95 for im in images)
    titles = [ax.get_title() for ax in grads.axes if ax.images]
    assert titles[0] == "(a) PPO (reference)" and "(b) Black-Box Learning" in titles


def test_ppo_gradient_map_is_a_inside_the_clip_and_zero_outside():
    log_r, adv, g = objective_gradient(ppo_drift(), {}, n_ratio=31, n_advantage=9)
    r = np.exp(log_r)[None, :]
    a = adv[:, None]
    clipped = ((a > 0) & (r > 1.2)) | ((a < 0) & (r < 0.8))
    np.testing.assert_allclose(g, np.where(clipped, 0.0, a * np.ones_like(r)), atol=1e-5)
    lpo = get_algorithm("lpo")
    zero = lpo.init(jax.random.key(0), hidden=8)
    _, _, g0 = objective_gradient(lpo.kernel(None, {"hidden": 8}), zero, n_ratio=31, n_advantage=9)
    np.testing.assert_allclose(g0, g, atol=1e-5)  # theta = 0 is PPO


# --- bad input -------------------------------------------------------------------------------


def test_bad_report_inputs_are_one_line_errors(results, tmp_path, capsys):
    def fails(argv, needle):
        assert main(["report", *argv, "-o", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err

    ppo = json.loads(results["ppo"].read_text())
    v2 = tmp_path / "v2.json"
    v2.write_text(json.dumps({**ppo, "schema_version": 2}))
    fails([str(v2)], "schema version 2")
    fails([str(tmp_path / "missing.json")], "no such result file")
    (tmp_path / "empty").mkdir()
    fails([str(tmp_path / "empty")], "no result files given")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    fails([str(bad)], "not valid JSON")
    budget = json.loads(results["lpo-es"].read_text())
    budget["envs"][0]["env_steps_per_run"] = 999
    other = tmp_path / "budget.json"
    other.write_text(json.dumps(budget))
    fails([str(results["ppo"]), str(other)], "different budgets on classic/cartpole")
    fails([str(results["ppo"]), str(results["ppo"])], "same target and seed")
    fails(
        [str(results["ppo"]), str(results["lpo-llm"]), "--normalise-by", "black-box"],
        "needs the ES (black-box) kernel",
    )
    fails([str(results["ppo"]), "--normalise-by", "median"], "must be one of")
    fails([str(results["ppo"]), "--label", "ppo"], "--label expects FILE=NAME")
    fails([str(results["ppo"]), "--reps", "10"], "--reps must be at least 100")


def test_report_refuses_to_overwrite_without_force(results, tmp_path, capsys):
    out = tmp_path / "r"
    argv = ["report", str(results["ppo"]), "-o", str(out), "--reps", "200", "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["studies"] == ["Baselines"] and summary["normalise_by"] == "ppo"
    before = (out / "index.html").read_bytes()
    assert main(argv) == 2 and "--force" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0 and (out / "index.html").read_bytes() == before


def test_result_files_without_the_new_fields_still_read(results, tmp_path):
    data = json.loads(results["lpo-es"].read_text())
    for key in ("suite", "timesteps_scale"):
        data.pop(key)
    for key in ("training_envs", "meta_learner", "meta_train", "text", "num_parameters"):
        data["target"].pop(key)
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    r = read_result(old)
    assert r.suite is None and r.target.training_envs == []
    # The report fills the provenance from the artefact when it is still there.
    rep = build_report([old, results["ppo"]], reps=200)
    assert rep.entries[0].target.training_envs == ["classic/cartpole"]
    assert rep.entries[0].label == "Black-Box Learning"


# CI (.ci/run) installs Chromium and sets METARL_REQUIRE_CHROMIUM=1: there a missing browser
# is a failure, not a skip.
CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("METARL_REQUIRE_CHROMIUM"),
    reason="no headless Chromium installed (apt-get install chromium)",
)
def test_html_renders_in_headless_chromium(report_dir, tmp_path):
    assert CHROMIUM is not None, "METARL_REQUIRE_CHROMIUM is set but chromium is not on PATH"
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            "chromium",
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--window-size=1280,2400",
            (report_dir / "index.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int32)
    assert pixels.shape[:2] == (2400, 1280)
    # The embedded figures were decoded and drawn: the bars' colour covers a real area.
    assert (np.abs(pixels - PALETTE_BLUE).sum(axis=-1) < 40).sum() > 2000
    assert re.search(r"metarl report", (report_dir / "index.html").read_text())


def test_two_studies_keep_their_own_results(results, tmp_path):
    # The same kernel "meta-trained" on Breakout instead, with other returns: a second study
    # whose Black-Box Learning must not be confused with the first one's.
    data = json.loads(results["lpo-es"].read_text())
    data["target"].update(training_envs=["minatar/breakout"], digest="0" * 64, path="gone")
    for env in data["envs"]:
        env["final_returns"] = [None if v is None else 2 * v + 100 for v in env["final_returns"]]
    other = tmp_path / "bb-breakout.json"
    other.write_text(json.dumps(data))
    rep = build_report([results["ppo"], results["lpo-es"], other], reps=200, gradients=False)
    assert [s.title for s in rep.studies] == [
        "LPO, meta-trained on Cartpole",
        "LPO, meta-trained on Breakout",
    ]
    assert rep.norm.mode == "black-box"
    ind = [r for r in rep.aggregate if r["panel"] == "In Distribution (Breakout)"]
    assert [r["approach"] for r in ind] == ["Black-Box Learning", "PPO (hand-designed)"]
    figs = {f.name: f.figure for f in rep.figures}
    top = [figs[f"per_env_lpo-{w}"].axes[0].get_ylim()[1] for w in ("cartpole", "breakout")]
    assert top[0] < 60 < 130 < top[1]  # CartPole panel: raw returns of each study's own files


def test_distilled_children_are_named_by_size_against_their_teacher(results, tmp_path):
    es = json.loads(results["lpo-es"].read_text())
    paths = [results["ppo"], results["lpo-es"]]
    metas = [(128, {"wall_s": 7.0}), (64, {"eval_env_steps": 24_000_000}), (128, None)]
    for i, (params, meta) in enumerate(metas):
        child = json.loads(results["lpo-es"].read_text())
        child["target"].update(
            meta_learner="distil",
            digest=f"{i}" * 64,
            num_parameters=params,
            parent_digest=es["target"]["digest"],
            meta_train=meta or {},
        )
        if meta is None:  # teacher not among the results: the sizes the distillation recorded
            child["target"]["parent_digest"] = "f" * 64
            child["target"]["meta_train"] = {"teacher_params": 128, "student_params": 128}
        paths.append(tmp_path / f"child{i}.json")
        paths[-1].write_text(json.dumps(child))
    rep = build_report(paths, reps=200, gradients=False, labels={"ppo.eval.json": "PPO-Adam"})
    labels = [e.label for e in rep.entries]
    assert labels[0] == "PPO-Adam"
    assert labels[2:] == [
        "Same-Size Distillation [child0.json]",
        "Smaller Distillation",
        "Same-Size Distillation [child2.json]",
    ]
    rows = {r["file"]: r for r in rep.table1}
    assert rows[str(paths[2])]["samples_text"] == "no extra (synthetic data)"
    assert rows[str(paths[2])]["meta_train_text"] == "7.0 s"
    # RL evaluations that selected the checkpoint are counted
    assert rows[str(paths[3])]["samples"] == 24_000_000
    assert rows[str(paths[3])]["samples_text"] == "no extra (synthetic data); 24M for selection"
