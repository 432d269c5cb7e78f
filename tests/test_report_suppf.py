"""`metarl report` on Supplement F results: LPO, No Features and Feed-Forward OPEN meta-trained on
gridworlds give the paper's Figures 15-17 (one o.o.d. panel per algorithm, the five approaches in
the paper's order).

Two real evaluations (PPO, and an ES-made LPO artefact whose manifest says `gridworld/rand_all`)
on CartPole at a tiny budget; the other kernels are copies of the LPO result with their target
and returns edited, as `test_report.py` does for studies and distillations.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from PIL import Image
from scipy.stats import trim_mean

from metarl_cli.analysis.report import build_report
from metarl_cli.artefacts import MetaLearnerInfo
from metarl_cli.cli.app import main
from metarl_cli.evaluation import evaluate
from metarl_cli.learned.base import get_algorithm
from metarl_cli.learned.io import save_learned
from metarl_cli.results import write_result

TINY = {"num_envs": 4, "num_steps": 8, "num_minibatches": 2, "update_epochs": 1, "curve_points": 4}
ORDER = [
    "Black-Box Learning",
    "LLM Proposal",
    "Same-Size Distillation",
    "Smaller Distillation",
    "Symbolic Distillation",
]
# (meta-learner, parameters, returns factor) of each approach; files are written in this
# (not the paper's) order, so the figure's order is the report's doing.
KINDS = {
    "Symbolic Distillation": ("symbolic", None, 0.6),
    "Smaller Distillation": ("distil", 64, 0.7),
    "Black-Box Learning": ("es", 128, 1.0),
    "LLM Proposal": ("llm", None, 0.5),
    "Same-Size Distillation": ("distil", 128, 0.8),
}
ALGOS = {"open_ff": 0.3, "lpo": 0.0, "nofeat": 0.15}  # added to each factor: studies differ


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    d = tmp_path_factory.mktemp("suppf")
    lpo = get_algorithm("lpo")
    theta = lpo.init(jax.random.key(0), hidden=16)
    save_learned(
        d / "lpo-grid.safetensors",
        lpo,
        theta,
        architecture={"hidden": 16},
        meta_learner=MetaLearnerInfo(name="es", config={"env_steps": 1000, "wall_s": 1.0}),
        training_envs=["gridworld/rand_all"],
    )
    paths = {}
    for target, stem in (("ppo", "ppo"), (str(d / "lpo-grid.safetensors"), "lpo-grid")):
        r = evaluate(target, ["classic/cartpole"], num_runs=6, timesteps=256, overrides=TINY)
        paths[stem] = d / f"{stem}.eval.json"
        write_result(r, paths[stem], force=False)
    base = json.loads(paths["lpo-grid"].read_text())
    assert base["target"]["training_envs"] == ["gridworld/rand_all"]
    files = [paths["ppo"]]
    for i, (algo, shift) in enumerate(ALGOS.items()):
        bb_digest = f"{i}b".ljust(64, "0")
        for j, (approach, (learner, params, factor)) in enumerate(KINDS.items()):
            data = json.loads(paths["lpo-grid"].read_text())
            digest = bb_digest if learner == "es" else f"{i}{j}".ljust(64, "1")
            data["target"].update(
                algorithm=algo,
                name=f"{algo}-{learner}",
                digest=digest,
                path="gone",
                meta_learner=learner,
                num_parameters=params,
                parent_digest=bb_digest if learner == "distil" else None,
            )
            f = 1.0 if learner == "es" else factor + shift
            for env in data["envs"]:
                env["final_returns"] = [None if v is None else f * v for v in env["final_returns"]]
            files.append(d / f"{algo}-{approach.split()[0].lower()}.eval.json")
            files[-1].write_text(json.dumps(data))
    # A study meta-trained on CartPole: not a gridworld study, so not in Figures 15-17.
    other = json.loads(paths["lpo-grid"].read_text())
    other["target"].update(training_envs=["classic/cartpole"], digest="c" * 64, path="gone")
    files.append(d / "lpo-cartpole.eval.json")
    files[-1].write_text(json.dumps(other))
    return files


def test_supplement_f_figure_is_figures_15_to_17(results, tmp_path):
    rep = build_report(results, reps=300, gradients=False)
    assert rep.norm.mode == "black-box"
    fig = next(f for f in rep.figures if f.name == "supplement_f").figure
    panels = [ax for ax in fig.axes if ax.axison]
    ood = "Out Of Distribution (Grids)"
    assert [ax.get_title() for ax in panels] == [
        f"Figure 15: LPO\n{ood}",
        f"Figure 16: No Features\n{ood}",
        f"Figure 17: Feed-Forward OPEN\n{ood}",
    ]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [*ORDER, "PPO (hand-designed)"]
    bb = next(e for e in rep.entries if e.path.name == "lpo-black-box.eval.json")
    r = np.array([np.nan if v is None else v for v in bb.result.envs[0].final_returns])
    r = r[np.isfinite(r)]
    bb_iqm = trim_mean(r / r.mean(), 0.25)
    for ax, shift in zip(panels, (0.0, 0.15, 0.3), strict=True):
        # One box and one IQM line per approach, in the paper's order: each learned approach's
        # IQM is its factor times the black-box's (IQM commutes with scaling).
        assert len(ax.patches) == 6 and len(ax.collections) == 6
        iqms = [c.get_segments()[0][0][1] for c in ax.collections]
        want = [1.0] + [KINDS[a][2] + shift for a in ORDER[1:]]
        assert iqms[:5] == pytest.approx([w * bb_iqm for w in want], rel=1e-6)
        assert ax.get_ylabel() == ("Return / black-box mean (IQM)" if shift == 0 else "")
    # Each study keeps its own figures, titled with the paper's "Grids".
    titles = [s.title for s in rep.studies]
    assert titles[:3] == [
        "Feed-Forward OPEN, meta-trained on Grids",
        "LPO, meta-trained on Grids",
        "No Features, meta-trained on Grids",
    ]
    agg = next(f for f in rep.figures if f.name == "aggregate_lpo-rand_all").figure
    assert [ax.get_title() for ax in agg.axes] == [ood]


def test_report_writes_supplement_f_files_and_section(results, tmp_path):
    out = tmp_path / "report"
    assert main(["report", *map(str, results), "-o", str(out), "--reps", "200"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    info = next(f for f in summary["figures"] if f["name"] == "supplement_f")
    img = Image.open(out / info["png"])
    assert img.size == (info["width"], info["height"]) and img.size[0] > img.size[1]
    assert (out / info["svg"]).read_text().lstrip().startswith("<?xml")
    md = (out / "report.md").read_text()
    section = md.split("## Supplement F: meta-trained on gridworlds (Figures 15-17)")[1]
    section = section.split("\n## ")[0]
    assert "](supplement_f.png)" in section
    rows = [line.split(" | ")[:2] for line in section.splitlines() if line.startswith("| Figure")]
    assert [r[0].lstrip("| ") for r in rows[::6]] == [
        "Figure 15: LPO: Out Of Distribution (Grids)",
        "Figure 16: No Features: Out Of Distribution (Grids)",
        "Figure 17: Feed-Forward OPEN: Out Of Distribution (Grids)",
    ]
    assert [r[1] for r in rows[:6]] == [*ORDER, "PPO (hand-designed)"]
    assert "supplement_f.png" in (out / "index.html").read_text()
