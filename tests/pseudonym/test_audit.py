"""The audit log: chain and checkpoints, tamper detection with the right line, the identifier
and key-material guard, reopening, leak scans and ``koble audit verify-log``."""

from __future__ import annotations

import base64
import functools
import itertools
import json
import re
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import assume, given
from hypothesis import strategies as st

from koble.cli.audit import audit
from koble.cli.main import KobleGroup
from koble.digests import sha256_file
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
from koble.pseudonym.signing import Ed25519Signer
from koble.registries.identifiers import fodselsnummer

RAW_PRIVATE = bytes(range(32))
OTHER_RAW_PRIVATE = bytes(range(100, 132))
START = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
SHA_A = "a" * 63 + "1"
SHA_B = "0123456789abcdef" * 4
HASH_FIELDS = ("hash", "prev", "head", "signature", "input_sha256", "output_sha256")


def make_signer(raw: bytes = RAW_PRIVATE) -> Ed25519Signer:
    return Ed25519Signer(Ed25519PrivateKey.from_private_bytes(raw))


SIGNER = make_signer()
OTHER = make_signer(OTHER_RAW_PRIVATE)
PUBLIC = SIGNER.public_key_bytes()


class Clock:
    """A fixed clock that moves one second per reading."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


# --- valid person numbers, built from scratch -------------------------------------------------

K1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
K2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)


def with_check_digits(body: str) -> str | None:
    """``body`` (9 digits) with both check digits, or None when either would be 10."""
    digits = [int(c) for c in body]
    k1 = 11 - sum(w * d for w, d in zip(K1, digits, strict=True)) % 11
    k1 = 0 if k1 == 11 else k1
    if k1 == 10:
        return None
    k2 = 11 - sum(w * d for w, d in zip(K2, [*digits, k1], strict=True)) % 11
    k2 = 0 if k2 == 11 else k2
    if k2 == 10:
        return None
    return f"{body}{k1}{k2}"


@st.composite
def person_numbers(draw: st.DrawFn) -> str:
    """A valid fødselsnummer, D-, H-, FH- or test number (classic check digits)."""
    kind = draw(st.sampled_from(["fnr", "dnr", "hnr", "test", "fh"]))
    if kind == "fh":
        body = str(draw(st.integers(8, 9))) + f"{draw(st.integers(0, 10**8 - 1)):08d}"
    else:
        day, month = draw(st.integers(1, 28)), draw(st.integers(1, 12))
        day += 40 if kind == "dnr" else 0
        month += {"hnr": 40, "test": 80}.get(kind, 0)
        body = f"{day:02d}{month:02d}{draw(st.integers(0, 99)):02d}{draw(st.integers(0, 999)):03d}"
    number = with_check_digits(body)
    assume(number is not None)
    assert number is not None
    assert fodselsnummer.is_valid(number, test_numbers=True)
    return number


def test_helper_makes_valid_numbers() -> None:
    assert with_check_digits("151086950") == "15108695088"
    assert fodselsnummer.is_valid("15108695088")


# --- writing and reading logs -----------------------------------------------------------------


def write_log(path: Path, events: int = 7, every: int = 3, signer: Ed25519Signer = SIGNER) -> None:
    with AuditLog(path, signer, Clock(), checkpoint_every=every) as log:
        for i in range(events):
            log.append(
                actor="ttp:ola.nordmann",
                operation="pseudonymise" if i % 2 else "rekey",
                domain="npr" if i % 3 else None,
                key_id="v1-0123456789abcdef",
                rows_in=1000 + i,
                rows_out=990 + i,
                rejected=10,
                input_sha256=SHA_A,
                output_sha256=SHA_B if i % 2 else None,
                details={"column": "fnr", "sted": "Tønsberg", "ratio": 0.5, "ok": True, "n": i},
            )


@functools.cache
def base_lines() -> tuple[bytes, ...]:
    """Lines of a closed log: 7 events, checkpoints after 3 and 6, closing checkpoint (10)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audit.log"
        write_log(path)
        return tuple(path.read_bytes().splitlines(keepends=True))


def check(
    lines: Iterable[bytes], public_key: bytes | None = PUBLIC, **options: Any
) -> VerifyReport:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audit.log"
        path.write_bytes(b"".join(lines))
        return verify_log(path, public_key, **options)


def entries(lines: Iterable[bytes]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]


def rechain(items: list[dict[str, Any]]) -> list[bytes]:
    """Recompute every prev, head and hash as a forger without the signing key would."""
    prev, head, out = ZERO_HASH, ZERO_HASH, []
    for entry in items:
        entry["prev"] = prev
        if entry["type"] == "checkpoint":
            entry["head"] = head
        entry["hash"] = prev = entry_hash(entry)
        if entry["type"] == "event":
            head = entry["hash"]
        out.append(canonical(entry) + b"\n")
    return out


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


# --- the guard: no identifiers, no key material -----------------------------------------------


def spelled(number: str) -> list[str]:
    """Ways a person number turns up in free text."""
    fullwidth = "".join(chr(0xFF10 + int(c)) for c in number)
    return [
        number,
        f"{number[:6]} {number[6:]}",
        f"{number[:6]}-{number[6:]}",
        f"pasient {number} i kohort",
        f"x{number}9",
        fullwidth,
    ]


def spellings(number: str) -> st.SearchStrategy[str]:
    return st.sampled_from(spelled(number))


@given(number=person_numbers(), data=st.data())
def test_append_refuses_person_numbers_in_any_field(number: str, data: st.DataObject) -> None:
    field = data.draw(
        st.sampled_from(
            ["actor", "operation", "domain", "key_id", "detail", "detail_name"]
            # As an integer a leading zero is lost, and with it the number.
            + (["rows_in", "rejected", "detail_int"] if number[0] != "0" else [])
        )
    )
    # key_id has a fixed format in which only a number standing alone is one (a digit run
    # inside a hex fingerprint is part of it), so the glued spelling is not tried there.
    forms = spelled(number)
    text = data.draw(st.sampled_from([f for f in forms if field != "key_id" or "x" not in f]))
    fields: dict[str, Any] = {"actor": "ttp", "operation": "pseudonymise"}
    if field in ("rows_in", "rejected", "detail_int"):
        value: Any = int(number)
    else:
        value = text
    if field == "detail":
        fields["details"] = {"reason": value}
    elif field == "detail_int":
        fields["details"] = {"count": value}
    elif field == "detail_name":
        fields["details"] = {"n" + number: 1}
    else:
        fields[field] = value
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audit.log"
        with AuditLog(path, SIGNER, Clock()) as log:
            with pytest.raises(UsageError) as caught:
                log.append(**fields)
            assert log.events == 0
            assert path.read_bytes() == b""
        shown = f"{caught.value!s} {caught.value!r} {caught.value.args!r}"
        for form in (number, number[:6], number[6:], text):
            assert form not in shown
        assert number.encode() not in path.read_bytes()


@pytest.mark.parametrize("spelling", range(6))
@pytest.mark.parametrize("field", ["actor", "operation", "domain", "details"])
def test_every_spelling_is_refused_in_every_text_field(
    tmp_path: Path, spelling: int, field: str
) -> None:
    number = "15108695088"
    text = spelled(number)[spelling]
    value: Any = {"reason": text} if field == "details" else text
    with (
        AuditLog(tmp_path / "audit.log", SIGNER, Clock()) as log,
        pytest.raises(UsageError, match="person number") as caught,
    ):
        log.append(**{"actor": "ttp", "operation": "x", field: value})
    assert number not in str(caught.value)
    assert text not in str(caught.value)


@pytest.mark.parametrize(
    "fields",
    [
        {"actor": "ab" * 16},
        {"operation": "rekey " + SHA_B},
        {"domain": "npr-" + RAW_PRIVATE.hex()},
        {"details": {"key": RAW_PRIVATE.hex().upper()}},
        {"details": {"key": base64.b64encode(RAW_PRIVATE).decode()}},
        {"details": {"key": base64.urlsafe_b64encode(OTHER_RAW_PRIVATE).decode()}},
        {"details": {"secret": int.from_bytes(RAW_PRIVATE, "big")}},
        {"input_sha256": SHA_B.upper()},
        {"input_sha256": SHA_B[:-1]},
        {"output_sha256": "not a hash"},
        {"key_id": "k" * 41},
        {"key_id": "v1 key"},
        {"details": {"Bad-Name": 1}},
        {"details": {"k" + "0f" * 16: 1}},
        {"details": {"value": b"bytes"}},
        {"details": {"value": [1, 2]}},
        {"details": {"value": float("nan")}},
        {"rows_in": -1},
        {"rows_in": True},
        {"actor": ""},
        {"domain": 7},
    ],
)
def test_append_refuses_key_like_and_malformed_values(
    tmp_path: Path, fields: dict[str, Any]
) -> None:
    path = tmp_path / "audit.log"
    with AuditLog(path, SIGNER, Clock()) as log:
        with pytest.raises(UsageError) as caught:
            log.append(**{"actor": "ttp", "operation": "x", **fields})
        assert log.events == 0
    for value in fields.values():
        for item in value.values() if isinstance(value, dict) else [value]:
            if isinstance(item, str) and len(item) > 8:
                assert item not in str(caught.value)
    assert RAW_PRIVATE.hex() not in str(caught.value)


def test_ordinary_values_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog(path, SIGNER, Clock()) as log:
        log.append(
            actor="ttp:kari.nordmann@fhi.no",
            operation="reidentify",
            domain="kreftregisteret",
            key_id="v12-0123456789abcdef0123",
            rows_in=12_345_678,
            rows_out=12_345_000,
            rejected=678,
            input_sha256=SHA_A,
            output_sha256=SHA_B,
            details={
                "reason": "Kontroll av sak 2024/1234 (vedtak 2024-05-01)",
                "legal_basis": "helseregisterloven § 19",
                "phone": "+47 22 00 00 00",
                "ratio": 0.9973,
                "flag": False,
                "none": None,
            },
        )
    assert verify_log(path, PUBLIC).ok


def test_the_log_file_holds_no_identifier_and_no_key_byte(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    refused: list[str] = []
    numbers = [with_check_digits(f"{d:02d}0{m}85{i:03d}") for d in (1, 15, 45) for m in range(1, 10)
               for i in (123, 456)]  # fmt: skip
    with AuditLog(path, SIGNER, Clock(), checkpoint_every=5) as log:
        for i, number in enumerate(n for n in numbers if n is not None):
            log.append(
                actor="ttp", operation="pseudonymise", domain="npr", key_id=f"v{i}-{SIGNER.key_id}",
                rows_in=i, input_sha256=entry_hash({"i": i}), output_sha256=SHA_B,
                details={"column": "fnr", "n": i},
            )  # fmt: skip
            with pytest.raises(UsageError):
                log.append(actor="ttp", operation="x", details={"reason": f"gjelder {number}"})
            refused.append(number)
    data = path.read_bytes()
    text = data.decode()
    assert len(refused) > 20
    for number in refused:
        assert number not in text
    # Every 11-digit window outside the hash fields: never a valid person number.
    for entry in entries(data.splitlines()):
        for name, value in entry.items():
            if name in HASH_FIELDS:
                continue
            flat = json.dumps(value, ensure_ascii=False)
            for match in re.finditer(r"(?=(\d{6}[ -]?\d{5}))", flat):
                assert not fodselsnummer.is_valid(match.group(1), test_numbers=True)
    # No byte of the private key in any encoding.
    assert RAW_PRIVATE not in data
    for encoded in (
        RAW_PRIVATE.hex(),
        RAW_PRIVATE.hex().upper(),
        base64.b64encode(RAW_PRIVATE).decode(),
        base64.b64encode(RAW_PRIVATE).decode().rstrip("="),
        base64.urlsafe_b64encode(RAW_PRIVATE).decode().rstrip("="),
    ):
        assert encoded not in text
    assert verify_log(path, PUBLIC).ok


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


# --- koble audit verify-log -------------------------------------------------------------------


def run(*args: str, via_main: bool = False) -> tuple[int, str, str]:
    command: click.Command = audit
    if via_main:
        command = KobleGroup(name="koble", commands={"audit": audit})
        args = ("audit", *args)
    result = CliRunner().invoke(command, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def good_log(tmp_path: Path) -> Path:
    path = tmp_path / "audit.log"
    path.write_bytes(b"".join(base_lines()))
    return path


@pytest.fixture
def public_pem(tmp_path: Path) -> Path:
    path = tmp_path / "ttp.pub.pem"
    path.write_bytes(SIGNER.public_pem())
    return path


def test_cli_ok(good_log: Path, public_pem: Path) -> None:
    code, out, _ = run("verify-log", str(good_log), "--public-key", str(public_pem))
    assert code == 0
    assert out.strip() == "ok: 7 entries, 3 checkpoints, signatures verified"
    code, out, _ = run("verify-log", str(good_log))
    assert code == 0
    assert "signatures NOT checked" in out


def test_cli_bad_log(good_log: Path, public_pem: Path) -> None:
    lines = good_log.read_bytes().splitlines(keepends=True)
    good_log.write_bytes(b"".join([*lines[:3], *lines[4:]]))
    code, out, _ = run("verify-log", str(good_log), "--public-key", str(public_pem))
    assert code == 1
    assert out.startswith("FAILED at line 4: ")


def test_cli_open_log(good_log: Path) -> None:
    good_log.write_bytes(b"".join(base_lines()[:5]))
    assert run("verify-log", str(good_log))[0] == 1
    code, out, _ = run("verify-log", str(good_log), "--allow-open")
    assert code == 0
    assert "still open" in out


def test_cli_json(good_log: Path, public_pem: Path) -> None:
    code, out, _ = run("verify-log", str(good_log), "--public-key", str(public_pem), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["ok"] is True
    assert (report["entries"], report["checkpoints"], report["last_seq"]) == (7, 3, 10)
    assert report["signatures_checked"] is True
    good_log.write_bytes(b"".join(base_lines()[:-1]))
    code, out, _ = run("verify-log", str(good_log), "--json")
    assert code == 1
    assert json.loads(out)["first_bad_line"] == 10


def test_cli_unusable_input(tmp_path: Path, good_log: Path) -> None:
    result = CliRunner().invoke(audit, ["verify-log", str(tmp_path / "missing.log")])
    assert isinstance(result.exception, FileFormatError)
    assert result.exception.exit_code == 2
    code, _, err = run("verify-log", str(tmp_path / "missing.log"), via_main=True)
    assert code == 2
    assert "missing.log" in err
    code, _, err = run(
        "verify-log", str(good_log), "--public-key", str(tmp_path / "none.pem"), via_main=True
    )
    assert code == 2
    bad_key = tmp_path / "bad.pem"
    bad_key.write_bytes(b"not a key")
    code, _, err = run("verify-log", str(good_log), "--public-key", str(bad_key), via_main=True)
    assert code == 2
    # a public key is no secret: the error names the option, the file and the kind of key
    assert "--public-key: not an Ed25519 public key" in err and "bad.pem" in err


@given(st.binary(min_size=1, max_size=64))
def test_every_sha256_is_accepted_as_a_hash(data: bytes) -> None:
    """About one random digest in 500 holds 11 digits passing the fødselsnummer checks; a
    run inside a hex string is part of the hash, so a run must never fail an audit entry."""
    import hashlib

    from koble.pseudonym.audit import SHA256_HEX
    from koble.pseudonym.audit_guard import check_pattern

    digest = hashlib.sha256(data).hexdigest()
    assert check_pattern("output_sha256", digest, SHA256_HEX, "sha") == digest


def test_known_hash_with_a_valid_number_inside_is_accepted_but_a_standalone_one_is_not() -> None:
    from koble.pseudonym.audit import KEY_ID, SHA256_HEX
    from koble.pseudonym.audit_guard import check_pattern
    from koble.registries.identifiers import fodselsnummer

    number = next(
        f"010190{n:05d}" for n in range(100000) if fodselsnummer.is_valid(f"010190{n:05d}")
    )
    digest = ("ab" + number + "c" * 64)[:64]
    assert check_pattern("input_sha256", digest, SHA256_HEX, "sha") == digest
    with pytest.raises(UsageError, match="person number"):
        check_pattern("key_id", f"k:{number}", KEY_ID, "a key id")
