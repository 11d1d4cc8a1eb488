"""Advisory locks between koble processes for files that are read, changed and written back.

A file that is replaced by rename (as every koble output is) cannot be locked itself: the
second process would lock the old inode while the first renames a new one into place. So
the lock is taken on a *sidecar* file next to it, ``NAME.lock``, which is never renamed or
removed. Every read-modify-write of a shared file (a keyset, a key directory, a workspace)
holds it from before the read until after the write, so two commands never both start from
the same old content and silently drop each other's change.

A directory that is never renamed (a linkage workspace) is locked itself:
:func:`directory_lock`.

The lock is ``flock`` on POSIX: released by the kernel when the process ends, however it
ends, so a killed command never leaves a stale lock behind. On Windows the lock is a no-op
(as the audit log's is).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from koble.errors import UsageError

if sys.platform != "win32":
    import fcntl

__all__ = ["DEFAULT_TIMEOUT", "directory_lock", "file_lock", "lock_path"]

#: Seconds a command waits for another to finish with a file before giving up.
DEFAULT_TIMEOUT = 120.0
_POLL = 0.05


def lock_path(path: str | Path) -> Path:
    """The sidecar lock file of ``path``: ``NAME.lock`` in the same directory."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


@contextmanager
def file_lock(path: str | Path, *, timeout: float = DEFAULT_TIMEOUT) -> Iterator[None]:
    """Hold the exclusive lock of ``path`` (its sidecar ``NAME.lock``) for the ``with`` block.

    Waits up to ``timeout`` seconds (0: do not wait) for another process or thread holding
    it, then raises :class:`UsageError` naming ``path``. Creates the directory if missing,
    since the caller is about to write there. Not re-entrant: taking the same lock twice in
    one thread waits for itself.
    """
    path = Path(path)
    if sys.platform == "win32":  # pragma: no cover - no flock on Windows
        yield
        return
    sidecar = lock_path(path)
    try:
        sidecar.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(sidecar, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise UsageError(f"cannot create the lock file {sidecar.name}: {exc.strerror}",
                         path=path) from None  # fmt: skip
    try:
        with _held(fd, path, timeout):
            yield
    finally:
        os.close(fd)


@contextmanager
def directory_lock(directory: str | Path, *, timeout: float = 0.0) -> Iterator[None]:
    """Hold the exclusive lock of ``directory`` itself (created if missing), which is never
    renamed, so no lock file is needed in it. Waits as :func:`file_lock` does; by default
    not at all."""
    directory = Path(directory)
    if sys.platform == "win32":  # pragma: no cover - no flock on Windows
        yield
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory, os.O_RDONLY)
    except OSError as exc:
        raise UsageError(f"cannot open the directory: {exc.strerror}", path=directory) from None
    try:
        with _held(fd, directory, timeout):
            yield
    finally:
        os.close(fd)


@contextmanager
def _held(fd: int, path: Path, timeout: float) -> Iterator[None]:
    """``flock`` ``fd`` exclusively, polling until ``timeout``; unlock on leaving."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                waited = f" (waited {timeout:g} s)" if timeout > 0 else ""
                raise UsageError(
                    f"in use by another koble command{waited}; try again when it has finished",
                    path=path,
                ) from None
            time.sleep(_POLL)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
