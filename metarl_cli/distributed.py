"""Several processes, one run: JAX's distributed runtime and the small exchanges over it.

A multi-process run is N copies of one command, one per host (or per GPU), joined by
`jax.distributed.initialize`. Process 0 hosts JAX's coordination service and is the *leader*:
it decides (ES: asks, tells, checkpoints, writes files); the others are *followers* that do
what it posts. Nothing here runs an XLA collective: each process's JAX backends are made as a
single process's (`_local_backends`), it computes on its own devices with the ordinary
single-process programs (and finds them in the persistent compilation cache), and the
exchanges (a population out, fitness back, a few kB to MB per generation) go through the
coordination service's key-value store, polled in one-second slices, so every wait has an
explicit timeout and Ctrl-C stays responsive. See docs/distributed.md.

Failure: the runtime's heartbeat notices a process that died (or lost its network) after
`peer_timeout` seconds and aborts every other process (SIGABRT, from C++: no Python runs).
The CLI runs each process under a guard (`cli/_guard.py`) that turns that abort into one line
naming the lost process and the command that resumes the run, and exit `EXIT_PEER_LOST`; a
loss this module sees itself (a peer that does not answer in time, or reports an error) ends
the process the same way (`exit_lost`).

`Cluster` (where this process sits) is validated without importing JAX; `join` starts the
runtime and returns `Peers`, the exchange.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from metarl_cli.errors import ConfigError, MetarlError

EXIT_PEER_LOST = 75
"""Exit status of a process whose peer was lost (EX_TEMPFAIL: resume with --resume)."""
STARTUP_S = 300
"""How long processes wait for each other to join (a host started late, a slow import)."""
PEER_TIMEOUT_S = 60
"""Default seconds without a heartbeat after which a process counts as lost (JAX's is 100)."""
POLL_S = 1.0
"""Each wait on the key-value store is cut into slices this long (Ctrl-C is seen between)."""
ENV_COORDINATOR = "METARL_COORDINATOR"
ENV_NUM_PROCESSES = "METARL_NUM_PROCESSES"
ENV_PROCESS_ID = "METARL_PROCESS_ID"
ENV_LAUNCH = "METARL_LAUNCH"  # set by `metarl launch`: the prefix of the resume command


class PeerLost(Exception):
    """A peer died, lost its network, stopped with an error or did not answer in time.

    Not a `MetarlError` (exit 2): the CLI prints the message and exits `EXIT_PEER_LOST`.
    """

    def __init__(self, process: int | None, what: str) -> None:
        super().__init__(what)
        self.process = process


@dataclass(frozen=True)
class Cluster:
    """Where this process sits in a multi-process run.

    Attributes:
        coordinator: `HOST:PORT` of process 0's coordination service (None: JAX derives it
            from the SLURM job).
        num_processes: processes in the run.
        process_id: this process, 0 (the leader) to num_processes - 1.
        peer_timeout: seconds without a heartbeat after which a process counts as lost.
        source: where the settings came from ("flags", "slurm").
    """

    coordinator: str | None
    num_processes: int
    process_id: int
    peer_timeout: int = PEER_TIMEOUT_S
    source: str = "flags"

    @property
    def is_leader(self) -> bool:
        return self.process_id == 0


def _check_address(address: str) -> str:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"--coordinator must be HOST:PORT (process 0's host and a free port), got {address!r}"
        )
    return address


def cluster_from(
    coordinator: str | None,
    num_processes: int | None,
    process_id: int | None,
    *,
    peer_timeout: int = PEER_TIMEOUT_S,
    env: Mapping[str, str] | None = None,
) -> Cluster | None:
    """The cluster of the flags (the CLI also reads them from METARL_COORDINATOR,
    METARL_NUM_PROCESSES, METARL_PROCESS_ID; the address also from JAX_COORDINATOR_ADDRESS),
    else of a SLURM step with several tasks, as JAX detects it; None for a single process.
    Checks everything without importing JAX.

    Raises:
        ConfigError: a malformed address, an id outside [0, N), a missing setting.
    """
    env = os.environ if env is None else env
    if peer_timeout < 1:
        raise ConfigError(f"--peer-timeout must be at least 1 second, got {peer_timeout}")
    source = "flags"
    slurm = all(k in env for k in ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_PROCID"))
    if slurm and int(env.get("SLURM_NTASKS", "1")) > 1:
        if num_processes is None and process_id is None:
            source = "slurm"
        num_processes = int(env["SLURM_NTASKS"]) if num_processes is None else num_processes
        process_id = int(env["SLURM_PROCID"]) if process_id is None else process_id
    if coordinator is None and num_processes is None and process_id is None:
        return None
    coordinator = coordinator or env.get("JAX_COORDINATOR_ADDRESS")  # JAX's own variable
    if num_processes is None or process_id is None:
        missing = "--num-processes" if num_processes is None else "--process-id"
        raise ConfigError(f"{missing} is needed for a multi-process run (or run under SLURM)")
    if num_processes < 1:
        raise ConfigError(f"--num-processes must be at least 1, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise ConfigError(
            f"--process-id must be between 0 and {num_processes - 1} "
            f"(--num-processes {num_processes}), got {process_id}"
        )
    if coordinator is None and source != "slurm":
        raise ConfigError("--coordinator HOST:PORT is needed for a multi-process run")
    if coordinator is not None:
        _check_address(coordinator)
    if num_processes == 1:
        return None
    return Cluster(coordinator, num_processes, process_id, peer_timeout, source)


# --- the runtime ------------------------------------------------------------------------------

_resume_hint: Callable[[], str] | None = None
_exiting = threading.Lock()
_joined: Cluster | None = None


def set_resume_hint(hint: Callable[[], str] | None) -> None:
    """`hint()` is appended to the message of a lost peer (the command that resumes the run)."""
    global _resume_hint
    _resume_hint = hint


def lost_message(e: PeerLost) -> str:
    """The one line a survivor prints: who was lost, who stops, how to resume."""
    me = _joined.process_id if _joined is not None else "?"
    hint = ""
    if _resume_hint is not None:
        try:
            hint = f"; {_resume_hint()}"
        except Exception:  # the hint must never hide the message
            hint = ""
    return f"{' '.join(str(e).split())}; process {me} stops too{hint}"


def exit_lost(e: PeerLost) -> NoReturn:
    """Prints `lost_message(e)` on stderr and ends the process at once with `EXIT_PEER_LOST`.

    Only the first caller prints (a second waits for the end); `os._exit` because the
    runtime's own shutdown would wait for the lost process (and the runtime may be about to
    abort this one).
    """
    if not _exiting.acquire(blocking=False):
        threading.Event().wait()
    line = f"error: {lost_message(e)}\n"
    try:
        sys.stdout.flush()
        if sys.stderr.isatty():
            line = "\n\x1b[?25h" + line  # a progress bar may have hidden the cursor
        sys.stderr.write(line)
        sys.stderr.flush()
    finally:
        os._exit(EXIT_PEER_LOST)


def join(cluster: Cluster) -> Peers:
    """Starts JAX's distributed runtime for this process (before JAX has run anything) and
    returns the exchange. A peer lost while this process waits on it ends this process with
    `exit_lost`; the runtime itself aborts a process whose peer is lost at any other moment
    (the CLI's guard, `cli/_guard.py`, turns that abort into the same line).

    Raises:
        ConfigError: JAX already ran something in this process.
        MetarlError: the processes did not all join within `STARTUP_S` seconds.
    """
    global _joined
    from jax._src import distributed, xla_bridge

    _joined = cluster
    if distributed.global_state.client is None:  # else: the caller started the runtime
        if xla_bridge.backends_are_initialized():
            raise ConfigError(
                "a multi-process run must join before JAX runs anything; start it as its own "
                "process (metarl train es ... --coordinator ...)"
            )
        _initialize(cluster)
    return Peers(cluster, distributed.global_state.client)


def _initialize(cluster: Cluster) -> None:
    import jax

    try:
        jax.distributed.initialize(
            cluster.coordinator,
            cluster.num_processes,
            cluster.process_id,
            initialization_timeout=STARTUP_S,
            heartbeat_timeout_seconds=cluster.peer_timeout,
        )
    except Exception as e:  # the runtime's own errors: unreachable, timed out, port in use
        where = cluster.coordinator or "the SLURM job's first node"
        raise MetarlError(
            f"process {cluster.process_id} of {cluster.num_processes} could not join the run at "
            f"{where} within {STARTUP_S} s ({' '.join(str(e).split())[:300]}); start every "
            "process with the same --coordinator and --num-processes and a distinct --process-id"
        ) from None
    _local_backends()


def _local_backends() -> None:
    """Creates this process's XLA backends as a single process's: its own devices only,
    numbered from 0, with no cross-process collectives (nothing here runs one).

    JAX would give every backend the runtime client, which numbers devices by process
    (process 1's first CPU device is not device 0) and so makes every compiled program's
    cache key differ between processes: no process but 0 writes JAX's persistent cache, so the
    others would never find their programs in it. The runtime client (the key-value store, the
    heartbeat) is unchanged; it is only hidden while the backends are made.
    """
    import jax
    from jax._src import distributed

    state = distributed.global_state
    saved = (state.client, state.process_id, state.num_processes)
    state.client, state.process_id, state.num_processes = None, 0, 1
    try:
        jax.devices()
    finally:
        state.client, state.process_id, state.num_processes = saved


def leave() -> None:
    """Shuts the runtime down in step with the others (the normal end of a run)."""
    import jax

    jax.distributed.shutdown()


# --- the exchange -----------------------------------------------------------------------------


def encode(tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> bytes:
    """Arrays and a JSON header as one safetensors blob (never pickle)."""
    import safetensors.numpy

    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    return safetensors.numpy.save(arrays, metadata={"meta": json.dumps(dict(meta))})


def decode(blob: bytes) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    import safetensors
    import safetensors.numpy

    tensors = safetensors.numpy.load(blob)
    header = json.loads(blob[8 : 8 + int.from_bytes(blob[:8], "little")])
    return tensors, json.loads(header.get("__metadata__", {}).get("meta", "{}"))


@dataclass
class Message:
    """One command from the leader, or one reply to it."""

    seq: int
    tensors: dict[str, np.ndarray]
    meta: dict[str, Any]


class Peers:
    """The leader's commands and the followers' replies, over the coordination service.

    The leader posts command `seq` (`broadcast`) and collects one reply per process
    (`gather`, its own included); a follower reads the next command (`next_command`) and
    answers it (`reply`). Each wait names who it waits for and gives up after its timeout.
    """

    def __init__(self, cluster: Cluster, client: Any, namespace: str = "metarl") -> None:
        self.cluster, self.client, self.namespace = cluster, client, namespace
        self.process_id, self.num_processes = cluster.process_id, cluster.num_processes
        self.seq = 0

    @property
    def is_leader(self) -> bool:
        return self.process_id == 0

    def _key(self, *parts: Any) -> str:
        return "/".join([self.namespace, *(str(p) for p in parts)])

    def _wait(self, key: str, timeout_s: float, who: int, what: str) -> bytes:
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PeerLost(
                    who,
                    f"process {who} sent no {what} within {timeout_s:,.0f} s (it may hang, or be "
                    "far slower than expected)",
                )
            try:
                return bytes(
                    self.client.blocking_key_value_get_bytes(key, int(1000 * min(POLL_S, left)))
                )
            except Exception as e:  # the runtime raises one error type for every status
                text = str(e)
                if "DEADLINE_EXCEEDED" in text or "timed out" in text.lower():
                    continue
                # The runtime's own report (`_on_runtime_error`) names the lost process:
                # give it the moment it takes to arrive before reporting this one.
                time.sleep(2 * POLL_S)
                lost = who if self.is_leader else 0
                raise PeerLost(
                    lost,
                    f"process {lost} of the run is gone (waiting for its {what}, the runtime "
                    f"reported: {' '.join(text.split())[:200]})",
                ) from None

    def broadcast(self, tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> int:
        """Posts the next command (leader only); returns its sequence number."""
        self.seq += 1
        self.client.key_value_set_bytes(self._key("cmd", self.seq), encode(tensors, meta))
        return self.seq

    def gather(
        self,
        seq: int,
        own: Message,
        timeout_s: float,
        what: str,
    ) -> list[Message]:
        """Every process's reply to command `seq`, by process id (the leader's is `own`); then
        removes the command and the replies from the store."""
        out = [own]
        for p in range(1, self.num_processes):
            blob = self._wait(self._key("reply", seq, p), timeout_s, p, what)
            tensors, meta = decode(blob)
            if "error" in meta:
                raise PeerLost(p, f"process {p} stopped with an error: {meta['error']}")
            out.append(Message(seq, tensors, meta))
        self.client.key_value_delete(self._key("cmd", seq))
        for p in range(1, self.num_processes):
            self.client.key_value_delete(self._key("reply", seq, p))
        return out

    def next_command(self, timeout_s: float, what: str = "command") -> Message:
        """The leader's next command (followers)."""
        self.seq += 1
        tensors, meta = decode(self._wait(self._key("cmd", self.seq), timeout_s, 0, what))
        return Message(self.seq, tensors, meta)

    def reply(self, seq: int, tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        """Answers command `seq` (followers)."""
        self.client.key_value_set_bytes(
            self._key("reply", seq, self.process_id), encode(tensors, meta)
        )


def slice_of(n: int, process_id: int, num_processes: int) -> np.ndarray:
    """The indices of `n` runs that process `process_id` computes: a contiguous block, the
    blocks as even as they can be (`np.array_split`), in process order."""
    return np.array_split(np.arange(n), num_processes)[process_id]
