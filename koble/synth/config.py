"""The configuration of a synthetic world: what to generate, and nothing else.

A world is a pure function of its :class:`SynthConfig`: the same config gives byte-identical
files. The config therefore holds every knob that changes the output (the seed, the reference
date, rates, the chunk size) and never reads the clock or the machine.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from koble.errors import UsageError

__all__ = ["MAX_PERSONS", "SynthConfig"]

#: NPR's data are identifiable from 2008; the world's de-identified episodes end the day before.
_NPR_DEIDENTIFIED_END = datetime.date(2007, 12, 31)
#: The largest synthetic population: ten times Norway's, far beyond any test's need.
MAX_PERSONS = 60_000_000


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """What :func:`koble.synth.generate_world` builds.

    Rates are shares of persons (``share_*``) or of cohort rows (``dirt_*``); the name dirt
    of the cohort (``cohort_*``) and the journals' dirt (``helsearkiv_*``) are shares of the
    rows the dirt can apply to (:mod:`koble.synth.helsearkiv`). ``event_scale``
    multiplies every event rate (NPR episodes, prescriptions, ...) so benchmarks can trade
    volume for time without changing the population. ``chunk_size`` is part of the output
    definition: random streams are seeded per chunk, so a different chunk size gives a
    different (equally valid) world.
    """

    persons: int = 10_000
    seed: int = 2025
    reference_date: datetime.date = datetime.date(2025, 12, 31)
    #: Rows in the health-survey cohort before dirt; None means about 9 % of persons.
    cohort_size: int | None = None
    dirt_wrong_check_digit: float = 0.02
    dirt_duplicate: float = 0.01
    dirt_separators: float = 0.03
    dirt_missing: float = 0.01
    #: cohort rows (from the clean ones) whose number has one digit replaced or two adjacent
    #: digits swapped, leaving it invalid; 0 keeps the cohort's numbers as they were
    dirt_typo: float = 0.0
    #: cohort rows (of those whose name holds æ/ø/å) written with ae/o/aa
    cohort_ascii_names: float = 0.1
    #: cohort rows (of those with a middle name) written without it
    cohort_no_middle: float = 0.2
    #: Helsearkivregisteret journals; None means two per deceased person on average
    helsearkiv_journals: int | None = None
    #: journals without a number: this share from 2000, four times it for 1964-1999
    helsearkiv_missing_fnr: float = 0.05
    #: of the journals with a number: one digit replaced / two adjacent digits swapped /
    #: an OCR confusion (1/7, 0/8); exclusive
    helsearkiv_fnr_digit: float = 0.01
    helsearkiv_fnr_transposition: float = 0.01
    helsearkiv_fnr_ocr: float = 0.01
    #: of the journals of persons with an earlier name: the earlier (maiden) name used
    helsearkiv_maiden: float = 0.2
    #: of the journals with a middle name: written without it
    helsearkiv_no_middle: float = 0.3
    #: first and last name swapped (of all journals)
    helsearkiv_name_swap: float = 0.01
    #: of the journals whose names hold æ/ø/å: written ae/o/aa
    helsearkiv_ascii: float = 0.2
    #: of the journals with a confusable pair (rn/m, li/h): one OCR confusion
    helsearkiv_ocr_name: float = 0.02
    #: of the journals with a birth day 1-12 other than the month: day and month swapped
    helsearkiv_date_swap: float = 0.01
    share_dnr: float = 0.03
    share_hnr: float = 0.003
    share_2032: float = 0.005
    share_history: float = 0.02
    chunk_size: int = 250_000
    event_scale: float = 1.0
    #: First day of the registry period (NPR, Kreftregisteret, deaths, ...).
    period_start: datetime.date = datetime.date(2015, 1, 1)
    survey_start: datetime.date = datetime.date(2019, 1, 1)
    survey_end: datetime.date = datetime.date(2023, 12, 31)
    resept_start: datetime.date = datetime.date(2020, 1, 1)
    resept_end: datetime.date = datetime.date(2021, 12, 31)
    #: Legemiddelregisteret (identifiable) holds the dispensings from this day on.
    legemiddel_start: datetime.date = datetime.date(2022, 1, 1)
    #: KPR holds the municipal care services (IPLOS's feed the earlier ones) from this day.
    kpr_start: datetime.date = datetime.date(2018, 1, 1)
    #: NPR's de-identified episodes (no identifier) from this day to the end of 2007.
    npr_deidentified_start: datetime.date = datetime.date(2005, 1, 1)
    #: Number of income years, ending with the year before the reference date.
    income_years: int = 5

    def __post_init__(self) -> None:
        self.validate()

    @property
    def cohort_rows(self) -> int:
        """The cohort size actually asked for (before dirt)."""
        if self.cohort_size is not None:
            return self.cohort_size
        return max(1, round(self.persons * 0.09))

    def validate(self) -> None:
        """Raise :class:`UsageError` naming every bad parameter at once."""
        problems: list[str] = []
        if isinstance(self.persons, bool) or not isinstance(self.persons, int):
            problems.append("persons must be an integer")
        elif not 1 <= self.persons <= MAX_PERSONS:
            # past it the arrays do not fit any machine: a MemoryError, not an answer
            problems.append(f"persons must be at least 1 and at most {MAX_PERSONS:,}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            problems.append("seed must be a non-negative integer")
        if self.cohort_size is not None and not 1 <= self.cohort_size <= MAX_PERSONS:
            problems.append(f"cohort_size must be at least 1 and at most {MAX_PERSONS:,}")
        if self.chunk_size < 1:
            problems.append("chunk_size must be at least 1")
        if not 0 < self.event_scale <= 100:
            problems.append("event_scale must be in (0, 100]")
        if not 1 <= self.income_years <= 30:
            problems.append("income_years must be between 1 and 30")
        for name in ("share_dnr", "share_hnr", "share_2032", "share_history"):
            if not 0.0 <= getattr(self, name) <= 0.2:
                problems.append(f"{name} must be between 0 and 0.2")
        dirt = [self.dirt_wrong_check_digit, self.dirt_duplicate, self.dirt_separators]
        dirt.extend([self.dirt_missing, self.dirt_typo])
        if any(not 0.0 <= d <= 0.5 for d in dirt) or sum(dirt) > 0.5:
            problems.append("dirt rates must each be in [0, 0.5] and sum to at most 0.5")
        if (
            self.helsearkiv_journals is not None
            and not 0 <= self.helsearkiv_journals <= MAX_PERSONS
        ):
            problems.append(f"helsearkiv_journals must be at least 0 and at most {MAX_PERSONS:,}")
        rates = [f.name for f in dataclasses.fields(self) if f.name.startswith("helsearkiv_")]
        rates += ["cohort_ascii_names", "cohort_no_middle"]
        for name in rates:
            if name != "helsearkiv_journals" and not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be between 0 and 1")
        number_dirt = self.helsearkiv_fnr_digit + self.helsearkiv_fnr_transposition
        if number_dirt + self.helsearkiv_fnr_ocr > 1.0:
            problems.append("helsearkiv_fnr_digit + _transposition + _ocr must be at most 1")
        if self.share_dnr + self.share_hnr + self.share_history > 0.5:
            problems.append("share_dnr + share_hnr + share_history must be at most 0.5")
        ref = self.reference_date
        if not datetime.date(1990, 1, 1) <= self.period_start < ref:
            problems.append("period_start must be after 1990 and before reference_date")
        if ref > datetime.date(2039, 12, 31):
            problems.append("reference_date must be before 2040 (individual-number ranges)")
        for start, end, what in (
            (self.survey_start, self.survey_end, "survey"),
            (self.resept_start, self.resept_end, "resept"),
        ):
            if not start <= end <= ref:
                problems.append(f"{what}_start <= {what}_end <= reference_date must hold")
        if not self.resept_end < self.legemiddel_start <= ref:
            problems.append("resept_end < legemiddel_start <= reference_date must hold")
        if not self.period_start <= self.kpr_start <= ref:
            problems.append("period_start <= kpr_start <= reference_date must hold")
        if not datetime.date(1997, 1, 1) <= self.npr_deidentified_start <= _NPR_DEIDENTIFIED_END:
            problems.append(
                "npr_deidentified_start must be in 1997-2007 (NPR's de-identified years)"
            )
        if problems:
            raise UsageError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (dates as ISO strings) for the manifest."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            out[field.name] = value.isoformat() if isinstance(value, datetime.date) else value
        out["cohort_rows"] = self.cohort_rows
        return out
