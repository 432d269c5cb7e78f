"""The report as Markdown (figures beside it) and as one self-contained HTML page (figures
embedded as base64 PNGs, with links to the PNG and SVG files beside it)."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from typing import Any

import numpy as np

from metarl_cli.analysis import suppf
from metarl_cli.analysis.collect import env_name

_METHOD = (
    "IQM pooled over runs x environments with 95% stratified-bootstrap percentile confidence "
    "intervals (Agarwal et al., 2021, rliable's conventions; runs resampled within each "
    "environment)"
)


def _num(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1e4 else f"{x:,.0f}"
    return str(x)


def _ci(row: dict[str, Any]) -> str:
    if row.get("ci_low") is None:
        return "n/a"
    return f"[{_num(row['ci_low'])}, {_num(row['ci_high'])}]"


Section = tuple[str, list[Any]]

_INPUT_HEADERS = ["file", "approach", "target", "algorithm", "form", "meta-learner"]
_INPUT_HEADERS += ["training envs", "suite", "runs", "timesteps scale"]
_PER_ENV_HEADERS = ["env", "approach", "IQM", "95% CI", "mean", "finished runs", "diverged"]
_PER_ENV_HEADERS += ["run s", "compile s"]
_TABLE1_HEADERS = ["Approach", "Study", "Form", "Samples", "Train Time", "Test Time"]
_TABLE1_HEADERS += ["Interpretability", "Scalability"]
_TABLE1_TEXT = (
    "Samples: env steps used in meta-training (from the artefact's manifest); meta-train "
    "time: its wall time; meta-test time: the sum of run times over environments (compilation "
    "separately); interpretability by form (neural low, symbolic medium, code high) with the "
    "program's size; scalability: the kernel's inputs and the paper's rating of its method."
)


def _inputs_section(rep) -> Section:
    """The result files read and how they are summarised."""
    rows = []
    for e in rep.entries:
        t, r = e.target, e.result
        scale = _num(r.timesteps_scale) if r.timesteps_scale else "preset/explicit"
        envs = ", ".join(t.training_envs) or "-"
        row = [e.path.name, e.label, t.name, t.algorithm or "-", t.form or "-"]
        rows.append([*row, t.meta_learner or "-", envs, r.suite or "-", str(r.num_runs), scale])
    text = (
        f"{len(rep.entries)} result file(s) on {len(rep.env_ids)} environments "
        f"({', '.join(rep.env_ids)}). Statistics: {_METHOD}, {rep.reps} resamples. "
        f"Normalisation: `{rep.norm.mode}`."
    )
    return ("Inputs", [("text", text), ("table", _INPUT_HEADERS, rows)])


def _study_section(rep, study, written: list[dict[str, Any]]) -> Section:
    """A study's figures, each aggregate figure followed by its table."""
    blocks: list[Any] = []
    for w in written:
        if w["section"] != study.title:
            continue
        blocks.append(("figure", w))
        if w["name"].startswith("aggregate_"):
            rows = [
                [r["panel"], r["approach"], _num(r["iqm"]), _ci(r), f"{r['n']} ({r['tasks']} envs)"]
                for r in rep.aggregate
                if r["study"] == study.title
            ]
            blocks.append(("table", ["panel", "approach", "IQM", "95% CI", "scores"], rows))
    return (study.title, blocks)


def _supplement_f_section(rep, written: list[dict[str, Any]]) -> Section:
    """Figures 15-17 side by side, then their rows (one panel per algorithm)."""
    blocks: list[Any] = [("figure", w) for w in written if w["section"] == suppf.SECTION]
    rows = [
        [
            title.replace("\n", ": "),
            r["approach"],
            _num(r["iqm"]),
            _ci(r),
            f"{r['n']} ({r['tasks']} envs)",
        ]
        for title, rs in rep.supplement_f
        for r in rs
    ]
    blocks.append(("table", ["panel", "approach", "IQM", "95% CI", "scores"], rows))
    return (suppf.SECTION, blocks)


def _per_env_section(rep) -> Section:
    """Returns and timings of every approach on every environment."""
    rows = []
    for r in rep.per_env:
        row = [env_name(r["env"]), r["approach"], _num(r["iqm"]), _ci(r), _num(r["mean"])]
        timing = [str(r["diverged"]), _num(r["run_s"]), _num(r["compile_s"])]
        rows.append([*row, f"{r['n']}/{r['runs']}", *timing])
    return ("Returns by environment", [("table", _PER_ENV_HEADERS, rows)])


def _table1_section(rep) -> Section:
    """The paper's Table 1, measured."""
    keys = ["approach", "study", "form", "samples_text", "meta_train_text", "meta_test_text"]
    keys += ["interpretability_text", "scalability_text"]
    rows = [[r[k] for k in keys] for r in rep.table1]
    return ("Table 1 (measured)", [("text", _TABLE1_TEXT), ("table", _TABLE1_HEADERS, rows)])


def _sections(rep, written: list[dict[str, Any]]) -> list[Section]:
    """[(heading, blocks)]: each block is ("table", headers, rows) / ("figure", info) /
    ("code", title, text) / ("text", str) / ("list", items)."""
    out = [_inputs_section(rep)]
    out += [_study_section(rep, s, written) for s in rep.studies]
    if rep.supplement_f:
        out.append(_supplement_f_section(rep, written))
    out.append(_per_env_section(rep))
    grads = [("figure", w) for w in written if w["section"] == "LPO gradients"]
    if grads:
        out.append(("LPO objective gradients", grads))
    out.append(_table1_section(rep))
    if rep.programs:
        programs = [
            ("code", f"{p['title']} ({p['label']}, {p['file']})", p["text"]) for p in rep.programs
        ]
        out.append(("Discovered programs (as in Supplement C)", programs))
    if rep.notes:
        out.append(("Notes", [("list", rep.notes)]))
    return out


def _md_cell(x: str) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def markdown_report(rep, written: list[dict[str, Any]]) -> str:
    """The report as Markdown, figures linked by their PNG files."""
    lines = ["# metarl report", ""]
    fig_no = 0
    for heading, blocks in _sections(rep, written):
        lines += [f"## {heading}", ""]
        for b in blocks:
            if b[0] == "text":
                lines += [b[1], ""]
            elif b[0] == "list":
                lines += [f"- {item}" for item in b[1]] + [""]
            elif b[0] == "table":
                _, headers, rows = b
                lines.append("| " + " | ".join(headers) + " |")
                lines.append("|" + "---|" * len(headers))
                lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
                lines.append("")
            elif b[0] == "figure":
                fig_no += 1
                w = b[1]
                lines += [
                    f"![{w['title']}]({w['png']})",
                    "",
                    f"*Figure {fig_no}: {w['caption']}* ([SVG]({w['svg']}))",
                    "",
                ]
            elif b[0] == "code":
                lines += [f"**{b[1]}**", "", "```python", b[2].rstrip(), "```", ""]
    return "\n".join(lines).rstrip() + "\n"


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3} figure{margin:1.5em 0} img{max-width:100%;height:auto}
figcaption{font-size:0.9em;color:#444} pre{background:#f6f8fa;padding:0.8em;overflow-x:auto}
"""


def html_report(rep, written: list[dict[str, Any]]) -> str:
    """The report as one self-contained HTML page (figures inlined as PNG data)."""
    e = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>metarl report</title>",
        f"<style>{_CSS}</style></head><body><h1>metarl report</h1>",
    ]
    fig_no = 0
    for heading, blocks in _sections(rep, written):
        parts.append(f"<h2>{e(heading)}</h2>")
        for b in blocks:
            if b[0] == "text":
                parts.append(f"<p>{e(b[1])}</p>")
            elif b[0] == "list":
                parts.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b[1]) + "</ul>")
            elif b[0] == "table":
                _, headers, rows = b
                head = "".join(f"<th>{e(h)}</th>" for h in headers)
                body = "".join(
                    "<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows
                )
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif b[0] == "figure":
                fig_no += 1
                w = b[1]
                data = base64.b64encode(w["png_bytes"]).decode("ascii")
                parts.append(
                    f"<figure id='{e(w['name'])}'><img alt='{e(w['title'])}' "
                    f"width='{w['width']}' height='{w['height']}' "
                    f"src='data:image/png;base64,{data}'><figcaption>Figure {fig_no}: "
                    f"{e(w['caption'])} (<a href='{e(w['png'])}'>PNG</a>, "
                    f"<a href='{e(w['svg'])}'>SVG</a>)</figcaption></figure>"
                )
            elif b[0] == "code":
                parts.append(f"<h3>{e(b[1])}</h3><pre><code>{e(b[2])}</code></pre>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _finite(data: Any) -> Any:
    """NaN/inf -> None, recursively (strict JSON)."""
    if isinstance(data, float):
        return data if np.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data


def as_json(data: Any) -> str:
    """Strict, indented JSON (NaN and inf written as null)."""
    return json.dumps(_finite(data), indent=2, default=str, allow_nan=False) + "\n"


def as_csv(rows: list[dict[str, Any]]) -> str:
    """CSV with a header of the first row's keys ("" for no rows)."""
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()
