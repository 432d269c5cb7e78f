"""The artefact of a symbolic distillation run: a chosen program written with its manifest
(expression, variable mapping, round trip, validity checks, backend and its version)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from metarl_cli.meta.symbolic.problem import Problem
from metarl_cli.seeds import SELECTION
from metarl_cli.seeds import record as seed_record

if TYPE_CHECKING:
    from metarl_cli.meta.symbolic.search import SymbolicPlan


def save_program(
    plan: SymbolicPlan,
    problem: Problem,
    chosen: dict[str, Any],
    path: Path,
    state: dict[str, Any],
    *,
    final: bool,
    checks: tuple[list[str], list[str]] | None = None,
) -> Any:
    """Writes `chosen` as a symbolic artefact (the manifest carries the expression, the
    variable mapping, the round trip and the validity checks)."""
    from metarl_cli.artefacts import MetaLearnerInfo, save_artefact
    from metarl_cli.learned.base import check_form
    from metarl_cli.learned.io import manifest_for

    cfg, algorithm = plan.cfg, problem.teacher.algorithm
    check_form(algorithm, "symbolic", chosen["text"])
    student, teacher = checks if checks is not None else (chosen.get("validity", []), None)
    factor = chosen.get("factor", problem.scale)
    if problem.drift:
        names = problem.data.names
        at_one = {n: f"{v:g}" for n, v in problem.at_identity.items()}
        fx, f1 = ", ".join(names), ", ".join(at_one.get(n, n) for n in names)
        exported_as = (
            f"{factor!r} * (f({fx}) - f({f1})), f the backend expression; the drift is relu of it"
        )
    else:
        exported_as = f"{factor!r} * f(inputs), f the backend expression"
    info = {
        **cfg.model_dump(mode="json"),
        "backend_version": _backend_version(cfg.backend),
        "backend_expression": chosen["backend_expression"],
        "variables": {f"X{i + 1}": n for i, n in enumerate(problem.data.names)},
        "exported_as": exported_as,
        "round_trip": chosen["round_trip"],
        "validity": {"student": student, "teacher": teacher},
        "selected_round": chosen["round"],
        "l2": chosen["l2"],
        "pretty": chosen["pretty"],
        "rounds_done": state["round"],
    }
    if cfg.num_runs > 0:  # the RL scores recorded per round
        info["selection_seeds"] = seed_record(SELECTION, cfg.seed, cfg.num_runs)
    summary = {"l2": float(chosen["l2"])}
    if "rl" in chosen and np.isfinite(chosen["rl"]["score"]):
        summary["rl_score"] = float(chosen["rl"]["score"])
    manifest = manifest_for(
        algorithm,
        "symbolic",
        expression=chosen["text"],
        meta_learner=MetaLearnerInfo(name="symbolic", config=info),
        training_envs=list(problem.teacher.training_envs) or list(cfg.envs),
        generation=int(chosen["round"]),
        fitness_summary=summary,
        parent_digest=problem.teacher.digest,
        notes="symbolic distillation (most accurate program, round "
        f"{chosen['round']}); for reading, with short constants:\n{chosen['pretty']}",
    )
    return save_artefact(path, {}, manifest, force=plan.force or not final)


def _backend_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version("pyoperon" if name == "operon" else "pysr")
    except metadata.PackageNotFoundError:
        return "unknown"
