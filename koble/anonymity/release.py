"""Checking a file for anonymity, and coarsening it until it is anonymous.

:func:`check_file` answers "is this file k-anonymous (and l-diverse) as it stands, and how
risky is it?"; :func:`anonymise_file` finds the optimal generalisation for an
:class:`~koble.anonymity.config.AnonymiseConfig`, writes the released file, keeps the withheld
records apart (counted, never silently dropped) and returns everything the report needs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from koble import __version__
from koble.anonymity.checks import (
    Criterion,
    DistinctLDiversity,
    EntropyLDiversity,
    KPersons,
    TCloseness,
)
from koble.anonymity.config import AnonymiseConfig
from koble.anonymity.frequency import Lookups, class_keys
from koble.anonymity.generalisation import Generalisation
from koble.anonymity.hierarchies import hierarchy_for
from koble.anonymity.hierarchies.registry import is_ordered
from koble.anonymity.longitudinal import MAX_SUBSETS, MODELS, PersonKM, PersonModel, m_problem
from koble.anonymity.parameters import (
    check_columns,
    column_list,
    grouping_keys,
    one_of,
    raise_problems,
    share,
    whole_number,
)
from koble.anonymity.person_columns import (
    infer_hierarchy,
    person_constant,
    refuse_missing_persons,
    refuse_unjudgeable,
)
from koble.anonymity.person_risk import PersonRisk, person_risk
from koble.anonymity.person_shape import PersonShape, person_qis, person_table
from koble.anonymity.risk import RiskReport, assess_risk, prosecutor_risk
from koble.anonymity.search import SearchResult, find_optimal
from koble.errors import ColumnError, InputError, UsageError
from koble.files import OutputSet, sha256_file
from koble.registries.identifiers.scan import describe, refuse_findings, scan_frame
from koble.tables import read_table, require_column, write_table

__all__ = ["AnonymityCheck", "Release", "anonymise_file", "check_frame", "class_size_bins"]

BINS = ((1, 1), (2, 2), (3, 4), (5, 9), (10, 19), (20, 49), (50, None))
TOP_VALUES = 15


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


def _top_values(series: pl.Series, order: Sequence[str] | None = None) -> dict[str, int]:
    """The most frequent values and their counts: most frequent first, or, for an ordered
    hierarchy (``order``: its labels in order; empty for the raw values), in that order."""
    if order is None:
        counts = series.cast(pl.String).fill_null("(missing)").value_counts(sort=True)
        return {str(v): int(n) for v, n in counts.head(TOP_VALUES).iter_rows()}
    top = series.value_counts(sort=True).head(TOP_VALUES)
    rank = {label: i for i, label in enumerate(order)}
    if rank:  # generalised labels: by the hierarchy's order
        rows = sorted(top.iter_rows(), key=lambda r: rank.get(str(r[0]), len(rank)))
    else:  # raw values: by their own order (numbers, dates), missing last
        rows = list(top.sort(series.name, nulls_last=True).iter_rows())
    return {"(missing)" if v is None else str(v): int(n) for v, n in rows}


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
    if class_ids is None:
        classes = frame.group_by(keys).agg(aggregations)
    else:
        if len(class_ids) != frame.height:
            raise ValueError("class_ids must have one value per row")
        ids = "\0class"  # no column of a file is named so
        classes = frame.with_columns(class_ids.alias(ids)).group_by(ids).agg(aggregations)
    sizes = classes["n"]
    values_of = [c for c in frame.columns if c != person] if scan is True else list(scan or [])
    findings = scan_frame(frame, values_of=values_of) if scan else []
    level = None if person is None else person_risk(frame, qis, person, k=k, m=m, path=path)
    if person is not None:
        model = model or "person-set"
    if model == "person-km" and level is not None and level.km_failing_with_constant is None:
        raise UsageError(f"person-km with m = {m} would count more than {MAX_SUBSETS:,} "
                         "subsets; choose a smaller m or the person-set model")  # fmt: skip
    return AnonymityCheck(
        path=path,
        quasi_identifiers=list(qis),
        k=k,
        rows=frame.height,
        classes=classes.height,
        smallest_class=int(sizes.min() or 0),  # type: ignore[arg-type]
        # capped: no class exceeds the row count, and a k past the column type's range
        # (k = 25124940411 against UInt32 sizes) would overflow the comparison
        records_in_small_classes=int(sizes.filter(sizes < min(k, frame.height + 1)).sum()),
        class_sizes=_size_bins(sizes),
        sensitive=sensitive,
        l=l,
        least_distinct_sensitive=None if sensitive is None else int(classes["distinct"].min()),  # type: ignore[arg-type]
        risk=_risk(frame, qis, classes, person, risk_threshold, population),
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


@dataclass
class Release:
    """Everything one anonymisation produced, for the report and the certificate."""

    source: str
    output: str | None
    withheld: str | None
    config: AnonymiseConfig
    result: SearchResult
    level_names: dict[str, str]
    before: AnonymityCheck
    after: AnonymityCheck | None
    distributions: dict[str, dict[str, dict[str, int]]]
    hashes: dict[str, str | None]
    seconds: dict[str, float] = field(default_factory=dict)
    #: The models searched, strictest first; the last is the one used (``model``).
    tried: list[str] = field(default_factory=list)
    #: Columns constant within every person, made quasi-identifiers by a person model.
    person_constant: list[str] = field(default_factory=list)
    #: The one-row-per-person table released instead of the rows (``[shape]``), if any.
    shape: PersonShape | None = None
    #: The released columns of each quasi-identifier (several for a tied one).
    qi_columns: dict[str, list[str]] = field(default_factory=dict)
    #: The names of each quasi-identifier's levels, level 0 first (its height is one less).
    hierarchies: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def model(self) -> str:
        """The privacy model the release meets (or, when infeasible, the last one tried)."""
        return self.tried[-1] if self.tried else "row"

    def certificate(self) -> dict[str, Any]:
        """What an auditor needs to re-run the release and compare it bit for bit."""
        r = self.result
        return {
            "koble_version": __version__,
            "input": {"path": Path(self.source).name, "sha256": self.hashes["input"],
                      "rows": r.rows},
            "output": {"path": None if self.output is None else Path(self.output).name,
                       "sha256": self.hashes["output"],
                       "rows": None if self.after is None else self.after.rows},
            "withheld": {"rows": r.suppressed, "persons": r.persons_suppressed,
                         "sha256": self.hashes["withheld"]},
            "parameters": self.config.to_dict(),
            "model": {"used": self.model, "tried": self.tried,
                      "person_constant_quasi_identifiers": self.person_constant},
            "shape": None if self.shape is None else {
                "unit": "person", "rows_in": self.shape.rows, "persons": self.shape.persons,
                "columns": self.shape.describe()},
            "person_level": {
                when: check.person_level.to_dict()
                for when, check in (("before", self.before), ("after", self.after))
                if check is not None and check.person_level is not None},
            "levels": {name: {"level": level, "name": self.level_names[name],
                              "height": len(self.hierarchies.get(name, ())) - 1}
                       for name, level in r.chosen.items() if r.feasible},
            "figures": {"feasible": r.feasible, "metric": r.metric,
                        "loss": r.loss if math.isfinite(r.loss) else None,
                        "classes": r.classes, "min_class_size": r.min_class_size,
                        "suppressed": r.suppressed, "allowed": r.allowed,
                        "criteria": list(r.criteria)},
            "search": {"lattice_size": r.lattice_size, "evaluated": r.evaluated,
                       "tagged": r.tagged},
        }  # fmt: skip


def _criteria(config: AnonymiseConfig) -> list[Criterion]:
    criteria: list[Criterion] = []
    if config.person is not None:
        criteria.append(KPersons(config.k))
    if config.l is not None:
        if config.l_kind == "entropy":
            criteria.append(EntropyLDiversity(config.l))
        else:
            criteria.append(DistinctLDiversity(int(config.l)))
    if config.t is not None:
        criteria.append(TCloseness(config.t, ordered=config.t_ordered))
    return criteria


def _generalise(frame: pl.DataFrame, config: AnonymiseConfig, path: str) -> list[Generalisation]:
    """Every quasi-identifier through its hierarchy. Values a hierarchy cannot take are
    reported for every column at once, naming the config, the data file, the column and the
    first bad row of each (never a value)."""
    out, problems = [], []
    for column, spec in config.quasi_identifiers.items():
        values = require_column(frame, column, path)
        try:
            out.append(hierarchy_for(spec, base_dir=config.base_dir).apply(values))
        except InputError as exc:
            problems.append(f"quasi_identifiers.{column}: {exc}")
    if problems:
        config_file = "the config" if config.source is None else config.source
        raise ColumnError(
            f"does not fit the hierarchies of {config_file}: " + "; ".join(problems), path=path
        )
    return out


def _search(
    qis: list[Generalisation], config: AnonymiseConfig, models: list[PersonModel | None],
    sensitive: Generalisation | None, shape: PersonShape | None, timings: dict[str, float],
) -> tuple[SearchResult, PersonModel | None, list[str]]:  # fmt: skip
    """The optimum under the strictest of ``models`` that finds one (else the last tried),
    with the model and the names of those tried."""
    tried: list[str] = []
    for model in models:
        result = find_optimal(
            qis, k=config.k, suppression_limit=config.suppression, metric=config.metric,
            criteria=_criteria(config) if shape is None else [], sensitive=sensitive,
            person_model=model,
        )  # fmt: skip
        tried.append(
            f"{config.k}-anonymity over one row per person" if shape is not None
            else "row" if model is None else model.describe()
        )  # fmt: skip
        timings["search"] = timings.get("search", 0.0) + result.seconds
        if result.feasible:
            break
    return result, model, tried


def _late_constant(
    frame: pl.DataFrame, qis: list[Generalisation], result: SearchResult,
    sensitive: Generalisation | None, config: AnonymiseConfig,
) -> list[str]:  # fmt: skip
    """Columns that are not quasi-identifiers and become constant within (nearly) every
    person only in the release, once rows are withheld (a person's one changing row gone):
    there they are a person's attribute, so they must join the quasi-identifiers and the
    search run again. Each round adds a column, so the rounds end."""
    assert config.person is not None
    taken = {c for g in qis for c in g.column_names} | {config.person}
    rest = [c for c in frame.columns if c not in taken]
    if not result.feasible or not result.suppressed or not rest:
        return []
    narrow = frame.select(*taken, *rest)
    released, _ = result.apply(narrow, qis, sensitive)
    return person_constant(released, config.person, rest)


def _person_shape(
    frame: pl.DataFrame, config: AnonymiseConfig, path: str
) -> tuple[PersonShape, pl.DataFrame, list[Generalisation], list[str]]:
    """The person table (``[shape] unit = "person"``) and its quasi-identifiers: the
    config's (a varying one as its value on the latest row), the counts and the dates per
    kind as two tied ones, and the columns constant within every person, which are the
    person's own attributes. Returns the shape, its table, the QIs and those constant
    columns that were not already quasi-identifiers."""
    assert config.person is not None and config.kind is not None
    shape = person_table(frame, config.person, kind=config.kind, date=config.date)
    table = shape.table
    try:
        qis = person_qis(shape, table, config.quasi_identifiers, base_dir=config.base_dir)
    except InputError as exc:
        raise ColumnError(f"the person table does not fit the hierarchies: {exc}",
                          path=path) from None  # fmt: skip
    taken = {c for g in qis for c in g.column_names}
    promoted = [c for c in shape.constant if c not in taken and c != config.person]
    for column in promoted:
        qis.append(_inferred(table[column]))
    return shape, table, qis, promoted


def _inferred(column: pl.Series) -> Generalisation:
    """``column`` under the hierarchy its name and type suggest, else the categorical one."""
    try:
        return hierarchy_for(infer_hierarchy(column.name, column.dtype)).apply(column)
    except InputError:
        return hierarchy_for("categorical").apply(column)


def _person_constant_qis(
    frame: pl.DataFrame, config: AnonymiseConfig, path: str
) -> tuple[list[str], list[Generalisation]]:
    """The released columns constant within every person, as quasi-identifiers: under a
    person-level model they tie a person's rows together. Each gets the hierarchy its name
    and type suggest, or the categorical one (value or ``*``) when that one does not fit."""
    assert config.person is not None
    skip = {*config.quasi_identifiers, config.person}
    columns = person_constant(frame, config.person, [c for c in frame.columns if c not in skip])
    return columns, [_inferred(frame[column]) for column in columns]


def _refuse_person_numbers(frame: pl.DataFrame, config: AnonymiseConfig, path: str) -> None:
    """A release is anonymous or it is nothing: refuse, before the search, an input that
    would release a fødselsnummer-family number in any column (or column name). The person
    column is exempt: it is never released. Names where and how many, never a value."""
    skip = [] if config.person is None else [config.person]
    refuse_findings(
        scan_frame(frame, values_of=[c for c in frame.columns if c not in skip]),
        what="the release would hold",
        remedy="an anonymous file cannot carry direct identifiers: drop those columns first "
        "(or name a person column as requirements.person, which is never released)",
        path=path,
    )


def anonymise_file(
    source: str | Path,
    config: AnonymiseConfig,
    output: str | Path,
    withheld: str | Path,
    *,
    outputs: OutputSet | None = None,
) -> Release:
    """Coarsen ``source`` optimally under ``config``; write the release and withheld records.

    When no generalisation meets the requirements no release is written, and the release says
    so (``result.feasible`` is False): the job goes back to the applicant with the report.
    A release or withheld file of an earlier run at ``output``/``withheld`` is then removed
    (with ``outputs``: when the set commits), so no stale release stands beside that report.
    With ``outputs`` both files are part of that set (the release renamed last), so they
    appear only with the report and certificate
    (:func:`koble.anonymity.report.anonymise_with_report`).
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    frame = read_table(source)
    path = str(source)
    extra = [c for c in (config.sensitive, config.person) if c is not None]
    check_columns(frame, [*config.quasi_identifiers, *extra], path)
    _refuse_person_numbers(frame, config, path)
    if config.person is not None:
        refuse_missing_persons(frame, config.person, path)
        refuse_unjudgeable(frame, config.person, path)
    rows_frame, shape = frame, None
    if config.shape == "person":
        shape, frame, qis, promoted = _person_shape(frame, config, path)
    else:
        qis = _generalise(frame, config, path)
    sensitive = None
    slot = config.sensitive if config.person is None else config.person
    if slot is not None and shape is None:
        sensitive = hierarchy_for("categorical").apply(require_column(frame, slot, path))
    population = None
    if config.population is not None:
        population = read_table(config.population)
        check_columns(population, config.quasi_identifiers, config.population)
    timings["read_and_generalise"] = time.perf_counter() - started
    models = config.person_models()
    if shape is None:
        promoted = []
    if config.person is not None and models != [None]:
        promoted, extra_qis = _person_constant_qis(frame, config, path)
        qis += extra_qis
    while True:
        result, model, tried = _search(qis, config, models, sensitive, shape, timings)
        late = _late_constant(frame, qis, result, sensitive, config) if models != [None] else []
        if not late:
            break
        promoted += late
        qis += [_inferred(frame[c]) for c in late]
    names = [c for g in qis for c in g.column_names]
    checks = {
        "k": config.k, "sensitive": config.sensitive, "risk_threshold": config.risk_threshold,
        "l": None if config.l is None else int(config.l), "person": config.person,
        "model": "row" if model is None and shape is None else "person-set" if model is None
        else model.name,
        "m": model.m if isinstance(model, PersonKM) else config.m,
    }  # fmt: skip
    lookups = Lookups(qis)
    before = check_frame(rows_frame, list(config.quasi_identifiers) if shape else names,
                         path=path, population=population, scan=False,  # refused above
                         class_ids=None if shape else _level0_ids(frame, qis, lookups),
                         **checks)  # type: ignore[arg-type]  # fmt: skip
    level_names = {g.name: g.level_names[lv] for g, lv in zip(qis, result.levels, strict=True)}
    hashes: dict[str, str | None] = {"input": sha256_file(source), "output": None, "withheld": None}
    columns = {g.name: list(g.column_names) for g in qis}
    release = Release(str(source), None, None, config, result, level_names, before, None,
                      {}, hashes, timings, tried=tried, person_constant=promoted,
                      shape=shape, qi_columns=columns)  # fmt: skip
    release.hierarchies = {g.name: g.level_names for g in qis}
    if not result.feasible:
        # A release and withheld records of an earlier run at these paths would stand beside
        # a report saying none was made: they go, in the same commit as that report.
        with OutputSet() if outputs is None else nullcontext(outputs) as stale:
            stale.remove(withheld)
            stale.remove(output)
        return release
    started = time.perf_counter()
    # Each row's class at the chosen levels rides along, so the check of the release groups
    # by one integer instead of by its generalised columns as text.
    keyed = frame.with_columns(pl.Series(_IDS, class_keys(lookups, result.levels)))
    released, held = result.apply(keyed, qis, sensitive)
    released_ids = released.get_column(_IDS)
    released, held = released.drop(_IDS), held.drop(_IDS)
    if config.person is not None:
        # by value, not by person: adjacent rows (or an order by fødselsnummer) would tie a
        # person's rows together, or give the person away
        order = released.select(pl.arg_sort_by(
            [c for c in released.columns if c != config.person], nulls_last=True,
            maintain_order=True,
        )).to_series()  # fmt: skip
        released, released_ids = released[order], released_ids.gather(order)
    if population is not None:
        population = _generalised_population(population, config, qis, result)
    release.after = check_frame(
        released,
        names,
        path=str(output),
        population=population,
        scan=names,  # the other columns are the input's, scanned before the search
        class_ids=released_ids,
        **checks,  # type: ignore[arg-type]
    )
    if not release.after.meets:  # the search's guarantee, checked independently: never
        raise RuntimeError(  # a release that fails it (an internal error, exit 3)
            "the release does not meet its requirements ("
            + "; ".join(release.after.failures())
            + "); nothing is written"
        )
    write_table(held, withheld, outputs=outputs)
    write_table(released.drop(config.person) if config.person else released, output,
                outputs=outputs, last=True)  # fmt: skip
    timings["apply_and_write"] = time.perf_counter() - started
    release.output, release.withheld = str(output), str(withheld)
    staged = Path if outputs is None else outputs.current  # the bytes, before or after commit
    hashes["output"] = sha256_file(staged(output))
    hashes["withheld"] = sha256_file(staged(withheld))
    orders = {  # ordered hierarchies (ages, dates, counts): their labels at the chosen level
        g.name: g.labels[level] for g, level in zip(qis, result.levels, strict=True)
        if g.column_names == (g.name,) and shape is None
        and is_ordered(config.quasi_identifiers.get(g.name, ""))
    }  # fmt: skip
    release.distributions = {
        name: {"before": _top_values(frame[name], () if name in orders else None),
               "after": _top_values(released[name], orders.get(name))}
        for name in names
    }  # fmt: skip
    return release


_IDS = "\0class"  # a column no file has: each row's class number while checking


def _level0_ids(
    frame: pl.DataFrame, qis: Sequence[Generalisation], lookups: Lookups
) -> pl.Series | None:
    """Each row's class over the QIs as they stand, as one integer, when the level-0 codes
    part the rows exactly as their values do (a hierarchy may read two spellings as one
    value, e.g. ``J18.9`` and ``J189``: then the check groups the values themselves)."""
    for g in qis:
        if g.column_names != (g.name,) or frame.get_column(g.name).n_unique() != len(g.labels[0]):
            return None
    return pl.Series(_IDS, class_keys(lookups, (0,) * len(qis)))


def _generalised_population(
    population: pl.DataFrame, config: AnonymiseConfig, qis: Sequence[Generalisation],
    result: SearchResult,
) -> pl.DataFrame:  # fmt: skip
    """The population table coarsened to the chosen levels, for the journalist model."""
    columns = []
    for g, level in zip(qis, result.levels, strict=True):
        if g.name not in population.columns:
            raise ColumnError("the population table lacks this quasi-identifier", column=g.name)
        spec = config.quasi_identifiers[g.name]
        generalised = hierarchy_for(spec, base_dir=config.base_dir).apply(population[g.name])
        columns.append(generalised.column(level))
    return pl.DataFrame(columns)
