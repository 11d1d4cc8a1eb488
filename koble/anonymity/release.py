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
from koble.anonymity.generalisation import Generalisation
from koble.anonymity.hierarchies import hierarchy_for
from koble.anonymity.parameters import (
    check_columns,
    column_list,
    grouping_keys,
    raise_problems,
    share,
    whole_number,
)
from koble.anonymity.risk import RiskReport, assess_risk
from koble.anonymity.search import SearchResult, find_optimal
from koble.errors import ColumnError, InputError
from koble.files import OutputSet, sha256_file
from koble.registries.identifiers.scan import describe, refuse_findings, scan_frame
from koble.tables import read_table, require_column, write_table

__all__ = ["AnonymityCheck", "Release", "anonymise_file", "check_frame", "class_size_bins"]

BINS = ((1, 1), (2, 2), (3, 4), (5, 9), (10, 19), (20, 49), (50, None))
TOP_VALUES = 15


def class_size_bins(frame: pl.DataFrame, qis: Sequence[str]) -> dict[str, int]:
    """Records per equivalence-class size band (1, 2, 3-4, 5-9, 10-19, 20-49, 50+)."""
    sizes = frame.group_by(grouping_keys(qis)).len()["len"]
    out = {}
    for low, high in BINS:
        label = f"{low}+" if high is None else (str(low) if low == high else f"{low}-{high}")
        inside = sizes >= low if high is None else (sizes >= low) & (sizes <= high)
        out[label] = int(sizes.filter(inside).sum())
    return out


def _top_values(series: pl.Series) -> dict[str, int]:
    counts = series.cast(pl.String).fill_null("(missing)").value_counts(sort=True)
    return {str(v): int(n) for v, n in counts.head(TOP_VALUES).iter_rows()}


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

    @property
    def meets(self) -> bool:
        diverse = self.l is None or (self.least_distinct_sensitive or 0) >= self.l
        persons = self.person is None or (self.smallest_class_persons or 0) >= self.k
        identified = self.direct_identifiers is not None
        return self.smallest_class >= self.k and diverse and persons and not identified

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "meets": self.meets}


def _check_parameters(
    qis: Sequence[str], *, k: int, sensitive: str | None, l: int | None,  # noqa: E741
    risk_threshold: float, person: str | None,
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
    scan: bool = True,
) -> AnonymityCheck:
    """Equivalence classes of ``frame`` over ``qis`` exactly as they are (no generalisation),
    and a scan of every column but ``person`` for fødselsnummer-family numbers (``scan=False``
    where the caller has just refused any: the result then records none).

    With ``person`` (a file with several rows per person) k is also judged in persons, and
    risk is that of a person: one record per (class, person), so a class's size for the
    risk models is its number of persons.
    """
    _check_parameters(qis, k=k, sensitive=sensitive, l=l, risk_threshold=risk_threshold,
                      person=person)  # fmt: skip
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
    classes = frame.group_by(keys).agg(aggregations)
    sizes = classes["n"]
    at_risk = frame if person is None else frame.unique([*qis, person], maintain_order=True)
    findings = (
        scan_frame(frame, values_of=[c for c in frame.columns if c != person]) if scan else []
    )
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
        class_sizes=class_size_bins(frame, qis),
        sensitive=sensitive,
        l=l,
        least_distinct_sensitive=None if sensitive is None else int(classes["distinct"].min()),  # type: ignore[arg-type]
        risk=assess_risk(at_risk, qis, threshold=risk_threshold, population=population),
        person=person,
        smallest_class_persons=None if person is None else int(classes["persons"].min() or 0),  # type: ignore[arg-type]
        direct_identifiers=describe(findings) if findings else None,
    )


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
            "withheld": {"rows": r.suppressed, "sha256": self.hashes["withheld"]},
            "parameters": self.config.to_dict(),
            "levels": {name: {"level": level, "name": self.level_names[name]}
                       for name, level in r.chosen.items()},
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
    qis = _generalise(frame, config, path)
    sensitive = None
    slot = config.sensitive if config.person is None else config.person
    if slot is not None:
        sensitive = hierarchy_for("categorical").apply(require_column(frame, slot, path))
    population = None
    if config.population is not None:
        population = read_table(config.population)
        check_columns(population, config.quasi_identifiers, config.population)
    timings["read_and_generalise"] = time.perf_counter() - started
    result = find_optimal(
        qis, k=config.k, suppression_limit=config.suppression, metric=config.metric,
        criteria=_criteria(config), sensitive=sensitive,
    )  # fmt: skip
    timings["search"] = result.seconds
    names = list(config.quasi_identifiers)
    checks = {
        "k": config.k, "sensitive": config.sensitive, "risk_threshold": config.risk_threshold,
        "l": None if config.l is None else int(config.l), "person": config.person,
    }  # fmt: skip
    before = check_frame(frame, names, path=path, population=population, scan=False,  # refused
                         **checks)  # type: ignore[arg-type]  # fmt: skip
    level_names = {g.name: g.level_names[lv] for g, lv in zip(qis, result.levels, strict=True)}
    hashes: dict[str, str | None] = {"input": sha256_file(source), "output": None, "withheld": None}
    release = Release(str(source), None, None, config, result, level_names, before, None,
                      {}, hashes, timings)  # fmt: skip
    if not result.feasible:
        # A release and withheld records of an earlier run at these paths would stand beside
        # a report saying none was made: they go, in the same commit as that report.
        with OutputSet() if outputs is None else nullcontext(outputs) as stale:
            stale.remove(withheld)
            stale.remove(output)
        return release
    started = time.perf_counter()
    released, held = result.apply(frame, qis, sensitive)
    write_table(held, withheld, outputs=outputs)
    write_table(released.drop(config.person) if config.person else released, output,
                outputs=outputs, last=True)  # fmt: skip
    timings["apply_and_write"] = time.perf_counter() - started
    if population is not None:
        population = _generalised_population(population, config, qis, result)
    release.after = check_frame(
        released,
        names,
        path=str(output),
        population=population,
        **checks,  # type: ignore[arg-type]
    )
    release.output, release.withheld = str(output), str(withheld)
    staged = Path if outputs is None else outputs.current  # the bytes, before or after commit
    hashes["output"] = sha256_file(staged(output))
    hashes["withheld"] = sha256_file(staged(withheld))
    release.distributions = {
        name: {"before": _top_values(frame[name]), "after": _top_values(released[name])}
        for name in names
    }
    return release


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
