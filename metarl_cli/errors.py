"""The metarl error hierarchy.

Every error a user can cause derives from `MetarlError`. The CLI maps these (and pydantic's
`ValidationError`) to a one-line message and exit code 2; each message says what to do.
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
