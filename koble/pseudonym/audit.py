"""The trusted third party's audit log: append-only JSON lines, hash-chained, signed checkpoints.

Every operation on keys and pseudonyms is recorded as one *event*: who (``actor``), what
(``operation``), in which ``domain``, with which key (``key_id``), how many rows went in, came
out and were rejected, and SHA-256 hashes of the input and output files. The log never holds
identifiers or key material: :meth:`AuditLog.append` refuses any value containing a valid
fødselsnummer (or D-, H-, FH- or test number) or a long hex or base64 run that could be a key.

Format (enough to re-implement :func:`verify_log`)
--------------------------------------------------
The file is UTF-8, one JSON object per line, each line ended by ``\\n`` (only ``\\n`` ends a
line). Each line is exactly the *canonical JSON* of its entry: keys sorted, separators ``,``
and ``:`` with no spaces, non-ASCII characters written as themselves (``ensure_ascii=False``),
no NaN or Infinity. Every field is always present (``null`` when not applicable).

Every line has ``seq`` (1, 2, 3, … over all lines, no gaps), ``time`` (UTC,
``YYYY-MM-DDTHH:MM:SS.ffffffZ``, from the injected clock; not required to increase),
``type``, ``prev`` and ``hash``:

* ``hash`` is the SHA-256 (lower-case hex) of the canonical JSON of the entry without
  ``hash``; ``prev`` is the ``hash`` of the previous line, 64 zeros on line 1. Editing,
  deleting, inserting or reordering a line therefore breaks the chain at that line.
* An *event* (``type`` ``"event"``) also has ``actor``, ``operation`` (non-empty strings),
  ``domain`` (string or null), ``key_id`` (``[A-Za-z0-9_.:-]{1,40}`` or null), ``rows_in``,
  ``rows_out``, ``rejected`` (non-negative integers or null), ``input_sha256``,
  ``output_sha256`` (64 lower-case hex or null) and ``details`` (null or an object whose keys
  match ``[a-z][a-z0-9_]{0,39}`` and whose values are strings, numbers, booleans or null).
* A *checkpoint* (``type`` ``"checkpoint"``) also has ``head`` (``hash`` of the last event,
  64 zeros if none), ``count`` (events so far), ``final`` (true for the checkpoint written by
  :meth:`AuditLog.close`), ``signer`` (key id of the signing key: first 16 hex digits of
  SHA-256 over the raw Ed25519 public key) and ``signature``: standard base64 of the Ed25519
  signature over the canonical JSON of the checkpoint without ``signature`` and ``hash``.
  Checkpoints are written every ``checkpoint_every`` events and on close. They are chained
  like events.

A log is *closed* when its last line is a checkpoint with ``final`` true; a log that must be
complete (the default for verification) and is not closed has been truncated, or its writer
died. A file whose last line lacks ``\\n`` was cut mid-line. The signature stops anyone
without the signing key from rewriting the chain and its checkpoints together. Cutting a log
back to an earlier closing checkpoint (after it was reopened and extended) cannot be detected
from the file alone: keep the head and entry count that :meth:`AuditLog.close` returns (the
CLI prints them on every close) somewhere the attacker cannot change, and give them to
:func:`verify_log` (``expect_head``, ``expect_entries``; ``koble audit verify-log
--expect-head/--expect-entries``). A log has one signing key; when the key changes, start a
new log.
"""

from __future__ import annotations

import base64
import contextlib
import os
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from koble.digests import sha256_file
from koble.errors import FileFormatError, OutputError, UsageError
from koble.files import os_failure
from koble.pseudonym.audit_guard import (
    DetailValue,
    check_count,
    check_details,
    check_domain_text,
    check_pattern,
    check_text,
)
from koble.pseudonym.audit_verify import (
    KEY_ID,
    SHA256_HEX,
    VerifyReport,
    canonical,
    entry_hash,
    signed_bytes,
    verify_lines,
    verify_log,
)
from koble.pseudonym.signing import Signer, load_public_key

if sys.platform != "win32":
    import fcntl

__all__ = [
    "AuditEntry",
    "AuditHead",
    "AuditLog",
    "AuditNotClosedError",
    "DetailValue",
    "VerifyReport",
    "check_event",
    "sha256_file",
    "verify_log",
]


class AuditNotClosedError(OutputError):
    """The log's closing checkpoint could not be written (disk full, file-size limit) after
    every event was: what the events record was done and is recorded, and the log verifies
    up to its last event, but it is not closed. Exit 2. A command that gets this after its
    work is committed must say that the work was done (so nobody repeats it), not that it
    failed; :meth:`AuditLog.__exit__` raises it only when its block succeeded."""


@dataclass(frozen=True)
class AuditEntry:
    """One event as written to the log (see the module docstring for the fields)."""

    seq: int
    time: str
    type: str
    actor: str
    operation: str
    domain: str | None
    key_id: str | None
    rows_in: int | None
    rows_out: int | None
    rejected: int | None
    input_sha256: str | None
    output_sha256: str | None
    details: Mapping[str, DetailValue] | None
    prev: str
    hash: str


@dataclass(frozen=True)
class AuditHead:
    """Where a closed log ends: what to record elsewhere to detect a later rollback.

    ``head`` is the ``hash`` of the log's last line (its closing checkpoint) and ``entries``
    the number of events in the whole log: the ``head`` and ``entries`` that
    :func:`verify_log` reports for the file as it is now, and what ``koble audit verify-log
    --expect-head/--expect-entries`` checks.
    """

    path: Path
    entries: int
    head: str

    def describe(self) -> str:
        """One line for an operator to record: ``audit log PATH: N entries, head HASH``
        (``1 entry``)."""
        entries = "1 entry" if self.entries == 1 else f"{self.entries} entries"
        return f"audit log {self.path}: {entries}, head {self.head}"


def check_event(
    *,
    actor: str,
    operation: str,
    domain: str | None = None,
    key_id: str | None = None,
    rows_in: int | None = None,
    rows_out: int | None = None,
    rejected: int | None = None,
    input_sha256: str | None = None,
    output_sha256: str | None = None,
    details: Mapping[str, DetailValue] | None = None,
) -> dict[str, Any]:
    """The fields of one event as :meth:`AuditLog.append` would write them, checked; nothing
    is written. Raises :class:`UsageError` naming the field (never the value) for anything
    the log refuses.

    A command that changes state checks its event with this first and appends it only once
    the change is ready to commit: a change the log would refuse is then never made.
    """
    sha = "64 lower-case hex digits"
    return {
        "type": "event",
        "actor": check_text("actor", actor, optional=False),
        "operation": check_text("operation", operation, optional=False),
        "domain": check_domain_text(domain),
        "key_id": check_pattern("key_id", key_id, KEY_ID, "a key id ([A-Za-z0-9_.:-]{1,40})"),
        "rows_in": check_count("rows_in", rows_in),
        "rows_out": check_count("rows_out", rows_out),
        "rejected": check_count("rejected", rejected),
        "input_sha256": check_pattern("input_sha256", input_sha256, SHA256_HEX, sha),
        "output_sha256": check_pattern("output_sha256", output_sha256, SHA256_HEX, sha),
        "details": check_details(details),
    }


class AuditLog:
    """An open audit log, appended to through :meth:`append` and closed with a signed
    checkpoint. Use it as a context manager.

    ``signer`` signs the checkpoints; ``clock`` gives the time of each line (an aware
    datetime; it is never read anywhere else). Opening an existing log verifies it to its end
    (hash chain, and checkpoint signatures against ``signer``'s public key) and continues its
    chain; a log that does not verify is refused, naming file and line. The file is locked
    against a second writer while open. One append is one line (with the periodic
    checkpoint due after it, in the same write: both or neither), fsynced before
    :meth:`append` returns. Appends from several threads are serialised. ``on_close`` is
    called once with the :class:`AuditHead` when the log is closed (the CLI prints it).
    """

    def __init__(
        self,
        path: str | Path,
        signer: Signer,
        clock: Callable[[], datetime],
        checkpoint_every: int = 100,
        on_close: Callable[[AuditHead], None] | None = None,
    ) -> None:
        if isinstance(checkpoint_every, bool) or checkpoint_every < 1:
            raise UsageError("checkpoint_every must be a positive integer")
        self.path = Path(path)
        self._signer = signer
        self._clock = clock
        self._checkpoint_every = checkpoint_every
        self._on_close = on_close
        self._closed_at: AuditHead | None = None
        self._failure = ""  # what the system said when a write failed
        self._lock = threading.Lock()
        self._handle = self._open()
        try:
            self._handle.seek(0)
            key = load_public_key(signer.public_key_bytes())
            report, state = verify_lines(self._handle, key, require_closed=False)
            if not report.ok:
                raise FileFormatError(
                    f"line {report.first_bad_line}: {report.problem}; "
                    "refusing to append to a broken audit log",
                    path=self.path,
                )
        except BaseException:
            self._handle.close()
            raise
        self._seq, self._prev = state.seq, state.prev
        self._events, self._head = state.events, state.last_event_hash
        self._last_closed = state.closed
        self._open_state = True

    def _open(self) -> BinaryIO:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)  # as for every output
            handle = self.path.open("a+b")
        except OSError as exc:
            raise FileFormatError(
                f"cannot open the audit log: {exc.strerror}", path=self.path
            ) from None
        if sys.platform != "win32":
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                raise UsageError(
                    "the audit log is open in another writer", path=self.path
                ) from None
        return handle

    @property
    def events(self) -> int:
        """Number of events in the log, including those written before it was reopened."""
        return self._events

    def append(
        self,
        *,
        actor: str,
        operation: str,
        domain: str | None = None,
        key_id: str | None = None,
        rows_in: int | None = None,
        rows_out: int | None = None,
        rejected: int | None = None,
        input_sha256: str | None = None,
        output_sha256: str | None = None,
        details: Mapping[str, DetailValue] | None = None,
    ) -> AuditEntry:
        """Record one event and return it as written.

        An append is all or nothing: when the event is the ``checkpoint_every``-th, the
        checkpoint due with it is written in the same write, and a failure of either leaves
        the file as it was (and this log closed to further writes). So a returned append is a
        durable record, and a raised one recorded nothing: a caller that then abandons its
        change leaves no record of a change that never happened.

        Raises :class:`UsageError` (naming the field, never the value) for a value of the
        wrong type or one that holds a person number or looks like key material; hashes go in
        ``input_sha256``/``output_sha256`` (64 lower-case hex) and key ids in ``key_id``.
        :func:`check_event` applies the same checks without writing: call it before making
        a change the event will record, so a change is never made that cannot be audited.
        """
        fields = check_event(
            actor=actor, operation=operation, domain=domain, key_id=key_id, rows_in=rows_in,
            rows_out=rows_out, rejected=rejected, input_sha256=input_sha256,
            output_sha256=output_sha256, details=details,
        )  # fmt: skip
        with self._lock:
            self._require_open()
            state = (self._seq, self._prev, self._events, self._head, self._last_closed)
            try:
                entry = self._entry(fields)
                self._events += 1
                self._head = entry["hash"]
                lines = [entry]
                if self._events % self._checkpoint_every == 0:  # due with it: both or neither
                    lines.append(self._checkpoint_entry(final=False))
                self._append_line(b"".join(canonical(line) + b"\n" for line in lines))
            except BaseException:
                self._seq, self._prev, self._events, self._head, self._last_closed = state
                raise
        return AuditEntry(**entry)

    def checkpoint(self) -> None:
        """Write a (non-final) signed checkpoint now."""
        with self._lock:
            self._checkpoint(final=False)

    def close(self) -> AuditHead | None:
        """Write the closing checkpoint (unless the log already ends with one), close the file
        and return where the log now ends (also given to ``on_close``). Closing twice does
        nothing more and returns the same; None when an earlier write failed (its error was
        raised then). Raises :class:`AuditNotClosedError` when the closing checkpoint itself
        cannot be written: the log then ends at its last event, intact but not closed."""
        with self._lock:
            if not self._open_state:
                return self._closed_at
            try:
                if not self._last_closed:
                    self._checkpoint(final=True)
                self._closed_at = AuditHead(self.path, self._events, self._prev)
            except OutputError:
                pass  # raised below, once the file is closed
            finally:
                self._open_state = False
                self._handle.close()
        if self._closed_at is None:
            raise AuditNotClosedError(
                f"the closing checkpoint could not be written ({self._failure}); every event "
                f"before it is written, and the log verifies up to its last event (koble audit "
                f"verify-log {self.path} --allow-open) but is not closed: make room, and the "
                "next command that writes to the log continues and closes it",
                path=self.path,
            )
        if self._on_close is not None:
            self._on_close(self._closed_at)
        return self._closed_at

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the log. When the block failed, its error is the one raised: a closing
        checkpoint that fails too (:class:`AuditNotClosedError`) does not replace it."""
        if exc_type is None:
            self.close()
            return
        with contextlib.suppress(AuditNotClosedError):
            self.close()

    def __repr__(self) -> str:
        state = "open" if self._open_state else "closed"
        return f"AuditLog({str(self.path)!r}, signer={self._signer.key_id!r}, {state})"

    def _checkpoint(self, *, final: bool) -> None:
        """Write a signed checkpoint of the events so far (the closing one when ``final``)."""
        self._require_open()
        state = (self._seq, self._prev, self._last_closed)
        try:
            self._append_line(canonical(self._checkpoint_entry(final=final)) + b"\n")
        except BaseException:
            self._seq, self._prev, self._last_closed = state
            raise

    def _checkpoint_entry(self, *, final: bool) -> dict[str, Any]:
        """The next line as a signed checkpoint of the events so far, chained (not written)."""
        body: dict[str, Any] = {
            "type": "checkpoint",
            "head": self._head,
            "count": self._events,
            "final": final,
            "signer": self._signer.key_id,
        }
        entry = self._entry(body, sign=True)
        self._last_closed = final
        return entry

    def _require_open(self) -> None:
        if not self._open_state:
            raise UsageError("the audit log is closed", path=self.path)

    def _entry(self, fields: dict[str, Any], *, sign: bool = False) -> dict[str, Any]:
        """Chain, hash (and sign) ``fields`` as the next line and advance the chain to it; the
        entry. Nothing is written: the caller writes it, and on failure restores the chain."""
        entry = {**fields, "seq": self._seq + 1, "time": self._now(), "prev": self._prev}
        if sign:
            signature = self._signer.sign(signed_bytes(entry))
            entry["signature"] = base64.b64encode(signature).decode("ascii")
        entry["hash"] = entry_hash(entry)
        self._seq, self._prev = entry["seq"], entry["hash"]
        self._last_closed = False
        return entry

    def _append_line(self, line: bytes) -> None:
        """Append ``line`` (one line, or an event and the checkpoint due with it) durably, or
        leave the file exactly as it was before.

        The line goes straight to the descriptor (``os.write``, no buffer that closing the
        file would flush again) and is fsynced. On an OS error (disk full, file-size limit,
        I/O error) the file is cut back to its previous length and fsynced, so it never ends
        in a partial line: the log still verifies and the next command can append to it.
        This log object then accepts no more writes; the error is an :class:`OutputError`
        naming the log and what the system said.
        """
        fd = self._handle.fileno()
        before: int | None = None
        try:
            self._handle.flush()  # empty: lines never go through the buffer
            before = os.fstat(fd).st_size
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as exc:
            self._open_state = False
            restored = before is None
            if before is not None:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, before)
                    os.fsync(fd)
                    restored = True
            with contextlib.suppress(OSError):
                self._handle.close()
            damage = "" if restored else "; it may now end in a partial line"
            self._failure = f"{os_failure(exc)}{damage}"
            raise OutputError(
                f"cannot write the audit log: {self._failure}", path=self.path
            ) from None

    def _now(self) -> str:
        now = self._clock()
        if now.tzinfo is None or now.utcoffset() is None:
            raise UsageError("the audit clock must return timezone-aware datetimes")
        return now.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
