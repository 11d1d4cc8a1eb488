"""The audit log's chain and checkpoints: a good log verifies, and tamper detection names
the right line."""

from __future__ import annotations

import base64
import itertools
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from koble.errors import FileFormatError, UsageError
from koble.pseudonym.audit import AuditLog, VerifyReport, verify_log
from koble.pseudonym.audit_verify import (
    CHECKPOINT_FIELDS,
    EVENT_FIELDS,
    ZERO_HASH,
    canonical,
    entry_hash,
    signed_bytes,
)
from tests.pseudonym._audit_helpers import (
    OTHER,
    PUBLIC,
    SHA_B,
    SIGNER,
    Clock,
    base_lines,
    check,
    entries,
    rechain,
    write_log,
)

# --- a good log -------------------------------------------------------------------------------


def test_a_log_written_with_a_fixed_clock_verifies(tmp_path: Path) -> None:
    lines = base_lines()
    items = entries(lines)
    assert [e["type"][0] for e in items] == list("eeeceeecec")
    assert all(
        set(e) == (EVENT_FIELDS if e["type"] == "event" else CHECKPOINT_FIELDS) for e in items
    )
    assert [e["seq"] for e in items] == list(range(1, 11))
    assert items[0]["prev"] == ZERO_HASH
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(items))
    assert all(e["hash"] == entry_hash(e) for e in items)
    assert all(canonical(e) + b"\n" == line for e, line in zip(items, lines, strict=True))
    checkpoints = [e for e in items if e["type"] == "checkpoint"]
    assert [c["count"] for c in checkpoints] == [3, 6, 7]
    assert [c["final"] for c in checkpoints] == [False, False, True]
    assert [c["head"] for c in checkpoints] == [items[i]["hash"] for i in (2, 6, 8)]
    assert {c["signer"] for c in checkpoints} == {SIGNER.key_id}
    assert items[0]["time"] == "2026-03-01T08:30:01.000000Z"
    assert items[0]["details"]["sted"] == "Tønsberg"
    assert "Tønsberg".encode() in lines[0]  # written as UTF-8, not escaped

    report = check(lines)
    assert report == VerifyReport(
        ok=True, entries=7, checkpoints=3, first_bad_line=None, problem=None, last_seq=10,
        head=items[-1]["hash"], signatures_checked=True, closed=True,
    )  # fmt: skip
    unsigned = check(lines, None)
    assert unsigned.ok
    assert not unsigned.signatures_checked
    assert check(lines, SIGNER.public_pem()).ok


def test_the_same_inputs_give_the_same_log(tmp_path: Path) -> None:
    write_log(tmp_path / "again.log")
    assert tuple((tmp_path / "again.log").read_bytes().splitlines(keepends=True)) == base_lines()


def test_append_returns_the_entry_as_written(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog(path, SIGNER, Clock(), checkpoint_every=100) as log:
        entry = log.append(actor="ttp", operation="pseudonymise", rows_in=3, details={"a": 1})
        assert log.events == 1
    written = json.loads(path.read_bytes().splitlines()[0])
    assert entry.hash == written["hash"]
    assert entry.seq == 1
    assert entry.prev == ZERO_HASH
    assert entry.details == {"a": 1}
    assert entry.type == "event"


def test_an_empty_session_still_closes_with_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog(path, SIGNER, Clock()):
        pass
    (only,) = entries(path.read_bytes().splitlines())
    assert (only["type"], only["count"], only["head"], only["final"]) == (
        "checkpoint", 0, ZERO_HASH, True,
    )  # fmt: skip
    assert verify_log(path, PUBLIC).ok


def test_time_is_utc_from_the_injected_clock(tmp_path: Path) -> None:
    oslo = timezone(timedelta(hours=2))
    path = tmp_path / "audit.log"
    with AuditLog(path, SIGNER, lambda: datetime(2026, 6, 1, 12, 0, tzinfo=oslo)) as log:
        assert log.append(actor="ttp", operation="x").time == "2026-06-01T10:00:00.000000Z"
    naive = AuditLog(tmp_path / "naive.log", SIGNER, lambda: datetime(2026, 6, 1))
    with pytest.raises(UsageError, match="timezone-aware"):
        naive.append(actor="ttp", operation="x")
    with pytest.raises(UsageError, match="timezone-aware"):
        naive.close()
    assert (tmp_path / "naive.log").read_bytes() == b""


def test_empty_file_and_open_logs(tmp_path: Path) -> None:
    report = check([b""])
    assert (report.ok, report.first_bad_line, report.entries) == (False, 1, 0)
    assert "empty" in (report.problem or "")
    assert check([b""], require_closed=False).ok
    open_log = check(base_lines()[:5], require_closed=False)
    assert open_log.ok
    assert not open_log.closed
    assert (open_log.entries, open_log.checkpoints, open_log.last_seq) == (4, 1, 5)


def test_missing_log_is_a_file_error(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match=r"missing\.log"):
        verify_log(tmp_path / "missing.log")


# --- tampering --------------------------------------------------------------------------------

SENTINEL = "ZQXJ"
json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12).map(lambda s: SENTINEL + s),
    st.just(SHA_B),
    st.just(ZERO_HASH),
    st.just("checkpoint"),
    st.just("event"),
)


@given(data=st.data())
def test_editing_any_field_of_any_line_is_caught_at_that_line(data: st.DataObject) -> None:
    lines = list(base_lines())
    index = data.draw(st.integers(0, len(lines) - 1), label="line index")
    entry = json.loads(lines[index])
    action = data.draw(st.sampled_from(["set", "remove", "add"]), label="action")
    if action == "add":
        entry[data.draw(st.sampled_from(["extra", "note", "zz"]))] = SENTINEL
    else:
        field = data.draw(st.sampled_from(sorted(entry)), label="field")
        if action == "remove":
            del entry[field]
        else:
            new = data.draw(json_values, label="new value")
            assume(canonical({"v": new}) != canonical({"v": entry[field]}))
            entry[field] = new
    lines[index] = canonical(entry) + b"\n"
    for key in (PUBLIC, None):
        report = check(lines, key)
        assert not report.ok
        assert report.first_bad_line == index + 1
        assert SENTINEL not in (report.problem or "")


@given(data=st.data())
def test_changing_any_byte_of_any_line_is_caught_at_that_line(data: st.DataObject) -> None:
    lines = list(base_lines())
    index = data.draw(st.integers(0, len(lines) - 1))
    line = lines[index]
    position = data.draw(st.integers(0, len(line) - 2))
    byte = data.draw(st.integers(0x20, 0xFF).filter(lambda b: b != line[position]))
    lines[index] = line[:position] + bytes([byte]) + line[position + 1 :]
    report = check(lines, None)
    assert not report.ok
    assert report.first_bad_line == index + 1


@pytest.mark.parametrize("index", range(10))
def test_deleting_a_line_is_caught_at_its_place(index: int) -> None:
    lines = list(base_lines())
    del lines[index]
    report = check(lines)
    assert not report.ok
    assert report.first_bad_line == index + 1
    assert report.last_seq == index


@given(st.integers(0, 9), st.integers(0, 9))
def test_swapping_two_lines_is_caught_at_the_first(i: int, j: int) -> None:
    assume(i != j)
    lines = list(base_lines())
    lines[i], lines[j] = lines[j], lines[i]
    report = check(lines)
    assert not report.ok
    assert report.first_bad_line == min(i, j) + 1
    assert "deleted, inserted or reordered" in (report.problem or "")


@pytest.mark.parametrize("index", range(10))
def test_a_duplicated_line_is_caught(index: int) -> None:
    lines = list(base_lines())
    lines.insert(index + 1, lines[index])
    assert check(lines).first_bad_line == index + 2


@pytest.mark.parametrize("kept", range(10))
def test_truncation_at_a_line_boundary_is_caught(kept: int) -> None:
    lines = base_lines()[:kept]
    report = check(lines)
    assert not report.ok
    assert report.first_bad_line == kept + 1
    assert "without a closing checkpoint" in (report.problem or "")
    assert report.last_seq == kept
    assert check(lines, require_closed=False).ok


@given(st.integers(0, 9), st.data())
def test_truncation_mid_line_is_caught_at_that_line(kept: int, data: st.DataObject) -> None:
    lines = list(base_lines())
    cut = data.draw(st.integers(1, len(lines[kept]) - 1))
    truncated = [*lines[:kept], lines[kept][:cut]]
    for require_closed in (True, False):
        report = check(truncated, require_closed=require_closed)
        assert not report.ok
        assert report.first_bad_line == kept + 1
        assert "truncated" in (report.problem or "")


def test_a_line_from_another_log_is_caught_by_its_prev(tmp_path: Path) -> None:
    path = tmp_path / "other.log"
    with AuditLog(path, SIGNER, Clock(), checkpoint_every=3) as log:
        for _ in range(7):
            log.append(actor="ttp", operation="x")
    foreign = path.read_bytes().splitlines(keepends=True)
    lines = list(base_lines())
    lines[4] = foreign[4]  # same seq, self-consistent hash, other chain
    report = check(lines, None)
    assert (report.ok, report.first_bad_line) == (False, 5)
    assert "prev" in (report.problem or "")


def test_deleting_and_rehashing_is_caught_by_seq() -> None:
    items = entries(base_lines())
    del items[1]
    report = check(rechain(items), None)
    assert (report.ok, report.first_bad_line) == (False, 2)
    assert "seq" in (report.problem or "")


def test_reformatting_a_line_is_caught() -> None:
    lines = list(base_lines())
    lines[3] = json.dumps(json.loads(lines[3])).encode() + b"\n"  # same content, spaces added
    report = check(lines, None)
    assert (report.ok, report.first_bad_line) == (False, 4)
    assert "canonical" in (report.problem or "")


def test_a_log_signed_by_another_key_fails_with_the_right_key(tmp_path: Path) -> None:
    path = tmp_path / "other.log"
    write_log(path, signer=OTHER)
    assert verify_log(path, OTHER.public_key_bytes()).ok
    report = verify_log(path, PUBLIC)
    assert (report.ok, report.first_bad_line) == (False, 4)
    assert "another key" in (report.problem or "")
    assert verify_log(path).ok  # without a key only the chain is checked


def test_a_forged_checkpoint_signature_is_caught() -> None:
    items = entries(base_lines())
    last = items[-1]
    last["signature"] = base64.b64encode(OTHER.sign(signed_bytes(last))).decode()
    lines = rechain(items)
    report = check(lines)
    assert (report.ok, report.first_bad_line) == (False, 10)
    assert "signature" in (report.problem or "")
    assert check(lines, None).ok


def test_rewriting_the_chain_without_the_key_is_caught_at_the_next_checkpoint() -> None:
    items = entries(base_lines())
    items[4]["rows_out"] = 0  # line 5, an event after the first checkpoint
    lines = rechain(items)
    report = check(lines)
    assert (report.ok, report.first_bad_line) == (False, 8)
    assert "signature" in (report.problem or "")
    assert check(lines, None).ok  # the hash chain alone cannot catch a full rewrite


def test_a_checkpoint_with_the_wrong_count_or_head_is_caught() -> None:
    for field, value in (("count", 2), ("head", SHA_B)):
        items = entries(base_lines())
        items[3][field] = value
        items[3]["signature"] = base64.b64encode(SIGNER.sign(signed_bytes(items[3]))).decode()
        items[3]["hash"] = entry_hash(items[3])
        report = check([canonical(e) + b"\n" for e in items])
        assert (report.ok, report.first_bad_line) == (False, 4)
        assert field in (report.problem or "")


@pytest.mark.parametrize(
    "line",
    [b"not json\n", b"[1, 2]\n", b"\n", b'{"type": "event"}\n', b"\xff\xfe\n", b'{"x": NaN}\n'],
)
def test_garbage_lines_are_named(line: bytes) -> None:
    lines = [*base_lines()[:3], line, *base_lines()[3:]]
    report = check(lines)
    assert (report.ok, report.first_bad_line) == (False, 4)
