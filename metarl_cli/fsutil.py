"""Safe output files: check an output path early, then write it atomically.

Every command that writes a file calls `check_writable` before its expensive work, so a run of
hours never fails at the very end on a path typo or an existing file. The final write goes to a
temporary file in the same directory, is fsynced, and only then takes the final name, so a crash
or Ctrl-C never leaves a half-written file behind, and an existing file is never replaced unless
the user passed `--force`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from metarl_cli.errors import MetarlError, OutputExistsError

__all__ = ["atomic_write_bytes", "atomic_write_text", "check_writable"]

# What `os.link` fails with where the filesystem has no hard links (rather than a real error).
_NO_HARD_LINKS = frozenset(
    {errno.EPERM, errno.EACCES, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV}
)


def check_writable(path: str | os.PathLike[str], *, force: bool) -> Path:
    """Checks that `path` can be written as a new (or, with `force`, replaced) file.

    Args:
        path: the output file.
        force: whether an existing file may be overwritten.

    Returns:
        The resolved absolute path.

    Raises:
        OutputExistsError: the file exists and `force` is false.
        MetarlError: the path is a directory, or its parent directory is missing or not writable.
    """
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
    if resolved.exists() and not force:
        raise OutputExistsError(f"{resolved} exists; pass --force to overwrite it")
    return resolved


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
    target = check_writable(path, force=force)
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
