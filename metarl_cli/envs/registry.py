"""Environment registry: namespaced ids, short aliases, lazy backends.

Backends (gymnax, brax, craftax) are imported only when an environment of theirs is made, so
listing environments or printing help imports none of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from metarl_cli.errors import ConfigError
from metarl_cli.registry import Registry


@dataclass(frozen=True)
class EnvEntry:
    """How to build one environment.

    Attributes:
        env_id: canonical namespaced id.
        suite: preset family ("classic", "minatar", "brax", "craftax").
        backend_name: the name the backend library uses.
        description: one line for `metarl envs`.
        return_range: the smallest and largest mean episode return the env can produce; a
            result outside it is refused (it cannot come from a real run).
    """

    env_id: str
    suite: str
    backend_name: str
    description: str
    return_range: tuple[float, float] = (-math.inf, math.inf)


ENVS: Registry[EnvEntry] = Registry("environment")


def _add(
    env_id: str,
    backend_name: str,
    description: str,
    aliases: tuple[str, ...],
    return_range: tuple[float, float] = (-math.inf, math.inf),
) -> None:
    entry = EnvEntry(env_id, env_id.split("/")[0], backend_name, description, return_range)
    ENVS.register(env_id, entry, aliases)


# CartPole pays +1 per step for at most 500 steps; MinAtar's rewards are never negative.
_add(
    "classic/cartpole",
    "CartPole-v1",
    "gymnax CartPole-v1 (500-step limit)",
    ("cartpole",),
    (0.0, 500.0),
)
for _name, _gym, _aliases in [
    ("asterix", "Asterix-MinAtar", ("asterix",)),
    ("breakout", "Breakout-MinAtar", ("breakout",)),
    ("freeway", "Freeway-MinAtar", ("freeway",)),
    ("spaceinvaders", "SpaceInvaders-MinAtar", ("spaceinvaders", "space_invaders")),
]:
    _add(
        f"minatar/{_name}",
        _gym,
        f"gymnax {_gym} (10x10 grid, flattened)",
        _aliases,
        (0.0, math.inf),
    )
for _name, _aliases in [
    ("ant", ("ant",)),
    ("humanoid", ("humanoid",)),
    ("hopper", ("hopper",)),
    ("walker2d", ("walker2d", "walker")),
]:
    _add(f"brax/{_name}", _name, f"Brax {_name} (1000-step episodes)", _aliases)
_add(
    "craftax/classic",
    "Craftax-Classic-Symbolic-v1",
    "Craftax-Classic, symbolic observations, optimistic resets",
    ("craftax", "craftax-classic"),
)

# Gridworlds (envs/gridworld/): one id per level distribution; `reset(key)` draws a level.
_GRIDWORLDS = ("all_shortlife", "rand_all", "dense", "sparse", "long", "longer", "long_dense")
for _name in (*_GRIDWORLDS, "debug"):
    _add(f"gridworld/{_name}", _name, f"gridworld levels: {_name} (envs/gridworld)", ())


SUITES: Registry[tuple[str, ...]] = Registry("suite")
"""Named environment lists for `metarl evaluate --suite`; `paper` is the meta-test set of §6."""
SUITES.register(
    "paper",
    (
        "minatar/freeway",
        "minatar/spaceinvaders",
        "minatar/asterix",
        "minatar/breakout",
        "brax/humanoid",
        "brax/hopper",
        "brax/walker2d",
        "brax/ant",
        "classic/cartpole",
        "craftax/classic",
    ),
)
SUITES.register(
    "minatar",
    ("minatar/asterix", "minatar/breakout", "minatar/freeway", "minatar/spaceinvaders"),
)
SUITES.register("brax", ("brax/ant", "brax/humanoid", "brax/hopper", "brax/walker2d"))
SUITES.register("classic", ("classic/cartpole",))
SUITES.register("craftax", ("craftax/classic",))
SUITES.register("gridworld", tuple(f"gridworld/{n}" for n in _GRIDWORLDS))
SUITES.register(
    "gridworld_tabular",
    ("gridworld/dense", "gridworld/sparse", "gridworld/long", "gridworld/longer",
     "gridworld/long_dense"),
)  # fmt: skip


def resolve_suite(name: str) -> tuple[str, list[str]]:
    """Returns (canonical suite name, its env ids); unknown names list the known suites."""
    canonical = SUITES.resolve(name)
    return canonical, list(SUITES.get(canonical))


def resolve_envs(spec: str) -> list[str]:
    """Parses a comma-separated list of ids or aliases into canonical ids (order kept, no dups)."""
    out: list[str] = []
    for part in spec.split(","):
        if not part.strip():
            continue
        env_id = ENVS.resolve(part)
        if env_id not in out:
            out.append(env_id)
    if not out:
        raise ConfigError("no environment given; pass e.g. --envs cartpole or --envs ant,breakout")
    return out
