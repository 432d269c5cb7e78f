"""The discover loop (paper §4.5; DiscoPOP-style, Lu et al., 2024, arXiv:2406.08414).

`plan_discover` checks everything before any model call or RL run: the algorithm has a code
form, every env config builds, the fitness normalisers exist, the output can be written, the
run dir is fresh (or `--resume`), a key or a local server or a recording is available, and a
`--max-cost` has a price. `discover` then

1. evaluates the warm start (the algorithm's `warm_start`: PPO clip, SGD or Adam) and puts it,
   with its fitness, in the first user message, as the paper does;
2. per turn: asks the model (or the recording), parses its JSON, checks the AST here (a parse,
   no execution), validates the function in a sandboxed child, measures its fitness in another
   one, and answers with the fitness or a precise error; the state is saved after the reply and
   after the answer;
3. writes the best evaluated candidate as a `code` artefact (meta-learner `llm`, its name and
   thought in the manifest).

Fitness is the mean over `--envs` of (mean final return over `--num-runs` seeds) divided by the
env's return of the warm start's reference as the original code measured it: PPO with Adam
(`ppo_normaliser`) for LPO and recurrent OPEN, PPO with tuned SGD (`sgd_normaliser`) for
OPEN-FF and No Features (reference §7.1). So 1.0 is about the reference; every candidate uses
the same seeds, from the selection seed stream (`seeds.py`), never those `metarl evaluate`
meta-tests with.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metarl_cli.errors import ConfigError, Interrupted
from metarl_cli.meta.llm import prompts
from metarl_cli.meta.llm.candidate import process, warm_start
from metarl_cli.meta.llm.client import (
    ReplayExhausted,
    find_api_key,
    load_replay,
    no_key,
    price_for,
)
from metarl_cli.meta.llm.config import DiscoverConfig, DiscoverError, config_differences
from metarl_cli.meta.llm.outcome import over_budget, replay_check, totals, write_artefact
from metarl_cli.meta.llm.state import DiscoverRunDir, RunState
from metarl_cli.meta.normalisers import check_normalisers, divisors
from metarl_cli.seeds import SELECTION, run_key_data

__all__ = ["DiscoverError", "DiscoverPlan", "DiscoverResult", "discover", "plan_discover"]

_REFERENCE = {"ppo": "PPO with Adam", "sgd": "PPO with tuned SGD"}


@dataclass
class DiscoverPlan:
    """A checked run; nothing has been written or called yet."""

    cfg: DiscoverConfig
    algorithm: Any
    normalisers: dict[str, float]
    normaliser_kind: str
    output: Path
    run_dir: DiscoverRunDir
    state: RunState | None  # the saved run when resuming
    force: bool
    api_key: str | None
    price: tuple[float, float] | None
    lr: float  # the first env's tuned lr, passed to the validation's sample call
    eval_timeout: float = 0.0  # seconds a candidate's RL evaluation may run (see below)


def plan_discover(
    cfg: DiscoverConfig,
    output: str | Path,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
) -> DiscoverPlan:
    """Validates a run without writing, calling a model or compiling anything."""
    from metarl_cli.config import build_config
    from metarl_cli.learned.base import get_algorithm

    algorithm = get_algorithm(cfg.algo)
    if "code" not in algorithm.forms:
        why = getattr(algorithm, "code_refusal", "")  # the paper's reason, where it gives one
        raise ConfigError(
            f"{algorithm.name} has no code form, so an LLM cannot propose one"
            + (f" ({why})" if why else "")
        )
    configs = {
        e: build_config(e, timesteps=cfg.timesteps, overrides=cfg.overrides) for e in cfg.envs
    }
    kind = algorithm.reference_baseline
    known = {e: getattr(c, f"{kind}_normaliser") for e, c in configs.items()}
    check_normalisers(known, kind=kind.upper(), fix="discover on it alone")
    normalisers = divisors(known, kind=kind.upper())
    run_key_data(SELECTION, cfg.seed, cfg.num_runs)  # a bad --seed fails before any call
    # The output is writable; the run dir is checked and, if it exists, locked (`rundir.py`).
    output, rd = DiscoverRunDir.for_output(output, run_dir, resume=resume, force=force)
    api_key = find_api_key(name=cfg.api_key_env)
    if cfg.replay is None and cfg.base_url is None and api_key is None:
        raise ConfigError(no_key(cfg.api_key_env))
    price = price_for(cfg.model, cfg.price)
    if cfg.max_cost is not None and price is None and cfg.replay is None:
        raise ConfigError(
            f"--max-cost needs a price, and {cfg.model!r} is not in the price table; pass "
            "--price IN,OUT (USD per million input and output tokens)"
        )
    if cfg.replay is not None:
        load_replay(cfg.replay)  # fail now on a bad file
    state = rd.read_state() if resume else None  # --force then only means: overwrite -o
    diffs = [] if state is None else config_differences(state.config, cfg)
    if state is not None and (state.config.get("algo") != cfg.algo or diffs):
        raise ConfigError(
            f"cannot resume {rd.path}: the run's fitness settings differ "
            f"({'; '.join(diffs)}); use the original flags or another --run-dir"
        )
    first = next(iter(configs.values()))  # a drift has no lr input; optimisers get theirs
    lr = first.l2o_lr if "var" in algorithm.code_parameters else first.sgd_lr
    return DiscoverPlan(
        cfg,
        algorithm,
        normalisers,
        kind,
        output,
        rd,
        state,
        force,
        api_key,
        price,
        float(lr),
        eval_timeout=cfg.eval_timeout or eval_timeout_for(configs.values(), cfg.num_runs),
    )


# A candidate's RL evaluation may take this long: a fixed allowance for compilation plus the
# env steps of all its runs at a rate well below what this machine's slowest preset reaches
# (Brax on 2 CPU cores: ~4k steps/s), so the limit grows with the budget.
EVAL_TIMEOUT_BASE_S = 300.0
EVAL_TIMEOUT_STEPS_PER_S = 1000.0


def eval_timeout_for(configs: Any, num_runs: int) -> float:
    """The default `--eval-timeout`: proportional to the evaluation's env steps."""
    steps = sum(c.total_timesteps for c in configs) * num_runs
    return EVAL_TIMEOUT_BASE_S + steps / EVAL_TIMEOUT_STEPS_PER_S


@dataclass
class DiscoverResult:
    state: RunState
    best: dict[str, Any]
    manifest: Any
    stopped: str | None
    totals: dict[str, Any]
    replay_check: dict[str, Any] | None


def fitness_text(plan: DiscoverPlan) -> str:
    envs = ", ".join(plan.cfg.envs)
    return (
        f"The fitness is the final return of RL training with your function on {envs}, divided "
        f"by the return of {_REFERENCE[plan.normaliser_kind]} on the same environment and "
        "averaged over environments, so 1.0 is about the reference; higher is better."
    )


def _chat(plan: DiscoverPlan) -> Any:
    if plan.cfg.replay is not None:
        return load_replay(plan.cfg.replay)
    from metarl_cli.meta.llm.client import OpenAIChat

    return OpenAIChat(
        plan.cfg.model,
        base_url=plan.cfg.base_url,
        api_key=plan.api_key,
        timeout_s=plan.cfg.request_timeout,
        retries=plan.cfg.retries,
        json_mode=plan.cfg.json_mode,
        key_env=plan.cfg.api_key_env,
    )


def discover(
    plan: DiscoverPlan, on_event: Callable[[str, dict[str, Any]], None] | None = None
) -> DiscoverResult:
    """Runs (or continues) the conversation and writes the best candidate as an artefact.

    Raises:
        DiscoverError: the warm start cannot be evaluated, or no candidate was evaluated.
        LLMError: the model server failed past the retries (the run is saved: resume it).
        Interrupted: on Ctrl-C (the run is saved after every reply and every answer).
    """

    def emit(kind: str, payload: dict[str, Any]) -> None:
        if on_event is not None:
            on_event(kind, payload)

    rd = plan.run_dir
    rd.prepare(resume=plan.state is not None, force=plan.force)  # locked until the process ends
    state = plan.state or RunState(config=plan.cfg.model_dump(mode="json"))
    state.config = plan.cfg.model_dump(mode="json")
    state.sessions += 1
    try:
        return _converse(plan, state, emit)
    except KeyboardInterrupt:
        raise Interrupted(f"turn {state.turns_done()}", f"the run is saved in {rd.path}") from None


def _converse(
    plan: DiscoverPlan, state: RunState, emit: Callable[[str, dict[str, Any]], None]
) -> DiscoverResult:
    """The warm start, then turns until `--turns` are done or a budget stops the run."""
    cfg, rd = plan.cfg, plan.run_dir
    chat = _chat(plan)
    if hasattr(chat, "key_notice"):  # before the first request: who gets the key
        emit("api_key", {"notice": chat.key_notice()})
    if hasattr(chat, "check_reachable"):  # seconds, not after the warm start's RL run
        chat.check_reachable()
    if not state.archive:
        warm = warm_start(plan, emit)
        state.archive.append(warm)
        system = prompts.system_prompt(plan.algorithm, fitness_text(plan), cfg.prompt)
        state.messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": prompts.results_message([warm], cfg.prompt)},
        ]
        rd.save(state)
    stopped = None
    while state.turns_done() < cfg.turns:
        turn = state.turns_done() + 1
        entry = state.pending()
        if entry is None:
            stopped = over_budget(plan, state)
            if stopped:
                break
            emit("model_begin", {"turn": turn})
            try:
                reply = chat.complete(state.messages, turn)
            except ReplayExhausted:
                stopped = f"the recording {cfg.replay} has no reply for turn {turn}"
                break
            entry = {
                "turn": turn,
                "status": "pending",
                "reply": reply.content,
                "usage": reply.usage,
                "attempts": reply.attempts,
                "request_errors": reply.errors,
                "replayed": reply.replayed,
                "times": {"model_s": reply.model_s},
            }
            state.messages.append({"role": "assistant", "content": reply.content})
            state.archive.append(entry)
            rd.save(state)
        emit("validate_begin", {"turn": turn})
        t = time.perf_counter()
        process(plan, entry)
        times = entry["times"]
        times["total_s"] = times.get("model_s", 0.0) + time.perf_counter() - t
        state.messages.append({"role": "user", "content": entry["feedback"]})
        rd.save(state)
        emit("turn", entry)
    state.stopped = stopped
    rd.save(state)
    if stopped:
        emit("stopped", {"reason": stopped})
    best = state.best()
    if best is None:
        raise DiscoverError(
            f"no candidate was evaluated in {state.turns_done()} turn(s), so there is nothing to "
            f"write; the run is saved in {rd.path}: --resume with more --turns"
        )
    manifest = write_artefact(plan, state, best)
    return DiscoverResult(
        state, best, manifest, stopped, totals(state, plan.price), replay_check(plan, state)
    )
