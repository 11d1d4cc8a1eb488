"""The ``person`` delivery shape: a longitudinal file as one row per person.

A file with several rows per person (IPLOS services, stays, prescriptions) is anonymous only
row by row: a person's rows together single her out (see :mod:`koble.anonymity.longitudinal`).
Delivered as one row per person instead, with the service history summarised, the person's
columns become ordinary columns of an ordinary table, and plain k-anonymity over its rows is
k-anonymity over persons. Researchers often want this shape anyway.

:func:`person_table` turns ``frame`` (rows of persons, a ``kind`` column such as the service
type, optionally a ``date`` column) into a :class:`PersonShape` whose ``table`` has, in order:

- the ``person`` column, one row per person, sorted by it;
- every column that is **constant within every person** (a null counts as a value), as it is:
  education level, birth year, sex;
- for each value v of ``kind`` (sorted by its text; rows without a kind count as the value
  ``missing``): ``n_<v>``, the person's number of rows of that kind (0 when none), and with
  ``date``: ``first_<v>`` and ``last_<v>``, the earliest and latest date of those rows (null
  when none, or when all their dates are missing). Every row of the input is counted in
  exactly one ``n_`` column of exactly one person;
- every other column, which **varies within some person**, as ``<col>_last``: its value on
  the person's latest row by ``date`` (rows without a date count as earliest; ties go to the
  row further down the file), or without ``date`` on the person's last row in the file.

Column names: ``<v>`` is the kind value made a safe name: lower case, æ ø å written ae oe aa,
other accents dropped, every run of characters other than a-z and 0-9 replaced by ``_``,
stripped of ``_`` at the ends, cut to 40 characters, ``value`` if nothing is left. If the
``n_``/``first_``/``last_`` names of a value would clash with a column already in the table
or with an earlier value's (``Home nursing`` and ``home-nursing``), the value gets ``_2``
(then ``_3``, ...): ``n_home_nursing_2``. A ``<col>_last`` that clashes gets ``_2`` the same
way. :attr:`PersonShape.kinds` gives the value behind each column, for the report.

Refused, naming the column: a missing ``person``/``kind``/``date`` column, the same column in
two roles, a row without a person, a ``kind`` with more than :data:`MAX_KINDS` distinct values
(the table would be too wide: generalise it first), a ``kind`` value holding a person
number (it would become a column name), and a ``date`` column that is not a date
(``Date``, ``Datetime``, or ISO ``YYYY-MM-DD`` text, as a CSV reads it).

:func:`person_qis` gives the quasi-identifiers of the person table for the search: constant
and ``<col>_last`` columns under their own hierarchies, all counts as ONE tied QI under the
``count`` hierarchy and all first/last dates as ONE tied QI under the date hierarchy (see
:mod:`koble.anonymity.tied`): the lattice grows by two dimensions, not by three per kind.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from koble.anonymity.generalisation import Generalisation
from koble.anonymity.hierarchies import hierarchy_for
from koble.anonymity.person_columns import constant_columns
from koble.anonymity.tied import tie
from koble.errors import ColumnError, UsageError
from koble.registries.identifiers.scan import contains_person_number

__all__ = ["MAX_KINDS", "KindColumns", "PersonShape", "person_qis", "person_table", "safe_name"]

#: The most distinct values of the ``kind`` column: each makes up to three columns.
MAX_KINDS = 50
_MAX_NAME = 40
_NORWEGIAN = str.maketrans({"æ": "ae", "ø": "oe", "å": "aa"})

HierarchySpec = str | Mapping[str, object]


@dataclass(frozen=True)
class KindColumns:
    """The columns made for one value of the ``kind`` column.

    ``value`` is the value as text (None for rows without a kind); ``first`` and ``last``
    are None without a ``date`` column.
    """

    value: str | None
    count: str
    first: str | None = None
    last: str | None = None


@dataclass(frozen=True)
class PersonShape:
    """A one-row-per-person table and what each of its columns is."""

    table: pl.DataFrame = field(repr=False)
    person: str
    kind: str
    date: str | None
    #: Columns constant within every person, kept as they are.
    constant: tuple[str, ...]
    #: Per value of ``kind``: its count and first/last date columns.
    kinds: tuple[KindColumns, ...]
    #: Varying column → its ``<col>_last`` column (value on the person's latest row).
    last_values: Mapping[str, str]
    #: Persons out (rows of ``table``) and rows in.
    persons: int
    rows: int

    @property
    def counts(self) -> tuple[str, ...]:
        """The ``n_<v>`` columns."""
        return tuple(k.count for k in self.kinds)

    @property
    def dates(self) -> tuple[str, ...]:
        """The ``first_<v>`` and ``last_<v>`` columns (none without ``date``)."""
        return tuple(c for k in self.kinds for c in (k.first, k.last) if c is not None)

    def describe(self) -> list[str]:
        """What was done, one sentence a line, for the report."""
        lines = [
            f"one row per person: {self.rows:,} rows of {self.persons:,} persons",
            f"kept as they are (constant within every person): {', '.join(self.constant) or '-'}",
            f"rows per {self.kind}: {', '.join(self.counts) or '-'}",
        ]
        if self.date is not None:
            lines.append(f"first and last {self.date} per {self.kind}: {', '.join(self.dates)}")
        if self.last_values:
            latest = "latest row" if self.date is None else f"latest row by {self.date}"
            names = ", ".join(self.last_values.values())
            lines.append(f"varying within persons, value on the person's {latest}: {names}")
        return lines


def safe_name(value: str | None) -> str:
    """``value`` as a column-name fragment (see the module docstring for the rule)."""
    if value is None:
        return "missing"
    text = unicodedata.normalize("NFKD", value.lower().translate(_NORWEGIAN))
    text = re.sub(r"[^a-z0-9]+", "_", text.encode("ascii", "ignore").decode("ascii"))
    return text.strip("_")[:_MAX_NAME].strip("_") or "value"


def person_table(
    frame: pl.DataFrame, person: str, *, kind: str, date: str | None = None
) -> PersonShape:
    """``frame`` as one row per ``person``: see the module docstring for the columns."""
    _check_roles(frame, person, kind, date)
    dates = None if date is None else _dates(frame[date])
    others = [c for c in frame.columns if c not in (person, kind, date)]
    values = frame[kind].cast(pl.String).unique().sort(nulls_last=True).to_list()
    if len(values) > MAX_KINDS:
        per = 1 if date is None else 3
        raise ColumnError(
            f"has {len(values)} distinct values; the person shape makes {per} column(s) per "
            f"value and allows at most {MAX_KINDS} values (the table would be too wide): "
            "generalise the column first, or choose another",
            column=kind,
        )
    for value in values:  # a value becomes a column name: it must not be an identifier
        if value is not None and contains_person_number(value):
            row = int(frame[kind].cast(pl.String).eq_missing(value).arg_true()[0]) + 1
            raise ColumnError(
                "holds a person number; kind values become column names", column=kind, row=row
            )
    # the rows sorted by person, then date (missing first), then file order (a stable sort):
    # a person's rows are consecutive and the latest comes last
    kind_col, date_col = _free("__kind", set(frame.columns)), _free("__date", set(frame.columns))
    work = frame.select(
        pl.col(person),
        *(pl.col(c) for c in others),
        pl.col(kind).cast(pl.String).alias(kind_col),
        *([] if dates is None else [dates.alias(date_col)]),
    ).sort([person, *([] if date is None else [date_col])], nulls_last=False, maintain_order=True)
    # exactly constant within every person (nulls a value): kept as it is; any other
    # column (and any whose values cannot be compared) is taken from the latest row
    found, multi = constant_columns(work.select(person, *others), person, share=1.0)
    kept = set(found) if multi else set(others)  # one row each: nothing varies
    changes = {c: c not in kept for c in others}
    constant = tuple(c for c in others if not changes[c])
    taken = {person, *constant}
    kinds = tuple(_kind_columns(values, taken, with_dates=date is not None))
    last_values = {c: _free(f"{c}_last", taken) for c in others if changes[c]}
    k, d = pl.col(kind_col), pl.col(date_col)
    aggregations: list[pl.Expr] = [pl.col(c).first() for c in constant]
    for spec in kinds:
        this = k.is_null() if spec.value is None else k == spec.value
        aggregations.append(this.sum().cast(pl.Int64).alias(spec.count))
        if spec.first is not None and spec.last is not None:
            aggregations.append(d.filter(this).min().alias(spec.first))
            aggregations.append(d.filter(this).max().alias(spec.last))
    aggregations.extend(pl.col(c).last().alias(name) for c, name in last_values.items())
    table = work.group_by(person, maintain_order=True).agg(aggregations)
    return PersonShape(
        table=table,
        person=person,
        kind=kind,
        date=date,
        constant=constant,
        kinds=kinds,
        last_values=last_values,
        persons=table.height,
        rows=frame.height,
    )


def person_qis(
    shape: PersonShape,
    frame: pl.DataFrame,
    hierarchies: Mapping[str, HierarchySpec],
    *,
    base_dir: Path | None = None,
    count: HierarchySpec = "count",
) -> list[Generalisation]:
    """The quasi-identifiers of the person table ``frame`` (``shape.table`` or a copy).

    ``hierarchies`` maps the original file's quasi-identifiers to hierarchy specs (as in
    anon.toml): a constant one is generalised as it is, a varying one as ``<col>_last``
    under the same hierarchy. The ``kind`` column's own spec is not used: its counts are the
    tied QI ``"<kind> counts"`` under ``count``. The dates are the tied QI ``"<date> dates"``
    under ``hierarchies[date]`` (or the default ``date`` hierarchy when the date is not
    listed: a person's service dates are what an attacker knows). The person column cannot
    be a quasi-identifier.
    """
    qis: list[Generalisation] = []
    for name, spec in hierarchies.items():
        if name == shape.person:
            raise UsageError("the person column cannot also be a quasi-identifier")
        if name in (shape.kind, shape.date):
            continue
        column = name if name in shape.constant else shape.last_values.get(name)
        if column is None:
            raise ColumnError("quasi-identifier not in the file", column=name)
        qis.append(hierarchy_for(spec, base_dir=base_dir).apply(_column(frame, column)))
    if shape.kinds:
        counter = hierarchy_for(count, base_dir=base_dir)
        members = [counter.apply(_column(frame, c)) for c in shape.counts]
        qis.append(tie(f"{shape.kind} counts", members))
    if shape.date is not None and shape.dates:
        dater = hierarchy_for(hierarchies.get(shape.date, "date"), base_dir=base_dir)
        qis.append(
            tie(f"{shape.date} dates", [dater.apply(_column(frame, c)) for c in shape.dates])
        )
    return qis


def _column(frame: pl.DataFrame, name: str) -> pl.Series:
    if name not in frame.columns:
        raise ColumnError("column of the person table missing from the frame", column=name)
    return frame[name]


def _check_roles(frame: pl.DataFrame, person: str, kind: str, date: str | None) -> None:
    roles = [("person", person), ("kind", kind), *([] if date is None else [("date", date)])]
    for role, name in roles:
        if name not in frame.columns:
            raise ColumnError(f"the {role} column is not in the file", column=name)
    if len({name for _, name in roles}) != len(roles):
        raise UsageError("the person, kind and date columns must be three different columns")
    for role, name in roles[:2]:
        if frame[name].dtype.is_nested():
            raise ColumnError(f"the {role} column must hold plain values, not lists", column=name)
    missing = frame[person].is_null()
    if missing.any():
        row = int(missing.arg_true()[0]) + 1
        raise ColumnError("a row without a person", column=person, row=row)


def _dates(column: pl.Series) -> pl.Series:
    """The ``date`` column as dates (Date and Datetime as they are, ISO text parsed)."""
    if column.dtype == pl.Date or isinstance(column.dtype, pl.Datetime):
        return column
    if column.dtype != pl.String:
        raise ColumnError(
            f"the date column must hold dates or ISO date text, not {column.dtype}",
            column=column.name,
        )
    text = column.str.strip_chars()
    parsed = text.str.to_date("%Y-%m-%d", strict=False)
    bad = text.is_not_null() & (parsed.is_null() | (text.str.len_chars() != 10))
    if bad.any():
        row = int(bad.arg_true()[0]) + 1
        raise ColumnError("the value is not an ISO date (YYYY-MM-DD)", column=column.name, row=row)
    return parsed


def _kind_columns(
    values: Sequence[str | None], taken: set[str], *, with_dates: bool
) -> list[KindColumns]:
    """Safe, distinct column names per kind value, claiming them in ``taken``."""
    out = []
    for value in values:
        base, n = safe_name(value), 1
        while True:
            slug = base if n == 1 else f"{base}_{n}"
            names = [f"n_{slug}", *([f"first_{slug}", f"last_{slug}"] if with_dates else [])]
            if not taken.intersection(names):
                break
            n += 1
        taken.update(names)
        out.append(KindColumns(value, *names))
    return out


def _free(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``, ... whichever is not taken; claimed."""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate
