"""Per-environment return normalisation (paper §6).

The paper divides each environment's returns by the mean black-box learning score: the mean
final return of the ES-trained kernel of the same study on that environment (`black-box`).
`ppo` divides by the PPO-with-Adam return recorded in each result (the original code's
`PPO_TEMP`, `EnvResult.normaliser`); `none` keeps raw returns. `auto` is `black-box` when every
study has an ES kernel, else `ppo`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from metarl_cli.analysis.collect import Entry, Study
from metarl_cli.errors import ConfigError, EvaluationError

MODES = ("auto", "black-box", "ppo", "none")


@dataclass
class Normalisation:
    """Resolved normalisation: the mode, the black-box factors per study, and notes for the
    report (environments left out, sign flips)."""

    mode: str
    black_box: dict[tuple[str, str], float | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def axis_label(self) -> str:
        """The y-axis label of aggregate figures under this normalisation."""
        return {
            "black-box": "Return / black-box mean (IQM)",
            "ppo": "Return / PPO-Adam return (IQM)",
            "none": "Return (IQM)",
        }[self.mode]

    def factor(self, study: Study, entry: Entry, env_id: str) -> float | None:
        """The divisor for `entry`'s returns on `env_id` (None: cannot be normalised)."""
        if self.mode == "none":
            return 1.0
        if self.mode == "ppo":
            return entry.env(env_id).normaliser
        return self.black_box.get((study.slug, env_id))

    def scores(self, study: Study, entry: Entry, env_id: str) -> np.ndarray:
        """Normalised final returns of every run (NaN: no finished episode, or no factor)."""
        raw = returns(entry, env_id)
        f = self.factor(study, entry, env_id)
        if f is None:
            return np.full_like(raw, np.nan)
        return raw / f


def returns(entry: Entry, env_id: str) -> np.ndarray:
    """Final returns of every run as floats (None -> NaN)."""
    vals = entry.env(env_id).final_returns
    return np.array([np.nan if v is None else v for v in vals], dtype=np.float64)


def resolve(studies: list[Study], env_ids: list[str], mode: str) -> Normalisation:
    """Checks `mode` against the results and computes its factors.

    Raises:
        ConfigError: unknown mode.
        EvaluationError: `black-box` with a study that has no ES kernel.
    """
    if mode not in MODES:
        raise ConfigError(f"--normalise-by must be one of {', '.join(MODES)}; got {mode!r}")
    with_bb = [s for s in studies if any(e.is_black_box for e in s.entries)]
    if mode == "auto":
        mode = "black-box" if studies and len(with_bb) == len(studies) else "ppo"
    norm = Normalisation(mode)
    if mode == "black-box":
        missing = [s.title for s in studies if s not in with_bb]
        if missing:
            raise EvaluationError(
                "--normalise-by black-box needs the ES (black-box) kernel's results in every "
                f"study; none for: {'; '.join(missing)}. Add its .eval.json or use "
                "--normalise-by ppo"
            )
        for s in studies:
            bbs = [e for e in s.entries if e.is_black_box]
            if len(bbs) > 1:
                norm.notes.append(
                    f"{s.title}: {len(bbs)} black-box results; normalising by {bbs[0].path.name}"
                )
            for env_id in env_ids:
                norm.black_box[(s.slug, env_id)] = _factor(norm, s, bbs[0], env_id)
    elif mode == "ppo":
        for env_id in env_ids:
            for s in studies:
                if any(e.env(env_id).normaliser is None for e in s.entries):
                    norm.notes.append(
                        f"{env_id} has no PPO-Adam normaliser; it is left out of the "
                        "normalised aggregates"
                    )
                    break
    return norm


def _factor(norm: Normalisation, study: Study, bb: Entry, env_id: str) -> float | None:
    r = returns(bb, env_id)
    r = r[np.isfinite(r)]
    if r.size == 0:
        norm.notes.append(
            f"{study.title}: the black-box kernel finished no episode on {env_id}; that env is "
            "left out of the normalised aggregates"
        )
        return None
    mean = float(r.mean())
    if abs(mean) < 1e-8:
        norm.notes.append(
            f"{study.title}: the black-box mean return on {env_id} is 0; that env is left out "
            "of the normalised aggregates"
        )
        return None
    if mean < 0:  # dividing by a negative mean would turn "higher is better" upside down
        norm.notes.append(
            f"{study.title}: the black-box mean return on {env_id} is negative ({mean:.3g}); "
            "returns there are divided by its absolute value"
        )
    return abs(mean)
