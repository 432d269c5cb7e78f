"""Gridworld levels and the named distributions they are drawn from (Oh et al., 2020,
arXiv:2007.08794, App. C; Jackson et al., 2023, arXiv:2310.02782, App. B-C).

A `Level` is one gridworld: its size, walls, start cell, objects and their types, each type's
reward, termination and respawn probabilities, and the episode's time limit. A `Distribution`
is static data (the largest grid, object and type counts, tabular or not, the lifetime in agent
updates) plus a sampler `sample(key) -> Level`, jittable, so `reset(key)` can draw a level.

Cells are flat indices `row * g + col` over a `max_grid x max_grid` board; a level of size
`g < max_grid` uses cells with index `< g * g` (stride g), as the reference does.

Where the sampled walls leave fewer free cells than the start and the objects need (possible only
with improbable wall draws on a 3 x 3 or 4 x 4 grid), the walls on the chosen cells are removed,
so every level has a free start cell and one cell per object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from flax import struct

from metarl_cli.registry import Registry


@struct.dataclass
class Level:
    """One gridworld (all arrays, so a batch of levels vmaps; `K` objects, `T` types).

    Attributes:
        grid_size: side length g (cells `0 .. g*g - 1` are on the board).
        max_steps: the time limit (an episode is truncated after this many steps).
        walls: [max_grid**2] bool, walls (only cells on the board matter).
        start_pos: the agent's start cell.
        obj_pos: [K] each object's cell (tabular levels keep it; others respawn anywhere free).
        obj_type: [K] each object's type.
        n_objs: objects in use (slots `>= n_objs` never exist).
        reward: [T] reward for collecting an object of each type.
        p_terminate: [T] probability that collecting one ends the episode.
        p_respawn: [T] per-step probability that an absent object reappears.
    """

    grid_size: jax.Array
    max_steps: jax.Array
    walls: jax.Array
    start_pos: jax.Array
    obj_pos: jax.Array
    obj_type: jax.Array
    n_objs: jax.Array
    reward: jax.Array
    p_terminate: jax.Array
    p_respawn: jax.Array

    if TYPE_CHECKING:

        def replace(self, **changes: Any) -> Level: ...


Range = tuple[float, float]


@dataclass(frozen=True)
class Distribution:
    """A named level distribution (static; `sample(key)` is jittable).

    Scalars written as `(lo, hi)` are drawn per level: `max_steps` log-uniformly (rounded),
    `n_objs` and `grid_size` uniformly over the integers `lo..hi`; `reward=None` draws the first
    type's reward from U[0, 1] and the others' from U[-1, 1]; `p_terminate`/`p_respawn` as a
    range draw each type's log-uniformly. `walls` is a tuple of fixed cells or `n_walls` cells
    drawn from the whole `max_grid x max_grid` board without replacement.
    """

    name: str
    description: str
    max_grid: int
    max_objs: int
    max_types: int
    tabular: bool
    lifetime: int  # agent updates per lifetime in meta-training
    obj_type: tuple[int, ...]
    max_steps: int | tuple[int, int]
    n_objs: int | tuple[int, int]
    grid_size: int | tuple[int, int]
    reward: tuple[float, ...] | None = None
    p_terminate: tuple[float, ...] | Range = (1e-2, 1.0)
    p_respawn: tuple[float, ...] | Range = (1e-3, 1e-1)
    walls: tuple[int, ...] = ()
    n_walls: int = 0
    notes: str = ""
    episode_cap: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        cap = self.max_steps if isinstance(self.max_steps, int) else self.max_steps[1]
        object.__setattr__(self, "episode_cap", int(cap))

    @property
    def obs_dim(self) -> int:
        """Length of the observation (the last entry is `0.001 * time`)."""
        cells = self.max_grid**2
        if self.tabular:
            return cells * 2**self.max_objs + 1
        return cells * (1 + self.max_types) + 1

    def sample(self, key: jax.Array) -> Level:
        """A level drawn from the distribution."""
        return _sample(self, key)


def _log_uniform(key: jax.Array, shape: tuple[int, ...], lo: float, hi: float) -> jax.Array:
    return jnp.exp(jax.random.uniform(key, shape, minval=jnp.log(lo), maxval=jnp.log(hi)))


def _per_type(key: jax.Array, value: tuple[float, ...] | Range, d: Distribution) -> jax.Array:
    """A [max_types] vector: a fixed level's values (zero-padded), else log-uniform draws."""
    if d.reward is not None:
        return jnp.zeros(d.max_types).at[: len(value)].set(jnp.asarray(value, jnp.float32))
    return _log_uniform(key, (d.max_types,), float(value[0]), float(value[1]))


def _int(key: jax.Array, value: int | tuple[int, int], log: bool = False) -> jax.Array:
    if isinstance(value, int):
        return jnp.asarray(value, jnp.int32)
    lo, hi = value
    if log:
        return jnp.round(_log_uniform(key, (), lo, hi)).astype(jnp.int32)
    return jax.random.randint(key, (), lo, hi + 1, jnp.int32)


def _sample(d: Distribution, key: jax.Array) -> Level:
    keys = jax.random.split(key, 9)
    cells = d.max_grid**2
    if d.reward is None:
        first = jax.random.uniform(keys[0], (1,), minval=0.0, maxval=1.0)
        rest = jax.random.uniform(keys[1], (d.max_types - 1,), minval=-1.0, maxval=1.0)
        reward = jnp.concatenate([first, rest])
    else:
        reward = jnp.zeros(d.max_types).at[: len(d.reward)].set(jnp.asarray(d.reward))
    grid = _int(keys[2], d.grid_size)
    walls = jnp.zeros(cells, bool)
    if d.walls:
        walls = walls.at[jnp.asarray(d.walls)].set(True)
    if d.n_walls:
        walls = walls.at[jax.random.choice(keys[3], cells, (d.n_walls,), replace=False)].set(True)
    on_board = jnp.arange(cells) < grid * grid
    free = on_board & ~walls
    # Start and objects on distinct free cells, uniformly: sort by noise with blocked cells last.
    noise = jax.random.uniform(keys[4], (cells,)) + 2.0 * ~free + 4.0 * ~on_board
    chosen = jnp.argsort(noise)[: d.max_objs + 1]
    walls = walls.at[chosen].set(False)  # only when too few cells were free (module doc)
    obj_type = (
        jnp.full(d.max_objs, 0, jnp.int32)
        .at[: len(d.obj_type)]
        .set(jnp.asarray(d.obj_type, jnp.int32))
    )
    return Level(
        grid_size=grid,
        max_steps=_int(keys[5], d.max_steps, log=True),
        walls=walls,
        start_pos=chosen[0].astype(jnp.int32),
        obj_pos=chosen[1:].astype(jnp.int32),
        obj_type=obj_type,
        n_objs=jnp.minimum(_int(keys[6], d.n_objs), len(d.obj_type)),
        reward=reward.astype(jnp.float32),
        p_terminate=_per_type(keys[7], d.p_terminate, d).astype(jnp.float32),
        p_respawn=_per_type(keys[8], d.p_respawn, d).astype(jnp.float32),
    )


def _column(g: int, col: int, gaps: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(r * g + col for r in range(g) if r not in gaps)


def _row(g: int, row: int, gaps: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(row * g + c for c in range(g) if c not in gaps)


DISTRIBUTIONS: Registry[Distribution] = Registry("gridworld distribution")


def _register(d: Distribution) -> None:
    DISTRIBUTIONS.register(d.name, d)


_RANDOM = dict(
    max_grid=10, max_objs=5, max_types=5, obj_type=(0, 1, 2, 3, 4), max_steps=(20, 750),
    n_objs=(1, 5), grid_size=(4, 10), n_walls=15,
)  # fmt: skip
_register(
    Distribution(
        "all_shortlife", "random tabular levels (4-10 cells a side, 1-5 objects), 250-update "
        "lifetimes: LPG's meta-training set (paper §7.4)", tabular=True, lifetime=250,
        **_RANDOM,  # type: ignore[arg-type]
    )
)  # fmt: skip
_register(
    Distribution(
        "rand_all", "as all_shortlife, non-tabular (objects respawn anywhere free): "
        "Supplement F's meta-training set", tabular=False, lifetime=25_000,
        **_RANDOM,  # type: ignore[arg-type]
    )
)  # fmt: skip
_register(
    Distribution(
        "debug", "tiny tabular levels (3-4 cells a side, 1-2 objects, 5-10 steps) for tests",
        max_grid=4, max_objs=2, max_types=2, tabular=True, lifetime=4, obj_type=(0, 1),
        max_steps=(5, 10), n_objs=(1, 2), grid_size=(3, 4), n_walls=4,
    )
)  # fmt: skip
_OH = dict(tabular=True, lifetime=2500)
_register(
    Distribution(
        "dense", "Oh et al.'s Dense: 11x11, 2x[+1, 0, .05], [-1, .5, .1], [-1, 0, .5], 500 steps",
        max_grid=11, max_objs=4, max_types=3, obj_type=(0, 0, 1, 2), max_steps=500, n_objs=4,
        grid_size=11, reward=(1.0, -1.0, -1.0), p_terminate=(0.0, 0.5, 0.0),
        p_respawn=(0.05, 0.1, 0.5), **_OH,  # type: ignore[arg-type]
    )
)  # fmt: skip
_register(
    Distribution(
        "sparse", "Oh et al.'s Sparse: 13x13, [+1, 1, 0], [-1, 1, 0], 50 steps",
        max_grid=13, max_objs=2, max_types=2, obj_type=(0, 1), max_steps=50, n_objs=2,
        grid_size=13, reward=(1.0, -1.0), p_terminate=(1.0, 1.0), p_respawn=(0.0, 0.0),
        **_OH,  # type: ignore[arg-type]
    )
)  # fmt: skip
_register(
    Distribution(
        "long", "Oh et al.'s Long: 11x11, 2x[+1, 0, .01], 2x[-1, .5, 1], 1000 steps",
        max_grid=11, max_objs=4, max_types=2, obj_type=(0, 0, 1, 1), max_steps=1000, n_objs=4,
        grid_size=11, reward=(1.0, -1.0), p_terminate=(0.0, 0.5), p_respawn=(0.01, 1.0),
        **_OH,  # type: ignore[arg-type]
    )
)  # fmt: skip
_register(
    Distribution(
        "longer", "Oh et al.'s Longer: 9x9, 2x[+1, .1, .01], 3x[-1, .8, 1], 2000 steps, a "
        "centre wall with 2 gaps", max_grid=9, max_objs=5, max_types=2,
        obj_type=(0, 0, 1, 1, 1), max_steps=2000, n_objs=5, grid_size=9, reward=(1.0, -1.0),
        p_terminate=(0.1, 0.8), p_respawn=(0.01, 1.0), walls=_column(9, 4, (1, 7)),
        notes="3 negative objects as in the reference code (the paper's table: 5)",
        **_OH,  # type: ignore[arg-type]
    )
)  # fmt: skip
_register(
    Distribution(
        "long_dense", "Oh et al.'s Long Dense: 11x11, 4x[+1, 0, .005], 2000 steps, cross walls "
        "with 2 gaps each", max_grid=11, max_objs=4, max_types=1, obj_type=(0, 0, 0, 0),
        max_steps=2000, n_objs=4, grid_size=11, reward=(1.0,), p_terminate=(0.0,),
        p_respawn=(0.005,), walls=_column(11, 5, (0, 7)) + _row(11, 4, (2, 8)),
        **_OH,  # type: ignore[arg-type]
    )
)  # fmt: skip
