"""What a step reports to the steps after it: typed, frozen records, written once as JSON
and read back as the same type (design.md §2.1, issue 17).

A report file is the contract between the step that writes it and the ones that read it
(delivery, the quality report, verification): its fields are named here once, a file
lacking one or holding another is a precise :class:`~koble.errors.FileFormatError` naming
the file and the field, and the JSON written is exactly what it always was (the delivered
quality report, which carries these figures, keeps its bytes).

Converted: the population's report (assign-serials), the TTP's report of a registry's
pseudonymisation, the TTP's resolve report (identity recovery), a registry's sealed ingest,
a registry's extract report and the anonymity gate's record. What the delivery step
writes from them (the quality report, the manifest's body) is in
:mod:`koble.linkage.delivery_records`, the codebook in :mod:`koble.linkage.codebook`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from koble.errors import FileFormatError
from koble.linkage.keys import read_json, write_json

if TYPE_CHECKING:
    from koble.linkage.codebook import Codebook

__all__ = [
    "ExtractReport",
    "ExtractSummary",
    "GateReport",
    "IngestReport",
    "PopulationCounts",
    "PopulationReport",
    "ResolveReport",
    "TtpReport",
    "read_report",
    "write_report",
]

R = TypeVar("R", bound="_Report")


@dataclass(frozen=True)
class _Report:
    """A report's JSON is its fields, in order; :meth:`from_json` takes exactly them."""

    def to_json(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls: type[R], document: Any, path: str | Path = "<report>") -> R:
        if not isinstance(document, Mapping):
            raise FileFormatError(f"{cls.__name__}: not a JSON object", path=path)
        fields = dataclasses.fields(cls)
        names = [f.name for f in fields]
        optional = {f.name for f in fields if f.default is not dataclasses.MISSING}
        missing = [n for n in names if n not in document and n not in optional]
        extra = sorted(set(document) - set(names))
        if missing or extra:
            what = [*(f"lacks {n!r}" for n in missing), *(f"holds unknown {n!r}" for n in extra)]
            raise FileFormatError(f"{cls.__name__}: " + "; ".join(what), path=path)
        return cls(**{n: cls._field(n, document[n], path) for n in names if n in document})

    @classmethod
    def _field(cls, name: str, value: Any, path: str | Path) -> Any:
        del name, path
        return value


def _plain(value: Any) -> Any:
    if isinstance(value, _Report):
        return value.to_json()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class PopulationCounts(_Report):
    """The study population as assign-serials found it: every row keyed or rejected."""

    file: str
    sha256: str
    rows: int
    persons: int
    invalid: int
    duplicates: int
    unresolved: int
    resolved_from_history: int
    recovered: int
    old_identifiers_sent: int
    reasons: Mapping[str, int] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        """Rows refused: invalid, duplicate or unresolved."""
        return self.invalid + self.duplicates + self.unresolved


@dataclass(frozen=True)
class PopulationReport(_Report):
    """The operator's assign-serials report: the population's counts, the identity history
    it resolved through, and (with identity recovery) how each person was linked."""

    population: PopulationCounts
    history_sha256: str | None
    history_file: str | None
    history_rows: int | None
    linkage: Mapping[str, Any] | None = None

    @classmethod
    def from_json(cls, document: Any, path: str | Path = "<report>") -> PopulationReport:
        if isinstance(document, Mapping) and "linkage" not in document:
            document = {**document, "linkage": None}  # written only with recovery
        return super().from_json(document, path)

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        if out["linkage"] is None:
            del out["linkage"]
        return out

    @classmethod
    def _field(cls, name: str, value: Any, path: str | Path) -> Any:
        return PopulationCounts.from_json(value, path) if name == "population" else value


@dataclass(frozen=True)
class TtpReport(_Report):
    """The TTP's pseudonymisation of the population for one registry."""

    registry: str
    persons_received: int
    persons_pseudonymised: int
    persons_unresolved: int
    key_id: str
    domain: str


@dataclass(frozen=True)
class IngestReport(_Report):
    """A registry's sealed ingest of its feed (the plan's ``sealed_ingest`` step), kept
    beside the table it loaded: every row the sender sent is stored or rejected (by
    reason), and the feed and the table are named with their hashes. The registry's
    extract report carries the feed's part of it."""

    rows_sent: int
    rows_stored: int
    rows_rejected: int
    by_reason: Mapping[str, int]
    feed_file: str
    feed_sha256: str
    table_sha256: str


@dataclass(frozen=True, kw_only=True)
class ResolveReport(_Report):
    """The TTP's resolve report (identity recovery) of the records one holder sent: how
    each was linked or why not, the model's figures and the link rate by group. Counts
    and figures only: the model itself, the review pairs and the names stay at the TTP."""

    #: ``population`` or the registry whose records were resolved.
    scope: str
    records: int
    training_records: int
    valid_numbers: int
    fields: list[str]
    by_method: Mapping[str, int]
    unresolved: int
    by_reason: Mapping[str, int]
    same_person: int
    thresholds: list[float]
    seed: int
    register_persons: int
    model: Mapping[str, Any] | None
    model_sha256: str
    bias: Any

    def linkage_section(self) -> dict[str, Any]:
        """The quality report's linkage section of a registry that recovered identities:
        the report, with its rows and every record's outcome."""
        by_outcome = {**self.by_method, "unresolved": self.unresolved}
        return {**self.to_json(), "rows": self.records, "by_outcome": by_outcome}


@dataclass(frozen=True, kw_only=True)
class ExtractSummary(_Report):
    """A registry's extract: who it was sent, what it found, delivered and withheld (by
    period, consent, reservation), its source and file with their hashes. Every row found
    is delivered or withheld for a reason. (The quality report's figures of a registry.)"""

    registry: str
    name: str
    route: str
    consent_filter: bool
    period: tuple[int, int] | list[int]
    #: The job's request these years belong to, and the identity model in force for them.
    requested: str
    identity_model: str
    persons_sent: int
    persons_without_consent: int
    rows_without_consent: int
    persons_found: int
    persons_delivered: int
    source_file: str
    source_sha256: str
    source_rows: int
    #: A pseudonymous registry's sealed feed (file, hash, rows sent and rejected), if any.
    feed: Mapping[str, Any] | None
    rows_delivered: int
    rows_outside_period: int
    #: None in a report of a koble from before reservations were counted.
    rows_found: int | None = None
    reservation_filter: bool
    rows_withheld_reservation: int
    values_nulled_reservation: Mapping[str, int]
    duplicate_rows: Any
    file: str
    file_sha256: str
    file_rows: int
    variables: list[str]
    recipient: str


@dataclass(frozen=True, kw_only=True)
class ExtractReport(ExtractSummary):
    """A registry's extract report: its :class:`ExtractSummary` and the file's codebook
    entry."""

    codebook: Codebook

    @classmethod
    def _field(cls, name: str, value: Any, path: str | Path) -> Any:
        if name != "codebook":
            return value
        from koble.linkage.codebook import Codebook  # its records build on these

        return Codebook.from_json(value, path)

    def summary(self) -> dict[str, Any]:
        """The report without its codebook entry (what the quality report and the audit
        carry)."""
        return {k: v for k, v in self.to_json().items() if k != "codebook"}


@dataclass(frozen=True, kw_only=True)
class GateReport(_Report):
    """The anonymity gate's record (the central route): the requirement, the levels it
    chose and the columns it coarsened, what it withheld, the models it tried, the
    person-level figures before and after, and whether the release meets the requirement."""

    k: int
    quasi_identifiers: list[str]
    hierarchies: Mapping[str, str]
    #: Each quasi-identifier's chosen level by name, and by index (0: as it was).
    levels: Mapping[str, str]
    level_index: Mapping[str, int]
    #: Each released column that was coarsened, with the name of its level.
    coarsened_columns: Mapping[str, str]
    shape: Any
    model: str
    models_tried: list[str]
    person_constant_quasi_identifiers: list[str]
    rows: int
    suppressed: int
    persons_withheld: int | None
    min_class_size: int
    min_class_persons: int | None
    person_level: Mapping[str, Any]
    meets: bool


def write_report(path: Path, report: _Report) -> dict[str, Any]:
    """Write ``report`` as JSON (atomically); returns the JSON object written."""
    document = report.to_json()
    write_json(path, document)
    return document


def read_report(path: Path, kind: type[R]) -> R:
    """The report of ``kind`` at ``path``; an unreadable or mismatched file is a
    FileFormatError naming it."""
    try:
        document = read_json(path)
    except (OSError, ValueError) as exc:
        raise FileFormatError(f"{kind.__name__}: cannot be read ({exc})", path=path) from None
    return kind.from_json(document, path)
