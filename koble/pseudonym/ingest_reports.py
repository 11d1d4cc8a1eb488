"""What each party of sealed ingest reports, and what its step returns.

The TTP's and the registry's counts per batch (:mod:`koble.pseudonym.ingest`): they
reconcile (rows in = rows forwarded or stored + rows rejected) and never hold an identifier.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import polars as pl

from koble.pseudonym.sealed import ForwardedBatch

__all__ = ["ColumnReport", "RegistryReport", "RegistryResult", "TtpReport", "TtpResult"]


@dataclass(frozen=True)
class ColumnReport:
    """The TTP's counts for one identifier column of one batch. Never an identifier."""

    column: str
    scheme: str
    domain: str
    key_id: str
    valid: int
    invalid: int
    by_reason: dict[str, int]
    resolved_through_history: int
    distinct_pseudonyms: int


@dataclass(frozen=True)
class TtpReport:
    """What the TTP did with one batch: rows in = rows forwarded with pseudonyms + rejected."""

    batch_id: str
    rows: int
    pseudonymised: int
    rejected: int
    columns: list[ColumnReport]
    #: Hints for the sender, e.g. rows whose leading zero a spreadsheet may have dropped.
    warnings: list[str] = field(default_factory=list)

    @property
    def reconciled(self) -> bool:
        return self.rows == self.pseudonymised + self.rejected

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reconciled": self.reconciled}


@dataclass(frozen=True)
class RegistryReport:
    """What the registry stored from one batch: rows = stored + rejected (by TTP reason)."""

    batch_id: str
    rows: int
    stored: int
    rejected: int
    by_reason: dict[str, int]
    domains: dict[str, dict[str, str]]

    @property
    def reconciled(self) -> bool:
        return self.rows == self.stored + self.rejected

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reconciled": self.reconciled}


class TtpResult(NamedTuple):
    forwarded: ForwardedBatch
    rejects: pl.DataFrame
    report: TtpReport


class RegistryResult(NamedTuple):
    table: pl.DataFrame
    report: RegistryReport
