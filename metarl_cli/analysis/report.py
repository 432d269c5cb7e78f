"""`metarl report`: statistics, figures and tables from evaluation result files.

`build_report(paths, ...)` loads and validates the results, groups them into studies (one
algorithm x one meta-training env set, see `collect`), normalises returns per environment
(`normalise`), computes IQMs with stratified-bootstrap CIs (`stats`), measured Table 1 rows and
the discovered programs (`tables`) and the figures (`figures`). `write_report(report, out_dir)`
writes `report.md`, a self-contained `index.html` (PNGs embedded as base64), PNG + SVG figures,
CSV/JSON tables and `summary.json`.
"""

from __future__ import annotations

import platform
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metarl_cli.analysis import figures as F
from metarl_cli.analysis import suppf
from metarl_cli.analysis.collect import Entry, Study, artefact_path, env_name, group_studies
from metarl_cli.analysis.collect import load_entries as _load
from metarl_cli.analysis.gradients import kernel_of, objective_gradient, ppo_drift
from metarl_cli.analysis.normalise import Normalisation, resolve, returns
from metarl_cli.analysis.render import as_csv, as_json, html_report, markdown_report
from metarl_cli.analysis.stats import DEFAULT_REPS, interval_estimate
from metarl_cli.analysis.tables import programs, table1
from metarl_cli.config import normaliser_note
from metarl_cli.envs.registry import SUITES
from metarl_cli.errors import MetarlError, OutputExistsError
from metarl_cli.fsutil import atomic_write_text
from metarl_cli.learned.base import ALGORITHMS, display_name, get_algorithm


@dataclass
class FigureOut:
    """A figure to write: file stem, title, caption, the matplotlib figure, section."""

    name: str
    title: str
    caption: str
    figure: Any
    section: str


@dataclass
class Report:
    """Everything `metarl report` computed from the result files, before it is written."""

    entries: list[Entry]
    studies: list[Study]
    env_ids: list[str]
    norm: Normalisation
    reps: int
    per_env: list[dict[str, Any]] = field(default_factory=list)
    aggregate: list[dict[str, Any]] = field(default_factory=list)
    table1: list[dict[str, Any]] = field(default_factory=list)
    programs: list[dict[str, str]] = field(default_factory=list)
    figures: list[FigureOut] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Supplement F (Figures 15-17): [(panel title, aggregate rows)], empty without gridworld studies
    supplement_f: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)


def _env_order(entries: list[Entry]) -> list[str]:
    first = entries[0].result
    ids = [e.env_id for e in first.envs]
    if first.suite and first.suite in SUITES:
        order = list(SUITES.get(first.suite))
        return [e for e in order if e in ids] + [e for e in ids if e not in order]
    return ids


def build_report(
    paths: list[Path],
    *,
    normalise_by: str = "auto",
    reps: int = DEFAULT_REPS,
    seed: int = 0,
    labels: dict[str, str] | None = None,
    gradients: bool = True,
) -> Report:
    """Everything `metarl report` shows, computed in memory (no files written)."""
    entries = _load(paths, labels)
    studies = group_studies(entries)
    env_ids = _env_order(entries)
    norm = resolve(studies, env_ids, normalise_by)
    rep = Report(entries, studies, env_ids, norm, reps, notes=list(norm.notes))
    _per_env(rep, seed)
    _aggregate(rep, seed)
    rep.table1 = table1(studies)
    rep.programs = programs(entries)
    _versions_note(rep)
    _normaliser_notes(rep)
    _figures(rep, gradients)
    return rep


def _normaliser_notes(rep: Report) -> None:
    """Names the PPO normalisers that are placeholders, when the report divides by them."""
    if rep.norm.mode != "ppo":
        return
    for env_id in rep.env_ids:
        note = normaliser_note(env_id, "ppo")
        if note:
            rep.notes.append(f"{env_id} PPO normaliser: {note}")


def _per_env(rep: Report, seed: int) -> None:
    for e in rep.entries:
        for env_id in rep.env_ids:
            r = e.env(env_id)
            est = interval_estimate(returns(e, env_id), reps=rep.reps, seed=seed)
            finite = returns(e, env_id)
            finite = finite[np.isfinite(finite)]
            rep.per_env.append(
                {
                    "approach": e.label,
                    "file": str(e.path),
                    "env": env_id,
                    "runs": len(r.final_returns),
                    **est.as_dict(),
                    "mean": float(finite.mean()) if finite.size else None,
                    "diverged": int(sum(r.diverged)),
                    "env_steps_per_run": r.env_steps_per_run,
                    "compile_s": round(r.compile_s, 3),
                    "run_s": round(r.run_s, 3),
                    "env_steps_per_s": round(r.env_steps_per_s, 1),
                    "ppo_normaliser": r.normaliser,
                }
            )


def _aggregate(rep: Report, seed: int) -> None:
    for s in rep.studies:
        for panel, env_ids in s.panels(rep.env_ids):
            for e in s.entries:
                strata = [rep.norm.scores(s, e, env_id) for env_id in env_ids]
                est = interval_estimate(strata, reps=rep.reps, seed=seed)
                rep.aggregate.append(
                    {
                        "study": s.title,
                        "panel": panel,
                        "envs": ",".join(env_ids),
                        "approach": e.label,
                        "file": str(e.path),
                        "normalise_by": rep.norm.mode,
                        **est.as_dict(),
                    }
                )


def _versions_note(rep: Report) -> None:
    versions = {e.result.versions.get("metarl", "?") for e in rep.entries}
    if len(versions) > 1:
        rep.notes.append(f"results were written by different metarl versions: {sorted(versions)}")
    runs = {e.result.num_runs for e in rep.entries}
    if len(runs) > 1:
        rep.notes.append(f"results have different numbers of runs per env: {sorted(runs)}")


def _bar(row: dict[str, Any]) -> F.Bar:
    def f(x):
        return float("nan") if x is None else float(x)

    return F.Bar(row["approach"], f(row["iqm"]), f(row["ci_low"]), f(row["ci_high"]))


def _figures(rep: Report, gradients: bool) -> None:
    baselines = [e.label for e in rep.entries if e.is_baseline]
    colors = F.palette([e.label for s in rep.studies for e in s.entries], baselines)
    runs = max(e.result.num_runs for e in rep.entries)
    how = {
        "black-box": "normalised per environment by the mean black-box (ES; LPG: "
        "meta-gradient) return",
        "ppo": "normalised per environment by the PPO-Adam return",
        "none": "not normalised",
    }[rep.norm.mode]
    for s in rep.studies:
        panels = []
        for panel, _ in s.panels(rep.env_ids):
            rows = [r for r in rep.aggregate if r["study"] == s.title and r["panel"] == panel]
            panels.append((panel, [_bar(r) for r in rows]))
        rep.figures.append(
            FigureOut(
                f"aggregate_{s.slug}",
                s.title,
                f"IQM of final returns for {s.title} ({how}), pooled over runs x environments, "
                f"with 95% stratified bootstrap confidence intervals ({rep.reps} resamples, "
                f"up to {runs} runs per environment).",
                F.aggregate_figure(s.title, panels, colors, rep.norm.axis_label),
                s.title,
            )
        )
        envs = []
        for env_id in rep.env_ids:
            # Keyed by file: two studies may each have a "Black-Box Learning".
            by_file = {r["file"]: r for r in rep.per_env if r["env"] == env_id}
            envs.append((env_name(env_id), [_bar(by_file[str(e.path)]) for e in s.entries]))
        rep.figures.append(
            FigureOut(
                f"per_env_{s.slug}",
                f"{s.title}: returns by environment",
                f"IQM of final meta-test returns per environment for {s.title} (unnormalised), "
                "with 95% bootstrap confidence intervals over runs.",
                F.per_env_figure(f"{s.title}: returns by environment", envs, colors),
                s.title,
            )
        )
        curves = [
            (env_name(env_id), [_curve(e, env_id) for e in s.entries]) for env_id in rep.env_ids
        ]
        rep.figures.append(
            FigureOut(
                f"curves_{s.slug}",
                f"{s.title}: learning curves",
                "Mean episode return over runs (shaded: one standard error) against env steps.",
                F.curves_figure(f"{s.title}: learning curves", curves, colors),
                s.title,
            )
        )
    rep.supplement_f = suppf.panels(rep.studies, rep.aggregate, rep.notes)
    if rep.supplement_f:
        out = suppf.figure(rep.supplement_f, _bar, colors, rep.norm.axis_label, how, rep.reps)
        rep.figures.append(FigureOut(*out, suppf.SECTION))
    if gradients:
        for algorithm, entries in _drift_entries(rep.entries).items():
            fig = _gradient_figure(algorithm, entries, rep.notes)
            if fig is not None:
                rep.figures.append(fig)


def _drift_entries(entries: list[Entry]) -> dict[str, list[Entry]]:
    """The entries of learned drifts (LPO), by algorithm: their objective's slope is drawn."""
    out: dict[str, list[Entry]] = {}
    for e in entries:
        name = e.target.algorithm
        if name and name in ALGORITHMS and get_algorithm(name).slot == "drift":
            out.setdefault(name, []).append(e)
    return out


def _curve(e: Entry, env_id: str) -> F.Curve:
    r = e.env(env_id)
    c = np.array([[np.nan if v is None else v for v in run] for run in r.curves], dtype=float)
    c = c.reshape(len(r.curves), -1)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(c, axis=0)
        n = np.isfinite(c).sum(axis=0)
        se = np.nanstd(c, axis=0, ddof=1) / np.sqrt(np.maximum(n, 1))
    return F.Curve(e.label, np.asarray(r.curve_steps, dtype=float), mean, se)


def _gradient_figure(algorithm: str, drifts: list[Entry], notes: list[str]) -> FigureOut | None:
    """Panels for PPO and every drift kernel of `algorithm` that can be rebuilt; the others go
    to `notes`."""
    name = display_name(algorithm)

    built: list[tuple[str, Any]] = [("PPO (reference)", (ppo_drift(), {}))]
    for e in drifts:
        kernel = kernel_of(e.target, artefact_path(e))
        if isinstance(kernel, str):
            notes.append(f"{name} gradient map of {e.label} ({e.path.name}) not drawn: {kernel}")
        else:
            built.append((e.label, kernel))
    panels: list[F.GradientPanel] = []
    for label, kernel in built:
        log_r, adv, grad = objective_gradient(*kernel)
        if not np.isfinite(grad).any():
            notes.append(f"{name} gradient map of {label} not drawn: no finite derivative")
            continue
        letter = "abcdefghijklmnopqrstuvwxyz"[len(panels) % 26]
        panels.append(F.GradientPanel(f"({letter}) {label}", log_r, adv, grad))
    if len(panels) < 2:  # only the PPO reference: nothing learned to show
        return None
    title = f"Derivative of the {name} objective r·A − drift in r"
    return FigureOut(
        f"{algorithm}_gradients",
        title,
        "d(r·A − drift)/dr over ratio r in [e^-0.75, e^0.75] (log axis) and advantage A in "
        "[-4, 4], as in the paper's Supplement G (Lu et al., 2022); PPO's clip is shown for "
        "reference (slope A inside the clip range, 0 where it clips). Grey: not finite.",
        F.gradient_figure(title, panels),
        f"{name} gradients",
    )


# --- writing ---------------------------------------------------------------------------------

_TABLE_FILES = ("aggregate", "per_env", "table1")


def output_names(rep: Report) -> list[str]:
    """Every file `write_report` writes (checked before anything is written)."""
    names = ["report.md", "index.html", "summary.json", "programs.json"]
    names += [f"{t}.{ext}" for t in _TABLE_FILES for ext in ("csv", "json")]
    names += [f"{f.name}.{ext}" for f in rep.figures for ext in ("png", "svg")]
    return names


def write_report(rep: Report, out_dir: Path, *, force: bool) -> dict[str, Any]:
    """Writes every file into `out_dir` (created if missing); returns the JSON summary."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise MetarlError(f"{out_dir} is a file; give a directory for the report")
    existing = [n for n in output_names(rep) if (out_dir / n).exists()]
    if existing and not force:
        raise OutputExistsError(
            f"{out_dir / existing[0]} exists ({len(existing)} report file(s) in {out_dir}); "
            "pass --force to overwrite them"
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MetarlError(f"cannot create {out_dir}: {e.strerror}") from e
    written = []
    for f in rep.figures:
        info = F.write_figure(f.figure, out_dir, f.name, force=force)
        w, h = F.pixel_size(f.figure)
        written.append(
            {
                **info,
                "title": f.title,
                "caption": f.caption,
                "section": f.section,
                "width": w,
                "height": h,
            }
        )
    for name, rows in (
        ("aggregate", rep.aggregate),
        ("per_env", rep.per_env),
        ("table1", rep.table1),
    ):
        atomic_write_text(out_dir / f"{name}.csv", as_csv(rows), force=force)
        atomic_write_text(out_dir / f"{name}.json", as_json(rows), force=force)
    atomic_write_text(out_dir / "programs.json", as_json(rep.programs), force=force)
    summary = summary_of(rep, written, out_dir)
    atomic_write_text(out_dir / "summary.json", as_json(summary), force=force)
    atomic_write_text(out_dir / "report.md", markdown_report(rep, written), force=force)
    atomic_write_text(out_dir / "index.html", html_report(rep, written), force=force)
    return summary


def summary_of(rep: Report, written: list[dict[str, Any]], out_dir: Path) -> dict[str, Any]:
    """The machine-readable summary of a written report (`report.json`, `--json`)."""
    return {
        "output": str(out_dir),
        "normalise_by": rep.norm.mode,
        "reps": rep.reps,
        "envs": rep.env_ids,
        "inputs": [
            {
                "file": str(e.path),
                "approach": e.label,
                "target": e.target.name,
                "algorithm": e.target.algorithm,
                "form": e.target.form,
                "meta_learner": e.target.meta_learner,
                "training_envs": e.target.training_envs,
                "suite": e.result.suite,
                "timesteps_scale": e.result.timesteps_scale,
                "num_runs": e.result.num_runs,
            }
            for e in rep.entries
        ],
        "studies": [s.title for s in rep.studies],
        "aggregate": rep.aggregate,
        "table1": rep.table1,
        "programs": [{k: p[k] for k in ("title", "label", "file")} for p in rep.programs],
        "figures": [
            {k: w[k] for k in ("name", "png", "svg", "width", "height", "title")} for w in written
        ],
        "notes": rep.notes,
        "machine": platform.platform(),
    }
