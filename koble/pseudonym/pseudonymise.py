"""Pseudonymising whole columns: validate, resolve identity changes, encrypt, account for every row.

:func:`pseudonymise_frame` is the library behind ``koble pseudonymise``. Every input row ends
up either in the output, with its identifier replaced by the domain pseudonym and every other
column untouched, or in the rejects with its row number and the reason (invalid identifier,
ambiguous identity history, unknown person). Nothing falls back to the raw number.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from koble.errors import ColumnError, redact
from koble.pseudonym import scheme
from koble.pseudonym.identity import IdentityHistory
from koble.pseudonym.keys import Keyset, check_domain
from koble.registries.identifiers.check import (
    dropped_zero_warnings,
    reject_messages,
    rejects_table,
)
from koble.registries.identifiers.column import dropped_leading_zero, validate_column

__all__ = ["PseudonymiseReport", "Pseudonymised", "pseudonymise_frame", "pseudonymise_values"]

AMBIGUOUS = "ambiguous_identity"
UNKNOWN = "unknown_person"
EXTRA_MESSAGES = {
    AMBIGUOUS: "the identity history gives no single current identifier",
    UNKNOWN: "not in the population register, directly or through the identity history",
}


@dataclass(frozen=True)
class PseudonymiseReport:
    """Counts of one pseudonymisation. Holds no identifiers and no key material."""

    column: str
    domain: str
    key_id: str
    rows: int
    pseudonymised: int
    rejected: int
    by_reason: dict[str, int]
    resolved_through_history: int
    distinct_pseudonyms: int
    warnings: list[str] = field(default_factory=list)

    @property
    def reconciled(self) -> bool:
        return self.rows == self.pseudonymised + self.rejected

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reconciled": self.reconciled}


@dataclass(frozen=True)
class Pseudonymised:
    table: pl.DataFrame
    rejects: pl.DataFrame
    report: PseudonymiseReport


#: Rows per chunk: keeps temporaries and each Arrow-to-Polars conversion small (one 50 M-row
#: conversion costs ten times more than 25 conversions of 2 M rows).
CHUNK_ROWS = 1 << 21


def pseudonymise_values(
    keyset: Keyset, domain: str, compact: pl.Series, id_scheme: scheme.IdScheme = "fnr"
) -> pl.Series:
    """Pseudonyms of valid, compact, resolved identifiers under the primary key of ``keyset``."""
    version = keyset.primary.version
    key = keyset._domain_key(version, check_domain(domain))
    chunks = [
        scheme.format_pseudonyms(
            version, scheme.encrypt(key, scheme.encode(compact.slice(start, CHUNK_ROWS), id_scheme))
        )
        for start in range(0, max(len(compact), 1), CHUNK_ROWS)
    ]
    return pl.concat(chunks, rechunk=False) if len(chunks) > 1 else chunks[0]


def pseudonymise_frame(
    frame: pl.DataFrame,
    column: str,
    *,
    keyset: Keyset,
    domain: str,
    id_scheme: scheme.IdScheme = "fnr",
    history: IdentityHistory | None = None,
    population: pl.Series | None = None,
    test_numbers: bool = False,
    output_column: str | None = None,
    path: str = "<table>",
) -> Pseudonymised:
    """Replace ``frame[column]`` by pseudonyms in ``domain``; reject what cannot be.

    ``history`` resolves old identifiers to current ones first. ``population`` (current
    identifiers of the population register), when given, rejects persons not in it.
    """
    check_domain(domain)
    if column not in frame.columns:
        # redacted: a file read without a header has its first row's identifiers as names
        available = redact(", ".join(frame.columns[:20]))
        raise ColumnError(f"no such column; the file has: {available}", path=path, column=column)
    raw = frame[column]
    if raw.dtype != pl.String:
        raise ColumnError(
            f"identifiers must be text, the column is {raw.dtype}", path=path, column=column
        )
    checked = validate_column(raw, scheme=id_scheme, test_numbers=test_numbers)
    reason = checked["reason"].cast(pl.String)
    compact = checked["compact"]
    changed = pl.Series(np.zeros(frame.height, dtype=np.bool_))
    if history is not None and id_scheme == "fnr":
        resolution = history.resolve(compact)
        reason = pl.select(
            pl.when(reason.is_null() & resolution.ambiguous).then(pl.lit(AMBIGUOUS))
            .otherwise(reason)
        ).to_series()  # fmt: skip
        compact = resolution.resolved.fill_null(compact)
        changed = resolution.changed & reason.is_null()
    if population is not None:
        known = compact.is_in(population.cast(pl.String).implode())
        reason = pl.select(
            pl.when(reason.is_null() & ~known).then(pl.lit(UNKNOWN)).otherwise(reason)
        ).to_series()
    good = reason.is_null()
    name = output_column or column
    pseudonyms = pseudonymise_values(keyset, domain, compact.filter(good), id_scheme)
    table = frame.filter(good).with_columns(pseudonyms.alias(column)).rename({column: name})
    dropped = dropped_leading_zero(checked) if id_scheme == "fnr" else None
    rejects = rejects_table(frame, reason, reject_messages(EXTRA_MESSAGES), dropped_zero=dropped)
    counts = reason.drop_nulls().value_counts(sort=True)
    report = PseudonymiseReport(
        column=column,
        domain=domain,
        key_id=keyset.primary.key_id,
        rows=frame.height,
        pseudonymised=table.height,
        rejected=rejects.height,
        by_reason={str(k): int(v) for k, v in counts.iter_rows()},
        resolved_through_history=int(changed.sum()),
        distinct_pseudonyms=pseudonyms.n_unique(),
        warnings=dropped_zero_warnings(dropped),  # as ``koble ids check`` warns
    )
    return Pseudonymised(table, rejects, report)
