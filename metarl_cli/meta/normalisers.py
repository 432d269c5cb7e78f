"""Return normalisers in meta-training scores: the one rule every scorer follows.

A score over several envs averages (mean return / the env's normaliser) over the envs, so
every env needs a normaliser: a missing one is a `ConfigError`, never a silent 1.0 (which
would average one env's raw return with the others' ratios). A score over one env needs none:
without a normaliser its divisor is 1, the raw return, which ranks candidates exactly as a
normalised return would. Meta-learners call `check_normalisers` in their plan, before anything
runs, and scorers take their divisors from `divisors`.
"""

from __future__ import annotations

from collections.abc import Mapping

from metarl_cli.errors import ConfigError


def check_normalisers(
    normalisers: Mapping[str, float | None], *, kind: str = "PPO", fix: str = "use it alone"
) -> None:
    """Raises ConfigError when several envs are scored and one has no normaliser, or when a
    normaliser is not positive (dividing by it would flip or break the ranking).

    Args:
        normalisers: env id -> the env's reference return (None: unknown).
        kind: the reference's name in the message ("PPO", "SGD").
        fix: what the user should do, ending the message.
    """
    bad = {e: v for e, v in normalisers.items() if v is not None and not v > 0}
    if bad:
        env_id, value = next(iter(bad.items()))
        raise ConfigError(
            f"the {kind} return normaliser of {env_id} is {value}; it must be positive "
            f"(set it with --set {kind.lower()}_normaliser=...)"
        )
    missing = [e for e, v in normalisers.items() if v is None]
    if missing and len(normalisers) > 1:
        raise ConfigError(
            f"no {kind} return normaliser for {', '.join(missing)}, so its returns cannot be "
            f"averaged with other envs; {fix}"
        )


def divisors(normalisers: Mapping[str, float | None], *, kind: str = "PPO") -> dict[str, float]:
    """Env id -> the divisor of its mean return under the module's rule."""
    check_normalisers(normalisers, kind=kind)
    return {e: 1.0 if v is None else float(v) for e, v in normalisers.items()}
