"""Checking a file for anonymity as it stands: :func:`check_frame` and its
:class:`AnonymityCheck`.

Equivalence classes over the quasi-identifiers exactly as they are (no generalisation), k in
rows and, with a person column, in persons and at the person level
(:mod:`koble.anonymity.person_risk`), l-diversity, re-identification risk, and a scan for
direct identifiers. Used by ``koble anonymity check`` and for the figures before and after a
release (:mod:`koble.anonymity.release`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from koble.anonymity.longitudinal import MAX_SUBSETS, MODELS, m_problem
from koble.anonymity.parameters import (
    check_columns,
    column_list,
    grouping_keys,
    one_of,
    raise_problems,
    share,
    whole_number,
)
from koble.anonymity.person_risk import PersonRisk, person_figures, person_risk
from koble.anonymity.risk import RiskReport, assess_risk, prosecutor_risk
from koble.errors import UsageError
from koble.registries.identifiers.scan import Finding, describe, scan_frame

__all__ = ["AnonymityCheck", "check_frame", "class_size_bins"]

BINS = ((1, 1), (2, 2), (3, 4), (5, 9), (10, 19), (20, 49), (50, None))


def class_size_bins(frame: pl.DataFrame, qis: Sequence[str]) -> dict[str, int]:
    """Records per equivalence-class size band (1, 2, 3-4, 5-9, 10-19, 20-49, 50+)."""
    return _size_bins(frame.group_by(grouping_keys(qis)).len()["len"])


def _size_bins(sizes: pl.Series) -> dict[str, int]:
    """Records per size band, from the class sizes."""
    out = {}
    for low, high in BINS:
        label = f"{low}+" if high is None else (str(low) if low == high else f"{low}-{high}")
        inside = sizes >= low if high is None else (sizes >= low) & (sizes <= high)
        out[label] = int(sizes.filter(inside).sum())
    return out


@dataclass(frozen=True)
class AnonymityCheck:
    """A file as it stands: class sizes, diversity, risk. Holds no record values."""

    path: str
    quasi_identifiers: list[str]
    k: int
    rows: int
    classes: int
    smallest_class: int
    records_in_small_classes: int
    class_sizes: dict[str, int]
    sensitive: str | None
    l: int | None  # noqa: E741
    least_distinct_sensitive: int | None
    risk: RiskReport
    person: str | None = None
    #: With ``person``: the fewest distinct persons in any class (k counts persons then).
    smallest_class_persons: int | None = None
    #: Columns holding valid fødselsnummer-family numbers, where and how many (never a
    #: value), or None. A file with direct identifiers is not anonymous, whatever its classes.
    direct_identifiers: str | None = None
    #: With ``person``: the person-level model judged (``row``, ``person-set``, ``person-km``).
    model: str | None = None
    #: With ``person``: the person-level figures, whatever the model (see :mod:`person_risk`).
    person_level: PersonRisk | None = None

    def failures(self) -> list[str]:
        """Each requirement the file does not meet, in words (empty when it meets them all).
        Names columns and counts, never a value."""
        out = []
        if self.smallest_class < self.k:
            out.append(f"smallest class {self.smallest_class:,} rows < k = {self.k}")
        if self.person is not None and (self.smallest_class_persons or 0) < self.k:
            out.append(f"smallest class {self.smallest_class_persons or 0:,} persons < k = "
                       f"{self.k}")  # fmt: skip
        if self.l is not None and (self.least_distinct_sensitive or 0) < self.l:
            out.append(f"fewest distinct {self.sensitive} values in a class "
                       f"{self.least_distinct_sensitive or 0:,} < l = {self.l}")  # fmt: skip
        if self.direct_identifiers is not None:
            out.append(f"direct identifiers: valid fødselsnummer-family numbers in "
                       f"{self.direct_identifiers}")  # fmt: skip
        level = self.person_level
        if level is not None and self.model == "person-set" and level.by_set_with_constant.under_k:
            also = ", with person-constant columns" if level.added_columns else ""
            out.append(f"{level.by_set_with_constant.under_k:,} persons are in person-level "
                       f"classes under k = {self.k} (person-set{also})")  # fmt: skip
        if level is not None and self.model == "person-km" and level.km_failing_with_constant:
            out.append(f"{level.km_failing_with_constant:,} persons have {level.m} or fewer "
                       f"rows held by fewer than k = {self.k} persons (person-km, m = "
                       f"{level.m})")  # fmt: skip
        return out

    @property
    def meets(self) -> bool:
        return not self.failures()

    def to_dict(self) -> dict[str, Any]:
        data = {**asdict(self), "meets": self.meets, "failures": self.failures()}
        data["person_level"] = None if self.person_level is None else self.person_level.to_dict()
        return data


def _check_parameters(
    qis: Sequence[str], *, k: int, sensitive: str | None, l: int | None,  # noqa: E741
    risk_threshold: float, person: str | None, model: str | None = None, m: int = 2,
) -> None:  # fmt: skip
    """Every problem with :func:`check_frame`'s parameters at once, naming each parameter."""
    raise_problems([
        *column_list(list(qis), "qis (the quasi-identifiers)"),
        whole_number(k, "k"),
        None if l is None else whole_number(l, "l"),
        "l needs a sensitive attribute" if l is not None and sensitive is None else None,
        share(risk_threshold, "risk_threshold", open_low=True),
        "the sensitive attribute cannot also be a quasi-identifier" if sensitive in qis else None,
        "the person column cannot also be a quasi-identifier" if person in qis else None,
        "the person column cannot also be the sensitive attribute"
        if person is not None and person == sensitive else None,
        None if model is None else one_of(model, MODELS, "model"),
        m_problem(m, "m"),
        "a person-level model needs a person column"
        if person is None and model not in (None, "row") else None,
    ])  # fmt: skip


def check_frame(
    frame: pl.DataFrame,
    qis: Sequence[str],
    *,
    k: int,
    path: str = "<table>",
    sensitive: str | None = None,
    l: int | None = None,  # noqa: E741
    risk_threshold: float = 0.2,
    population: pl.DataFrame | None = None,
    person: str | None = None,
    scan: bool | Sequence[str] = True,
    model: str | None = None,
    m: int = 2,
    class_ids: pl.Series | None = None,
    class_sizes: pl.Series | None = None,
    column_ids: Mapping[str, npt.NDArray[np.integer]] | None = None,
) -> AnonymityCheck:
    """Equivalence classes of ``frame`` over ``qis`` exactly as they are (no generalisation),
    and a scan of every column but ``person`` for fødselsnummer-family numbers (``scan=False``
    where the caller has just refused any: the result then records none).

    With ``person`` (a file with several rows per person) k is also judged in persons, and
    risk is that of a person: one record per (class, person), so a class's size for the
    risk models is its number of persons. The person-level figures
    (:func:`~koble.anonymity.person_risk.person_risk`, with ``m`` for k^m) are measured too,
    and ``model`` says which of them must be met: ``row`` (k persons per row class only),
    ``person-set`` (the default: no person in a set group, with the person-constant columns,
    of fewer than k persons) or ``person-km`` (no person with m or fewer rows held by fewer
    than k persons).

    ``scan`` may instead list the columns whose values to scan (the others were scanned
    before: :func:`anonymise_file` scans only the generalised columns of its release).
    ``class_ids`` (one integer per row, equal exactly within a class over ``qis``; see
    :func:`~koble.anonymity.frequency.class_keys`) lets the rows be grouped once by one
    integer column instead of by the QIs as text: the same figures, several times faster.
    ``class_sizes`` (the rows of each class over ``qis``, e.g. the counts of the search's
    level-0 frequency table when its codes part the rows as the values do) spares the
    grouping altogether; only without ``sensitive``, ``person`` and ``population``, whose
    figures need the rows. ``column_ids`` (per column, one integer per row equal exactly
    when its values are: the person's codes, a quasi-identifier's) spares the person-level
    figures reading those columns' values.
    """
    _check_parameters(qis, k=k, sensitive=sensitive, l=l, risk_threshold=risk_threshold,
                      person=person, model=model, m=m)  # fmt: skip
    check_columns(
        frame, [*qis, *([sensitive] if sensitive else []), *([person] if person else [])], path
    )
    if population is not None:
        check_columns(population, qis, "the population table")
    keys = grouping_keys(qis)  # renamed: a QI named "n" or "distinct" must not collide
    aggregations = [pl.len().alias("n")]
    if sensitive is not None:
        aggregations.append(pl.col(sensitive).n_unique().alias("distinct"))
    if person is not None:
        aggregations.append(pl.col(person).n_unique().alias("persons"))
    level = None
    if class_sizes is not None:
        classes = _sized(class_sizes, frame.height, sensitive, person, population)
    elif class_ids is None:
        classes = frame.group_by(keys).agg(aggregations)
    elif len(class_ids) != frame.height:
        raise ValueError("class_ids must have one value per row")
    elif person is not None and sensitive is None:
        # the rows and persons of each class, from the (person, class) pairs that the
        # person-level figures count anyway: the rows are not grouped twice
        level, rows_of, persons_of = person_figures(
            frame, qis, person, k=k, m=m, path=path, tuple_ids=class_ids, ids=column_ids
        )
        classes = pl.DataFrame([pl.Series("n", rows_of, dtype=pl.UInt32),
                                pl.Series("persons", persons_of, dtype=pl.UInt32)])  # fmt: skip
    else:
        ids = "\0class"  # no column of a file is named so
        classes = frame.with_columns(class_ids.alias(ids)).group_by(ids).agg(aggregations)
    values_of = [c for c in frame.columns if c != person] if scan is True else list(scan or [])
    findings = scan_frame(frame, values_of=values_of) if scan else []
    if person is not None and level is None:
        level = person_risk(frame, qis, person, k=k, m=m, path=path, tuple_ids=class_ids,
                            ids=column_ids)  # fmt: skip
    if person is not None:
        model = model or "person-set"
    if model == "person-km" and level is not None and level.km_failing_with_constant is None:
        raise UsageError(f"person-km with m = {m} would count more than {MAX_SUBSETS:,} "
                         "subsets; choose a smaller m or the person-set model")  # fmt: skip
    return _assembled(frame.height, classes, qis, k=k, path=path, sensitive=sensitive, l=l,
                      risk=_risk(frame, qis, classes, person, risk_threshold, population),
                      person=person, findings=findings, model=model, level=level)  # fmt: skip


def check_sizes(
    class_sizes: pl.Series, qis: Sequence[str], *, rows: int, k: int, path: str = "<table>",
    sensitive: str | None = None, l: int | None = None,  # noqa: E741
    risk_threshold: float = 0.2, person: str | None = None, model: str | None = None,
    m: int = 2,
) -> AnonymityCheck:  # fmt: skip
    """:func:`check_frame` of a table of ``rows`` rows whose classes over ``qis`` hold
    ``class_sizes`` rows, without the table: its figures need no more (no scan, no
    ``sensitive`` or ``person``, which need the rows; those raise ``ValueError``). A release
    made class by class is judged so (:func:`koble.anonymity.coded.release_coded`)."""
    _check_parameters(qis, k=k, sensitive=sensitive, l=l, risk_threshold=risk_threshold,
                      person=person, model=model, m=m)  # fmt: skip
    classes = _sized(class_sizes, rows, sensitive, person, None)
    return _assembled(rows, classes, qis, k=k, path=path, sensitive=None, l=l,
                      risk=prosecutor_risk(classes["n"], risk_threshold), person=None,
                      findings=[], model=model, level=None)  # fmt: skip


def _sized(
    class_sizes: pl.Series, rows: int, sensitive: str | None, person: str | None,
    population: pl.DataFrame | None,
) -> pl.DataFrame:  # fmt: skip
    """The classes of given sizes, as :func:`check_frame` counts them."""
    if sensitive is not None or person is not None or population is not None:
        raise ValueError("class_sizes cannot give sensitive, person or population figures")
    if int(class_sizes.sum()) != rows:
        raise ValueError("class_sizes must add up to the rows")
    return class_sizes.alias("n").to_frame()


def _assembled(
    rows: int, classes: pl.DataFrame, qis: Sequence[str], *, k: int, path: str,
    sensitive: str | None, l: int | None, risk: RiskReport, person: str | None,  # noqa: E741
    findings: Sequence[Finding], model: str | None, level: PersonRisk | None,
) -> AnonymityCheck:  # fmt: skip
    """The check's record from the classes counted."""
    sizes = classes["n"]
    return AnonymityCheck(
        path=path,
        quasi_identifiers=list(qis),
        k=k,
        rows=rows,
        classes=classes.height,
        smallest_class=int(sizes.min() or 0),  # type: ignore[arg-type]
        # capped: no class exceeds the row count, and a k past the column type's range
        # (k = 25124940411 against UInt32 sizes) would overflow the comparison
        records_in_small_classes=int(sizes.filter(sizes < min(k, rows + 1)).sum()),
        class_sizes=_size_bins(sizes),
        sensitive=sensitive,
        l=l,
        least_distinct_sensitive=None if sensitive is None else int(classes["distinct"].min()),  # type: ignore[arg-type]
        risk=risk,
        person=person,
        smallest_class_persons=None if person is None else int(classes["persons"].min() or 0),  # type: ignore[arg-type]
        direct_identifiers=describe(findings) if findings else None,
        model=model,
        person_level=level,
    )


def _risk(
    frame: pl.DataFrame, qis: Sequence[str], classes: pl.DataFrame, person: str | None,
    threshold: float, population: pl.DataFrame | None,
) -> RiskReport:  # fmt: skip
    """Risk of one record per (class, person): from the class sizes already counted (in
    persons with ``person``), unless a population must be joined on the QIs' values."""
    if population is None:
        return prosecutor_risk(classes["n" if person is None else "persons"], threshold)
    at_risk = frame if person is None else frame.unique([*qis, person], maintain_order=True)
    return assess_risk(at_risk, qis, threshold=threshold, population=population)
