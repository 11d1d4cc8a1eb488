"""What the delivery step writes: the quality report and the manifest's body, as typed,
frozen records (design.md §2.1, issue 17).

The delivery step builds a :class:`QualityReport` and a :class:`ManifestBody` from the
steps' reports (:mod:`koble.linkage.reports`) and writes each once as JSON; the quality
report's renderings, verification and reproduction read them back as these types. The
JSON is what koble always wrote (sorted keys, so field order does not matter): a field
whose name is a Python keyword keeps its JSON name (``from``), and a field added after the
first deliveries (``periods``) or written only when it applies (``linkage``) may be
absent. A document lacking a field or holding an unknown one is a
:class:`~koble.errors.FileFormatError` naming the file and where in it
(``ManifestBody.outputs[2]: lacks 'sha256'``).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeAlias, TypeVar

from koble.errors import FileFormatError
from koble.linkage.plan import PlanPart, Refusal, Transfer
from koble.linkage.reports import (
    ExtractReport,
    ExtractSummary,
    GateReport,
    PopulationCounts,
    TtpReport,
    _Report,
)

__all__ = [
    "BiasGroup",
    "BiasTable",
    "DeliveredFile",
    "JobRef",
    "LinkageSection",
    "ManifestBody",
    "ManifestInput",
    "ManifestOutput",
    "PeriodEntry",
    "ProjectRef",
    "QualityReport",
    "Recipient",
    "ReconciliationCheck",
    "RefusalEntry",
    "RegistrySummary",
    "TransferEntry",
]

S = TypeVar("S", bound="_Record")
Shape = Literal["one", "list", "map"]
#: A record's fields that hold records: one, a list or a mapping (by name) of that type.
Nested: TypeAlias = Mapping[str, tuple[Shape, type[_Report]]]


@dataclass(frozen=True)
class _Record(_Report):
    """A report whose JSON may rename a field, leave out an unset optional one, and hold
    other records (checked in turn, an error naming the place: ``QualityReport.ttp['npr']``)."""

    #: JSON names of the fields whose own name is a Python keyword.
    _json_names: ClassVar[Mapping[str, str]] = {}
    #: Optional fields written only when set (older files, or runs they do not apply to,
    #: lack them).
    _omitted: ClassVar[frozenset[str]] = frozenset()
    _records: ClassVar[Nested] = {}

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        return {
            self._json_names.get(name, name): value
            for name, value in out.items()
            if not (value is None and name in self._omitted)
        }

    @classmethod
    def from_json(cls: type[S], document: Any, path: str | Path = "<report>") -> S:
        return _parse(cls, document, path, cls.__name__)


def _parse(kind: type[S], document: Any, path: str | Path, where: str) -> S:
    if not isinstance(document, Mapping):
        raise FileFormatError(f"{where}: not a JSON object", path=path)
    fields = dataclasses.fields(kind)
    keys = {f.name: kind._json_names.get(f.name, f.name) for f in fields}
    optional = {
        f.name
        for f in fields
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    }
    missing = [key for name, key in keys.items() if key not in document and name not in optional]
    extra = sorted(set(document) - set(keys.values()))
    if missing or extra:
        what = [*(f"lacks {n!r}" for n in missing), *(f"holds unknown {n!r}" for n in extra)]
        raise FileFormatError(f"{where}: " + "; ".join(what), path=path)
    values = {
        name: _value(kind, name, document[key], path, f"{where}.{key}")
        for name, key in keys.items()
        if key in document
    }
    return kind(**values)


def _value(kind: type[_Record], name: str, value: Any, path: str | Path, where: str) -> Any:
    """A field's value as read: records (one, a list, a mapping) parsed, the rest as is."""
    spec = kind._records.get(name)
    if spec is None or value is None:
        return value
    shape, record = spec
    if shape == "one":
        return _one(record, value, path, where)
    if shape == "list":
        if not isinstance(value, list):
            raise FileFormatError(f"{where}: not a list", path=path)
        return [_one(record, v, path, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, Mapping):
        raise FileFormatError(f"{where}: not a JSON object", path=path)
    return {k: _one(record, v, path, f"{where}[{k!r}]") for k, v in value.items()}


def _one(record: type[_Report], value: Any, path: str | Path, where: str) -> Any:
    if issubclass(record, _Record):
        return _parse(record, value, path, where)
    try:
        return record.from_json(value, path)
    except FileFormatError as exc:  # its message names the type: put the place before it
        raise FileFormatError(f"{where}: {exc.message}", path=path) from None


# --- parts of both ------------------------------------------------------------------------
@dataclass(frozen=True)
class ProjectRef(_Record):
    id: str
    title: str | None


@dataclass(frozen=True)
class ReconciliationCheck(_Record):
    """One of the delivery's reconciliation checks: every person and row accounted for."""

    check: str
    ok: bool
    detail: str


@dataclass(frozen=True, kw_only=True)
class RefusalEntry(_Record):
    """A registry (or some of its data years) the plan left out, and why."""

    registry: str
    reason: str
    #: The refused years, when only they are refused.
    period: list[int] | None = None
    _omitted: ClassVar[frozenset[str]] = frozenset({"period"})

    @classmethod
    def of(cls, refusal: Refusal) -> RefusalEntry:
        start, end = refusal.start, refusal.end
        period = None if start is None or end is None else [start, end]
        return cls(registry=refusal.registry, reason=refusal.reason, period=period)


@dataclass(frozen=True, kw_only=True)
class PeriodEntry(_Record):
    """A request's data years as planned (by regime and holder), with the rows its registry
    delivered and the file they are in (none for a refused part)."""

    requested: str
    registry: str
    period: list[int]
    identity_model: str
    route: str
    approval: str
    successor: bool
    reason: str | None
    rows_delivered: int | None
    file: str | None

    @classmethod
    def of(cls, part: PlanPart, report: ExtractReport | None) -> PeriodEntry:
        return cls(
            requested=part.requested,
            registry=part.registry,
            period=[part.start, part.end],
            identity_model=part.identity_model,
            route=part.route,
            approval=part.approval,
            successor=part.successor,
            reason=part.reason,
            rows_delivered=None if report is None else report.rows_delivered,
            file=None if report is None else report.file,
        )


# --- the quality report -------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class RegistrySummary(_Record, ExtractSummary):
    """A registry's figures in the quality report: its extract's, and (pseudonymous
    registries) the persons the TTP could not pseudonymise."""

    persons_unresolved: int | None = None
    _omitted: ClassVar[frozenset[str]] = frozenset({"persons_unresolved"})

    @classmethod
    def of(cls, report: ExtractReport, ttp: TtpReport | None) -> RegistrySummary:
        figures = {f.name: getattr(report, f.name) for f in dataclasses.fields(ExtractSummary)}
        unresolved = None if ttp is None else ttp.persons_unresolved
        return cls(**figures, persons_unresolved=unresolved)


@dataclass(frozen=True, kw_only=True)
class BiasGroup(_Record):
    """One group's records and link rate beside the whole (figures None when hidden)."""

    by: str
    group: str
    hidden: bool
    rows: int | None
    linked: int | None
    rate: float | None
    difference: float | None


@dataclass(frozen=True, kw_only=True)
class BiasTable(_Record):
    """Who is linked (:func:`koble.linkage.linkage_bias.bias_table`): the link rate overall
    and by group, small cells hidden."""

    rows: int
    linked: int
    rate: float | None
    reference_date: str
    ages_at_death: bool
    groups: list[BiasGroup]
    not_carried: list[str]
    single_group: list[str]
    _records: ClassVar[Nested] = {"groups": ("list", BiasGroup)}


@dataclass(frozen=True, kw_only=True)
class LinkageSection(_Record):
    """How one set of records was linked (identity recovery, design.md §1.5): the
    population's (from assign-serials) or a registry's (the TTP's resolve report with its
    rows and outcomes). Counts, model figures and link rates by group; never a record."""

    #: ``population`` or the registry whose records were resolved.
    scope: str
    rows: int
    by_outcome: Mapping[str, int]
    thresholds: list[float]
    valid_numbers: int
    training_records: int
    by_reason: Mapping[str, int]
    model: Mapping[str, Any] | None
    bias: BiasTable
    #: The population's: records sent to the TTP.
    sent_to_ttp: int | None = None
    #: A registry's: the rest of its resolve report.
    records: int | None = None
    fields: list[str] | None = None
    by_method: Mapping[str, int] | None = None
    unresolved: int | None = None
    same_person: int | None = None
    seed: int | None = None
    register_persons: int | None = None
    model_sha256: str | None = None
    _omitted: ClassVar[frozenset[str]] = frozenset(
        {"sent_to_ttp", "records", "fields", "by_method", "unresolved", "same_person", "seed",
         "register_persons", "model_sha256"}
    )  # fmt: skip
    _records: ClassVar[Nested] = {"bias": ("one", BiasTable)}


@dataclass(frozen=True, kw_only=True)
class DeliveredFile(_Record):
    """A file the researcher receives (``file`` None only in a report's fallback)."""

    file: str | None
    rows: int | None
    sender: str | None
    _json_names: ClassVar[Mapping[str, str]] = {"sender": "from"}


@dataclass(frozen=True, kw_only=True)
class QualityReport(_Record):
    """The delivery's quality report (``quality.json``; also rendered as Markdown and
    HTML by :mod:`koble.linkage.quality`): the population, each registry's figures and the
    TTP's, refusals, the periods by identity model, the anonymity gate's record (central
    route), what the researcher receives, the reconciliation, and (identity recovery) how
    each set of records was linked."""

    project: ProjectRef
    route: str
    population: PopulationCounts
    registries: list[RegistrySummary]
    ttp: Mapping[str, TtpReport]
    refusals: list[RefusalEntry]
    #: None in a report from before requests were split by identity regime.
    periods: list[PeriodEntry] | None = None
    anonymity: GateReport | None
    #: None in a report from before the delivered files were recorded.
    delivery: list[DeliveredFile] | None = None
    reconciliation: list[ReconciliationCheck]
    #: Only with identity recovery.
    linkage: list[LinkageSection] | None = None
    _omitted: ClassVar[frozenset[str]] = frozenset({"periods", "delivery", "linkage"})
    _records: ClassVar[Nested] = {
        "project": ("one", ProjectRef), "population": ("one", PopulationCounts),
        "registries": ("list", RegistrySummary), "ttp": ("map", TtpReport),
        "refusals": ("list", RefusalEntry), "periods": ("list", PeriodEntry),
        "anonymity": ("one", GateReport), "delivery": ("list", DeliveredFile),
        "reconciliation": ("list", ReconciliationCheck), "linkage": ("list", LinkageSection),
    }  # fmt: skip

    @property
    def reconciled(self) -> bool:
        """Whether there are checks and every one holds."""
        return bool(self.reconciliation) and all(c.ok for c in self.reconciliation)


# --- the manifest's body ------------------------------------------------------------------
@dataclass(frozen=True)
class Recipient(_Record):
    name: str
    organisation: str


@dataclass(frozen=True)
class JobRef(_Record):
    """The job file the run carried out, by name and hash."""

    file: str
    sha256: str


@dataclass(frozen=True, kw_only=True)
class ManifestInput(_Record):
    """A file a party read, by hash and rows: the population, the identity history, a
    registry's source, a sender's sealed feed."""

    party: str
    file: str
    sha256: str
    rows: int | None


@dataclass(frozen=True, kw_only=True)
class ManifestOutput(_Record):
    """A delivered file, by hash and rows (None for a document), and who made it; a
    registry's extract also says which data years of which request it holds."""

    file: str
    sha256: str
    rows: int | None
    sender: str
    requested: str | None = None
    period: list[int] | None = None
    _json_names: ClassVar[Mapping[str, str]] = {"sender": "from"}
    _omitted: ClassVar[frozenset[str]] = frozenset({"requested", "period"})


@dataclass(frozen=True, kw_only=True)
class TransferEntry(_Record):
    """A planned transfer: a file from one party to another, with the columns it carries."""

    id: str
    source: str
    target: str
    file: str
    columns: list[str]
    after: str
    _json_names: ClassVar[Mapping[str, str]] = {"source": "from", "target": "to"}

    @classmethod
    def of(cls, transfer: Transfer) -> TransferEntry:
        return cls(id=transfer.id, source=transfer.source, target=transfer.target,
                   file=transfer.file, columns=list(transfer.columns),
                   after=transfer.after)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class ManifestBody(_Record):
    """What the operator signs (:mod:`koble.linkage.manifest`): the job, catalogue and
    software, the engine, key ids (never keys), every input's and output's hash and rows,
    the plan's transfers, refusals and periods, and the reconciliation. No identifier and no
    data value."""

    format: str
    project: ProjectRef
    recipient: Recipient
    job: JobRef
    catalogue_version: str
    software: Mapping[str, str]
    engine: str
    #: The run's clock, ISO 8601 to the second (a reproduction runs at the same value).
    created: str
    route: str
    delivery_format: str
    keys: Mapping[str, str]
    inputs: list[ManifestInput]
    outputs: list[ManifestOutput]
    transfers: list[TransferEntry]
    refusals: list[RefusalEntry]
    #: None in a manifest from before requests were split by identity regime.
    periods: list[PeriodEntry] | None = None
    reconciliation: list[ReconciliationCheck]
    _omitted: ClassVar[frozenset[str]] = frozenset({"periods"})
    _records: ClassVar[Nested] = {
        "project": ("one", ProjectRef), "recipient": ("one", Recipient), "job": ("one", JobRef),
        "inputs": ("list", ManifestInput), "outputs": ("list", ManifestOutput),
        "transfers": ("list", TransferEntry), "refusals": ("list", RefusalEntry),
        "periods": ("list", PeriodEntry), "reconciliation": ("list", ReconciliationCheck),
    }  # fmt: skip

    @property
    def created_at(self) -> datetime.datetime:
        return datetime.datetime.fromisoformat(self.created)
