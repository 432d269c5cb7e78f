"""Layer 5 of the sandbox child's confinement (see `confine`): a Python audit hook (PEP 578).

Installed just before candidate code runs: sockets, processes, `ctypes` foreign calls and
signals are refused; files may be written only under the writable roots and read (or listed)
only under Landlock's code roots (not `/proc`, `/sys`: their text could end up in an error
message) and the imported packages, also where Landlock is missing. Native code is only held
by the OS layers of `confine`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from metarl_cli.meta.llm.confine import Confinement, readable_roots


def _read_roots(conf: Confinement) -> tuple[str, ...]:
    """Landlock's code roots, the writable roots and the imported top-level packages. Its data
    roots (`/proc/<pid>`, `/sys`, ...) are for the runtime's native code: a Python-level read of
    them (`np.loadtxt("/proc/self/environ")`) would put their text in an error message."""
    roots = {*conf.writable, *readable_roots()[0], "/dev/null"}
    for name, module in list(sys.modules.items()):
        if "." in name:
            continue
        paths = getattr(module, "__path__", None)
        if paths is not None:
            roots.update(str(p) for p in paths)  # package dirs, never their parent
        elif file := getattr(module, "__file__", None):
            roots.add(file)
    return tuple(sorted(os.path.realpath(r) for r in roots if r))


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


_DENIED_PREFIXES = (
    "socket.",
    "subprocess.",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "os.kill",
    "os.killpg",
    "os.startfile",
    "pty.",
    "ctypes.dlopen",
    "ctypes.dlsym",
    "ctypes.call_function",
    "ctypes.cdata",
    "urllib.Request",
    "http.client.",
    "ftplib.",
    "smtplib.",
    "webbrowser.",
    "sys.addaudithook",
)
_PATH_EVENTS = {
    "os.remove": 1,
    "os.rmdir": 1,
    "os.mkdir": 1,
    "os.chmod": 1,
    "os.chown": 1,
    "os.truncate": 1,
    "os.utime": 1,
    "os.rename": 2,
    "os.link": 2,
    "os.symlink": 2,
    "shutil.copyfile": 2,
    "shutil.move": 2,
}
_LIST_EVENTS = ("os.listdir", "os.scandir")  # read checks on their path
DENIED: list[str] = []  # what the hook refused, newest last (native callers may hide the error)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def install_audit_hook(conf: Confinement, cache_writers: tuple[str, ...] = ()) -> None:
    """Layer 5. `cache_writers`: path fragments of modules whose frames may write under the
    writable roots other than the first (the temp dir), i.e. JAX's compilation cache."""
    read_roots = _read_roots(conf)
    temp = conf.writable[:1]
    busy = [False]

    def writer_allowed(path: str) -> bool:
        if _under(path, temp):
            return True
        if not _under(path, conf.writable):
            return False
        frame: Any = sys._getframe(2)
        while frame is not None:
            if any(w in frame.f_code.co_filename for w in cache_writers):
                return True
            frame = frame.f_back
        return False

    def deny(message: str) -> None:
        DENIED.append(message)
        raise PermissionError(message)

    def check_path(raw, writing: bool) -> None:
        if raw is None or isinstance(raw, int):
            return
        path = os.path.realpath(os.fsdecode(raw))
        if writing and not writer_allowed(path):
            deny(f"sandbox: writing {path} is not allowed (temp dir only)")
        if not writing and not _under(path, read_roots):
            deny(f"sandbox: reading {path} is not allowed")

    def hook(event: str, args: tuple) -> None:
        if busy[0]:
            return
        if event.startswith(_DENIED_PREFIXES):
            what = "network access" if event.startswith(("socket", "urllib", "http")) else event
            deny(f"sandbox: {what} is not allowed")
        if event != "open" and event not in _PATH_EVENTS and event not in _LIST_EVENTS:
            return
        busy[0] = True
        try:
            if event in _LIST_EVENTS:
                check_path(args[0] if args else None, False)
            elif event == "open":
                path, mode, flags = args
                writing = bool(mode and any(c in mode for c in "wax+")) or bool(
                    (flags or 0) & _WRITE_FLAGS
                )
                check_path(path, writing)
            else:
                for raw in args[: _PATH_EVENTS[event]]:
                    check_path(raw, True)
        finally:
            busy[0] = False

    sys.addaudithook(hook)
    conf.layers.append("audit hook: no sockets/processes/ctypes; reads and writes restricted")
