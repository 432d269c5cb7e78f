"""Safe output files: check an output path early, then write it atomically.

Every command that writes a file calls `check_writable` before its expensive work, so a run of
hours never fails at the very end on a path typo or an existing file. The final write goes to a
temporary file in the same directory, is fsynced, and only then takes the final name, so a crash
or Ctrl-C never leaves a half-written file behind, and an existing file is never replaced unless
the user passed `--force`.

Inputs go through `read_regular_file`, which refuses FIFOs, devices and oversized files before
reading a byte, and meta-learners' run directories are locked by `lock_run_dir` (an advisory
`flock` the kernel drops when the process ends, even on kill -9), so two runs never interleave.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
from pathlib import Path

from metarl_cli.errors import MetarlError, OutputExistsError, RunDirLockedError

__all__ = [
    "LOCK_NAME",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_dir_writable",
    "check_writable",
    "lock_run_dir",
    "read_regular_file",
    "unlock_all_run_dirs",
    "unlock_run_dir",
]

LOCK_NAME = ".metarl.lock"
"""The lock file `lock_run_dir` keeps in a run directory (never removed: see there)."""

# What `os.link` fails with where the filesystem has no hard links (rather than a real error).
_NO_HARD_LINKS = frozenset(
    {errno.EPERM, errno.EACCES, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV}
)


def check_writable(path: str | os.PathLike[str], *, force: bool, probe: bool = True) -> Path:
    """Checks that `path` can be written as a new (or, with `force`, replaced) file.

    Args:
        path: the output file.
        force: whether an existing file may be overwritten.
        probe: also create and remove a temporary file next to it. `os.access` says yes to
            root on /proc or /sys and on a read-only or full mount; only a real file says no.

    Returns:
        The resolved absolute path.

    Raises:
        OutputExistsError: the file exists and `force` is false.
        MetarlError: the path is a directory or not a regular file (a device, FIFO or socket,
            even with `force`), or its parent directory is missing or does not take new files.
    """
    try:
        return _check_writable(path, force=force, probe=probe)
    except OSError as exc:  # a name too long, a symlink loop, a component that is a file
        raise MetarlError(f"cannot write {path}: {exc.strerror or exc}") from None


def _check_writable(path: str | os.PathLike[str], *, force: bool, probe: bool) -> Path:
    resolved = Path(path).expanduser().resolve()
    if resolved.is_dir():
        raise MetarlError(f"{resolved} is a directory; give a file path to write to")
    parent = resolved.parent
    if not parent.exists():
        raise MetarlError(f"cannot write {resolved}: directory {parent} does not exist; create it")
    if not parent.is_dir():
        raise MetarlError(f"cannot write {resolved}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MetarlError(f"cannot write {resolved}: directory {parent} is not writable")
    if resolved.exists() and not resolved.is_file():
        raise MetarlError(
            f"cannot write {resolved}: it is not a regular file (a device, FIFO or socket); "
            "give a file path"
        )
    if resolved.exists() and not force:
        raise OutputExistsError(f"{resolved} exists; pass --force to overwrite it")
    if probe:
        check_dir_writable(parent, what=f"cannot write {resolved}")
    return resolved


def os_reason(exc: OSError) -> str:
    """The short reason of an OS error for a one-line message ("Permission denied")."""
    return exc.strerror or type(exc).__name__


def check_dir_writable(directory: str | os.PathLike[str], *, what: str) -> None:
    """Creates and removes a temporary file in `directory`, or raises a one-line `MetarlError`
    starting with `what` (for /proc, /sys, read-only and full filesystems)."""
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".metarl-probe-", suffix=".tmp"):
            pass
    except OSError as exc:
        raise MetarlError(
            f"{what}: directory {directory} does not take new files ({os_reason(exc)}); "
            "choose a path on a normal, writable filesystem"
        ) from None


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, force: bool) -> Path:
    """Writes `data` to `path` atomically: readers see the old file or the whole new one.

    Args:
        path: the output file.
        data: the complete file contents.
        force: whether an existing file may be overwritten.

    Returns:
        The resolved absolute path written.

    Raises:
        OutputExistsError: the file exists (or appeared during the write) and `force` is false.
        MetarlError: see `check_writable`.
    """
    target = check_writable(path, force=force, probe=False)  # the temporary file is the probe
    tmp = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed explicitly before the rename
        delete=False, dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    tmp_path = Path(tmp.name)
    try:
        with tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        # NamedTemporaryFile creates 0600 files; an output file should get the usual permissions.
        os.chmod(tmp_path, 0o666 & ~_current_umask())
        if force:
            os.replace(tmp_path, target)
        else:
            _link_without_clobbering(tmp_path, target)
    except BaseException:
        # BaseException too: a Ctrl-C mid-write must not leave the temporary file behind.
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise
    _fsync_directory(target.parent)
    return target


def atomic_write_text(
    path: str | os.PathLike[str], text: str, *, force: bool, encoding: str = "utf-8"
) -> Path:
    """Writes `text` to `path` atomically; see `atomic_write_bytes`.

    Args:
        path: the output file.
        text: the complete file contents.
        force: whether an existing file may be overwritten.
        encoding: the text encoding.

    Returns:
        The resolved absolute path written.
    """
    return atomic_write_bytes(path, text.encode(encoding), force=force)


def _link_without_clobbering(tmp_path: Path, target: Path) -> None:
    """Gives `tmp_path` the name `target` unless `target` exists, then drops the temporary name.

    `os.replace` would silently replace a file created by someone else since `check_writable`;
    a hard link fails instead, which is the atomic "create only if absent" rename POSIX lacks.
    """
    try:
        os.link(tmp_path, target)
    except FileExistsError:
        raise OutputExistsError(f"{target} exists; pass --force to overwrite it") from None
    except OSError as exc:
        # Some filesystems (FAT, some network mounts) have no hard links: fall back to a checked
        # rename, which leaves only a tiny race window instead of failing the whole run.
        if exc.errno not in _NO_HARD_LINKS:
            raise
        if target.exists():
            raise OutputExistsError(f"{target} exists; pass --force to overwrite it") from None
        os.replace(tmp_path, target)
        return
    with contextlib.suppress(OSError):
        tmp_path.unlink()


def _current_umask() -> int:
    """Returns the process umask (which can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_directory(directory: Path) -> None:
    """Makes the rename itself durable; best effort, as not every platform can open a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def read_regular_file(
    path: str | os.PathLike[str],
    *,
    what: str,
    max_bytes: int,
    error: type[MetarlError] = MetarlError,
) -> bytes:
    """Reads a whole regular file, refusing anything else before reading a byte.

    A FIFO would block forever and `/dev/zero` would fill memory, so the file is opened without
    blocking and checked with `fstat` on the open descriptor (no race with a rename).

    Args:
        path: the file.
        what: what the file is, for messages ("artefact", "config file").
        max_bytes: the largest size accepted.
        error: the `MetarlError` subclass to raise.

    Returns:
        The file's contents.

    Raises:
        error: the file is missing, a directory, not a regular file, too large or unreadable.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise error(f"no such {what}: {path}") from None
    except IsADirectoryError:
        raise error(f"{path} is a directory, not {_a(what)}") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        mode, size = info.st_mode, info.st_size
        if stat.S_ISDIR(mode):
            raise error(f"{path} is a directory, not {_a(what)}")
        if not stat.S_ISREG(mode):
            raise error(
                f"{path} is not a regular file (a FIFO, device or socket), so it is not read "
                f"as {_a(what)}"
            )
        if size > max_bytes:
            raise error(
                f"{path} is {size:,} bytes, more than {_a(what)} may be ({max_bytes:,}); "
                f"is it really {_a(what)}?"
            )
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise error(f"{path} grew past {max_bytes:,} bytes while being read")
    return data


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


# Run-directory locks held by this process: resolved directory -> open lock-file descriptor.
_LOCKS: dict[Path, int] = {}


def lock_run_dir(directory: str | os.PathLike[str], *, create: bool) -> bool:
    """Takes this process's exclusive lock on a run directory, until it is released.

    The lock is an advisory `flock` on `directory/.metarl.lock`: the kernel drops it when the
    process ends however it ends (kill -9 included), so a stale lock cannot outlive its run and
    the file itself is never removed (removing it would let two processes lock two different
    files). A process re-entering a directory it already holds keeps its lock, so a run is
    checked and started under one lock. `metarl` releases its locks when a command ends
    (`unlock_all_run_dirs`); a library caller releases with `unlock_run_dir` or by exiting.

    Args:
        directory: the run directory.
        create: create the lock file (when the run starts writing); without it, only an existing
            lock file is locked, so checking a run before it starts writes nothing.

    Returns:
        Whether this process now holds the lock (False: no lock file yet and `create` false, or
        a filesystem without `flock`, where runs are not protected).

    Raises:
        RunDirLockedError: another live process holds the lock.
        MetarlError: the lock file cannot be created.
    """
    key = Path(directory).expanduser().resolve()
    if key in _LOCKS:
        return True
    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(key / LOCK_NAME, flags, 0o644)
    except FileNotFoundError:
        if create:
            raise MetarlError(f"cannot lock run dir {key}: it does not exist") from None
        return False
    except OSError as exc:
        raise MetarlError(f"cannot lock run dir {key}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunDirLockedError(
            f"run dir {key} is in use by another metarl run (it holds {LOCK_NAME}); wait for "
            "that run to end, or pass another --run-dir"
        ) from None
    except OSError:  # no flock on this filesystem (some network mounts): run unprotected
        os.close(fd)
        return False
    _LOCKS[key] = fd
    return True


def unlock_run_dir(directory: str | os.PathLike[str]) -> None:
    """Releases this process's lock on a run directory (a no-op if it holds none)."""
    fd = _LOCKS.pop(Path(directory).expanduser().resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the only descriptor of the open file drops the flock


def unlock_all_run_dirs() -> None:
    """Releases every run-directory lock of this process (the CLI does when a command ends)."""
    for directory in list(_LOCKS):
        unlock_run_dir(directory)
