"""Verification of an audit log, line by line, and the log format it checks.

The format is described in :mod:`koble.pseudonym.audit`; this module is the reference
verifier. It reads the file as bytes one line at a time (memory does not grow with the log),
stops at the first line that is wrong and says which one and why. Its messages name fields,
never their values, so a report can be shared without sharing the log.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from koble.errors import FileFormatError, UsageError
from koble.pseudonym.signing import key_id_of, load_public_key, verify_signature

__all__ = [
    "CHECKPOINT_FIELDS",
    "DETAIL_KEY",
    "EVENT_FIELDS",
    "KEY_ID",
    "SHA256_HEX",
    "ZERO_HASH",
    "VerifyReport",
    "canonical",
    "check_expected",
    "entry_hash",
    "signed_bytes",
    "verify_log",
]

#: ``prev`` of the first line, and ``head`` of a checkpoint before any event.
ZERO_HASH = "0" * 64
EVENT_FIELDS = frozenset(
    {
        "seq", "time", "type", "actor", "operation", "domain", "key_id", "rows_in", "rows_out",
        "rejected", "input_sha256", "output_sha256", "details", "prev", "hash",
    }
)  # fmt: skip
CHECKPOINT_FIELDS = frozenset(
    {"seq", "time", "type", "head", "count", "final", "signer", "signature", "prev", "hash"}
)

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
KEY_ID = re.compile(r"[A-Za-z0-9_.:-]{1,40}")
DETAIL_KEY = re.compile(r"[a-z][a-z0-9_]{0,39}")
TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_SIGNATURE_LENGTH = 64


def _reject_constant(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


# Built once: json.dumps and json.loads with options build a new coder on every call.
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def canonical(entry: Mapping[str, Any]) -> bytes:
    """The canonical JSON of ``entry`` as UTF-8: sorted keys, no spaces, non-ASCII kept."""
    return _ENCODER.encode(entry).encode("utf-8")


def entry_hash(entry: Mapping[str, Any]) -> str:
    """SHA-256 (hex) over the canonical JSON of ``entry`` without its ``hash`` field."""
    return hashlib.sha256(canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


def signed_bytes(checkpoint: Mapping[str, Any]) -> bytes:
    """What a checkpoint's signature covers: its canonical JSON without signature and hash."""
    return canonical({k: v for k, v in checkpoint.items() if k not in ("signature", "hash")})


@dataclass(frozen=True)
class VerifyReport:
    """The verdict on one log.

    ``entries`` and ``checkpoints`` count the event and checkpoint lines that verified before
    the first bad line (all of them when ``ok``); ``last_seq`` and ``head`` are the ``seq`` and
    ``hash`` of the last line that verified (0 and 64 zeros when none did). ``head`` is what to
    record elsewhere to detect a later rollback of the whole file. ``first_bad_line`` is
    1-based; for a log that ends too early it is the line after the last one. Signatures are
    checked only when a public key was given (``signatures_checked``); ``closed`` says
    whether the log ends with a closing checkpoint.
    """

    ok: bool
    entries: int
    checkpoints: int
    first_bad_line: int | None
    problem: str | None
    last_seq: int
    head: str
    signatures_checked: bool
    closed: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dictionary."""
        return asdict(self)


class ChainState:
    """Running state of a verification; :class:`~koble.pseudonym.audit.AuditLog` continues
    the chain from it when reopening a log."""

    def __init__(self, public_key: Ed25519PublicKey | None) -> None:
        self.public_key = public_key
        self.key_id = None if public_key is None else key_id_of(public_key)
        self.lines = 0
        self.seq = 0
        self.prev = ZERO_HASH
        self.events = 0
        self.checkpoints = 0
        self.last_event_hash = ZERO_HASH
        self.closed = False

    def feed(self, raw: bytes) -> str | None:
        """Check the next line (with its line end); the problem, or None when it is good."""
        problem = self._check(raw)
        if problem is None:
            self.lines += 1
        return problem

    def _check(self, raw: bytes) -> str | None:
        if not raw.endswith(b"\n"):
            return "truncated: the last line has no line end"
        try:
            text = raw[:-1].decode("utf-8")
            entry = _DECODER.decode(text)
        except (UnicodeDecodeError, ValueError):
            return "not a valid JSON line"
        if not isinstance(entry, dict):
            return "not a JSON object"
        problem = _check_fields(entry)
        if problem is not None:
            return problem
        if canonical(entry) != raw[:-1]:
            return "not in canonical form (edited?)"
        if entry["hash"] != entry_hash(entry):
            return "field 'hash' does not match the entry (edited?)"
        if entry["seq"] != self.seq + 1:
            return (
                f"field 'seq' out of sequence (expected {self.seq + 1}): "
                "an entry was deleted, inserted or reordered"
            )
        if entry["prev"] != self.prev:
            return (
                "field 'prev' is not the hash of the previous line: "
                "an entry was deleted, inserted or reordered"
            )
        if entry["type"] == "checkpoint":
            problem = self._check_checkpoint(entry)
            if problem is not None:
                return problem
            self.checkpoints += 1
            self.closed = bool(entry["final"])
        else:
            self.events += 1
            self.last_event_hash = entry["hash"]
            self.closed = False
        self.seq = entry["seq"]
        self.prev = entry["hash"]
        return None

    def _check_checkpoint(self, entry: dict[str, Any]) -> str | None:
        if entry["head"] != self.last_event_hash:
            return "field 'head' is not the hash of the last event"
        if entry["count"] != self.events:
            return f"field 'count' is not the number of events before it ({self.events})"
        if self.public_key is None:
            return None
        if entry["signer"] != self.key_id:
            return "checkpoint signed by another key (field 'signer')"
        signature = base64.b64decode(entry["signature"], validate=True)
        if not verify_signature(self.public_key, signed_bytes(entry), signature):
            return "field 'signature' does not verify (forged or edited checkpoint)"
        return None

    def report(self, problem: str | None, *, signatures_checked: bool) -> VerifyReport:
        return VerifyReport(
            ok=problem is None,
            entries=self.events,
            checkpoints=self.checkpoints,
            first_bad_line=None if problem is None else self.lines + 1,
            problem=problem,
            last_seq=self.seq,
            head=self.prev,
            signatures_checked=signatures_checked,
            closed=self.closed,
        )


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_time(value: object) -> bool:
    if not isinstance(value, str) or TIME.fullmatch(value) is None:
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_signature(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return len(base64.b64decode(value, validate=True)) == _SIGNATURE_LENGTH
    except (binascii.Error, ValueError):
        return False


def _optional(check: Any) -> Any:
    return lambda value: value is None or check(value)


def _is_text(value: object) -> bool:
    return isinstance(value, str) and value != ""


def _is_details(value: object) -> bool:
    return isinstance(value, dict) and all(
        DETAIL_KEY.fullmatch(k) is not None and (v is None or isinstance(v, str | int | float))
        for k, v in value.items()
    )


_COMMON = {
    "seq": lambda v: _is_count(v) and v >= 1,
    "time": _is_time,
    "prev": lambda v: isinstance(v, str) and SHA256_HEX.fullmatch(v) is not None,
    "hash": lambda v: isinstance(v, str) and SHA256_HEX.fullmatch(v) is not None,
}
_SHA = _optional(lambda v: isinstance(v, str) and SHA256_HEX.fullmatch(v) is not None)
_CHECKS: dict[str, dict[str, Any]] = {
    "event": {
        **_COMMON,
        "actor": _is_text,
        "operation": _is_text,
        "domain": _optional(_is_text),
        "key_id": _optional(lambda v: isinstance(v, str) and KEY_ID.fullmatch(v) is not None),
        "rows_in": _optional(_is_count),
        "rows_out": _optional(_is_count),
        "rejected": _optional(_is_count),
        "input_sha256": _SHA,
        "output_sha256": _SHA,
        "details": _optional(_is_details),
    },
    "checkpoint": {
        **_COMMON,
        "head": _COMMON["hash"],
        "count": _is_count,
        "final": lambda v: isinstance(v, bool),
        "signer": lambda v: isinstance(v, str) and KEY_ID.fullmatch(v) is not None,
        "signature": _is_signature,
    },
}


_FIELDS = {"event": EVENT_FIELDS, "checkpoint": CHECKPOINT_FIELDS}


def _check_fields(entry: dict[str, Any]) -> str | None:
    """The first thing wrong with the fields of ``entry`` (names only), or None."""
    kind = entry.get("type")
    if kind not in _CHECKS:
        return "field 'type' is missing or not 'event' or 'checkpoint'"
    expected = _FIELDS[kind]
    if entry.keys() != expected:
        missing = sorted(expected - entry.keys())
        if missing:
            return f"missing field(s) {', '.join(map(repr, missing))}"
        extra = sorted(entry.keys() - expected)
        return f"unexpected field(s) {', '.join(map(repr, extra))}"
    for name, check in _CHECKS[kind].items():
        if not check(entry[name]):
            return f"field {name!r} is not valid"
    return None


def verify_lines(
    lines: Iterable[bytes],
    public_key: Ed25519PublicKey | None,
    *,
    require_closed: bool,
) -> tuple[VerifyReport, ChainState]:
    """Verify a log given as raw lines (each with its line end); also return the end state."""
    state = ChainState(public_key)
    checked = public_key is not None
    for raw in lines:
        problem = state.feed(raw)
        if problem is not None:
            return state.report(problem, signatures_checked=checked), state
    if require_closed and not state.closed:
        ended = "the log is empty" if state.lines == 0 else f"the log ends after line {state.lines}"
        problem = f"{ended} without a closing checkpoint (truncated, or never closed)"
        return state.report(problem, signatures_checked=checked), state
    return state.report(None, signatures_checked=checked), state


def _check_expectations(expect_head: str | None, expect_entries: int | None) -> None:
    """UsageError, naming the parameter (never its value), for an unusable expectation."""
    if expect_head is not None and SHA256_HEX.fullmatch(expect_head.lower()) is None:
        raise UsageError("expect_head must be a SHA-256 hash (64 hex digits)")
    if expect_entries is not None and (
        isinstance(expect_entries, bool)
        or not isinstance(expect_entries, int)
        or expect_entries < 0
    ):
        raise UsageError("expect_entries must be a non-negative integer")


def check_expected(
    report: VerifyReport, *, expect_head: str | None = None, expect_entries: int | None = None
) -> VerifyReport:
    """``report``, failed when the log does not end where the operator recorded it ended.

    A log cut back to an earlier closing checkpoint verifies on its own; only the ``head``
    and entry count recorded when it was last closed (see
    :class:`~koble.pseudonym.audit.AuditHead`) show that lines are missing. The problem
    says what was expected and what was found; the first bad line is the one after the
    last, where the missing lines would be. A report that already failed is returned as is.
    """
    _check_expectations(expect_head, expect_entries)
    if not report.ok:
        return report
    problems = []
    if expect_entries is not None and report.entries != expect_entries:
        problems.append(f"expected {expect_entries} entries, found {report.entries}")
    if expect_head is not None and report.head != expect_head.lower():
        problems.append(f"expected head {expect_head.lower()}, found {report.head}")
    if not problems:
        return report
    problem = (
        "; ".join(problems) + " (the log does not end where it was recorded to end: cut back "
        "to an earlier checkpoint, replaced, or extended since)"
    )
    return replace(report, ok=False, problem=problem, first_bad_line=report.last_seq + 1)


def verify_log(
    path: str | Path,
    public_key: bytes | None = None,
    *,
    require_closed: bool = True,
    expect_head: str | None = None,
    expect_entries: int | None = None,
) -> VerifyReport:
    """Verify the audit log at ``path`` and name its first bad line.

    ``public_key`` (raw 32 bytes or PEM) enables the checkpoint signature check; without it
    only the hash chain and the checkpoints' counts are checked, and the report says that
    signatures were not checked. With ``require_closed`` (the default) the log must end with a
    closing checkpoint, which is how truncation at a line boundary is detected; pass False to
    check a log that is still being written. ``expect_head`` and ``expect_entries`` (see
    :func:`check_expected`) also require the log to end exactly where it ended when last
    recorded, which is how a log cut back to an earlier closing checkpoint is detected.

    Raises :class:`~koble.errors.FileFormatError` when the file cannot be read at all and
    :class:`~koble.errors.CryptoError` when ``public_key`` is not an Ed25519 public key; a
    log that can be read but is wrong is a report with ``ok`` False, not an exception.
    """
    _check_expectations(expect_head, expect_entries)
    key = None if public_key is None else load_public_key(public_key)
    try:
        with Path(path).open("rb") as handle:
            report, _ = verify_lines(handle, key, require_closed=require_closed)
    except OSError as exc:
        raise FileFormatError(f"cannot read the audit log: {exc.strerror}", path=path) from None
    return check_expected(report, expect_head=expect_head, expect_entries=expect_entries)
