"""The interface through which pseudonym operations report to the audit log.

:class:`koble.pseudonym.audit.AuditLog` implements it; :class:`MemoryAudit` keeps entries in
a list for tests and for callers who forward them elsewhere. Operations pass counts, key ids
and hashes: never identifiers or key material.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["AuditSink", "Detail", "MemoryAudit"]

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
