"""Loading result files for a report: validation, labels, and grouping into studies.

A *study* is what one figure of the paper shows (Figures 2-6): every kernel of one learned
algorithm meta-trained on one set of environments (the black-box ES kernel, its distilled and
symbolic children, the LLM's proposal), plus the hand-designed baselines for reference.
In-distribution environments are the study's training environments; the rest are
out-of-distribution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from metarl_cli.artefacts import artefact_digest, load_artefact
from metarl_cli.errors import EvaluationError
from metarl_cli.learned.base import display_name
from metarl_cli.results import EnvResult, EvalResult, provenance, read_result

METHOD_NAMES = {
    "es": "Black-Box Learning",
    # LPG's black-box learning is by meta-gradients (paper §4.1, Figure 5's "Black-Box").
    "metagrad": "Black-Box Learning",
    "symbolic": "Symbolic Distillation",
    "llm": "LLM Proposal",
    "discover": "LLM Proposal",
    "import": "Imported",
}
_DISTIL = ("distil", "distill", "distillation")
_SHORT = {"brax/walker2d": "walker", "craftax/classic": "craftax"}
_SUITE_SETS = {
    frozenset(
        {"minatar/asterix", "minatar/breakout", "minatar/freeway", "minatar/spaceinvaders"}
    ): "MinAtar",
    frozenset({"brax/ant", "brax/humanoid", "brax/hopper", "brax/walker2d"}): "Brax",
}


def env_name(env_id: str) -> str:
    """The short name the paper's Supplement B uses ("breakout", "walker", "craftax")."""
    return _SHORT.get(env_id, env_id.split("/")[-1])


def is_gridworld_set(env_ids: tuple[str, ...] | list[str]) -> bool:
    """Whether every env is a gridworld level distribution (LPG's Figure 5, Supplement F)."""
    return bool(env_ids) and all(e.startswith("gridworld/") for e in env_ids)


def env_set_name(env_ids: tuple[str, ...] | list[str]) -> str:
    """ "Ant", "MinAtar", "Grids" (gridworld distributions, as the paper's Figures 5 and
    15-17 say), or a list of short names."""
    named = _SUITE_SETS.get(frozenset(env_ids))
    if named:
        return named
    if is_gridworld_set(env_ids):
        return "Grids"
    names = [env_name(e) for e in env_ids]
    return names[0].capitalize() if len(names) == 1 else ", ".join(names)


@dataclass
class Entry:
    """One result file in a report."""

    path: Path
    result: EvalResult
    label: str = ""
    method: str = ""  # display name of how the kernel was made ("Black-Box Learning", ...)

    @property
    def target(self):
        """The evaluated target record (baseline or artefact) of this result."""
        return self.result.target

    @property
    def is_baseline(self) -> bool:
        """Whether the result is of a hand-designed baseline."""
        return self.result.target.kind == "baseline"

    @property
    def is_black_box(self) -> bool:
        """Whether the kernel was meta-learned by black-box learning (ES, or LPG's
        meta-gradients)."""
        return self.result.target.meta_learner in ("es", "metagrad")

    def env(self, env_id: str) -> EnvResult:
        """This result's record of environment `env_id` (KeyError when absent)."""
        for e in self.result.envs:
            if e.env_id == env_id:
                return e
        raise KeyError(env_id)


@dataclass
class Study:
    """The kernels of one algorithm meta-trained on one env set, plus the baselines."""

    algorithm: str | None
    training_envs: tuple[str, ...]
    entries: list[Entry] = field(default_factory=list)

    @property
    def title(self) -> str:
        """The study's heading: the algorithm's name and where it was trained."""
        if self.algorithm is None:
            return "Baselines"
        name = display_name(self.algorithm)
        if not self.training_envs:
            return f"{name} (no training environments recorded)"
        return f"{name}, meta-trained on {env_set_name(self.training_envs)}"

    @property
    def slug(self) -> str:
        """The study's file-name part (ASCII, stable across runs)."""
        if self.algorithm is None:
            return "baselines"
        where = "-".join(env_name(e) for e in self.training_envs) or "untrained"
        if frozenset(self.training_envs) in _SUITE_SETS:
            where = env_set_name(self.training_envs).lower()
        return f"{self.algorithm}-{where}"

    def panels(self, env_ids: list[str]) -> list[tuple[str, list[str]]]:
        """[(title, env ids)]: In Distribution / Out Of Distribution, empty panels left out."""
        if not self.training_envs:
            return [("All Environments", list(env_ids))]
        where = env_set_name(self.training_envs)
        ind = [e for e in env_ids if e in self.training_envs]
        ood = [e for e in env_ids if e not in self.training_envs]
        out = []
        if ind:
            out.append((f"In Distribution ({where})", ind))
        if ood:
            out.append((f"Out Of Distribution ({where})", ood))
        return out


def load_entries(paths: list[Path], labels: dict[str, str] | None = None) -> list[Entry]:
    """Reads and validates every result file, checks they can be compared, labels them.

    A directory stands for the `*.json` files in it.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(p.glob("*.json")) if p.is_dir() else [p])
    if not files:
        raise EvaluationError("no result files given; pass e.g. runs/*.eval.json")
    entries = [_hydrate(Entry(p, read_result(p))) for p in files]
    check_comparable(entries)
    _label(entries, labels or {})
    return entries


def artefact_path(entry: Entry) -> Path | None:
    """The evaluated artefact file, if it is still where the result says (or beside the result
    file) with the same digest."""
    t = entry.target
    if t.kind != "artefact" or not t.path or not t.digest:
        return None
    recorded = Path(t.path)
    for cand in (recorded, entry.path.parent / recorded, entry.path.parent / recorded.name):
        try:
            if cand.is_file() and artefact_digest(cand) == t.digest:
                return cand
        except OSError:
            continue
    return None


def _hydrate(entry: Entry) -> Entry:
    """Fills the provenance older result files lack from the artefact, when it is found."""
    t = entry.target
    if t.kind != "artefact" or t.meta_learner is not None or t.training_envs:
        return entry
    path = artefact_path(entry)
    if path is None:
        return entry
    manifest, tensors = load_artefact(path)
    target = t.model_copy(update=provenance(manifest, tensors))
    entry.result = entry.result.model_copy(update={"target": target})
    return entry


def check_comparable(entries: list[Entry]) -> None:
    """Refuses results that would be merged wrongly: the same file twice, different
    environments (suites), different budgets on an environment, or runs on a seed stream
    other than meta-testing's (`seeds.py`)."""
    seen: dict[tuple, Path] = {}
    for e in entries:
        t = e.result.target
        key = (t.kind, t.digest or t.name, e.result.seed, e.result.num_runs)
        if key in seen:
            raise EvaluationError(
                f"{e.path} and {seen[key]} are results of the same target and seed; give each once"
            )
        seen[key] = e.path
        if e.result.stream not in (None, "meta_test"):  # seeds.META_TEST; None: older files
            raise EvaluationError(
                f"{e.path} was evaluated on the {e.result.stream!r} seed stream, whose seeds "
                "select checkpoints; a report meta-tests: re-run `metarl evaluate` without --stream"
            )
        if not e.result.envs:
            raise EvaluationError(f"{e.path} holds no environments")
    first = entries[0]
    envs0 = [x.env_id for x in first.result.envs]
    for e in entries[1:]:
        envs = [x.env_id for x in e.result.envs]
        if set(envs) != set(envs0):
            raise EvaluationError(
                f"results for different suites: {first.path} has {_suite(first, envs0)} but "
                f"{e.path} has {_suite(e, envs)}; report results of one suite together"
            )
        for env_id in envs0:
            a, b = first.env(env_id).env_steps_per_run, e.env(env_id).env_steps_per_run
            if a != b:
                raise EvaluationError(
                    f"results with different budgets on {env_id}: {first.path} ran {a:,} steps "
                    f"per run, {e.path} ran {b:,}; evaluate with the same --timesteps(-scale)"
                )


def _suite(e: Entry, envs: list[str]) -> str:
    where = f"suite {e.result.suite}: " if e.result.suite else ""
    return f"{where}{', '.join(envs)}"


def _label(entries: list[Entry], labels: dict[str, str]) -> None:
    by_digest = {e.target.digest: e for e in entries if e.target.digest}
    for e in entries:
        t = e.target
        if e.is_baseline:
            e.method = f"{t.name.upper() if len(t.name) <= 4 else t.name} (hand-designed)"
        elif t.meta_learner in _DISTIL:
            e.method = _distil_name(e, by_digest.get(t.parent_digest))
        else:
            e.method = METHOD_NAMES.get(t.meta_learner or "", t.meta_learner or "Hand-written")
        e.label = e.method
    for e in entries:  # same method twice in one study: add the artefact (or result) name
        twins = [o for o in entries if o.method == e.method and _study_key(o) == _study_key(e)]
        if len(twins) > 1:
            names = [o.target.name for o in twins]
            unique = names.count(e.target.name) == 1
            e.label = f"{e.method} [{e.target.name if unique else e.path.name}]"
    for e in entries:
        for key in (str(e.path), e.path.name, e.target.name):
            if key in labels:
                e.label = labels[key]


def _distil_name(e: Entry, parent: Entry | None) -> str:
    """Same-size or smaller, by parameter count against the teacher (its result, else the
    sizes the distillation recorded)."""
    mt = e.target.meta_train
    mine = e.target.num_parameters or mt.get("student_params")
    theirs = parent.target.num_parameters if parent else mt.get("teacher_params")
    if mine is None or theirs is None:
        return "Distillation"
    if mine == theirs:
        return "Same-Size Distillation"
    return "Smaller Distillation" if mine < theirs else "Larger Distillation"


def _study_key(e: Entry) -> tuple:
    t = e.target
    return (t.algorithm, tuple(sorted(t.training_envs)))


def group_studies(entries: list[Entry]) -> list[Study]:
    """One study per (algorithm, training envs); baselines join every study (or form their
    own when there is no artefact)."""
    studies: dict[tuple, Study] = {}
    for e in entries:
        if e.is_baseline:
            continue
        key = _study_key(e)
        if key not in studies:
            studies[key] = Study(e.target.algorithm, tuple(e.target.training_envs))
        studies[key].entries.append(e)
    baselines = [e for e in entries if e.is_baseline]
    if not studies:
        return [Study(None, (), baselines)]
    for s in studies.values():
        s.entries.extend(baselines)
    return list(studies.values())
