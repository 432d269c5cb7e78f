"""The metarl error hierarchy.

Every error a user can cause derives from `MetarlError`. The CLI maps these (and pydantic's
`ValidationError`) to a one-line message and exit code 2; each message says what to do.
`Interrupted` (Ctrl-C in a meta-learner, its state saved) maps to exit code 130.
"""

from __future__ import annotations


class MetarlError(Exception):
    """Base class of every user-facing error."""


class ConfigError(MetarlError):
    """An invalid configuration value or combination of values."""


class UnknownNameError(MetarlError):
    """A name that is not in a registry (environment, baseline, algorithm)."""


class OutputExistsError(MetarlError):
    """An output file exists and `--force` was not given."""


class ArtefactError(MetarlError):
    """An artefact file is missing, corrupted, tampered with or does not match."""


class EvaluationError(MetarlError):
    """A result file is missing or invalid."""


class KernelError(MetarlError):
    """A code or symbolic kernel that fails its checks (forbidden construct, unknown name)."""


class RunDirLockedError(MetarlError):
    """A run directory that another live metarl process is using."""


class Interrupted(Exception):
    """A meta-learner stopped by Ctrl-C after saving its last completed step.

    Not a `MetarlError`: the CLI maps it once (`cli/app.py`) to exit code 130 and the lines
    "interrupted after DONE; SAVED" and "resume with: COMMAND".

    Attributes:
        done: the last completed step ("generation 4", "round 2", "turn 3").
        saved: where the state is ("checkpoint saved in runs/x", "nothing saved").
        resume: the command that continues the run; the CLI command that ran the meta-learner
            sets it (None: `cli/app.py` repeats the command line with `--resume`).
    """

    def __init__(self, done: str, saved: str, resume: str | None = None) -> None:
        super().__init__(f"interrupted after {done}; {saved}")
        self.done, self.saved, self.resume = done, saved, resume
