"""The meta-learner scaffold: plan, then run with resume, then an artefact.

Every meta-learner (`train es`, `distil`, `symbolic`, `discover`) has the same three steps, and
the CLI drives them the same way:

1. **plan** (`plan_es`, `plan_distil`, `plan_symbolic`, `plan_discover`): validate everything
   (config, envs, normalisers, seeds, the output, the run dir and its lock) and return a
   `MetaPlan`, without writing, compiling or calling anything. A bad input fails here, in one
   line, before any work.
2. **run** (`train_es`, `distil`, `run_symbolic`, `run_discover`): prepare the run dir
   (`RunDirBase.prepare`: `--force` clean-up, lock), resume from its checkpoint when
   `plan.resume_from` says so, report progress through a callback, checkpoint atomically, and
   raise `errors.Interrupted` (with its resume command, mapped once in `cli/app.py`) on Ctrl-C.
3. **artefact**: write `plan.output` with a manifest naming the meta-learner, its settings, the
   seeds it selected on (`seeds.py`) and its costs.

`META_LEARNERS` names each one's plan type; `tests/test_protocol.py` checks that every plan has
the shared fields, so a new meta-learner is one package under `meta/` plus one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from metarl_cli.meta.rundir import RunDirBase


@runtime_checkable
class MetaPlan(Protocol):
    """What every checked meta-learning run holds (the fields the CLI and the scaffold use)."""

    cfg: Any  # the meta-learner's frozen pydantic config
    output: Path  # the artefact to write
    run_dir: RunDirBase  # checkpoints, metrics, lock
    force: bool  # whether the output may be overwritten and a non-empty run dir restarted


@dataclass(frozen=True)
class MetaLearner:
    """One meta-learner: its id (as recorded in manifests), command and plan type's home."""

    name: str
    command: str
    plan_type: str  # "module:Class"


META_LEARNERS = (
    MetaLearner("es", "metarl train es", "metarl_cli.meta.es.train:ESPlan"),
    MetaLearner("distil", "metarl distil", "metarl_cli.meta.distil.plan:DistilPlan"),
    MetaLearner("symbolic", "metarl symbolic", "metarl_cli.meta.symbolic.search:SymbolicPlan"),
    MetaLearner("llm", "metarl discover", "metarl_cli.meta.llm.loop:DiscoverPlan"),
)
