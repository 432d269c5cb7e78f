"""ES over several processes: process 0 decides, every process trains a slice of the runs.

Process 0 (the leader) runs the ordinary `evolve` loop with `LeaderProblem` in place of the
`RLProblem`: each generation it posts the population and the generation's keys, trains its own
slice of the `popsize x num_rollouts` runs, collects the other slices' final returns and tells
the strategy. The periodic evaluation of the mean is posted and sliced the same way. Every
other process (a follower) runs `serve`: it trains the slice it is given with the same
`RLProblem` on its own devices and answers, until the leader posts "stop". Only the leader
reads or writes files (checkpoints, metrics, artefacts); a follower needs no run dir and no
shared filesystem, and keeps no ES state: all it needs is in each command.

A run's result is the same whichever process trains it (with `--chunk 1`, unbatched, it does
not depend on which runs share a device either), so the returns assembled by the leader, and
everything after them, are bit-identical to a single-process run with `--chunk 1`.

Timeouts: a process that died is noticed by the runtime's heartbeat (`--peer-timeout`). A
process that is alive but does not answer is given, for the first command of each kind (it
compiles), `FIRST_S`; afterwards `FACTOR` times the slowest of that kind so far, at least
`FLOOR_S`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from metarl_cli.distributed import Message, PeerLost, Peers, slice_of
from metarl_cli.errors import ConfigError, MetarlError

FIRST_S = 6 * 3600.0
FLOOR_S = 600.0
FACTOR = 10.0


class Deadlines:
    """How long to wait for an exchange of a kind: `FIRST_S` the first time, then `FACTOR` x
    the slowest so far (at least `FLOOR_S`)."""

    def __init__(self) -> None:
        self.slowest: dict[str, float] = {}

    def timeout(self, kind: str) -> float:
        if kind not in self.slowest:
            return FIRST_S
        return max(FLOOR_S, FACTOR * self.slowest[kind])

    def record(self, kind: str, seconds: float) -> None:
        self.slowest[kind] = max(seconds, self.slowest.get(kind, 0.0))


def _versions() -> dict[str, str]:
    import jax

    from metarl_cli._version import __version__

    return {"metarl": __version__, "jax": jax.__version__}


def _pack(population: Any, keys: Any) -> dict[str, np.ndarray]:
    import jax

    tensors = {f"leaf/{i:03d}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(population))}
    tensors["keys"] = np.asarray(jax.random.key_data(keys))
    return tensors


def _unpack(tensors: dict[str, np.ndarray], template: Any) -> tuple[Any, Any]:
    import jax
    import jax.numpy as jnp

    leaves, treedef = jax.tree.flatten(template)
    population = [tensors[f"leaf/{i:03d}"] for i in range(len(leaves))]
    keys = jax.random.wrap_key_data(jnp.asarray(tensors["keys"]), impl="threefry2x32")
    return jax.tree.unflatten(treedef, population), keys


def _env_tensors(returns: dict[str, np.ndarray], env_ids: list[str]) -> dict[str, np.ndarray]:
    return {f"env/{i:02d}": np.asarray(returns[e], np.float32) for i, e in enumerate(env_ids)}


def _one_line(e: BaseException) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())[:500]


class LeaderProblem:
    """The `Problem` of process 0: an `RLProblem` whose runs are sliced over the processes.

    Args:
        problem: this process's `RLProblem`.
        peers: the exchange (`distributed.join`).
    """

    def __init__(self, problem: Any, peers: Peers) -> None:
        self.problem, self.peers = problem, peers
        self.cfg = problem.cfg
        self.template, self.start = problem.template, problem.start
        self.env_steps_per_generation = problem.env_steps_per_generation
        self.normalisers = problem.normalisers
        self.deadlines = Deadlines()
        self.env_ids = list(problem.fitness_fns)
        self.fitness_timings: dict[str, float] = {}

    def sliced_returns(
        self, kind: str, population: Any, keys: Any, n: int
    ) -> dict[str, np.ndarray]:
        """env id -> final returns [n] of runs 0..n-1 (run i: member i // len(keys), key
        i % len(keys)), each process training its `slice_of` them."""
        population = _as_numpy(population)
        t0 = time.perf_counter()
        seq = self.peers.broadcast(_pack(population, keys), {"op": "runs", "kind": kind, "n": n})
        count = self.peers.num_processes
        own = self.problem.returns(population, keys, slice_of(n, 0, count))
        own_s = time.perf_counter() - t0
        replies = self.peers.gather(
            seq,
            Message(seq, _env_tensors(own, self.env_ids), {"seconds": own_s}),
            self.deadlines.timeout(kind),
            f"{kind} results (command {seq})",
        )
        wall = time.perf_counter() - t0
        self.deadlines.record(kind, wall)
        slowest = max(float(r.meta.get("seconds", 0.0)) for r in replies)
        if kind == "fitness":  # what the exchange cost on top of the slowest slice
            self.fitness_timings = {"slowest_slice_s": slowest, "exchange_s": wall - slowest}
        full = {e: np.empty(n, np.float32) for e in self.env_ids}
        for p, reply in enumerate(replies):
            runs = slice_of(n, p, count)
            for i, e in enumerate(self.env_ids):
                got = reply.tensors.get(f"env/{i:02d}", np.zeros(0, np.float32))
                if got.shape != runs.shape:
                    raise PeerLost(p, f"process {p} answered {got.shape[0]} runs, not {len(runs)}")
                full[e][runs] = got
        return full

    def fitness(self, population: Any, keys: Any):
        import jax

        from metarl_cli.meta.es.fitness import combine_fitness

        popsize, rollouts = jax.tree.leaves(population)[0].shape[0], keys.shape[-1]
        every = self.sliced_returns("fitness", population, keys, popsize * rollouts)
        shaped = {e: r.reshape(popsize, rollouts) for e, r in every.items()}
        return combine_fitness(shaped, self.normalisers)

    def eval_returns(self, mean: Any) -> dict[str, np.ndarray]:
        one, keys = self.problem.eval_inputs(mean)
        return self.sliced_returns("evaluation", one, keys, self.cfg.eval_runs)


def _as_numpy(tree: Any) -> Any:
    """Host copies: what the leader trains is exactly the bytes the followers receive."""
    import jax

    return jax.tree.map(np.asarray, tree)


def handshake(plan: Any, peers: Peers, timeout_s: float) -> None:
    """Process 0 posts its config and versions; every follower checks them against its own
    (`check_hello`). Nothing has been written yet, so a refusal leaves no trace.

    Raises:
        ConfigError: a follower was started with another config or other versions.
    """
    meta = {"op": "hello", "config": plan.cfg.model_dump(mode="json"), "versions": _versions()}
    seq = peers.broadcast({}, meta)
    try:
        peers.gather(seq, Message(seq, {}, {}), timeout_s, "answer to the start of the run")
    except PeerLost as e:
        if "stopped with an error" in str(e):
            raise ConfigError(str(e).replace(" stopped with an error:", ":")) from None
        raise


def check_hello(plan: Any, meta: dict[str, Any]) -> str | None:
    """Why this follower cannot join process 0's run (None: it can)."""
    from metarl_cli.meta.es.config import config_differences

    if meta.get("op") != "hello":
        return f"expected the start of a run from process 0, got {meta.get('op')!r}"
    if meta["versions"] != _versions():
        return (
            f"process 0 runs {meta['versions']}, this process {_versions()}; install the same "
            "versions on every host"
        )
    diffs = config_differences(meta["config"], plan.cfg)
    if diffs:
        return (
            f"its flags differ from process 0's ({'; '.join(diffs)}); start every process "
            "with the same command"
        )
    return None


def serve(plan: Any, peers: Peers, devices: list | None = None, on_command: Any = None) -> int:
    """A follower's loop: checks process 0's config, then trains the slices it is sent until
    process 0 stops the run. Returns the number of slices trained.

    Raises:
        ConfigError: this process's config differs from process 0's (process 0 is told).
        MetarlError: process 0 stopped the run with an error.
    """
    from metarl_cli.meta.es.train import RLProblem

    hello = peers.next_command(FIRST_S, "start of the run")
    refusal = check_hello(plan, hello.meta)
    if refusal:
        peers.reply(hello.seq, {}, {"error": refusal})
        raise ConfigError(refusal)
    peers.reply(hello.seq, {}, {})
    problem = RLProblem(plan, devices=devices)
    deadlines, served, last = Deadlines(), 0, time.perf_counter()
    env_ids = list(problem.fitness_fns)
    while True:
        cmd = peers.next_command(deadlines.timeout("command"), "next command")
        op = cmd.meta.get("op")
        if op == "stop":
            if cmd.meta.get("status") != "done":
                raise MetarlError(f"process 0 stopped the run: {cmd.meta.get('message', '?')}")
            return served
        population, keys = _unpack(cmd.tensors, problem.template)
        runs = slice_of(int(cmd.meta["n"]), peers.process_id, peers.num_processes)
        t0 = time.perf_counter()
        try:
            own = problem.returns(population, keys, runs)
        except BaseException as e:
            peers.reply(cmd.seq, {}, {"error": _one_line(e)})
            raise
        seconds = time.perf_counter() - t0
        peers.reply(cmd.seq, _env_tensors(own, env_ids), {"seconds": seconds})
        served += 1
        if on_command:
            on_command(cmd.meta.get("kind"), len(runs))
        now = time.perf_counter()
        deadlines.record("command", now - last)
        last = now


def stop(peers: Peers, status: str = "done", message: str = "") -> None:
    """Process 0 ends the run for every follower (`status` "done", or why it stopped)."""
    peers.broadcast({}, {"op": "stop", "status": status, "message": message})
