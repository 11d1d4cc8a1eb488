"""Reopening an audit log: the chain continues, a damaged log or another signing key is
refused, one writer at a time."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from koble.digests import sha256_file
from koble.errors import FileFormatError, UsageError
from koble.pseudonym.audit import AuditLog, verify_log
from tests.pseudonym._audit_helpers import (
    OTHER,
    PUBLIC,
    SIGNER,
    START,
    Clock,
    base_lines,
    write_log,
)

# --- reopening --------------------------------------------------------------------------------


def test_reopening_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    write_log(path, events=4, every=10)
    before = verify_log(path, PUBLIC)
    with AuditLog(path, SIGNER, Clock(START + timedelta(days=1)), checkpoint_every=10) as log:
        assert log.events == 4
        entry = log.append(actor="ttp", operation="rekey")
    assert (entry.seq, entry.prev) == (before.last_seq + 1, before.head)
    after = verify_log(path, PUBLIC)
    assert (after.ok, after.entries, after.checkpoints, after.last_seq) == (True, 5, 2, 7)


def test_reopening_a_closed_log_without_appending_adds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    write_log(path)
    before = path.read_bytes()
    with AuditLog(path, SIGNER, Clock()):
        pass
    assert path.read_bytes() == before


def test_reopening_an_unclosed_log_continues_it(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_bytes(b"".join(base_lines()[:6]))
    with AuditLog(path, SIGNER, Clock(), checkpoint_every=3) as log:
        log.append(actor="ttp", operation="x")  # event 6: periodic checkpoint follows
    report = verify_log(path, PUBLIC)
    assert (report.ok, report.entries, report.checkpoints) == (True, 6, 3)


@pytest.mark.parametrize(
    ("damage", "line"),
    [
        (lambda lines: [lines[0], lines[1].replace(b"ttp:ola", b"ttp:kari"), *lines[2:]], 2),
        (lambda lines: [*lines[:2], *lines[3:]], 3),
        (lambda lines: [*lines[:5], lines[5][:30]], 6),
    ],
    ids=["edited", "deleted", "cut-mid-line"],
)
def test_reopening_a_damaged_log_is_refused(tmp_path: Path, damage: Any, line: int) -> None:
    path = tmp_path / "audit.log"
    path.write_bytes(b"".join(damage(list(base_lines()))))
    before = path.read_bytes()
    with pytest.raises(FileFormatError) as caught:
        AuditLog(path, SIGNER, Clock())
    assert str(path) in str(caught.value)
    assert f"line {line}:" in str(caught.value)
    assert path.read_bytes() == before


def test_reopening_with_another_signing_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    write_log(path)
    with pytest.raises(FileFormatError, match=r"line 4: .*another key"):
        AuditLog(path, OTHER, Clock())


def test_one_writer_at_a_time_and_no_appends_after_close(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path, SIGNER, Clock())
    with pytest.raises(UsageError, match="another writer"):
        AuditLog(path, SIGNER, Clock())
    log.close()
    log.close()
    with pytest.raises(UsageError, match="closed"):
        log.append(actor="ttp", operation="x")
    assert "closed" in repr(log)
    assert SIGNER.key_id in repr(log)
    with pytest.raises(UsageError):
        AuditLog(tmp_path / "b.log", SIGNER, Clock(), checkpoint_every=0)
    AuditLog(tmp_path / "new" / "dir" / "a.log", SIGNER, Clock()).close()  # parents created
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(FileFormatError):
        AuditLog(tmp_path / "file" / "dir.log", SIGNER, Clock())


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
