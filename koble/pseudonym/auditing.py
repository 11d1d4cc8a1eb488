"""The interface through which pseudonym operations report to the audit log.

:class:`koble.pseudonym.audit.AuditLog` implements it; :class:`MemoryAudit` keeps entries in
a list for tests and for callers who forward them elsewhere. Operations pass counts, key ids
and hashes: never identifiers or key material.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["AuditSink", "DeferredAudit", "Detail", "MemoryAudit"]

Detail = str | int | float | bool | None


class AuditSink(Protocol):
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
        details: Mapping[str, Detail] | None = None,
    ) -> Any:
        """Record one operation."""


class MemoryAudit:
    """An :class:`AuditSink` that keeps every entry as a dict."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def append(self, **fields: Any) -> dict[str, Any]:
        entry = {k: v for k, v in fields.items() if v is not None}
        self.entries.append(entry)
        return entry


class DeferredAudit:
    """An :class:`AuditSink` that checks each event at once and holds it until :meth:`flush`.

    For an operation that audits itself before its outputs exist (``reidentify``, ``rekey``):
    the caller passes this in, writes its outputs under temporary names, then flushes into
    the real sink and only then commits the outputs. An event the log refuses (an actor
    holding a person number) fails at :meth:`append`, before any output is written; a write
    that fails leaves no event claiming an operation whose output never appeared.
    """

    def __init__(self, sink: AuditSink) -> None:
        self._sink = sink
        self._held: list[dict[str, Any]] = []

    def append(self, **fields: Any) -> None:
        from koble.pseudonym.audit import check_event  # audit imports the identifier scan

        check_event(**fields)
        self._held.append(fields)

    def flush(self) -> None:
        """Append every held event to the real sink, in order."""
        held, self._held = self._held, []
        for fields in held:
            self._sink.append(**fields)
