"""Supplement F's layout (the paper's Figures 15-17): LPO, No Features and Feed-Forward OPEN
meta-trained on gridworlds (`train es --envs gridworld/rand_all`), then meta-tested on the ten
environments of §6.

Every meta-test env is o.o.d., so each figure of the paper has one panel, "Out Of Distribution
(Grids)", with the five approaches in its legend's order (Black-Box Learning, LLM Proposal,
Same-Size Distillation, Smaller Distillation, Symbolic Distillation): IQM of black-box-normalised
final returns pooled over runs x environments, with 95% stratified-bootstrap CIs. The report
draws the three side by side, one panel per algorithm in the paper's figure order; a study is
chosen automatically when its artefacts' manifests record gridworld training envs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from metarl_cli.analysis import figures as F
from metarl_cli.analysis.collect import Study, env_set_name, is_gridworld_set
from metarl_cli.learned.base import algorithms, display_name

NAME = "supplement_f"
SECTION = "Supplement F: meta-trained on gridworlds (Figures 15-17)"
# The legend order of Figures 2-4 and 15-17; other approaches (the baselines) follow.
PAPER_ORDER = (
    "Black-Box Learning",
    "LLM Proposal",
    "Same-Size Distillation",
    "Smaller Distillation",
    "Symbolic Distillation",
)


def figure_of(algorithm: str | None) -> int | None:
    """The paper's figure of `algorithm` meta-trained on gridworlds: the algorithm's optional
    `gridworld_figure` (LPO 15, No Features 16, OPEN-FF 17); None for any other."""
    known = {a.name: a for a in algorithms()}
    return getattr(known.get(algorithm or ""), "gridworld_figure", None)


def studies_of(studies: list[Study]) -> list[tuple[int, Study]]:
    """[(paper figure, study)] of the Supplement F studies, in figure order."""
    found = []
    for s in studies:
        fig = figure_of(s.algorithm)
        if fig is not None and is_gridworld_set(s.training_envs):
            found.append((fig, s))
    return sorted(found, key=lambda fs: fs[0])


def _rank(study: Study, row: dict[str, Any]) -> int:
    method = next(e.method for e in study.entries if str(e.path) == row["file"])
    return PAPER_ORDER.index(method) if method in PAPER_ORDER else len(PAPER_ORDER)


def panels(
    studies: list[Study], aggregate: list[dict[str, Any]], notes: list[str]
) -> list[tuple[str, list[dict[str, Any]]]]:
    """[(panel title, aggregate rows in the paper's order)], one per Supplement F study: the
    rows of its Out Of Distribution panel. A study without one goes to `notes`."""
    out = []
    for fig_no, s in studies_of(studies):
        ood = f"Out Of Distribution ({env_set_name(s.training_envs)})"
        rows = [r for r in aggregate if r["study"] == s.title and r["panel"] == ood]
        if not rows:
            notes.append(
                f"{s.title}: no o.o.d. environment was evaluated; Figure {fig_no} "
                "(Supplement F) is left out"
            )
            continue
        rows = sorted(rows, key=lambda r: _rank(s, r))  # stable: ties keep the file order
        out.append((f"Figure {fig_no}: {display_name(s.algorithm or '')}\n{ood}", rows))
    return out


def figure(
    rows: list[tuple[str, list[dict[str, Any]]]],
    bar: Callable[[dict[str, Any]], F.Bar],
    colors: dict[str, str],
    ylabel: str,
    how: str,
    reps: int,
) -> tuple[str, str, str, Any]:
    """(file stem, title, caption, matplotlib figure) of the side-by-side Figures 15-17."""
    title = "Meta-trained on gridworlds, meta-tested o.o.d. (Supplement F)"
    caption = (
        "The paper's Figures 15-17 side by side: IQM of final returns for LPO, No Features and "
        f"Feed-Forward OPEN meta-trained on gridworlds ({how}), pooled over runs x every "
        "meta-test environment (all o.o.d.), with 95% stratified bootstrap confidence "
        f"intervals ({reps} resamples)."
    )
    panels_ = [(name, [bar(r) for r in rs]) for name, rs in rows]
    fig = F.interval_grid(title, panels_, colors, ylabel, panel_width=3.0)
    return NAME, title, caption, fig
