"""Paper-style figures with matplotlib's object API (no pyplot state; Agg rendering).

(a) `aggregate_figure`: IQM with 95% CIs per meta-learning algorithm, In / Out Of
Distribution panels (paper Figures 2-6); (b) `per_env_figure`: the same per environment on raw
returns (Figures 7-14); (c) `curves_figure`: learning curves; (d) `gradient_figure`: the LPO
objective's slope in r over ratio x advantage (Figures 18-19); (e) `interval_grid`: Supplement
F's Figures 15-17, one o.o.d. panel per algorithm meta-trained on gridworlds. Each returns a
`Figure`; `render` writes it as PNG and SVG.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from metarl_cli.fsutil import atomic_write_bytes

DPI = 150
STYLE = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "legend.fontsize": 8,
    "figure.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.alpha": 0.3,
    "svg.fonttype": "none",
    "svg.hashsalt": "metarl",  # stable SVG ids: the same figure gives the same file
}
_PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3"]
_BASELINE = ["#7F7F7F", "#B0B0B0", "#4D4D4D"]


@contextmanager
def _style():
    with matplotlib.rc_context(STYLE):
        yield


def palette(labels: Sequence[str], baselines: Sequence[str] = ()) -> dict[str, str]:
    """One stable colour per label across every figure; baselines in greys."""
    out, i, j = {}, 0, 0
    for label in labels:
        if label in out:
            continue
        if label in baselines:
            out[label] = _BASELINE[j % len(_BASELINE)]
            j += 1
        else:
            out[label] = _PALETTE[i % len(_PALETTE)]
            i += 1
    return out


@dataclass(frozen=True)
class Bar:
    """One interval: label, point estimate and CI (NaN where nothing is finite)."""

    label: str
    value: float
    low: float
    high: float


def _interval_panel(ax, bars: list[Bar], colors: dict[str, str], ylabel: str) -> None:
    """rliable-style intervals: a box over the 95% CI and a black line at the IQM."""
    finite = [b for b in bars if np.isfinite(b.value)]
    ax.set_xticks([])
    ax.set_xlim(-0.6, max(len(bars), 1) - 0.4)
    ax.set_ylabel(ylabel)
    if not finite:
        ax.text(0.5, 0.5, "no finite scores", ha="center", va="center", transform=ax.transAxes)
        return

    def ends(b: Bar) -> tuple[float, float]:
        lo = b.low if np.isfinite(b.low) else b.value
        hi = b.high if np.isfinite(b.high) else b.value
        return lo, hi

    lo = min(ends(b)[0] for b in finite)
    hi = max(ends(b)[1] for b in finite)
    span = hi - lo or (abs(hi) * 0.1 or 1.0)
    ax.set_ylim(lo - 0.15 * span, hi + 0.15 * span)
    for i, b in enumerate(bars):
        if not np.isfinite(b.value):
            ax.text(i, lo, "n/a", ha="center", va="bottom", fontsize=7)
            continue
        b_lo, b_hi = ends(b)
        # A collapsed interval (every run equal) still shows its colour.
        pad = max(0.0, 0.02 * span - (b_hi - b_lo)) / 2
        ax.bar(i, b_hi - b_lo + 2 * pad, bottom=b_lo - pad, width=0.7, color=colors[b.label])
        ax.hlines(b.value, i - 0.35, i + 0.35, color="black", linewidth=1.4)


def _ncol(labels: list[str], width: float) -> int:
    """Legend columns that fit the figure's width (about 0.075 inch per character)."""
    longest = max((len(lb) for lb in labels), default=1)
    return max(1, min(len(labels), int(width // (0.075 * longest + 0.5))))


def _legend(fig, labels: list[str], colors: dict[str, str], loc: str, ncol: int = 1) -> None:
    handles = [Patch(facecolor=colors[lb], label=lb) for lb in labels]
    fig.legend(handles=handles, loc=loc, ncol=ncol, frameon=False)


def aggregate_figure(
    title: str, panels: list[tuple[str, list[Bar]]], colors: dict[str, str], ylabel: str
) -> object:
    """(a) One panel per env group (In / Out Of Distribution), one interval per approach."""
    with _style():
        n = max(len(panels), 1)
        fig = Figure(figsize=(2.6 * n + 2.4, 3.0), dpi=DPI, layout="constrained")
        axes = fig.subplots(1, n, squeeze=False)[0]
        labels: list[str] = []
        for ax, (name, bars) in zip(axes, panels, strict=False):
            _interval_panel(ax, bars, colors, ylabel)
            ax.set_title(name)
            labels += [b.label for b in bars if b.label not in labels]
        _legend(fig, labels, colors, "outside right center")
        fig.suptitle(title)
    return fig


def per_env_figure(
    title: str, envs: list[tuple[str, list[Bar]]], colors: dict[str, str], ylabel: str = "Return"
) -> object:
    """(b) One panel per environment: IQM of raw final returns with 95% CIs."""
    return interval_grid(title, envs, colors, ylabel)


def interval_grid(
    title: str,
    panels: list[tuple[str, list[Bar]]],
    colors: dict[str, str],
    ylabel: str,
    panel_width: float = 2.3,
) -> object:
    """Interval panels on `_panel_grid`, one legend below: (b) and (e), the paper's Figures
    15-17 side by side (one panel per algorithm meta-trained on gridworlds)."""
    with _style():
        fig, axes, cols, width = _panel_grid(len(panels), panel_width)
        labels: list[str] = []
        for k, (name, bars) in enumerate(panels):
            _interval_panel(axes[k], bars, colors, ylabel if k % cols == 0 else "")
            axes[k].set_title(name)
            labels += [b.label for b in bars if b.label not in labels]
        _legend(fig, labels, colors, "outside lower center", ncol=_ncol(labels, width))
        fig.suptitle(title)
    return fig


def _panel_grid(n: int, panel_width: float) -> tuple[Any, Any, int, float]:
    """(figure, its flat axes, columns, width) for `n` panels, at most 5 a row; the axes past
    the `n`th are hidden."""
    cols = min(5, n)
    rows = math.ceil(n / cols)
    width = max(panel_width * cols, 6.4)
    fig = Figure(figsize=(width, 2.1 * rows + 0.8), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_axis_off()
    return fig, axes, cols, width


@dataclass(frozen=True)
class Curve:
    """A learning curve: mean and standard error over runs at each env-step count."""

    label: str
    steps: np.ndarray
    mean: np.ndarray
    se: np.ndarray


def curves_figure(title: str, envs: list[tuple[str, list[Curve]]], colors: dict[str, str]):
    """(c) One panel per environment: mean episode return over runs +- one standard error."""
    with _style():
        fig, axes, cols, width = _panel_grid(len(envs), 2.5)
        labels: list[str] = []
        for k, (name, curves) in enumerate(envs):
            ax = axes[k]
            drawn = 0
            for c in curves:
                ok = np.isfinite(c.mean)
                if not ok.any():
                    continue
                drawn += 1
                ax.plot(c.steps[ok], c.mean[ok], color=colors[c.label], linewidth=1.2)
                se = np.where(np.isfinite(c.se), c.se, 0.0)[ok]
                ax.fill_between(
                    c.steps[ok], c.mean[ok] - se, c.mean[ok] + se, color=colors[c.label], alpha=0.2
                )
                if c.label not in labels:
                    labels.append(c.label)
            if not drawn:
                ax.text(0.5, 0.5, "no finished episodes", ha="center", transform=ax.transAxes)
            ax.set_title(name)
            ax.set_xlabel("Env steps")
            ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))
            if k % cols == 0:
                ax.set_ylabel("Return")
        handles = [Line2D([], [], color=colors[lb], label=lb) for lb in labels]
        fig.legend(
            handles=handles, loc="outside lower center", ncol=_ncol(labels, width), frameon=False
        )
        fig.suptitle(title)
    return fig


@dataclass(frozen=True)
class GradientPanel:
    """One kernel's d objective / d r grid [advantage, ratio] (NaN where not differentiable)."""

    title: str
    log_ratio: np.ndarray
    advantage: np.ndarray
    grad: np.ndarray


def gradient_figure(title: str, panels: list[GradientPanel]) -> object:
    """(d) Heat maps of the LPO objective's derivative in r, ratio on a log axis."""
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="#BBBBBB")
    with _style(), _no_grid():
        cols = min(4, len(panels))
        rows = math.ceil(len(panels) / cols)
        fig = Figure(figsize=(3.1 * cols, 2.7 * rows + 0.4), dpi=DPI, layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax, p in zip(axes, panels, strict=False):
            ax.set_title(p.title)
            # Robust colour range: a kernel with a singularity must not wash out the rest.
            vmax = float(np.nanpercentile(np.abs(p.grad), 99)) or 1.0
            img = ax.imshow(
                np.ma.masked_invalid(p.grad),
                origin="lower",
                aspect="auto",
                cmap=cmap,
                vmin=-vmax,
                vmax=vmax,
                extent=(p.log_ratio[0], p.log_ratio[-1], p.advantage[0], p.advantage[-1]),
            )
            ticks = np.linspace(p.log_ratio[0], p.log_ratio[-1], 7)
            ax.set_xticks(ticks, [f"$e^{{{t:g}}}$" for t in ticks], rotation=45)
            ax.set_xlabel("Ratio")
            ax.set_ylabel("Advantage")
            fig.colorbar(img, ax=ax, label="Derivative of LPO objective", extend="both")
        for ax in axes[len(panels) :]:
            ax.set_axis_off()
        fig.suptitle(title)
    return fig


@contextmanager
def _no_grid():
    with matplotlib.rc_context({"axes.grid": False}):
        yield


def render(fig, fmt: str) -> bytes:
    """The figure as PNG or SVG bytes (fixed size: figsize x DPI, no tight cropping)."""
    buf = io.BytesIO()
    with _style():
        fig.savefig(buf, format=fmt, dpi=DPI, metadata=_metadata(fmt))
    return buf.getvalue()


def _metadata(fmt: str) -> dict[str, str | None]:
    # No creation dates: the same results give byte-identical figures.
    return {"Date": None} if fmt == "svg" else {"Software": "metarl (matplotlib)"}


def pixel_size(fig) -> tuple[int, int]:
    """The PNG's (width, height) in pixels."""
    w, h = fig.get_size_inches()
    return round(w * DPI), round(h * DPI)


def write_figure(fig, out_dir: Path, name: str, *, force: bool) -> dict[str, object]:
    """Writes NAME.png and NAME.svg; returns their paths and the PNG bytes (for embedding)."""
    png = render(fig, "png")
    atomic_write_bytes(out_dir / f"{name}.png", png, force=force)
    atomic_write_bytes(out_dir / f"{name}.svg", render(fig, "svg"), force=force)
    return {"name": name, "png": f"{name}.png", "svg": f"{name}.svg", "png_bytes": png}
