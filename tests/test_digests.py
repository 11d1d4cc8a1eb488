"""koble.digests.sha256_file remembers the digest of a file it hashed, for the same file
unchanged (issue 17 part 5: a run hashed the national Reseptregisteret table twice).

The digest is always the file's SHA-256; a remembered one is served only for the same inode
with the same size, modification and change time, last changed well before it was hashed
("racily clean" files are hashed again); any change, even one that keeps the size and sets
the modification time back, is hashed anew.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble import digests, files
from koble.digests import sha256_file


class CountingSha256:
    """hashlib.sha256 that counts the digests begun (a remembered digest begins none)."""

    def __init__(self) -> None:
        self.calls = 0
        self._sha256 = hashlib.sha256

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        return self._sha256(*args)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> CountingSha256:
    counter = CountingSha256()
    monkeypatch.setattr(digests, "hashlib", SimpleNamespace(sha256=counter))  # koble.digests' only
    monkeypatch.setattr(digests, "_DIGESTS", {})
    return counter


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=3 << 20))
def test_the_digest_is_the_files_sha256_first_and_remembered(
    data: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("digest") / "f.bin"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(digests, "RACY_NS", -(10**18))  # remembered though just written
        patch.setattr(digests, "RACY_FINE_NS", -(10**18))
        patch.setattr(digests, "_DIGESTS", {})
        assert sha256_file(path) == expected
        assert sha256_file(str(path)) == expected
        assert len(digests._DIGESTS) == 1


def test_an_unchanged_file_is_not_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counted: CountingSha256
) -> None:
    monkeypatch.setattr(digests, "RACY_NS", -(10**18))
    monkeypatch.setattr(digests, "RACY_FINE_NS", -(10**18))
    path = tmp_path / "table.parquet"
    path.write_bytes(b"x" * 100_000)
    link = tmp_path / "link.parquet"
    os.link(path, link)  # a hard link is the same file (made first: linking moves the ctime)
    first = sha256_file(path)
    assert (
        sha256_file(path)
        == sha256_file(link)
        == first
        == hashlib.sha256(b"x" * 100_000).hexdigest()
    )
    assert counted.calls == 1


def test_a_change_keeping_size_and_modification_time_is_hashed_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counted: CountingSha256
) -> None:
    monkeypatch.setattr(digests, "RACY_NS", -(10**18))
    monkeypatch.setattr(digests, "RACY_FINE_NS", -(10**18))
    path = tmp_path / "table.parquet"
    path.write_bytes(b"a" * 4096)
    before = os.stat(path)
    first = sha256_file(path)
    with path.open("r+b") as handle:  # the same inode, the same size
        handle.write(b"b")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime set back; ctime moves
    assert os.stat(path).st_mtime_ns == before.st_mtime_ns
    assert sha256_file(path) == hashlib.sha256(b"b" + b"a" * 4095).hexdigest() != first
    assert counted.calls == 2


def test_a_file_replaced_under_its_name_is_hashed_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counted: CountingSha256
) -> None:
    monkeypatch.setattr(digests, "RACY_NS", -(10**18))
    monkeypatch.setattr(digests, "RACY_FINE_NS", -(10**18))
    path = tmp_path / "out.parquet"
    path.write_bytes(b"one")
    assert sha256_file(path) == hashlib.sha256(b"one").hexdigest()
    with files.atomic_write(path) as temp:  # a new file renamed over it
        temp.write_bytes(b"two")
    assert sha256_file(path) == hashlib.sha256(b"two").hexdigest()
    assert counted.calls == 2


def test_a_file_changed_just_before_its_hashing_is_not_remembered(
    tmp_path: Path, counted: CountingSha256
) -> None:
    """With the default margins a file written a moment ago is hashed every time: a change
    in the same timestamp tick could otherwise go unseen; one that has settled is not."""
    path = tmp_path / "fresh.json"
    path.write_bytes(b"{}")
    assert sha256_file(path) == sha256_file(path) == hashlib.sha256(b"{}").hexdigest()
    assert counted.calls == 2
    assert digests._DIGESTS == {}
    settled = os.stat(path).st_mtime_ns - 10**9  # a second ago: settled on a fine file system
    os.utime(path, ns=(settled, settled))  # (the ctime moves: still a moment ago)
    sha256_file(path)
    assert counted.calls == 3 and digests._DIGESTS == {}


def test_a_settled_file_is_remembered_with_the_default_margins(
    tmp_path: Path, counted: CountingSha256
) -> None:
    path = tmp_path / "table.parquet"
    path.write_bytes(b"t" * 1000)
    info = os.stat(path)
    if info.st_mtime_ns % 10**9 == 0 and info.st_ctime_ns % 10**9 == 0:
        pytest.skip("whole-second timestamps: the margin is two seconds")
    time.sleep(digests.RACY_FINE_NS / 1e9 + 0.05)
    assert sha256_file(path) == sha256_file(path) == hashlib.sha256(b"t" * 1000).hexdigest()
    assert counted.calls == 1


# --- across processes: large files' digests in the user's cache ---------------------------


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A digest cache of its own, every file "large", every file settled."""
    path = tmp_path / "cache" / "sha256.json"
    monkeypatch.setenv(digests.DIGEST_CACHE_ENV, str(path))
    monkeypatch.setattr(digests, "PERSIST_BYTES", 1)
    monkeypatch.setattr(digests, "RACY_NS", -(10**18))
    monkeypatch.setattr(digests, "RACY_FINE_NS", -(10**18))
    return path


def test_a_large_files_digest_is_remembered_by_the_next_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counted: CountingSha256, cache: Path
) -> None:
    table = tmp_path / "npr.parquet"
    table.write_bytes(b"n" * 50_000)
    expected = hashlib.sha256(b"n" * 50_000).hexdigest()
    assert sha256_file(table) == expected
    monkeypatch.setattr(digests, "_DIGESTS", {})  # a new process: only the cache file is left
    assert sha256_file(table) == expected
    assert counted.calls == 1
    assert os.stat(cache).st_mode & 0o777 == 0o600
    text = cache.read_text()
    assert str(tmp_path) not in text and "npr" not in text  # no path: device, inode, times


def test_a_large_file_changed_since_is_hashed_anew_by_the_next_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counted: CountingSha256, cache: Path
) -> None:
    table = tmp_path / "npr.parquet"
    table.write_bytes(b"a" * 4096)
    before = os.stat(table)
    sha256_file(table)
    with table.open("r+b") as handle:  # same inode and size, mtime set back: ctime moves
        handle.write(b"b")
    os.utime(table, ns=(before.st_atime_ns, before.st_mtime_ns))
    monkeypatch.setattr(digests, "_DIGESTS", {})
    assert sha256_file(table) == hashlib.sha256(b"b" + b"a" * 4095).hexdigest()
    assert counted.calls == 2


def test_an_unreadable_or_forged_cache_is_only_a_miss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counted: CountingSha256, cache: Path
) -> None:
    table = tmp_path / "npr.parquet"
    table.write_bytes(b"n" * 5000)
    expected = hashlib.sha256(b"n" * 5000).hexdigest()
    info = os.stat(table)
    cache.parent.mkdir()
    entry = digests._entry((info.st_dev, info.st_ino))
    version = [info.st_size, info.st_mtime_ns, info.st_ctime_ns]
    forged = [
        "{not json",
        json.dumps({"entries": []}),
        json.dumps({"entries": {entry: [1, 2, 3, "0" * 64]}}),  # another version of the file
        json.dumps({"entries": {entry: [*version, "not a digest"]}}),
    ]
    for text in forged:
        cache.write_text(text)
        monkeypatch.setattr(digests, "_DIGESTS", {})
        assert sha256_file(table) == expected
    assert counted.calls == 4


def test_the_cache_can_be_turned_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counted: CountingSha256, cache: Path
) -> None:
    monkeypatch.setenv(digests.DIGEST_CACHE_ENV, "off")
    assert digests.digest_cache_path() is None
    table = tmp_path / "npr.parquet"
    table.write_bytes(b"n" * 5000)
    sha256_file(table)
    monkeypatch.setattr(digests, "_DIGESTS", {})
    sha256_file(table)
    assert counted.calls == 2 and not cache.exists()


def test_small_files_are_not_remembered_across_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    monkeypatch.setattr(digests, "PERSIST_BYTES", 1 << 20)
    path = tmp_path / "report.json"
    path.write_bytes(b"{}")
    sha256_file(path)
    assert not cache.exists()


def test_without_a_home_directory_there_is_no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(digests.DIGEST_CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    assert digests.digest_cache_path() is None
    monkeypatch.setenv("XDG_CACHE_HOME", "/var/cache/someone")
    assert digests.digest_cache_path() == Path("/var/cache/someone/koble/sha256.json")


def test_a_cache_others_may_write_or_another_machines_entry_is_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counted: CountingSha256, cache: Path
) -> None:
    """A digest in the cache is believed only from a file this user alone may write, and
    only for this machine's boot: another host's disk may number its files alike."""
    table = tmp_path / "npr.parquet"
    table.write_bytes(b"n" * 5000)
    expected = hashlib.sha256(b"n" * 5000).hexdigest()
    assert sha256_file(table) == expected  # remembered
    os.chmod(cache, 0o622)  # group and others may write it
    monkeypatch.setattr(digests, "_DIGESTS", {})
    assert sha256_file(table) == expected and counted.calls == 2
    os.chmod(cache, 0o600)
    monkeypatch.setattr(digests, "_machine", lambda: "another-host/another-boot")
    monkeypatch.setattr(digests, "_DIGESTS", {})
    assert sha256_file(table) == expected and counted.calls == 3


def test_a_relative_cache_path_is_no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(digests.DIGEST_CACHE_ENV, "cache.json")
    assert digests.digest_cache_path() is None
