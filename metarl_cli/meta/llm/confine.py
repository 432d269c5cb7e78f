"""Confinement of a sandbox child (Linux): what LLM-written code can reach while it runs.

`sandbox_runner` applies these layers in its own process, each best effort, and reports which
took effect (`Confinement.layers`), so a run records what was enforced on that machine:

1. `PR_SET_PDEATHSIG`: the child is killed when its parent dies (no orphaned infinite loops).
2. Network: a new network namespace (`unshare(CLONE_NEWNET)`, with `CLONE_NEWUSER` when not
   root). It has only a loopback interface that is down, so no connection can be made, from
   Python or from native code. Needs unprivileged user namespaces where not root.
3. Filesystem (Landlock, Linux >= 5.13), for native code too: writes, removals and creation
   of files are allowed only beneath the temp dir (and the JAX compilation-cache dir when the
   job may use it); files and directories may be read only beneath `readable_roots` (the
   Python installation, `sys.path`, the `metarl_cli` package but not the checkout around it,
   the shared libraries, this process's own `/proc/<pid>` and a few files of host facts), so
   `/proc/<parent>/environ`, `/etc/passwd`, the home and working directories are unreadable;
   programs may be executed only from the Python and library directories. Landlock ABI >= 4
   also forbids TCP bind/connect; ABI >= 6 forbids signals to processes outside the sandbox.
   Metadata (`stat`, `readlink`) is not covered by Landlock: names and sizes stay visible.
4. Resource limits: no core files; files of at most `FSIZE` bytes; after the JAX backend is up,
   the address space may grow by at most the memory limit (`RLIMIT_AS`).
5. A Python audit hook (PEP 578; `audit.install_audit_hook`), installed just before
   candidate code runs: sockets, processes, `ctypes` foreign calls and signals are refused;
   files may be written only under the writable roots and read (or listed) only under layer
   3's code roots (not `/proc`, `/sys`: their text could end up in an error message) and the
   imported packages, also where Landlock is missing (so `.env` files and the run directory
   are unreadable). This layer covers every Python-level path (builtins `open`, `numpy.save`,
   `urllib`, ...); native code is only held by layers 2-4.

Layers 1-3 must be applied while the process has a single thread (before JAX is imported):
Landlock binds only the calling thread and the threads and processes it starts later.
`confine_process` refuses to go on (exit code `REFUSED_EXIT`, one line on stderr) when a layer
of `REQUIRED` did not take effect, unless the parent set `UNCONFINED_ENV` (`--unsafe-no-sandbox`).
"""

from __future__ import annotations

import ctypes
import os
import resource
import sys
from dataclasses import dataclass, field

FSIZE = 1 << 30  # largest file the child may write (bytes)

_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_SYS_LANDLOCK = {"create": 444, "add_rule": 445, "restrict": 446}  # same on x86_64 and arm64

# Landlock filesystem rights that change the filesystem (bit, first ABI with it).
_LL_WRITE_RIGHTS = (
    (1 << 1, 1),  # WRITE_FILE
    (1 << 4, 1),  # REMOVE_DIR
    (1 << 5, 1),  # REMOVE_FILE
    (1 << 6, 1),  # MAKE_CHAR
    (1 << 7, 1),  # MAKE_DIR
    (1 << 8, 1),  # MAKE_REG
    (1 << 9, 1),  # MAKE_SOCK
    (1 << 10, 1),  # MAKE_FIFO
    (1 << 11, 1),  # MAKE_BLOCK
    (1 << 12, 1),  # MAKE_SYM
    (1 << 13, 2),  # REFER
    (1 << 14, 3),  # TRUNCATE
)
_LL_FILE_RIGHTS = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 14)  # rights valid on a single file
_LL_EXECUTE, _LL_READ = 1 << 0, (1 << 2) | (1 << 3)  # READ_FILE | READ_DIR (ABI 1)

# Read-only beyond the Python installation (found by tracing a validation job on CPU; the rest
# are facts about the host that XLA, absl and hwloc read on some versions or on GPU). The
# temp dir is writable, hence readable; `/proc/self` is resolved to this process's own dir.
_SYSTEM_LIBS = ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib")  # + execute
_SYSTEM_READS = (
    "/etc/ld.so.cache",  # the dynamic loader
    "/etc/localtime",  # time zone (a link into /usr/share/zoneinfo; the rule is on its target)
    "/dev/null",
    "/dev/urandom",
    "/proc/self",  # /proc/<own pid>, with task/ (XLA names its threads, reads status, maps)
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/proc/stat",
    "/sys/devices/system/cpu",  # CPU counts (absl, XLA's thread pools)
    "/sys/devices/system/node",  # NUMA topology (hwloc)
    "/sys/fs/cgroup",  # CPU quotas
    "/proc/driver/nvidia",  # CUDA, where present
)
REQUIRED = ("landlock-read", "landlock-write", "network")  # refused without them
_LAYER_NAMES = {
    "landlock-read": "Landlock read rules",
    "landlock-write": "Landlock write rules",
    "network": "network isolation (user namespaces or Landlock ABI >= 4, Linux >= 6.7)",
}
UNCONFINED_ENV = "METARL_SANDBOX_UNCONFINED"  # "1": run even when a REQUIRED layer is missing
REFUSED_EXIT = 3  # the child's exit code when it refused to run unconfined


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


@dataclass
class Confinement:
    """What took effect in this process (`layers`) and what could not (`missing`; `lacking`:
    the ids of `REQUIRED` among them)."""

    writable: tuple[str, ...]
    layers: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    lacking: list[str] = field(default_factory=list)


def refusal(lacking: list[str] | tuple[str, ...]) -> str:
    """The one-line error for running without the layers `lacking` (ids of `REQUIRED`)."""
    names = ", ".join(_LAYER_NAMES.get(k, k) for k in lacking)
    if any(k.startswith("landlock") for k in lacking):
        names += "; Landlock needs Linux >= 5.13 with it enabled"
    return (
        f"the sandbox cannot confine candidate code on this machine (missing: {names}); "
        "pass --unsafe-no-sandbox to run it unconfined"
    )


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when there is none (or it is disabled, or not Linux)."""
    if not sys.platform.startswith("linux"):
        return 0
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(_SYS_LANDLOCK["create"], None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(int(abi), 0)


def host_lacking() -> list[str]:
    """The `REQUIRED` layers this machine surely cannot give, known without starting a child
    (the network namespace is only known by trying, in the child)."""
    if landlock_abi() >= 1:
        return []
    return [*REQUIRED] if not sys.platform.startswith("linux") else [*REQUIRED[:2]]


def readable_roots() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(code, data): where the child may read and execute (the Python installation, `sys.path`,
    `metarl_cli`, the shared libraries), and where it may only read (`_SYSTEM_READS`, CUDA's
    device files); real paths that exist. A `sys.path` entry that is the checkout around an
    editable `metarl_cli` (or `/`) is left out: the package dir itself is in."""
    package = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    above = os.path.realpath(os.path.dirname(package))
    left_out = {"/"} if above.endswith(("/site-packages", "/dist-packages")) else {"/", above}
    python = (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)
    paths = [p for p in sys.path if p and os.path.exists(p)]
    code = [*python, package, *_SYSTEM_LIBS]
    code += [p for p in paths if os.path.realpath(p) not in left_out]
    try:
        devices = [f"/dev/{n}" for n in os.listdir("/dev") if n.startswith("nvidia")]
    except OSError:
        devices = []

    def real(paths: list[str]) -> tuple[str, ...]:
        return tuple(sorted({os.path.realpath(p) for p in paths if os.path.exists(p)}))

    return real(code), real([*_SYSTEM_READS, *devices])


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def die_with_parent(parent: int) -> bool:
    """Layer 1, first thing in the child: SIGKILL when the parent dies; exits at once if the
    parent `parent` is already gone (it died before the request took effect)."""
    import signal

    if not sys.platform.startswith("linux"):
        return False
    ok = _libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    if parent and os.getppid() != parent:
        os._exit(1)
    return ok


def _die_with_parent(conf: Confinement) -> None:
    if die_with_parent(0):
        conf.layers.append("dies with its parent")


def _new_network_namespace(conf: Confinement) -> None:
    libc = _libc()
    if libc.unshare(_CLONE_NEWNET) == 0:
        conf.layers.append("network: empty network namespace")
        return
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
        err = os.strerror(ctypes.get_errno())
        conf.missing.append(f"network namespace ({err}: user namespaces not permitted)")
        return
    try:  # keep our own ids inside the namespace, so file ownership looks the same
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    except OSError:
        pass
    conf.layers.append("network: empty network namespace (user namespace)")


def _landlock(conf: Confinement) -> int:
    """Layer 3; returns the ABI that took effect (0: none)."""
    abi = landlock_abi()
    if abi < 1:
        conf.missing.append("Landlock (kernel without it, or disabled): files held by Python only")
        conf.lacking += ["landlock-read", "landlock-write"]
        return 0
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    write = sum(bit for bit, since in _LL_WRITE_RIGHTS if abi >= since)
    attr = _RulesetAttr(write | _LL_READ | _LL_EXECUTE, 0, 0)
    size = 8
    if abi >= 4:
        attr.handled_access_net = (1 << 0) | (1 << 1)  # BIND_TCP | CONNECT_TCP, no rule: none
        size = 16
    if abi >= 6:
        attr.scoped = (1 << 0) | (1 << 1)  # abstract unix sockets, signals
        size = 24
    fd = libc.syscall(_SYS_LANDLOCK["create"], ctypes.byref(attr), ctypes.c_size_t(size), 0)
    if fd < 0:
        conf.missing.append(f"Landlock ruleset ({os.strerror(ctypes.get_errno())})")
        conf.lacking += ["landlock-read", "landlock-write"]
        return 0
    code, data = readable_roots()
    rules = [(p, write | _LL_READ) for p in (*conf.writable, "/dev/null")]  # nothing written runs
    rules += [(p, _LL_READ | _LL_EXECUTE) for p in code] + [(p, _LL_READ) for p in data]
    try:
        for path, rights in rules:
            try:
                pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if not os.path.isdir(path):
                    rights &= _LL_FILE_RIGHTS
                rule = _PathBeneathAttr(rights, pfd)
                libc.syscall(_SYS_LANDLOCK["add_rule"], fd, 1, ctypes.byref(rule), 0)
            finally:
                os.close(pfd)
        libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        if libc.syscall(_SYS_LANDLOCK["restrict"], fd, 0) != 0:
            conf.missing.append(f"Landlock ({os.strerror(ctypes.get_errno())})")
            conf.lacking += ["landlock-read", "landlock-write"]
            return 0
    finally:
        os.close(fd)
    what = f"files written only in {', '.join(conf.writable)}; read only in the Python "
    what += "installation, metarl_cli, the system libraries and the temp dir"
    if abi >= 4:
        what += "; no TCP bind/connect"
    if abi >= 6:
        what += "; no signals outside"
    conf.layers.append(f"Landlock ABI {abi}: {what}")
    return abi


def confine_process(writable: list[str]) -> Confinement:
    """Layers 1-3 and the static rlimits; call while single-threaded (before importing JAX).

    Exits the process (`REFUSED_EXIT`, `refusal` on stderr) when a layer of `REQUIRED` did
    not take effect, unless the environment has `UNCONFINED_ENV=1`.
    """
    conf = Confinement(tuple(os.path.realpath(p) for p in writable))
    if not sys.platform.startswith("linux"):
        conf.missing.append(f"OS layers (only on Linux, this is {sys.platform})")
        conf.lacking += REQUIRED
    else:
        _die_with_parent(conf)
        _new_network_namespace(conf)
        abi = _landlock(conf)
        if abi < 4 and not any(layer.startswith("network") for layer in conf.layers):
            conf.lacking.append("network")
    if conf.lacking and os.environ.get(UNCONFINED_ENV) != "1":
        sys.stderr.write(refusal(conf.lacking) + "\n")
        sys.stderr.flush()
        os._exit(REFUSED_EXIT)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    limit = FSIZE if hard == resource.RLIM_INFINITY else min(FSIZE, hard)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    conf.layers.append(f"files at most {FSIZE >> 20} MiB, no core dumps")
    return conf


def limit_memory(conf: Confinement, memory_bytes: int | None) -> None:
    """RLIMIT_AS = current address space + `memory_bytes` (after the JAX backend is up, so the
    limit covers what the candidate allocates, not what the runtime reserved at start)."""
    if not memory_bytes:
        conf.missing.append("memory limit (disabled)")
        return
    try:
        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (OSError, StopIteration):
        vm = 0
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = vm + int(memory_bytes)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    conf.layers.append(f"address space may grow by {memory_bytes / 2**30:g} GiB")
