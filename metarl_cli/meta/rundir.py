"""What every meta-learner's run directory shares: the checks before anything is written, the
files `--force` may remove, `metrics.jsonl`, atomic safetensors checkpoints with a JSON header,
the refusal to resume with a different config, and the lock that keeps a second process out of
a run dir in use (`fsutil.lock_run_dir`, taken when the run is checked and held to its end).

Each meta-learner (`meta/es/rundir.py`, `meta/distil/rundir.py`, `meta/symbolic/rundir.py`,
`meta/llm/state.py` for discover) subclasses `RunDirBase` and adds its own state: what is saved
is theirs, how it is saved safely is here. The two counted in one unit (ES generations,
meta-gradient steps) share `CountedRunDir` and a `RunProgress` record.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
from pydantic import BaseModel

from metarl_cli.errors import ArtefactError, ConfigError, MetarlError
from metarl_cli.fsutil import LOCK_NAME, atomic_write_bytes, atomic_write_text, lock_run_dir

ABSENT = "<absent>"


def config_differences(
    saved: dict[str, Any], now: dict[str, Any], ignore: Iterable[str] = ()
) -> list[str]:
    """Fields whose values differ (other than `ignore`), as 'name: saved -> now', sorted."""
    skip = set(ignore)
    return [
        f"{k}: {saved.get(k, ABSENT)!r} -> {now.get(k, ABSENT)!r}"
        for k in sorted(set(saved) | set(now))
        if k not in skip and saved.get(k, ABSENT) != now.get(k, ABSENT)
    ]


def refuse_changed_config(path: Path, diffs: list[str]) -> None:
    """Raises the one-line `ConfigError` of a resume whose config differs (no-op if none)."""
    if diffs:
        raise ConfigError(
            f"cannot resume {path}: the config differs from the checkpoint's "
            f"({'; '.join(diffs)}); use the original flags or another --run-dir"
        )


def restore_leaves(
    tensors: dict[str, np.ndarray],
    prefix: str,
    shapes: list[list[int]],
    template_leaves: list[Any],
    mismatch: Exception,
) -> list[np.ndarray]:
    """Leaves `prefix/000`, `prefix/001`, ... reshaped to `shapes` (safetensors stores 0-d
    tensors as (1,)), checked against the template's sizes, dtypes and shapes."""
    if len(shapes) != len(template_leaves):
        raise mismatch
    leaves = []
    for i, (tmpl, shape) in enumerate(zip(template_leaves, shapes, strict=True)):
        arr, tmpl = tensors.get(f"{prefix}/{i:03d}"), np.asarray(tmpl)
        if arr is None or arr.size != tmpl.size or arr.dtype != tmpl.dtype:
            raise mismatch
        arr = arr.reshape(shape)
        if arr.shape != tmpl.shape:
            raise mismatch
        leaves.append(arr)
    return leaves


def leaf_tensors(prefix: str, leaves: list[Any]) -> tuple[dict[str, np.ndarray], list[list[int]]]:
    """({`prefix/000`: leaf, ...}, their shapes): the inverse of `restore_leaves`."""
    arrays = [np.asarray(x) for x in leaves]
    tensors = {f"{prefix}/{i:03d}": np.ascontiguousarray(x) for i, x in enumerate(arrays)}
    return tensors, [list(x.shape) for x in arrays]  # before ascontiguousarray makes 0-d 1-d


class RunDirBase:
    """A run directory, checked before anything is written.

    Subclasses set `FORMAT` and `VERSION` (their checkpoint's identity), `HEADER_KEY` (the
    header field holding the checkpoint's JSON state), `FIXED` (their file names) and `GLOBS`
    (their numbered files), which `ours()` lists for `--force`.
    """

    FORMAT = "metarl-checkpoint"
    VERSION = "1"
    HEADER_KEY = "state"
    FIXED: tuple[str, ...] = ("config.json", "checkpoint.safetensors", "metrics.jsonl")
    GLOBS: tuple[str, ...] = ()

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()

    @classmethod
    def for_output(
        cls, output: str | Path, run_dir: str | Path | None, *, resume: bool, force: bool
    ) -> tuple[Path, Self]:
        """(the output path, checked writable; the run dir, `run_dir` or `OUTPUT.run/`, checked
        and, if it has a lock file, locked by `check`). Nothing is written."""
        from metarl_cli.fsutil import check_writable

        out = check_writable(output, force=force)
        rd = cls(run_dir if run_dir is not None else out.with_suffix(".run"))
        rd.check(resume=resume, force=force)
        return out, rd

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def checkpoint(self) -> Path:
        return self.file("checkpoint.safetensors")

    @property
    def metrics(self) -> Path:
        return self.file("metrics.jsonl")

    def ours(self) -> list[Path]:
        """Files of ours in the directory (the ones --force removes)."""
        if not self.path.is_dir():
            return []
        fixed = [self.file(n) for n in self.FIXED if self.file(n).exists()]
        return fixed + [p for g in self.GLOBS for p in sorted(self.path.glob(g))]

    def check(self, *, resume: bool, force: bool) -> None:
        """Refuses to start over an existing run unless told to resume or to overwrite, to
        resume a run that does not exist, and to use a run dir another live process holds (its
        lock is taken here and kept: see `fsutil.lock_run_dir`)."""
        from metarl_cli.fsutil import check_dir_writable

        if self.path.exists() and not self.path.is_dir():
            raise MetarlError(f"run dir {self.path} is a file; pass another --run-dir")
        if not self.path.exists():
            if resume:
                raise MetarlError(
                    f"nothing to resume: run dir {self.path} does not exist; drop --resume to "
                    "start a new run, or pass the --run-dir of the run to continue"
                )
            if not self.path.parent.is_dir():
                raise MetarlError(
                    f"cannot create run dir {self.path}: {self.path.parent} does not exist"
                )
            check_dir_writable(self.path.parent, what=f"cannot create run dir {self.path}")
            return
        lock_run_dir(self.path, create=False)
        check_dir_writable(self.path, what=f"cannot write to run dir {self.path}")
        if resume or force or not any(p.name != LOCK_NAME for p in self.path.iterdir()):
            return
        raise MetarlError(
            f"run dir {self.path} is not empty; pass --resume to continue that run or --force "
            "to start over"
        )

    def prepare(self, *, resume: bool, force: bool) -> None:
        """Creates and locks the directory; with --force (not resuming) removes our old files.

        Raises:
            RunDirLockedError: another process started a run in it since `check`.
        """
        self.path.mkdir(parents=False, exist_ok=True)
        lock_run_dir(self.path, create=True)
        if force and not resume:
            for p in self.ours():
                p.unlink()

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_text(self.file(name), json.dumps(obj, indent=2) + "\n", force=True)

    # --- safetensors checkpoint -----------------------------------------------------------

    def write_checkpoint(self, tensors: dict[str, np.ndarray], state: dict[str, Any]) -> None:
        """Writes `tensors` with `state` (JSON) in the header, atomically: a kill at any
        moment leaves the previous checkpoint or the new one, never half of one."""
        import safetensors.numpy

        header = {
            "format": self.FORMAT,
            "version": self.VERSION,
            self.HEADER_KEY: json.dumps(state),
        }
        data = safetensors.numpy.save(tensors, metadata=header)
        atomic_write_bytes(self.checkpoint, data, force=True)

    def read_checkpoint(self) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """(tensors, state) of the checkpoint; None when there is none.

        Raises:
            ArtefactError: unreadable, or not this kind of checkpoint or version.
        """
        if not self.checkpoint.exists():
            return None
        import safetensors
        import safetensors.numpy

        try:
            with safetensors.safe_open(str(self.checkpoint), framework="numpy") as f:
                header = f.metadata() or {}
            if header.get("format") != self.FORMAT:
                raise ValueError(f"not a {self.FORMAT} file")
            if header.get("version") != self.VERSION:
                raise ValueError(
                    f"checkpoint version {header.get('version')} is not {self.VERSION}"
                )
            state = json.loads(header[self.HEADER_KEY])
            tensors = safetensors.numpy.load_file(str(self.checkpoint))
        except Exception as e:
            raise ArtefactError(f"cannot read checkpoint {self.checkpoint}: {e}") from None
        return tensors, state

    # --- metrics --------------------------------------------------------------------------

    def truncate_metrics(self, keep: Callable[[dict[str, Any]], bool]) -> None:
        """Keeps only the metric lines for which `keep(record)` holds (the ones up to the
        checkpoint; a resumed run writes the others again), atomically. Lines cut short by a
        kill are dropped."""
        if not self.metrics.exists():
            return
        kept = []
        for line in self.metrics.read_text().splitlines():
            try:
                if keep(json.loads(line)):
                    kept.append(line)
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                continue
        atomic_write_text(self.metrics, "".join(f"{x}\n" for x in kept), force=True)

    def append_metrics(self, record: dict[str, Any]) -> None:
        with self.metrics.open("a") as f:
            f.write(json.dumps(record, allow_nan=True) + "\n")
            f.flush()


@dataclass
class RunProgress:
    """Host-side record of a run counted in one unit, saved in every checkpoint's header;
    each meta-learner extends it with its counter and its own fields. Fields named in
    `TENSORS` (arrays, or None) are saved as tensors instead.

    Attributes:
        evals: periodic evaluations ({counter, "score", ...}).
        env_steps: env steps of training so far.
        eval_env_steps: env steps of the periodic evaluations so far.
        wall_s: wall time of all sessions so far.
    """

    TENSORS: ClassVar[tuple[str, ...]] = ()

    evals: list[dict[str, Any]] = field(default_factory=list)
    env_steps: int = 0
    eval_env_steps: int = 0
    wall_s: float = 0.0

    def header(self) -> dict[str, Any]:
        """The fields saved in the checkpoint's JSON header."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self.TENSORS}

    def tensors(self) -> dict[str, np.ndarray]:
        """The `TENSORS` fields that are set, as tensors."""
        values = {name: getattr(self, name) for name in self.TENSORS}
        return {k: np.ascontiguousarray(v) for k, v in values.items() if v is not None}

    @classmethod
    def restore(cls, header: dict[str, Any], tensors: dict[str, np.ndarray]) -> Self:
        """The progress that `header()` and `tensors()` saved."""
        values: dict[str, Any] = {name: tensors.get(name) for name in cls.TENSORS}
        values |= {f.name: header[f.name] for f in fields(cls) if f.name not in cls.TENSORS}
        return cls(**values)


class CountedRunDir(RunDirBase):
    """A run dir counted in one unit (ES generations, meta-gradient steps). `COUNTER` names the
    unit in the checkpoint header, the progress and every metrics line; `PERIODIC` is the
    artefact written at each checkpoint (formatted with the count); `CONFIG_KEY` is the
    config's key in `config.json`. A checkpoint's header holds the config, the progress and
    the shapes of its tensors."""

    HEADER_KEY = "progress"
    COUNTER = "step"
    PERIODIC = "step_{:05d}.safetensors"
    CONFIG_KEY = "config"

    def periodic(self, count: int) -> Path:
        return self.path / self.PERIODIC.format(count)

    def write_config(self, cfg: BaseModel, extra: dict[str, Any]) -> None:
        self.write_json("config.json", {self.CONFIG_KEY: cfg.model_dump(mode="json"), **extra})

    def save_progress(
        self, cfg: BaseModel, tensors: dict[str, np.ndarray], shapes: Any, progress: RunProgress
    ) -> None:
        """Writes `tensors` with the config, `progress` and `shapes` in the header, atomically."""
        state = {"config": cfg.model_dump(mode="json"), **progress.header(), "shapes": shapes}
        self.write_checkpoint({**tensors, **progress.tensors()}, state)

    def read_saved(self) -> tuple[dict[str, Any], int] | None:
        """(config, count) of the checkpoint; None when there is none."""
        loaded = self.read_checkpoint()
        return None if loaded is None else (loaded[1]["config"], int(loaded[1][self.COUNTER]))

    def truncate_metrics(self, count: int) -> None:  # type: ignore[override]
        """Keeps only the metric lines up to `count` (atomically)."""
        super().truncate_metrics(lambda rec: rec[self.COUNTER] <= count)
