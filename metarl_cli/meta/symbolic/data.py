"""The teacher and its data: what symbolic distillation fits (paper §4.4, reference §6.2).

The data is the teacher's output on synthetic inputs, generated once as one large stationary
set (the search then draws batches from it):

* **LPO**: the original's deterministic grid, `A` on [-4, 4) and `log r` on [-1, 1) (1024 x
  1024 points by default, r = 1 included), inputs `[log_r, r_minus_1, A]`; the target is the
  teacher's drift `relu(ppo_drift + net)` or, with `grad_loss`, its derivative in r (the
  original fitted the gradient against the drift *value*, reference §6.3; here the target
  really is the gradient, by forward-mode autodiff).
* **OPEN feed-forward**: the 19 OPEN features of `sample_inputs` draws, second-moment
  normalised over the whole set (which stands in for one tensor, as in the original), plus
  `rand`; the target is the teacher's full stochastic update
  `o0 * 1e-3 * exp(o1 * 1e-3) + o2 * 1e-3 * rand`.
* **No Features**: the 8 normalised inputs `[p, m x 6, g]`; the target is the deterministic
  update `o0 * 1e-3 * exp(o1 * 1e-3)`.

Recurrent teachers are refused (paper §6): a window of 20 steps of OPEN's 20 inputs would need
hundreds of symbolic variables. Code and symbolic artefacts are refused: there is nothing
black-box to distil.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metarl_cli.errors import ArtefactError, ConfigError

# Algorithms symbolic distillation supports, and those it refuses with the reason.
SUPPORTED = ("lpo", "open_ff", "nofeat")
RECURRENT_REASON = (
    "symbolic distillation does not support recurrent algorithms (paper §6): a recurrent "
    "learned algorithm would need a window of past inputs, e.g. 20 steps x 20 inputs = "
    "hundreds of symbolic variables, far beyond what symbolic regression can search; distil "
    "it into a feed-forward network first, or use open_ff"
)
_CHUNK = 65536
LPO_NAMES = ("log_r", "r_minus_1", "A")


@dataclass(frozen=True)
class Teacher:
    """A neural teacher artefact, validated.

    Attributes:
        path: the artefact file.
        digest: its file sha256 (the student's `parent_digest`).
        algorithm: the registered learned algorithm.
        theta: its meta-parameters (nested dict of numpy arrays).
        architecture: its network sizes.
        training_envs: where it was meta-trained.
    """

    path: Path
    digest: str
    algorithm: Any
    theta: Any
    architecture: dict[str, Any]
    training_envs: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.algorithm.name


def load_teacher(path: str | Path) -> Teacher:
    """Loads and validates a teacher: a neural, feed-forward, supported artefact.

    Raises:
        ArtefactError: unreadable file, a non-neural artefact, a feature-spec mismatch.
        ConfigError: a recurrent or unsupported algorithm.
    """
    from metarl_cli.artefacts import artefact_digest, load_artefact
    from metarl_cli.learned.base import get_algorithm

    path = Path(path)
    manifest, tensors = load_artefact(path)
    if manifest.form != "neural":
        raise ArtefactError(
            f"{path} is a {manifest.form} artefact; symbolic distillation needs a neural "
            "teacher (an artefact from `metarl train es` or distillation)"
        )
    if manifest.algorithm in ("open", "lpg"):
        raise ConfigError(f"{path}: {manifest.algorithm} is recurrent; {RECURRENT_REASON}")
    if manifest.algorithm not in SUPPORTED:
        raise ConfigError(
            f"{path}: symbolic distillation supports {', '.join(SUPPORTED)}, "
            f"not {manifest.algorithm!r}"
        )
    algorithm = get_algorithm(manifest.algorithm)
    if manifest.feature_spec.digest != algorithm.spec.digest:
        raise ArtefactError(
            f"{path}: feature spec of {manifest.algorithm!r} v{manifest.feature_spec.version} "
            f"({manifest.feature_spec.digest[:12]}) does not match this version's "
            f"v{algorithm.spec.version} ({algorithm.spec.digest[:12]})"
        )
    if not tensors:
        raise ArtefactError(f"{path}: a neural artefact without tensors")
    return Teacher(
        path=path,
        digest=artefact_digest(path),
        algorithm=algorithm,
        theta=tensors,
        architecture=dict(manifest.architecture),
        training_envs=tuple(manifest.training_envs),
    )


def input_names(algorithm_name: str) -> tuple[str, ...]:
    """The columns of X, as the algorithm's symbolic variable names."""
    if algorithm_name == "lpo":
        return LPO_NAMES
    if algorithm_name == "open_ff":
        from metarl_cli.learned.open import FEATURE_NAMES

        return (*FEATURE_NAMES, "rand")
    if algorithm_name == "nofeat":
        from metarl_cli.learned.nofeat import FEATURE_NAMES

        return tuple(FEATURE_NAMES)
    raise ConfigError(f"no symbolic inputs for {algorithm_name!r}")


@dataclass
class DistilData:
    """Inputs and targets (float32).

    Attributes:
        names: the columns of `x` (symbolic variable names).
        x: inputs [n, d].
        y: the target [n]: drift, d drift / dr (LPO with grad loss) or the update.
        drift: LPO only: the teacher's drift values [n] (the target in value mode).
        ratio: LPO only: r [n].
    """

    names: tuple[str, ...]
    x: np.ndarray
    y: np.ndarray
    drift: np.ndarray | None = None
    ratio: np.ndarray | None = None

    def take(self, rows: np.ndarray) -> DistilData:
        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[rows]

        return DistilData(
            self.names, self.x[rows], self.y[rows], pick(self.drift), pick(self.ratio)
        )

    def __len__(self) -> int:
        return int(self.x.shape[0])


def lpo_grid(num_points: int) -> tuple[np.ndarray, np.ndarray]:
    """(r, A) on the original's grid, `side x side` points with side = sqrt(num_points) rounded
    to an even number: `A = k / (side / 8)` and `log r = k / (side / 2)` for k in
    [-side/2, side/2), so r = 1 and A = 0 are grid points (1024 x 1024 = the original's)."""
    side = max(2, round(float(np.sqrt(num_points)) / 2) * 2)
    k = np.arange(-side // 2, side // 2, dtype=np.float64)
    adv = (k / (side / 8)).astype(np.float32)
    log_r = (k / (side / 2)).astype(np.float32)
    lr, a = np.meshgrid(log_r, adv, indexing="ij")
    return np.exp(lr.reshape(-1)).astype(np.float32), a.reshape(-1)


def lpo_sample(key: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform (r, A) over the grid's box (held-out inputs for the round trip)."""
    import jax

    k1, k2 = jax.random.split(key)
    log_r = np.asarray(jax.random.uniform(k1, (n,), minval=-1.0, maxval=1.0), np.float32)
    adv = np.asarray(jax.random.uniform(k2, (n,), minval=-4.0, maxval=4.0), np.float32)
    return np.exp(log_r).astype(np.float32), adv


def lpo_inputs(ratio: np.ndarray) -> dict[str, np.ndarray]:
    """The derived LPO inputs of ratios (float32, as `SymbolicDrift` computes them)."""
    r = np.asarray(ratio, np.float32)
    return {"log_r": np.log(r).astype(np.float32), "r_minus_1": (r - np.float32(1.0))}


def _chunked(fn, *arrays: np.ndarray) -> np.ndarray:
    """`fn` over the leading axis in chunks (bounds memory for a million points)."""
    n = arrays[0].shape[0]
    parts = [np.asarray(fn(*(a[i : i + _CHUNK] for a in arrays))) for i in range(0, n, _CHUNK)]
    return np.concatenate(parts).astype(np.float32)


def lpo_teacher_fns(teacher: Teacher, clip_eps: float):
    """Jitted `(drift(r, A), d drift / dr (r, A))` of an LPO teacher."""
    import jax
    import jax.numpy as jnp

    from metarl_cli.learned.lpo import LPODrift

    theta = jax.tree.map(jnp.asarray, teacher.theta)
    drift_slot = LPODrift(hidden=int(teacher.architecture.get("hidden", 128)))

    def drift(r, a):
        return drift_slot(theta, r, a, clip_eps)

    def grad(r, a):
        return jax.jvp(lambda rr: drift(rr, a), (r,), (jnp.ones_like(r),))[1]

    return jax.jit(drift), jax.jit(grad)


def make_data(
    teacher: Teacher, num_points: int, key: Any, *, grad_loss: bool, clip_eps: float = 0.2
) -> DistilData:
    """The teacher's outputs on its synthetic inputs (module doc)."""
    name = teacher.name
    if name == "lpo":
        ratio, adv = lpo_grid(num_points)
        return lpo_data(teacher, ratio, adv, grad_loss=grad_loss, clip_eps=clip_eps)
    if grad_loss:
        raise ConfigError("--grad-loss is for LPO only (it fits d drift / d r)")
    x = optimiser_inputs(teacher.algorithm, key, num_points)
    return DistilData(input_names(name), x, optimiser_targets(teacher, x))


def lpo_data(
    teacher: Teacher, ratio: np.ndarray, adv: np.ndarray, *, grad_loss: bool, clip_eps: float
) -> DistilData:
    drift_fn, grad_fn = lpo_teacher_fns(teacher, clip_eps)
    drift = _chunked(drift_fn, ratio, adv)
    y = _chunked(grad_fn, ratio, adv) if grad_loss else drift
    d = lpo_inputs(ratio)
    x = np.stack([d["log_r"], d["r_minus_1"], adv.astype(np.float32)], axis=1)
    return DistilData(LPO_NAMES, x, y, drift=drift, ratio=ratio.astype(np.float32))


def optimiser_inputs(algorithm: Any, key: Any, n: int) -> np.ndarray:
    """[n, d] normalised inputs of OPEN-FF (19 features + rand) or No Features (8), drawn from
    the algorithm's sampler and normalised over all n points together."""
    import jax.numpy as jnp

    raw = algorithm.sample_inputs(key, n)
    if algorithm.name == "open_ff":
        from metarl_cli.learned.open import open_features

        # Per-point context: the (n, 1) columns broadcast against the (n, 1) feature slots.
        t_p, l_p, b_p = (raw[k][:, None] for k in ("t_p", "l_p", "b_p"))
        feats = open_features(raw["p"], raw["g"], raw["mom"], t_p, l_p, b_p, raw["dorm"])
        return np.asarray(jnp.concatenate([feats, raw["rand"][:, None]], axis=1), np.float32)
    from metarl_cli.learned.nofeat import nofeat_features

    return np.asarray(nofeat_features(raw["p"], raw["g"], raw["mom"]), np.float32)


def optimiser_targets(teacher: Teacher, x: np.ndarray) -> np.ndarray:
    """The teacher's update for normalised inputs `x` (module doc)."""
    import jax
    import jax.numpy as jnp

    theta = jax.tree.map(jnp.asarray, teacher.theta)
    hidden = int(teacher.architecture.get("hidden", 16))
    if teacher.name == "open_ff":
        from metarl_cli.learned.open import OpenNetwork

        net = OpenNetwork(hidden, int(teacher.architecture.get("gru", 0)), recurrent=False)

        def update(xx):
            out, _ = net.apply(theta, xx[:, :19])
            rand = xx[:, 19]
            return out[:, 0] * 1e-3 * jnp.exp(out[:, 1] * 1e-3) + out[:, 2] * 1e-3 * rand

    else:
        from metarl_cli.learned.nofeat import _mlp

        mlp = _mlp(hidden)

        def update(xx):
            out = mlp.apply(theta, xx)
            return out[:, 0] * 1e-3 * jnp.exp(out[:, 1] * 1e-3)

    return _chunked(jax.jit(update), x)


def holdout_inputs(teacher: Teacher, key: Any, n: int) -> dict[str, np.ndarray]:
    """Fresh inputs (not the training set) for the round trip: variable name -> [n]."""
    names = input_names(teacher.name)
    if teacher.name == "lpo":
        ratio, adv = lpo_sample(key, n)
        return {**lpo_inputs(ratio), "A": adv, "r": ratio}
    x = optimiser_inputs(teacher.algorithm, key, n)
    return {name: x[:, i] for i, name in enumerate(names)}
