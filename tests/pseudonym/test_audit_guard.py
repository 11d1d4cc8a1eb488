"""The audit log's identifier and key-material guard, and leak scans of the written log; a
hash with a valid person number inside it is still a hash."""

from __future__ import annotations

import base64
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from koble.errors import UsageError
from koble.pseudonym.audit import AuditLog, verify_log
from koble.pseudonym.audit_verify import entry_hash
from koble.registries.identifiers import fodselsnummer
from tests.pseudonym._audit_helpers import (
    OTHER_RAW_PRIVATE,
    PUBLIC,
    RAW_PRIVATE,
    SHA_A,
    SHA_B,
    SIGNER,
    Clock,
    entries,
)

HASH_FIELDS = ("hash", "prev", "head", "signature", "input_sha256", "output_sha256")

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
