"""The staleness rule of koble.digests.sha256_file's digest cache, judged against a clock the
test passes in (``clock=``): a file is remembered only when its last change (modification
or change time) is more than the margin before the hashing began, 50 ms on a file system
with fine timestamps and 2 s on one with whole seconds (FAT's, or a coarse mount)."""

from __future__ import annotations

import hashlib
import inspect
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from koble import digests as cache
from koble.digests import sha256_file


@pytest.fixture
def digests(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """An empty digest cache of this process, none across processes; the digests begun."""
    begun: list[int] = []
    real = hashlib.sha256

    def counting(*args: Any) -> Any:
        begun.append(1)
        return real(*args)

    monkeypatch.setattr(cache, "hashlib", SimpleNamespace(sha256=counting))
    monkeypatch.setattr(cache, "_DIGESTS", {})
    monkeypatch.setenv(cache.DIGEST_CACHE_ENV, "off")
    return begun


def _changed(path: Path) -> int:
    info = os.stat(path)
    if info.st_mtime_ns % 10**9 == 0 and info.st_ctime_ns % 10**9 == 0:
        pytest.skip("this file system has whole-second timestamps")
    return max(info.st_mtime_ns, info.st_ctime_ns)


def _hashed_twice(path: Path, now: int) -> None:
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert sha256_file(path, clock=lambda: now) == expected
    assert sha256_file(path, clock=lambda: now) == expected


def test_a_file_settled_past_the_fine_margin_is_remembered(
    tmp_path: Path, digests: list[int]
) -> None:
    path = tmp_path / "table.parquet"
    path.write_bytes(b"t" * 1000)
    _hashed_twice(path, _changed(path) + cache.RACY_FINE_NS + 1)
    assert len(digests) == 1 and len(cache._DIGESTS) == 1


def test_a_file_changed_within_the_fine_margin_is_hashed_every_time(
    tmp_path: Path, digests: list[int]
) -> None:
    path = tmp_path / "table.parquet"
    path.write_bytes(b"t" * 1000)
    _hashed_twice(path, _changed(path) + cache.RACY_FINE_NS)  # exactly the margin: not yet
    assert len(digests) == 2 and cache._DIGESTS == {}


def test_a_clock_before_the_files_change_remembers_nothing(
    tmp_path: Path, digests: list[int]
) -> None:
    path = tmp_path / "table.parquet"
    path.write_bytes(b"t" * 1000)
    _hashed_twice(path, _changed(path) - 10**12)
    assert len(digests) == 2 and cache._DIGESTS == {}


class _WholeSeconds:
    """``os`` for koble.files, but ``fstat`` gives whole-second timestamps (truncated)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    @staticmethod
    def fstat(fd: int) -> Any:
        info = os.fstat(fd)
        fields = ("st_dev", "st_ino", "st_size", "st_mode")
        return SimpleNamespace(
            **{f: getattr(info, f) for f in fields},
            st_mtime_ns=info.st_mtime_ns // 10**9 * 10**9,
            st_ctime_ns=info.st_ctime_ns // 10**9 * 10**9,
        )


@pytest.mark.parametrize(
    ("after", "remembered"),
    [(cache.RACY_FINE_NS + 1, False), (cache.RACY_NS, False), (cache.RACY_NS + 1, True)],
)
def test_whole_second_timestamps_need_the_long_margin(
    tmp_path: Path, digests: list[int], monkeypatch: pytest.MonkeyPatch, after: int,
    remembered: bool,
) -> None:  # fmt: skip
    path = tmp_path / "table.parquet"
    path.write_bytes(b"w" * 1000)
    monkeypatch.setattr(cache, "os", _WholeSeconds())
    info = os.stat(path)
    changed = max(info.st_mtime_ns, info.st_ctime_ns) // 10**9 * 10**9
    _hashed_twice(path, changed + after)
    assert len(digests) == (1 if remembered else 2)
    assert bool(cache._DIGESTS) is remembered


def test_the_real_clock_is_the_default() -> None:
    """Without ``clock`` the hashing is judged against the real clock, read where it runs."""
    assert inspect.signature(sha256_file).parameters["clock"].default is time.time_ns
