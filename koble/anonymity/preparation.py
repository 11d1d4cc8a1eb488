"""What a release is searched over: the quasi-identifiers of a file under a config.

Each quasi-identifier through its hierarchy (:func:`generalise`), the criteria
(:func:`criteria`), the person table of the ``person`` shape (:func:`person_shape`), the
columns constant within persons that a person model makes quasi-identifiers
(:func:`person_constant_qis`, :func:`late_constant`), and the refusal of direct identifiers
before anything is searched (:func:`refuse_person_numbers`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
import polars as pl

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
from koble.anonymity.hierarchies.base import Encoded, per_column
from koble.anonymity.person_columns import (
    infer_hierarchy,
    person_constant,
)
from koble.anonymity.person_shape import PersonShape, person_qis, person_table
from koble.anonymity.search import SearchResult
from koble.errors import ColumnError, InputError
from koble.registries.identifiers.scan import refuse_findings, scan_frame
from koble.tables import require_column

__all__ = [
    "IDS",
    "ROW",
    "criteria",
    "generalise",
    "generalised_population",
    "inferred",
    "late_constant",
    "level0_ids",
    "person_constant_qis",
    "person_shape",
    "refuse_person_numbers",
]


def criteria(config: AnonymiseConfig) -> list[Criterion]:
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


def generalise(
    frame: pl.DataFrame, config: AnonymiseConfig, path: str,
    encoded: Mapping[str, Encoded] | None = None, rows: npt.NDArray[np.int64] | None = None,
) -> list[Generalisation]:  # fmt: skip
    """Every quasi-identifier through its hierarchy (``encoded``: columns whose values are
    encoded already, see :func:`~koble.anonymity.coded.read_coded`). Values a hierarchy
    cannot take are reported for every column at once, naming the config, the data file,
    the column and the first bad row of each (never a value). ``rows`` gives, when the
    frame is not the file itself (a frequency table), the file's 0-based row of each of
    its rows, so that a bad value is still named by the file's row."""
    specs = list(config.quasi_identifiers.items())
    columns = [require_column(frame, column, path) for column, _ in specs]

    def apply(i: int) -> Generalisation | InputError:
        known = None if encoded is None else encoded.get(specs[i][0])
        try:
            return hierarchy_for(specs[i][1], base_dir=config.base_dir).apply(
                columns[i], encoded=known
            )
        except InputError as exc:
            return exc

    out, problems = [], []
    # one column per core: each hierarchy's pass over the rows is NumPy's and Polars'
    for (column, _), found in zip(specs, per_column(apply, range(len(specs))), strict=True):
        if isinstance(found, Generalisation):
            out.append(found)
            continue
        exc = found
        if rows is not None and exc.row is not None:
            row = int(rows[exc.row - 1]) + 1
            exc = ColumnError(exc.message, column=exc.column, row=row)
        problems.append(f"quasi_identifiers.{column}: {exc}")
    if problems:
        config_file = "the config" if config.source is None else config.source
        raise ColumnError(
            f"does not fit the hierarchies of {config_file}: " + "; ".join(problems), path=path
        )
    return out


def late_constant(
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


def person_shape(
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
        qis.append(inferred(table[column]))
    return shape, table, qis, promoted


def inferred(column: pl.Series) -> Generalisation:
    """``column`` under the hierarchy its name and type suggest, else the categorical one."""
    try:
        return hierarchy_for(infer_hierarchy(column.name, column.dtype)).apply(column)
    except InputError:
        return hierarchy_for("categorical").apply(column)


def person_constant_qis(
    frame: pl.DataFrame, config: AnonymiseConfig, path: str
) -> tuple[list[str], list[Generalisation]]:
    """The released columns constant within every person, as quasi-identifiers: under a
    person-level model they tie a person's rows together. Each gets the hierarchy its name
    and type suggest, or the categorical one (value or ``*``) when that one does not fit."""
    assert config.person is not None
    skip = {*config.quasi_identifiers, config.person}
    columns = person_constant(frame, config.person, [c for c in frame.columns if c not in skip])
    return columns, [inferred(frame[column]) for column in columns]


def refuse_person_numbers(
    frame: pl.DataFrame, config: AnonymiseConfig, path: str,
    qis: Sequence[Generalisation] = (),
) -> None:  # fmt: skip
    """A release is anonymous or it is nothing: refuse, before the search, an input that
    would release a fødselsnummer-family number in any column (or column name). The person
    column is exempt: it is never released. Names where and how many, never a value.
    The quasi-identifiers' distinct values (``qis``, as their hierarchies read them) are
    scanned instead of their rows."""
    skip = [] if config.person is None else [config.person]
    distinct = {g.name: g.raw for g in qis if g.raw is not None and g.name in frame.columns}
    refuse_findings(
        scan_frame(frame, values_of=[c for c in frame.columns if c not in skip], distinct=distinct),
        what="the release would hold",
        remedy="an anonymous file cannot carry direct identifiers: drop those columns first "
        "(or name a person column as requirements.person, which is never released)",
        path=path,
    )


IDS = "\0class"  # a column no file has: each row's class number while checking
ROW = "\0row"  # and its row number


def level0_ids(
    qis: Sequence[Generalisation], lookups: Lookups, exact: Sequence[bool]
) -> pl.Series | None:
    """Each row's class over the QIs as they stand, as one integer, when the level-0 codes
    of every QI part the rows exactly as their values do (``exact``, see
    :func:`~koble.anonymity.distributions.exact_codes`: a hierarchy may read two spellings
    as one value, e.g. ``J18.9`` and ``J189``: then the check groups the values themselves)."""
    if not all(exact):
        return None
    return pl.Series(IDS, class_keys(lookups, (0,) * len(qis)))


def generalised_population(
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
