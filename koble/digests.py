"""The SHA-256 of a file, remembered while the file is unchanged (:func:`sha256_file`).

Every input and output of a run is recorded by its SHA-256, and a registry's table is read
by every job over it; so a digest is remembered in this process and, for a large file,
across processes (:func:`digest_cache_path`), under git's rules for a "racily clean" file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from koble.errors import KobleError
from koble.files import write_text
from koble.locking import file_lock

__all__ = ["DIGEST_CACHE_ENV", "PERSIST_BYTES", "digest_cache_path", "sha256_file"]


#: A file last changed this close to (or after) the start of its hashing is not remembered:
#: a change within the file system's timestamp granularity could leave its identity as it
#: was. Whole-second timestamps (FAT's are 2 s) get the long margin; a file system with finer
#: ones (ext4, XFS, btrfs: a clock tick, at most 10 ms) the short one.
RACY_NS = 2_000_000_000
RACY_FINE_NS = 50_000_000
#: Digests of files hashed in this process, by (device, inode): (size, mtime, ctime), digest.
_DIGESTS: dict[tuple[int, int], tuple[tuple[int, int, int], str]] = {}
#: Digests of files at least this large are also remembered across processes
#: (:func:`digest_cache_path`): a registry's table is hashed by every job that reads it, and
#: hashing the national NPR and Reseptregisteret tables costs a second of CPU per job.
PERSIST_BYTES = 16 << 20
#: The file those digests are kept in: this variable's value (``off`` for none), else
#: ``sha256.json`` in koble's directory of the user's cache (``$XDG_CACHE_HOME/koble``).
DIGEST_CACHE_ENV = "KOBLE_DIGEST_CACHE"
_PERSISTED_MAX = 1024
#: Seconds a hash waits for another process to finish updating the digest cache.
_LOCK_SECONDS = 2.0
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _version(info: os.stat_result) -> tuple[int, int, int]:
    return info.st_size, info.st_mtime_ns, info.st_ctime_ns


def sha256_file(path: str | Path, *, clock: Callable[[], int] = time.time_ns) -> str:
    """Lower-case hex SHA-256 of a file's bytes, read in 1 MiB blocks.

    A run hashes some files twice (a registry's table as the ingest's output and again as
    the extract's source: 0.4 s of CPU for the national Reseptregisteret table), so the
    digest of a file unchanged since it was hashed in this process is remembered: the same
    inode with the same size, modification and change time (which no user can set back),
    last changed well before its hashing began (:data:`RACY_NS`, as git treats a "racily
    clean" file) and unchanged while it was read. The clock is assumed not to be set back.
    A large file's digest (:data:`PERSIST_BYTES`) is remembered across processes too, under
    the same conditions (:func:`digest_cache_path`), as git's index remembers a file's
    state: the next job over the same registry table does not read it again.

    ``clock``: the time in nanoseconds since the epoch when the hashing begins, against which
    a file's last change is judged settled; the real clock unless a test passes its own.
    """
    with Path(path).open("rb") as handle:
        before = os.fstat(handle.fileno())
        key, version = (before.st_dev, before.st_ino), _version(before)
        known = _DIGESTS.get(key)
        if known is not None and known[0] == version:
            return known[1]
        large = before.st_size >= PERSIST_BYTES and stat.S_ISREG(before.st_mode)
        recalled = _recall(key, version) if large else None
        if recalled is not None:
            _DIGESTS[key] = (version, recalled)
            return recalled
        started = clock()
        digest = hashlib.sha256()
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
        after = os.fstat(handle.fileno())
    hexdigest = digest.hexdigest()
    coarse = before.st_mtime_ns % 10**9 == 0 and before.st_ctime_ns % 10**9 == 0
    margin = RACY_NS if coarse else RACY_FINE_NS
    settled = max(before.st_mtime_ns, before.st_ctime_ns) < started - margin
    if settled and _version(after) == version and stat.S_ISREG(before.st_mode):
        if len(_DIGESTS) >= 4096:  # a long-lived process (a test session) hashes many files
            _DIGESTS.clear()
        _DIGESTS[key] = (version, hexdigest)
        if large:
            _persist(key, version, hexdigest)
    return hexdigest


def digest_cache_path() -> Path | None:
    """Where :func:`sha256_file` keeps the digests of large files across processes, or None
    when ``KOBLE_DIGEST_CACHE`` is ``off``, empty or a relative path. The file holds, per
    machine, boot, device and inode, the size, modification and change time and the
    digest: no path, no content."""
    given = os.environ.get(DIGEST_CACHE_ENV)
    if given is not None:
        off = given.strip().lower() in ("", "off", "0", "no") or not os.path.isabs(given)
        return None if off else Path(given)  # never a cache relative to the cwd
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if not os.path.isabs(base):  # no home directory: never a cache relative to the cwd
        return None
    return Path(base) / "koble" / "sha256.json"


def _machine() -> str:
    """This machine and boot: a device and inode name one file only within them (a shared
    home directory is seen by other machines, whose disks may number alike)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text("ascii").strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


def _entry(key: tuple[int, int]) -> str:
    return f"{_machine()}:{key[0]}:{key[1]}"


def _persisted(path: Path) -> dict[str, Any]:
    """The remembered digests in ``path``; none if it is missing or unreadable, or if
    anyone but this user owns it or may write it (a digest there is trusted)."""
    try:
        with path.open("rb") as handle:
            info = os.fstat(handle.fileno())
            if info.st_uid != os.getuid() or info.st_mode & 0o022:
                return {}
            document = json.loads(handle.read())
    except (OSError, ValueError):
        return {}
    entries = document.get("entries") if isinstance(document, dict) else None
    return entries if isinstance(entries, dict) else {}


def _recall(key: tuple[int, int], version: tuple[int, int, int]) -> str | None:
    """The digest another process remembered for this version of the file, if any."""
    path = digest_cache_path()
    found = None if path is None else _persisted(path).get(_entry(key))
    if not isinstance(found, list) or len(found) != 4 or found[:3] != list(version):
        return None
    digest = found[3]
    return digest if isinstance(digest, str) and _HEX64.fullmatch(digest) else None


def _persist(key: tuple[int, int], version: tuple[int, int, int], hexdigest: str) -> None:
    """Remember a settled file's digest for later processes (the newest
    :data:`_PERSISTED_MAX`); a cache that cannot be written is only a cache."""
    path = digest_cache_path()
    if path is None:
        return
    # read, change and write back under the cache's lock, so that two jobs hashing at once
    # do not drop each other's entries; a lock held too long means this digest is not kept
    with contextlib.suppress(OSError, KobleError), file_lock(path, timeout=_LOCK_SECONDS):
        entries = _persisted(path)
        name = _entry(key)
        entries.pop(name, None)
        entries[name] = [*version, hexdigest]
        for old in list(entries)[: max(0, len(entries) - _PERSISTED_MAX)]:
            del entries[old]
        write_text(path, json.dumps({"version": 1, "entries": entries}), mode=0o600)
