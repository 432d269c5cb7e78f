"""What a run adds up to: token and time totals, the cost limit, the replay check, the artefact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metarl_cli.meta.llm.client import cost_usd
from metarl_cli.meta.llm.state import RunState
from metarl_cli.seeds import SELECTION, record

if TYPE_CHECKING:
    from metarl_cli.meta.llm.loop import DiscoverPlan


def totals(state: RunState, price: tuple[float, float] | None) -> dict[str, Any]:
    """Tokens, estimated cost (None when unknown) and time spent, over all sessions."""
    out: dict[str, Any] = {"prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
    for key in ("model_s", "validation_s", "evaluation_s"):
        out[key] = sum(e.get("times", {}).get(key, 0.0) for e in state.archive)
    for e in state.candidates:
        usage = e.get("usage") or {}
        out["prompt_tokens"] += usage.get("prompt_tokens") or 0
        out["completion_tokens"] += usage.get("completion_tokens") or 0
        cost = 0.0 if e.get("replayed") else cost_usd(usage, price)
        known = cost is not None and out["cost_usd"] is not None
        out["cost_usd"] = out["cost_usd"] + cost if known else None
    return out


def over_budget(plan: DiscoverPlan, state: RunState) -> str | None:
    """Why the next call would pass --max-cost (an estimate: the whole conversation is resent
    and the answer is assumed as long as the longest so far), else None."""
    if plan.cfg.max_cost is None or plan.cfg.replay is not None:
        return None
    spent = totals(state, plan.price)["cost_usd"] or 0.0
    chars = sum(len(m["content"]) for m in state.messages)
    outs = [(e.get("usage") or {}).get("completion_tokens") or 0 for e in state.candidates]
    nxt = cost_usd({"prompt_tokens": chars // 4, "completion_tokens": max(outs, default=2000)},
                   plan.price) or 0.0  # fmt: skip
    if spent + nxt > plan.cfg.max_cost:
        return (
            f"--max-cost {plan.cfg.max_cost:g} USD: spent about {spent:.4f}, and the next turn "
            f"would cost about {nxt:.4f} more"
        )
    return None


def replay_check(plan: DiscoverPlan, state: RunState) -> dict[str, Any] | None:
    """With --replay: how many statuses and fitness values match the recording's."""
    if plan.cfg.replay is None:
        return None
    try:
        recorded = json.loads(Path(plan.cfg.replay).read_text()).get("archive", [])
    except (OSError, ValueError, AttributeError):
        return None
    by_turn = {e.get("turn"): e for e in recorded if isinstance(e, dict)}
    compared, differences = 0, []
    for e in state.archive:
        old = by_turn.get(e["turn"])
        if old is None or old.get("status") == "pending":
            continue
        compared += 1
        if (old.get("status"), old.get("fitness")) != (e["status"], e.get("fitness")):
            differences.append(
                {
                    "turn": e["turn"],
                    "recorded": [old.get("status"), old.get("fitness")],
                    "now": [e["status"], e.get("fitness")],
                }
            )
    identical = compared - len(differences)
    return {"compared": compared, "identical": identical, "differences": differences}


def write_artefact(plan: DiscoverPlan, state: RunState, best: dict[str, Any]) -> Any:
    """The best candidate as a `code` artefact: its exported StableHLO (verified again here)
    and its source as text; nothing of it runs in this process."""
    from metarl_cli.artefacts import MetaLearnerInfo
    from metarl_cli.learned.io import save_kernel
    from metarl_cli.meta.llm.candidate import exported_kernel

    alg, cfg = plan.algorithm, plan.cfg
    warm = state.archive[0]
    config = {
        "model": cfg.model,
        "base_url": cfg.base_url,
        "turns": state.turns_done(),
        "turn": best["turn"],
        "name": best["name"],
        "thought": best["thought"],
        "fitness": best["fitness"],
        "per_env": best.get("per_env"),
        "warm_start": {"name": warm["name"], "fitness": warm["fitness"]},
        "normaliser": plan.normaliser_kind,
        "selection_seeds": record(SELECTION, cfg.seed, cfg.num_runs),  # every fitness job's
        "discover": cfg.model_dump(mode="json"),
        "run_dir": str(plan.run_dir.path),
    }
    summary = {"fitness": float(best["fitness"]), "warm_start_fitness": float(warm["fitness"])}
    return save_kernel(
        plan.output,
        alg,
        "code",
        best["code"],
        code=exported_kernel(plan, best["exported"]),
        meta_learner=MetaLearnerInfo(name="llm", config=config),
        training_envs=list(cfg.envs),
        generation=best["turn"],
        fitness_summary=summary,
        notes=f"{best['name']} (LLM proposal, turn {best['turn']}): {best['thought']}",
        force=plan.force,
    )
