"""Table 1 of the paper, measured, and the discovered programs (Supplement C).

Table 1 rates each meta-learning algorithm on samples, meta-train time, meta-test time,
interpretability and scalability. Here every row is one evaluated kernel and each column is
measured where the files record it: samples and meta-train wall time from the artefact's
manifest (ES and LPG's meta-gradients write `env_steps` and `wall_s`; a meta-gradient row says
so in its approach), meta-test time from the result's timings,
interpretability from the form (neural low, symbolic medium, code high) with the program's size.
Scalability cannot be measured from one run; the column gives the kernel's number of inputs and
the paper's rating of its meta-learning algorithm.
"""

from __future__ import annotations

from typing import Any

import sympy as sp

from metarl_cli.analysis.collect import Entry, Study, env_set_name
from metarl_cli.learned.base import display_name, get_algorithm
from metarl_cli.learned.symbolic import compile_symbolic

INTERPRETABILITY = {"neural": "low", "symbolic": "medium", "code": "high"}
PAPER_SCALABILITY = {
    "Black-Box Learning": "best",
    "Same-Size Distillation": "good",
    "Smaller Distillation": "good",
    "Distillation": "good",
    "Symbolic Distillation": "bad",
    "LLM Proposal": "medium",
}
# How a black-box kernel was learned, said in Table 1 where an algorithm's study may hold both
# (LPG: meta-gradients, the paper's; or ES, `train es --algo lpg`).
_HOW_BLACK_BOX = {"metagrad": "meta-gradients"}
_NO_ONLINE_SAMPLES = ("distil", "distill", "distillation", "symbolic")


def program_size(form: str | None, algorithm: str | None, text: str | None) -> dict[str, Any]:
    """Size and inputs of a symbolic (sympy operation count) or code (lines) kernel."""
    if not text or algorithm is None:
        return {}
    alg = get_algorithm(algorithm)
    if form == "symbolic":
        k = compile_symbolic(text, alg.symbolic_variables, alg.symbolic_aliases)
        return {
            "length": int(sp.count_ops(k.expr)),
            "unit": "operations",
            "inputs": len(k.variables),
        }
    if form == "code":
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        return {"length": len(lines), "unit": "lines", "inputs": len(alg.code_parameters)}
    return {}


def _fmt_steps(n: float | None) -> str:
    if n is None:
        return "n/a"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "n/a"
    if s >= 3600:
        return f"{s / 3600:.2f} h"
    if s >= 120:
        return f"{s / 60:.1f} min"
    return f"{s:.1f} s"


def table1_row(study: Study, entry: Entry) -> dict[str, Any]:
    """One measured Table 1 row (raw values and display strings)."""
    t = entry.target
    mt = t.meta_train
    if entry.is_baseline:
        samples, samples_text = 0, "none (hand-designed)"
    elif "env_steps" in mt:
        samples = int(mt["env_steps"]) + int(mt.get("eval_env_steps", 0))
        samples_text = _fmt_steps(samples)
    elif t.meta_learner in _NO_ONLINE_SAMPLES:
        # Trained on synthetic data; checkpoint selection may still have run RL evaluations.
        samples = int(mt.get("eval_env_steps", 0))
        samples_text = "no extra (synthetic data)"
        if samples:
            samples_text += f"; {_fmt_steps(samples)} for selection"
    else:
        samples, samples_text = None, "n/a"
    train_s = float(mt["wall_s"]) if "wall_s" in mt else None
    envs = entry.result.envs
    run_s = sum(e.run_s for e in envs)
    compile_s = sum(e.compile_s for e in envs)
    steps = sum(e.env_steps_per_run for e in envs) * entry.result.num_runs
    form = "hand-designed" if entry.is_baseline else (t.form or "neural")
    size = program_size(t.form, t.algorithm, t.text) if t.form in ("symbolic", "code") else {}
    if entry.is_baseline:
        interp, length, unit = "high", None, ""
    elif t.form == "neural":
        interp, length, unit = "low", t.num_parameters, "parameters"
    else:
        interp, length, unit = (
            INTERPRETABILITY.get(form, "n/a"),
            size.get("length"),
            size.get("unit", ""),
        )
    inputs = size.get("inputs")
    if inputs is None and t.algorithm and t.form == "neural":
        inputs = len(get_algorithm(t.algorithm).spec.features)
    rating = PAPER_SCALABILITY.get(entry.method)
    approach = entry.label
    if t.meta_learner in _HOW_BLACK_BOX and approach.startswith(entry.method):  # not relabelled
        how = f"{entry.method} ({_HOW_BLACK_BOX[t.meta_learner]})"  # LPG's: meta-gradients
        approach = how + approach[len(entry.method) :]
    scal = [f"{inputs} inputs" if inputs is not None else "", f"paper: {rating}" if rating else ""]
    return {
        "study": study.title,
        "approach": approach,
        "algorithm": display_name(t.algorithm) if t.algorithm else t.name,
        "form": form,
        "samples": samples,
        "samples_text": samples_text,
        "meta_train_s": train_s,
        "meta_train_text": _fmt_s(train_s),
        "meta_test_run_s": round(run_s, 3),
        "meta_test_compile_s": round(compile_s, 3),
        "meta_test_text": f"{_fmt_s(run_s)} (+{_fmt_s(compile_s)} compile)",
        "env_steps_per_s": steps / run_s if run_s > 0 else None,
        "interpretability": interp,
        "program_length": length,
        "program_unit": unit,
        "interpretability_text": interp + (f" ({length:,} {unit})" if length is not None else ""),
        "inputs": inputs,
        "scalability_text": "; ".join(x for x in scal if x) or "n/a",
        "file": str(entry.path),
    }


def table1(studies: list[Study]) -> list[dict[str, Any]]:
    """Rows of every study; baselines once, at the end."""
    rows, seen = [], set()
    for s in studies:
        for e in s.entries:
            if e.is_baseline and id(e) in seen:
                continue
            seen.add(id(e))
            rows.append(table1_row(s, e))
    rows.sort(key=lambda r: r["approach"].endswith("(hand-designed)"))
    return rows


def programs(entries: list[Entry]) -> list[dict[str, str]]:
    """The symbolic and code kernels, titled as in Supplement C."""
    out = []
    for e in entries:
        t = e.target
        if t.form not in ("symbolic", "code") or not t.text:
            continue
        alg = display_name(t.algorithm) if t.algorithm else ""
        where = (
            f" after meta-training in {env_set_name(t.training_envs)}" if t.training_envs else ""
        )
        if t.form == "symbolic":
            title = f"Discovered symbolic program for {alg}{where}"
        elif t.meta_learner in ("llm", "discover"):
            title = f"LLM proposed function for {alg}{where}"
        else:
            title = f"Code kernel for {alg}{where}"
        out.append({"title": title, "label": e.label, "file": str(e.path), "text": t.text})
    return out
