"""`metarl discover`: an LLM proposes code kernels for a learned algorithm (paper §4.5)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import typer

from metarl_cli.cli._options import AlgoOpt, EnvsOpt, OutputOpt, ResumeOpt, SetOpt
from metarl_cli.cli._output import err, out, print_json, print_normaliser_notes

if TYPE_CHECKING:
    from rich.console import JustifyMethod

ModelOpt = Annotated[str, typer.Option(help="Chat model (the paper used o3-mini).")]
BaseUrlOpt = Annotated[
    str | None, typer.Option(help="OpenAI-compatible server, e.g. http://localhost:8000/v1.")
]
TurnsOpt = Annotated[int, typer.Option(help="Candidates to ask for in total.")]
NumRunsOpt = Annotated[int, typer.Option("--num-runs", "-n", help="PPO seeds per env.")]
TimestepsOpt = Annotated[
    str | None, typer.Option("--timesteps", "-t", help="PPO budget per run, e.g. 1e6.")
]
SeedOpt = Annotated[int, typer.Option(help="Master seed (shared by every candidate).")]
RunDirOpt = Annotated[
    Path | None, typer.Option(help="Conversation and archive (default: OUTPUT.run/).")
]
PromptOpt = Annotated[
    str,
    typer.Option(
        help="improved (default: names the envs and normaliser, states the sandbox's rules, "
        "per-env feedback, rejects invalid drifts before RL) or paper (Supplement D as "
        "printed, 'Fitness: X.' feedback, finiteness and shape checks only: reproduces the "
        "paper)."
    ),
]
UnsafeNoSandboxOpt = Annotated[
    bool,
    typer.Option(
        "--unsafe-no-sandbox",
        help="Run candidates even where the sandbox's confinement (Landlock, network "
        "namespace) is unavailable. Unsafe: model code could then read your files.",
    ),
]
ReplayOpt = Annotated[
    Path | None,
    typer.Option(help="Serve the replies of a recorded conversation.json (no model call)."),
]
MaxCostOpt = Annotated[
    float | None, typer.Option(help="Stop before the estimated spend passes this (USD).")
]
PriceOpt = Annotated[
    str | None,
    typer.Option(help="IN,OUT: USD per million input/output tokens (unlisted models)."),
]
ValidateTimeoutOpt = Annotated[float, typer.Option(help="Seconds a candidate's checks may take.")]
EvalTimeoutOpt = Annotated[
    float | None,
    typer.Option(
        help="Seconds a candidate's RL evaluation may take [default: 300 + env steps / 1000]."
    ),
]
MemoryGbOpt = Annotated[
    float, typer.Option(help="Memory an RL evaluation may allocate (0: no limit).")
]
RequestTimeoutOpt = Annotated[float, typer.Option(help="Seconds per model request.")]
RetriesOpt = Annotated[int, typer.Option(help="Retries of a failed model request.")]
ApiKeyEnvOpt = Annotated[
    str,
    typer.Option(help="Environment variable holding the API key (unset: no key is sent)."),
]
JsonModeOpt = Annotated[
    bool, typer.Option(help="Ask the server for a JSON object (response_format).")
]
ForceOpt = Annotated[bool, typer.Option(help="Overwrite the output and restart a run dir.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary.")]


def discover(
    algo: AlgoOpt,
    envs: EnvsOpt,
    output: OutputOpt,
    model: ModelOpt = "o3-mini",
    base_url: BaseUrlOpt = None,
    turns: TurnsOpt = 30,
    num_runs: NumRunsOpt = 8,
    timesteps: TimestepsOpt = None,
    seed: SeedOpt = 0,
    set_: SetOpt = None,
    run_dir: RunDirOpt = None,
    resume: ResumeOpt = False,
    prompt: PromptOpt = "improved",
    unsafe_no_sandbox: UnsafeNoSandboxOpt = False,
    replay: ReplayOpt = None,
    max_cost: MaxCostOpt = None,
    price: PriceOpt = None,
    validate_timeout: ValidateTimeoutOpt = 60.0,
    eval_timeout: EvalTimeoutOpt = None,
    memory_gb: MemoryGbOpt = 16.0,
    request_timeout: RequestTimeoutOpt = 600.0,
    retries: RetriesOpt = 8,
    api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY",
    json_mode: JsonModeOpt = True,
    force: ForceOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Ask a language model for ALGO's code, check and train every proposal, keep the best."""
    from metarl_cli.config import parse_set
    from metarl_cli.envs import resolve_envs
    from metarl_cli.meta.llm.config import DiscoverConfig
    from metarl_cli.meta.llm.loop import plan_discover

    prices = _prices(price)
    if replay is not None:  # before load_replay: a FIFO would hang it, /dev/zero fill memory
        _check_replay(replay)
    cfg = DiscoverConfig(
        algo=algo, envs=resolve_envs(envs), model=model, base_url=base_url, turns=turns,
        num_runs=num_runs, timesteps=timesteps, overrides=parse_set(set_ or []), seed=seed,
        validate_timeout=validate_timeout, eval_timeout=eval_timeout, memory_gb=memory_gb,
        max_cost=max_cost, price=prices, json_mode=json_mode, request_timeout=request_timeout,
        retries=retries, api_key_env=api_key_env,
        replay=str(replay) if replay is not None else None,
        unsafe_no_sandbox=unsafe_no_sandbox,
        prompt=cast(Literal["improved", "paper"], prompt),  # DiscoverConfig validates it
    )  # fmt: skip
    plan = plan_discover(cfg, output, run_dir=run_dir, resume=resume, force=force)
    source = (
        f"replaying {replay}"
        if replay
        else f"model {model}" + (f" at {base_url}" if base_url else "")
    )
    result = _run(plan, cfg, source)
    if json_:
        print_json(
            {
                "output": str(plan.output),
                "best": {k: result.best.get(k) for k in ("turn", "name", "fitness", "thought")},
                "stopped": result.stopped,
                "totals": result.totals,
                "replay_check": result.replay_check,
                "archive": [_row(e) for e in result.state.archive],
            }
        )
        return
    _summary(result, plan)


def _prices(price: str | None) -> tuple[float, float] | None:
    """--price IN,OUT as two floats."""
    from metarl_cli.errors import ConfigError

    if price is None:
        return None
    try:
        prices = tuple(float(x) for x in price.split(","))
    except ValueError:
        prices = ()
    if len(prices) != 2:
        raise ConfigError(f"--price takes IN,OUT in USD per million tokens, got {price!r}")
    return prices[0], prices[1]


def _check_replay(replay: Path) -> None:
    from metarl_cli.errors import ConfigError
    from metarl_cli.fsutil import read_regular_file

    read_regular_file(replay, what="replay file", max_bytes=1 << 28, error=ConfigError)


def _run(plan: Any, cfg: Any, source: str) -> Any:
    """Run the conversation with a line per turn and a spinner on stderr."""
    from metarl_cli.meta.llm.loop import discover as run_discover

    done = plan.state.turns_done() if plan.state else 0
    err.print(
        f"discover {plan.algorithm.name} on {', '.join(cfg.envs)} with {source}: "
        f"{cfg.turns} turns ({done} done), run dir {plan.run_dir.path}"
    )
    from metarl_cli.config import build_config

    print_normaliser_notes(
        build_config(e, timesteps=cfg.timesteps, overrides=cfg.overrides) for e in cfg.envs
    )
    status = err.status("starting", spinner="dots")
    status.start()
    try:
        return run_discover(plan, on_event=_Progress(status, cfg.turns))
    finally:
        status.stop()


def _summary(result: Any, plan: Any) -> None:
    _table(result)
    t = result.totals
    cost = (
        "unknown (no price for this model; pass --price)"
        if t["cost_usd"] is None
        else (f"about ${t['cost_usd']:.4f}")
    )
    out.print(
        f"tokens {t['prompt_tokens']:,} in / {t['completion_tokens']:,} out, cost {cost}; time: "
        f"model {t['model_s']:.1f}s, validation {t['validation_s']:.1f}s, "
        f"RL evaluation {t['evaluation_s']:.1f}s"
    )
    if result.stopped:
        out.print(f"[yellow]stopped early:[/] {result.stopped}")
    if result.replay_check is not None:
        rc = result.replay_check
        out.print(f"replay: {rc['identical']} of {rc['compared']} turns reproduced exactly")
    best = result.best
    out.print(f"wrote {plan.output}: {best['name']} (turn {best['turn']}, fitness "
              f"{best['fitness']:.4f})")  # fmt: skip


def _row(e: dict[str, Any]) -> dict[str, Any]:
    keys = ("turn", "status", "name", "fitness", "error", "usage", "times")
    return {k: e.get(k) for k in keys}


def _table(result: Any) -> None:
    from rich.table import Table

    table = Table(title="candidates (turn 0: the warm start)")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("turn", "right"), ("name", "left"), ("status", "left"), ("fitness", "right"),
        ("model s", "right"), ("check s", "right"), ("RL s", "right"), ("error", "left"),
    )  # fmt: skip
    for col, justify in columns:
        table.add_column(col, justify=justify)
    for e in result.state.archive:
        times = e.get("times", {})
        fit = e.get("fitness")
        table.add_row(
            str(e["turn"]),
            e.get("name") or "-",
            e["status"],
            "-" if fit is None else f"{fit:.4f}",
            *(_secs(times, k) for k in ("model_s", "validation_s", "evaluation_s")),
            (e.get("error") or "")[:80],
        )
    out.print(table)


def _secs(times: dict[str, float], key: str) -> str:
    return f"{times[key]:.1f}" if key in times else "-"


class _Progress:
    """One line per turn on stderr, a spinner while waiting."""

    def __init__(self, status, turns: int) -> None:
        import time

        self.status, self.turns, self.best = status, turns, None
        self.clock, self.started, self.done = time.monotonic, time.monotonic(), 0

    def _times(self, turn: int) -> str:
        """Elapsed time and, from the mean time of this session's turns, the time left."""
        from metarl_cli.cli._progress import duration_text

        elapsed = self.clock() - self.started
        eta = ""
        if self.done:
            eta = f", ETA {duration_text(elapsed / self.done * (self.turns - turn + 1))}"
        return f" ({duration_text(elapsed)}{eta})"

    def __call__(self, kind: str, p: dict[str, Any]) -> None:
        if kind == "warm_start_begin":
            self.status.update(f"evaluating the warm start {p['name']}")
        elif kind == "warm_start":
            err.print(f"warm start {p['name']}: fitness {p['fitness']:.4f}")
        elif kind == "model_begin":
            where = f"turn {p['turn']}/{self.turns}"
            self.status.update(f"{where}: waiting for the model{self._times(p['turn'])}")
        elif kind == "validate_begin":
            where = f"turn {p['turn']}/{self.turns}"
            self.status.update(f"{where}: checking and training{self._times(p['turn'])}")
        elif kind == "turn":
            self.done += 1
            if p["status"] == "evaluated":
                self.best = max(self.best or p["fitness"], p["fitness"])
                what = f"fitness {p['fitness']:.4f} (best {self.best:.4f})"
            else:
                what = f"{p['status']}: {(p.get('error') or '')[:100]}"
            t = p.get("times", {})
            err.print(
                f"turn {p['turn']}/{self.turns} {p.get('name') or '-'}: {what} "
                f"[model {t.get('model_s', 0):.1f}s, checks {t.get('validation_s', 0):.1f}s, "
                f"RL {t.get('evaluation_s', 0):.1f}s]"
            )
        elif kind == "stopped":
            err.print(f"stopping: {p['reason']}")
        elif kind == "api_key":  # one plain line: the host comes from the user's --base-url
            err.print(p["notice"], markup=False, highlight=False, soft_wrap=True)
