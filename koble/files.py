"""Small file helpers shared across koble: reading, and writing outputs atomically (hashing:
:mod:`koble.digests`).

Every file koble writes goes through :func:`atomic_write` (or :class:`OutputSet` for a
command's several outputs): a temporary name in the same directory, fsync, rename, fsync of
the directory (within a :func:`directories_synced_at_end` block, once per directory at its
end). Refusing a command whose paths collide, before it writes, is :mod:`koble.path_checks`.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from koble.errors import FileFormatError, KobleError, OutputError, UsageError, redact

__all__ = [
    "TEMP_MARK",
    "OutputSet",
    "atomic_write",
    "directories_synced_at_end",
    "directory_syncs_owed_to",
    "os_failure",
    "publish_directory",
    "read_text",
    "shared_file",
    "sync_directories",
    "write_bytes",
    "write_bytes_after",
    "write_text",
]

#: In the name of every temporary file koble writes (``.NAME.<random>.tmp.SUFFIX``).
TEMP_MARK = ".tmp"


def read_text(path: str | Path) -> str:
    """A UTF-8 text file's content; a missing or unreadable file is a FileFormatError naming it."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileFormatError("no such file", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"cannot read the file: {exc}", path=path) from None


# ---------------------------------------------------------------------------------------------
# Writing: every file koble writes appears whole or not at all.

#: How an OS error number shows inside another library's message: polars ("(os error 28)"),
#: pyarrow ("[errno 28]"), DuckDB ('"errno":"28"').
_ERRNO_IN_TEXT = re.compile(r"os error (\d+)|\[errno (\d+)\]|\"errno\":\s*\"?(\d+)", re.IGNORECASE)


def os_failure(exc: BaseException) -> str | None:
    """What the operating system said, as "no space left on device", when ``exc`` is or wraps
    an OS error (an ``OSError``, or a polars/pyarrow/DuckDB error quoting an errno); else None.

    Only the errno's standard text is used, never the library's message, which may quote data.
    """
    number = exc.errno if isinstance(exc, OSError) else None
    if number is None:
        found = _ERRNO_IN_TEXT.search(str(exc))
        number = next((int(g) for g in found.groups() if g), None) if found else None
    if number is not None:
        text = os.strerror(number)
    elif isinstance(exc, OSError):
        text = redact(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__
    else:
        return None
    return text[:1].lower() + text[1:]


def _temporary(path: Path, mode: int) -> Path:
    """Create a new, empty, hidden file next to ``path`` (never through a symlink)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    while True:
        temp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}{TEMP_MARK}{path.suffix}")
        try:
            os.close(os.open(temp, flags, mode))
        except FileExistsError:
            continue
        return temp


def _fsync(path: Path, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if not directory or exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise  # some file systems cannot fsync a directory; the rename is done anyway
    finally:
        os.close(fd)


#: At most this many fsyncs are in flight at once (:func:`_fsync_together`).
_FSYNC_THREADS = 16


def _fsync_together(paths: Iterable[Path], *, sync: Callable[[Path], None] | None = None) -> None:
    """fsync every one of ``paths`` (with ``sync``, else as files), concurrently: the file
    system commits its journal once for fsyncs that wait together (ext4's jbd2 and XFS group
    them), where one after another each waits for a commit of its own (eight files: 20 ms in
    turn, 1.5 ms together on this project's VM). Returns when every fsync is done; the first
    failure (in ``paths``' order) is raised after all have been tried, so none is left
    running."""
    sync = sync or _fsync
    paths = list(paths)
    if len(paths) <= 1:
        for path in paths:
            sync(path)
        return
    with ThreadPoolExecutor(min(len(paths), _FSYNC_THREADS), "koble-fsync") as pool:
        futures = [pool.submit(sync, path) for path in paths]
    for future in futures:
        future.result()  # raises the fsync's error, if any


#: While a :func:`directories_synced_at_end` block runs: the directories whose fsync it owes.
_OWED: contextvars.ContextVar[set[Path] | None] = contextvars.ContextVar("_OWED", default=None)


def _sync_directory(directory: Path) -> None:
    """fsync ``directory`` after a rename or unlink in it, or, inside a
    :func:`directories_synced_at_end` block, once for all of the block's at its end."""
    owed = _OWED.get()
    if owed is None:
        _fsync(directory, directory=True)
    else:
        owed.add(directory)


@contextlib.contextmanager
def directory_syncs_owed_to(owed: set[Path]) -> Iterator[None]:
    """Put off the directory fsyncs of the block's writes (:func:`atomic_write`,
    :class:`OutputSet`) by adding the directories to ``owed``, for the caller to make with
    :func:`sync_directories` before it relies on the new names being durable.

    Every file is still fsynced before its rename (a name that survives a crash names a whole
    file); only the name's own durability waits. A run uses it for ``run.json``: a step
    recorded done whose record a crash then loses is redone, as a killed step is, so the
    record's directory need only be synced once, when the run ends."""
    token = _OWED.set(owed)
    try:
        yield
    finally:
        _OWED.reset(token)


def _sync_owed(directory: Path) -> None:
    """fsync a directory a block owes; one gone since (renamed or removed in the block) has
    no names left to make durable. An OS error is an :class:`OutputError` naming it."""
    try:
        _fsync(directory, directory=True)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(f"cannot write: {os_failure(exc)}", path=directory) from None


def sync_directories(directories: Iterable[Path], *, failed: bool = False) -> None:
    """fsync each of ``directories``, together (:func:`_fsync_together`). An OS error is an
    :class:`OutputError` naming the directory, or, with ``failed`` (the caller is already
    raising its own error, the one to see), ignored."""
    try:
        _fsync_together(sorted(set(directories)), sync=_sync_owed)
    except OutputError:
        if not failed:
            raise


@contextlib.contextmanager
def directories_synced_at_end() -> Iterator[None]:
    """Put off the directory fsyncs of the block's writes (:func:`atomic_write`,
    :class:`OutputSet`) to its end, one per directory, in this thread.

    Every file is still fsynced before its rename, so a name that survives a crash names a
    whole file; what waits is only the durability of the names. A block that writes several
    files into a few directories (a run's step: its outputs, reports and transfers) then
    costs a few directory fsyncs, made together (:func:`sync_directories`), instead of one
    per file. The caller records the block's work as done only after the block (a run marks
    a step done in ``run.json`` after it), so a crash inside it leaves work that is redone,
    never work recorded as durable that is not. A block that fails has its directories
    synced too (what it wrote before failing may be meant to outlive it, as a refused
    anonymity gate's report is), an fsync failing then giving way to the block's own error.
    A directory gone by the end (renamed or removed in the block) has no names left to make
    durable.
    """
    owed: set[Path] = set()
    failed = True
    try:
        with directory_syncs_owed_to(owed):
            yield
        failed = False
    finally:
        sync_directories(owed, failed=failed)


def publish_directory(staging: Path, final: Path) -> None:
    """Make a filled ``staging`` directory appear as ``final`` whole: fsync every file in it
    and the directory itself, rename it (``final`` must not exist) and fsync the parent, so a
    crash leaves either no ``final`` or a complete one, never a directory of empty files."""
    try:
        _fsync_together(sorted(p for p in staging.iterdir() if p.is_file()))
        _fsync(staging, directory=True)
        staging.rename(final)
        _fsync(final.parent, directory=True)
    except OSError as exc:
        raise OutputError(f"cannot write: {os_failure(exc)}", path=final) from None


def _existing(path: Path) -> os.stat_result | None:
    """What is at ``path`` now (the link itself for a symlink), or None; refuses anything an
    output must not replace: a FIFO, a device node, a socket or a directory. Replacing a FIFO
    or ``/dev/null``-like node with a regular file would silently break whatever reads it (or
    leave identifiers where the user expected them to vanish). A symlink is replaced itself."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError:
        return None  # unreachable parent and the like: the write itself says what is wrong
    if not (stat.S_ISREG(found.st_mode) or stat.S_ISLNK(found.st_mode)):
        kind = "a directory" if stat.S_ISDIR(found.st_mode) else "a FIFO, device or socket"
        raise UsageError(
            f"is {kind}, not a regular file; refusing to replace it with an output", path=path
        )
    return found


def _keep_permissions(temp: Path, existing: os.stat_result | None) -> None:
    """Give ``temp`` the permissions (and, where allowed, owner and group) of the regular file
    it replaces, as writing in place did: an output the user made private (``chmod 600``)
    stays private when a command writes it again."""
    if existing is None or not stat.S_ISREG(existing.st_mode):
        return
    with contextlib.suppress(OSError):  # only root may give a file away (EPERM)
        os.chown(temp, existing.st_uid, existing.st_gid)
    os.chmod(temp, stat.S_IMODE(existing.st_mode) & 0o777)


@contextlib.contextmanager
def _staged(path: Path, mode: int | None, *, sync: bool = True) -> Iterator[Path]:
    """A fresh temporary file beside ``path``, fsynced after the body (unless ``sync`` is
    False: the caller fsyncs it before its rename); removed on any failure.

    An OS error (disk full, read-only or missing directory, file-size limit) becomes an
    :class:`OutputError` naming ``path``; a koble error passes through; anything else is
    re-raised as it is, after the temporary file is gone. Without ``mode``, a regular file
    replaced keeps its permissions; an existing FIFO, device or directory is refused.
    """
    temp: Path | None = None
    try:
        existing = _existing(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # a file where a directory should be
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)) from None
        temp = _temporary(path, 0o666 if mode is None else mode)  # 0o666: the umask applies
        yield temp
        if mode is not None:
            os.chmod(temp, mode)
        else:
            _keep_permissions(temp, existing)
        if sync:
            _fsync(temp)
    except BaseException as exc:
        error = _discard(temp, exc, path)
        if error is None:
            raise
        raise error from None


def _discard(temp: Path | None, exc: BaseException, path: Path) -> OutputError | None:
    """After a failed write: remove ``temp``, and say what to raise instead of ``exc``: an
    :class:`OutputError` naming ``path`` for an OS error, None (re-raise) for anything else."""
    if temp is not None:
        with contextlib.suppress(OSError):
            temp.unlink()
    reason = None if isinstance(exc, KobleError) else os_failure(exc)
    return None if reason is None else OutputError(f"cannot write: {reason}", path=path)


def _commit(temp: Path, path: Path, *, exclusive: bool) -> None:
    """Rename ``temp`` to ``path`` (never over an existing file if ``exclusive``), fsync the
    directory. A symlink at ``path`` is replaced itself: its target is never written."""
    try:
        if exclusive:
            try:
                os.link(temp, path)  # fails, atomically, if path exists
            except FileExistsError:
                raise UsageError("exists already; refusing to overwrite it", path=path) from None
            temp.unlink()
        else:
            os.replace(temp, path)
        _sync_directory(path.parent)
    except BaseException as exc:
        error = _discard(temp, exc, path)
        if error is None:
            raise
        raise error from None


@contextlib.contextmanager
def atomic_write(
    path: str | Path, *, mode: int | None = None, exclusive: bool = False
) -> Iterator[Path]:
    """Write ``path`` whole or not at all: yields a temporary path in the same directory for
    any writer (polars, pyarrow, pyreadstat, DuckDB, ``open``); when the body returns, the
    file is fsynced, renamed to ``path`` and the directory fsynced.

    On any failure (or a kill) the temporary file is removed (a kill can leave one, hidden,
    never the final name) and whatever was at ``path`` is untouched. Missing parent
    directories are created. ``mode`` sets the file's mode (0o600 for keys; the temporary
    file has it from its creation), else the umask's default as for ``open``. ``exclusive``
    refuses to replace an existing file, atomically. A symlink at ``path`` is replaced by the file,
    never written through. OS errors become :class:`OutputError` naming ``path``.
    """
    path = Path(path)
    with _staged(path, mode) as temp:
        yield temp
    _commit(temp, path, exclusive=exclusive)


def write_bytes_after(path: str | Path, data: bytes, first: Callable[[], object]) -> None:
    """Write ``data`` to ``path`` atomically (:func:`write_bytes`), renamed only after
    ``first`` has returned: ``first`` runs in another thread while the file is written and
    fsynced, so two durable writes that must land in order (a run's audit event, then
    ``run.json`` recording the step done) wait for the disk together, not in turn. If
    ``first`` raises, nothing is renamed (the temporary file is removed) and its error is
    raised; if the write fails, its error is raised once ``first`` has finished."""
    path = Path(path)
    with ThreadPoolExecutor(1, "koble-first") as pool:
        before = pool.submit(first)
        with _staged(path, None) as temp:
            temp.write_bytes(data)
        try:
            before.result()
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
    _commit(temp, path, exclusive=False)


def shared_file(path: str | Path) -> Path:
    """The file a read-modify-write of ``path`` must lock and write: symlinks followed.

    :func:`atomic_write` replaces a symlink at an output's name (a plain output never writes
    through a link). A shared file that is read, changed and written back (a keyset, a key
    directory's files) is different: every reader reaches it through the link, so the change
    must land on the target, and the lock be the target's; otherwise the link is silently
    replaced by a private copy and the real file forks from it.
    """
    return Path(os.path.realpath(path))


def write_bytes(path: str | Path, data: bytes, *, mode: int | None = None,
                exclusive: bool = False) -> Path:  # fmt: skip
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`); returns ``path``."""
    with atomic_write(path, mode=mode, exclusive=exclusive) as temp:
        temp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str, *, mode: int | None = None,
               exclusive: bool = False) -> Path:  # fmt: skip
    """Write ``text`` to ``path`` as UTF-8 with ``\\n`` line ends, atomically."""
    return write_bytes(path, text.encode("utf-8"), mode=mode, exclusive=exclusive)


class OutputSet:
    """Several outputs of one command that appear together or not at all.

    ``with OutputSet() as outputs:`` then ``with outputs.file(path) as temp:`` per output.
    Each file is written and fsynced under a temporary name; when the ``with OutputSet``
    block ends without error, all are renamed into place (``last=True`` ones after the
    others), and on any failure every temporary file is removed and nothing appears under
    a final name. Only the renames themselves are not one atomic step: order them so the
    file that others depend on (a release, a command's main output) comes last. Stale files
    that the new set would contradict (:meth:`remove`) are removed first.

    ``together``: the files are fsynced all at once when the set commits, before any rename
    (:func:`_fsync_together`: one journal commit for the set instead of one per file), not
    each as its body ends; a set of small files (a run's transfers) then waits for the disk
    once. Nothing changes in what a crash can leave: no final name before its file is whole.
    """

    def __init__(self, *, together: bool = False) -> None:
        self._staged: list[tuple[Path, Path, bool]] = []
        self._removed: list[Path] = []
        self._together = together

    def __enter__(self) -> OutputSet:
        return self

    @contextlib.contextmanager
    def file(self, path: str | Path, *, mode: int | None = None, last: bool = False
             ) -> Iterator[Path]:  # fmt: skip
        """A temporary path to write ``path``'s content to; renamed when the set commits."""
        path = Path(path)
        if any(final == path for final, _, _ in self._staged):
            raise UsageError("written twice by one command", path=path)
        staging = _staged(path, mode, sync=False) if self._together else _staged(path, mode)
        with staging as temp:
            self._staged.append((path, temp, last))
            yield temp

    def remove(self, path: str | Path) -> None:
        """Remove ``path`` (a stale output of an earlier run that this one's outputs would
        contradict) when the set commits, before the new files are renamed into place; a
        symlink is removed itself. Nothing is removed if the set fails."""
        self._removed.append(Path(path))

    def current(self, path: str | Path) -> Path:
        """Where ``path``'s new content is now: its temporary file until the set commits."""
        path = Path(path)
        return next((temp for final, temp, _last in self._staged if final == path), path)

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        staged, self._staged = self._staged, []
        removed, self._removed = self._removed, []
        try:
            if kind is None:
                if self._together:
                    try:
                        _fsync_together(temp for _final, temp, _last in staged)
                    except OSError as exc:
                        path = staged[0][0]
                        raise OutputError(f"cannot write: {os_failure(exc)}", path=path) from None
                for path in removed:
                    _remove(path)
                for final, temp, _last in sorted(staged, key=lambda s: s[2]):
                    _commit(temp, final, exclusive=False)
        finally:
            for _final, temp, _last in staged:
                with contextlib.suppress(OSError):
                    temp.unlink(missing_ok=True)


def _remove(path: Path) -> None:
    """Unlink ``path`` (if there), fsync its directory; OS errors as :class:`OutputError`."""
    try:
        path.unlink(missing_ok=True)
        if path.parent.is_dir():
            _sync_directory(path.parent)
    except OSError as exc:
        raise OutputError(f"cannot remove the stale file: {os_failure(exc)}", path=path) from None
