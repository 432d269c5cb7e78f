"""The multi-process options of `train es` and the start and end of a multi-process run.

The options are also read from METARL_COORDINATOR, METARL_NUM_PROCESSES and METARL_PROCESS_ID
(`metarl launch` sets them) and, when none is given, from a SLURM step with several tasks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Annotated, Any

import typer

from metarl_cli.cli._output import err

PANEL = "Multi-process (docs/distributed.md)"


def _option(envvar: str, help: str) -> Any:
    """A multi-process option, also read from `envvar` (shown in --help)."""
    return typer.Option(envvar=envvar, help=help, rich_help_panel=PANEL, show_envvar=True)


CoordinatorOpt = Annotated[
    str | None,
    _option(
        "METARL_COORDINATOR", "HOST:PORT of process 0 (it listens there) in a multi-process run."
    ),
]
NumProcessesOpt = Annotated[
    int | None, _option("METARL_NUM_PROCESSES", "Processes in the run (one per host, or per GPU).")
]
ProcessIdOpt = Annotated[
    int | None, _option("METARL_PROCESS_ID", "This process, 0 to N-1; 0 writes every file.")
]
PeerTimeoutOpt = Annotated[
    int,
    typer.Option(
        help="Seconds without a heartbeat before a process counts as lost (every other "
        "process then stops with the resume command).",
        rich_help_panel=PANEL,
    ),
]


def cluster(coordinator: str | None, num_processes: int | None, process_id: int | None, t: int):
    """The validated `distributed.Cluster`, or None for a single process (no JAX import)."""
    from metarl_cli.distributed import cluster_from

    return cluster_from(coordinator, num_processes, process_id, peer_timeout=t)


def resume_command(where: Any, command: Callable[[list[str]], str]) -> str:
    """The command that resumes this process: under `metarl launch` the launch; with flags
    this process's own (each process has its own --process-id); under SLURM the job's."""
    from metarl_cli.distributed import ENV_LAUNCH, PEER_TIMEOUT_S

    timeout = (
        [] if where.peer_timeout == PEER_TIMEOUT_S else ["--peer-timeout", str(where.peer_timeout)]
    )
    launch = os.environ.get(ENV_LAUNCH)
    if launch:
        return f"{launch} {command(timeout).removeprefix('metarl ')}"
    if where.source == "slurm":
        return command(timeout)
    flags = ["--num-processes", str(where.num_processes), "--process-id", str(where.process_id)]
    return command(["--coordinator", where.coordinator, *flags, *timeout])


def resume_hint(plan: Any, where: Any, command: Callable[[list[str]], str]) -> str:
    """What a process prints after a lost peer: where the checkpoint is and how to resume."""
    saved = ""
    if where.is_leader and plan.run_dir.checkpoint.exists():
        try:
            generation = plan.run_dir.read_saved()[1]
            saved = f"generation {generation} is checkpointed in {plan.run_dir.path}; "
        except Exception:  # an unreadable checkpoint: resuming will say so
            saved = ""
    return f"{saved}{_how(where)}: {resume_command(where, command)}"


def _how(where: Any) -> str:
    from metarl_cli.distributed import ENV_LAUNCH

    if where.source == "slurm":
        return "resubmit the job with --resume"
    if os.environ.get(ENV_LAUNCH):
        return "resume with"
    return "resume every process with its own command and --resume; this one"


def in_worker() -> bool:
    """Whether this process is the worker of a guard (`cli/_guard.py`)."""
    from metarl_cli.cli._guard import is_worker

    return is_worker()


def guard(where: Any, verbose: bool) -> int:
    """Runs this command as a guarded worker; returns the exit status (`cli/_guard.py`)."""
    from metarl_cli.cli._guard import guard as run_guarded

    return run_guarded(where.process_id, verbose)


def run(
    plan: Any,
    where: Any,
    lead: Callable[[Any], None],
    command: Callable[[list[str]], str],
) -> None:
    """Joins the run; process 0 calls `lead(peers)` (the ordinary run, its population sliced
    over the processes), the others train the slices they are sent until it ends. `command`
    spells the resume command with extra flags (`train._resume_command`)."""
    from metarl_cli import distributed
    from metarl_cli.cli._guard import become_worker, is_worker
    from metarl_cli.errors import Interrupted
    from metarl_cli.meta.es import multihost

    distributed.set_resume_hint(lambda: resume_hint(plan, where, command))
    if is_worker():
        run_dir = str(plan.run_dir.path) if where.is_leader else None
        resume = resume_command(where, command)
        become_worker({"resume": resume, "how": _how(where), "run_dir": run_dir})
    peers = distributed.join(where)
    if not where.is_leader:
        from metarl_cli.rl.parallel import enable_compilation_cache

        enable_compilation_cache()
        err.print(
            f"process {where.process_id} of {where.num_processes}: following process 0 (which "
            "writes every file)"
        )
        try:
            served = _ended(peers, lambda: multihost.serve(plan, peers))
        except KeyboardInterrupt:
            err.print(f"process {where.process_id}: interrupted (process 0 keeps the checkpoint)")
            raise
        err.print(f"process {where.process_id}: done ({served} slices trained)")
        return

    def leader() -> None:
        try:
            multihost.handshake(plan, peers, distributed.STARTUP_S)
            lead(peers)
        except BaseException as e:
            if not isinstance(e, distributed.PeerLost):
                stopped = isinstance(e, KeyboardInterrupt | Interrupted)
                status = "interrupted" if stopped else "error"
                multihost.stop(peers, status, " ".join(f"{type(e).__name__}: {e}".split()))
            raise
        multihost.stop(peers)

    _ended(peers, leader)


def _ended(peers: Any, body: Callable[[], Any]) -> Any:
    """`body()`, then the runtime's shutdown in step with the others; a lost peer ends this
    process at once instead (its shutdown would wait for the lost one)."""
    from metarl_cli import distributed

    try:
        result = body()
    except distributed.PeerLost as e:
        distributed.exit_lost(e)
    except BaseException:
        distributed.leave()
        raise
    distributed.leave()
    return result
