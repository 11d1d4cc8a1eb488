"""File-level pseudonym operations: what ``koble pseudonymise|reidentify|rekey`` and the HTTP
service call.

Each reads a CSV or Parquet file, runs the column operation, writes the result and a rejects
file (every input row ends up in one of the two), and records one audit entry with the
actor, domain, key id, row counts and the SHA-256 of input and output files. When no rejects
path is given, rejects go next to the output as ``<output>.rejects<suffix>``, so no row can be
lost by forgetting an option.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from koble.digests import sha256_file
from koble.errors import AuthorisationError
from koble.files import OutputSet
from koble.pseudonym.audit import check_event
from koble.pseudonym.auditing import AuditSink, DeferredAudit, MemoryAudit
from koble.pseudonym.identity import IdentityHistory
from koble.pseudonym.keys import Keyset
from koble.pseudonym.pseudonymise import PseudonymiseReport, pseudonymise_frame
from koble.pseudonym.reverse import MESSAGES, Authorisation, Reversed, reidentify, rekey
from koble.pseudonym.scheme import IdScheme
from koble.registries.identifiers.check import rejects_table
from koble.registries.identifiers.scan import check_column_name, refuse_identifiers
from koble.tables import (
    read_table,
    require_column,
    require_new_column,
    require_text_column,
    write_table,
)

__all__ = [
    "ReverseReport",
    "default_rejects_path",
    "pseudonymise_file",
    "reidentify_file",
    "rekey_file",
]


def default_rejects_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}.rejects{output.suffix}")


@dataclass(frozen=True)
class ReverseReport:
    """Counts of a re-identification or re-keying. No identifiers."""

    operation: str
    column: str
    domain: str
    rows: int
    converted: int
    rejected: int
    by_reason: dict[str, int]
    rejects_path: str

    @property
    def reconciled(self) -> bool:
        return self.rows == self.converted + self.rejected

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "reconciled": self.reconciled}


def pseudonymise_file(
    source: str | Path,
    output: str | Path,
    *,
    column: str,
    keyset: Keyset,
    domain: str,
    actor: str,
    audit: AuditSink | None = None,
    history: str | Path | None = None,
    population: str | Path | None = None,
    population_column: str = "person_id",
    rejects: str | Path | None = None,
    id_scheme: IdScheme = "fnr",
    test_numbers: bool = False,
    output_column: str | None = None,
    encoding: str = "utf-8",
    allow_identifiers: Collection[str] = (),
) -> tuple[PseudonymiseReport, Path]:
    """Pseudonymise ``column`` of ``source`` into ``output``; return the report and rejects path.

    Nothing is written when a column passed through (any but ``column``) holds a valid person
    number, unless ``allow_identifiers`` names it, or when a column name holds one
    (:func:`~koble.registries.identifiers.scan.refuse_identifiers`). The rejects file keeps
    every column as it came: it is the TTP's own and holds the identifiers it could not use.
    """
    source, output = Path(source), Path(output)
    if audit is not None:  # an event the log would refuse stops the command before any work
        check_event(actor=actor, operation="pseudonymise", domain=domain,
                    key_id=keyset.primary.key_id,
                    details={"column": column, "resolved_through_history": 0})  # fmt: skip
    frame = read_table(source, encoding=encoding)
    require_column(frame, column, source)
    require_new_column(frame, output_column, column, "--output-column", source)
    if output_column is not None:
        check_column_name(output_column, "--output-column")
    refuse_identifiers(frame, skip=[column], allowed=allow_identifiers, path=source)
    resolver = IdentityHistory.read(history) if history is not None else None
    known = None
    if population is not None:
        known = require_text_column(read_table(population), population_column, population,
                                    "identifiers", integers=True)  # fmt: skip
    result = pseudonymise_frame(
        frame, column, keyset=keyset, domain=domain, id_scheme=id_scheme, history=resolver,
        population=known, test_numbers=test_numbers, output_column=output_column,
        path=str(source),
    )  # fmt: skip
    rejects_path = Path(rejects) if rejects is not None else default_rejects_path(output)
    with OutputSet() as outputs:  # both or neither; the output last; audited before either
        write_table(result.rejects, rejects_path, outputs=outputs)
        write_table(result.table, output, outputs=outputs, last=True)
        if audit is not None:
            report = result.report
            audit.append(
                actor=actor, operation="pseudonymise", domain=domain, key_id=report.key_id,
                rows_in=report.rows, rows_out=report.pseudonymised, rejected=report.rejected,
                input_sha256=sha256_file(source),
                output_sha256=sha256_file(outputs.current(output)),
                details={"column": column,
                         "resolved_through_history": report.resolved_through_history},
            )  # fmt: skip
    return result.report, rejects_path


def _reverse_file(
    operation: str,
    source: str | Path,
    output: str | Path,
    *,
    column: str,
    domain: str,
    rejects: str | Path | None,
    output_column: str,
    audit: AuditSink | None,
    convert: Callable[[pl.Series, AuditSink], Reversed],
) -> ReverseReport:
    """Read ``source``, convert ``column``, write the converted rows and the rejects.

    The conversion's audit event is checked when it is made but written only once both
    outputs are staged, and they are committed only after it is written: a refused event
    writes nothing, a failed write leaves no event (:class:`DeferredAudit`). A refused
    re-identification is recorded all the same.
    """
    source, output = Path(source), Path(output)
    frame = read_table(source)
    values = require_text_column(frame, column, source, "pseudonyms")
    require_new_column(frame, output_column, column, "--output-column", source)
    if output_column != column:
        check_column_name(output_column, "--output-column")
    deferred = DeferredAudit(audit) if audit is not None else None
    try:
        result = convert(values, deferred if deferred is not None else MemoryAudit())
    except AuthorisationError:
        if deferred is not None:
            deferred.flush()
        raise
    good = result.reason.is_null()
    table = frame.filter(good).with_columns(result.values.filter(good).alias(column))
    rejects_path = Path(rejects) if rejects is not None else default_rejects_path(output)
    bad = rejects_table(frame, result.reason, MESSAGES)
    with OutputSet() as outputs:  # both or neither; the output last; audited before either
        write_table(bad, rejects_path, outputs=outputs)
        write_table(table.rename({column: output_column}), output, outputs=outputs, last=True)
        if deferred is not None:
            deferred.flush()
    counts = result.reason.drop_nulls().value_counts(sort=True)
    reasons = {str(k): int(v) for k, v in counts.iter_rows()}
    return ReverseReport(operation, column, domain, frame.height, result.ok, bad.height,
                         reasons, str(rejects_path))  # fmt: skip


def reidentify_file(
    source: str | Path,
    output: str | Path,
    *,
    column: str,
    keyset: Keyset,
    domain: str,
    authorisation: Authorisation,
    audit: AuditSink,
    rejects: str | Path | None = None,
    id_scheme: IdScheme = "fnr",
    output_column: str = "fnr",
) -> ReverseReport:
    """Re-identify ``column`` of ``source`` (authorised and audited)."""
    return _reverse_file(
        "reidentify", source, output, column=column, domain=domain, rejects=rejects,
        output_column=output_column, audit=audit,
        convert=lambda values, sink: reidentify(
            keyset, domain, values, authorisation, sink, id_scheme=id_scheme
        ),
    )  # fmt: skip


def rekey_file(
    source: str | Path,
    output: str | Path,
    *,
    column: str,
    keyset: Keyset,
    domain: str,
    actor: str,
    audit: AuditSink | None,
    rejects: str | Path | None = None,
    id_scheme: IdScheme = "fnr",
) -> ReverseReport:
    """Convert ``column`` of ``source`` to pseudonyms under the primary key (audited when
    ``audit`` is given)."""
    return _reverse_file(
        "rekey", source, output, column=column, domain=domain, rejects=rejects,
        output_column=column, audit=audit,
        convert=lambda values, sink: rekey(keyset, domain, values, sink, actor=actor,
                                           id_scheme=id_scheme),
    )  # fmt: skip
