"""The parts of a linkage job that the planner and executor use: the validated, frozen
:class:`Job` with its requests, approvals and anonymity target, and the problems a job
file can have. Parsing is in :mod:`koble.linkage.job`; the variables a registry offers come from its
data holder (:meth:`koble.linkage.sources.Sources.schemas`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from koble.errors import FileFormatError, sanitise

__all__ = [
    "APPROVAL_KINDS",
    "FORMATS",
    "RECORD_FIELDS",
    "Anonymity",
    "Approval",
    "ApprovalKind",
    "Job",
    "JobError",
    "Problem",
    "Recovery",
    "Request",
    "valid_variable_name",
]

APPROVAL_KINDS: Final = ("rek", "helsedataservice", "registry")
FORMATS: Final = ("parquet", "csv", "stata", "spss", "sas")
ApprovalKind = Literal["rek", "helsedataservice", "registry"]
#: The record fields a population file may carry for identity recovery (the contract's
#: :data:`~koble.recovery.contract.RECORD_SCHEMA` less ``record_id`` and ``fnr``, which the
#: job names otherwise: the row number and ``id_column``).
RECORD_FIELDS: Final = (
    "first_name", "middle_name", "last_name", "birth_date", "sex", "death_date", "kommune",
)  # fmt: skip
_VARIABLE = re.compile(r"[A-Z_][A-Z0-9_]{0,31}")


def valid_variable_name(name: str) -> bool:
    """Whether ``name`` is a delivery variable name (§1.5): A–Z, 0–9, ``_``, not starting
    with a digit, at most 32 characters; case-insensitive."""
    return _VARIABLE.fullmatch(name.upper()) is not None


@dataclass(frozen=True)
class Problem:
    """One problem in a job file, at ``line`` (1-based)."""

    line: int
    message: str

    def render(self, path: str | None) -> str:
        return sanitise(f"{path or '<job>'}:{self.line}: {self.message}")


class JobError(FileFormatError):
    """A job with problems; ``problems`` holds all of them, in line order."""

    def __init__(self, problems: list[Problem], *, path: str | Path | None = None) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: p.line))
        self.job_path = None if path is None else str(path)
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        text = "; ".join(f"line {p.line}: {p.message}" for p in self.problems)
        super().__init__(f"job has {count}: {text}", path=path)

    def lines(self) -> list[str]:
        """One line per problem, ``path:line: message``."""
        return [p.render(self.job_path) for p in self.problems]


@dataclass(frozen=True)
class Approval:
    kind: ApprovalKind
    reference: str


@dataclass(frozen=True)
class Request:
    """The variables and period asked of one registry, under one approval."""

    registry: str
    variables: tuple[str, ...]
    start: int
    end: int
    approval: Approval
    line: int
    #: The registry's own records lack usable numbers (Helsearkivregisteret): it sends
    #: them, with their names, to the TTP to be resolved before it extracts.
    recover: bool = False


@dataclass(frozen=True)
class Recovery:
    """``[population] recover = true``: population rows whose number fails validation go,
    with the record ``fields`` the population file carries (contract field -> column), to
    the TTP, which resolves them against its register (:mod:`koble.recovery`) before the
    løpenummer is assigned. ``thresholds`` (low, high) on match probability: from high on a
    pair is linked, between them it awaits review (a reject here), below it is rejected.
    Rows with a valid number go too: the TTP checks each against birth date and sex (a valid
    number of someone else is no exact link), and the model learns from the exact links."""

    fields: Mapping[str, str]
    thresholds: tuple[float, float] = (0.80, 0.99)


@dataclass(frozen=True)
class Anonymity:
    """What the anonymity gate must reach (design.md §2.4)."""

    k: int
    quasi_identifiers: tuple[str, ...]
    max_suppression: float = 0.0
    #: Hierarchy per quasi-identifier (``koble.anonymity`` spec strings); inferred if absent.
    hierarchies: Mapping[str, str] = field(default_factory=dict)
    #: What k persons must share (``koble.anonymity.longitudinal``): ``auto`` is the
    #: strictest of person-set, then person-km (m down to 2), that finds a release.
    model: str = "auto"
    #: person-km's m.
    m: int = 2
    #: ``person``: deliver one row per person (``kind`` counts, ``date`` first/last dates).
    shape: str = "rows"
    kind: str | None = None
    date: str | None = None

    def describe(self) -> str:
        """The requirement in words, for the plan."""
        what = {
            "auto": f"every person's set of rows shared by k persons (person-set), else any "
            f"{self.m} of a person's rows (person-km)",
            "person-set": "every person's set of rows shared by k persons (person-set)",
            "person-km": f"any {self.m} of a person's rows shared by k persons (person-km)",
            "row": "every row class holding k persons (row model)",
        }[self.model]
        if self.shape == "person":
            dates = "" if self.date is None else f" and first/last {self.date}"
            what = (
                f"one row per person (rows per {self.kind}{dates}), every row class "
                f"holding k persons"
            )
        return (
            f"k = {self.k} over {', '.join(self.quasi_identifiers)}: {what}, at most "
            f"{self.max_suppression:.0%} of rows suppressed"
        )


@dataclass(frozen=True)
class Job:
    project_id: str
    title: str
    population_file: str
    id_column: str
    recipient: str
    organisation: str
    delivery_format: str
    requests: tuple[Request, ...]
    anonymity: Anonymity | None = None
    source: str | None = None
    #: ``[population] recover``: resolve the rows that fail validation at the TTP.
    recovery: Recovery | None = None
    #: The thresholds every recovery in the job uses (``[population] thresholds``).
    thresholds: tuple[float, float] = (0.80, 0.99)

    @property
    def recovers(self) -> bool:
        """Whether any part of the job resolves identities at the TTP."""
        return self.recovery is not None or any(r.recover for r in self.requests)
