"""Person-level risk of a file with several rows per person, measured as the file stands.

Row classes of k persons do not make a longitudinal file anonymous: an attacker who knows a
person's *set* of rows ("home nursing in 2015–2019, practical assistance in 2020–2024, in
Vestland") finds the one person with that set. :func:`person_risk` measures that exposure
over the quasi-identifier tuples as they are in the file (the check does not generalise):

- persons grouped by the SET of their tuples, by the MULTISET (each tuple with its number
  of rows), and by the set together with the person-constant columns that are not
  quasi-identifiers: a column constant within every person (education level, birth year)
  ties a person's rows together and acts as a quasi-identifier at the person level;
- k^m (Terrovitis et al. 2008): persons with some m or fewer of their tuples held by fewer
  than k persons, on the tuples alone and with the person-constant columns. Measurement
  only: nobody is withheld here.

Everything is exact and computed with polars: signatures are sorted lists of dense tuple
numbers, grouped; k^m subsets are built by self-joins of a person's tuples. That is
deliberately independent of the hashing and index arrays in
:mod:`koble.anonymity.longitudinal`, so the tests can compare the two. Nulls count as a
value, in the quasi-identifiers, the person column and the person-constant columns alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import polars as pl

from koble.anonymity.longitudinal import MAX_SUBSETS, m_problem, subset_count
from koble.anonymity.parameters import (
    check_columns,
    column_list,
    raise_problems,
    whole_number,
)
from koble.anonymity.person_columns import constant_columns

__all__ = ["PersonRisk", "Signatures", "person_risk"]

# Internal column names no user column can have (see parameters.grouping_keys).
_P, _T, _TC, _PAIR = "\0person", "\0tuple", "\0tuple+", "\0tuple×rows"
_S, _N = "\0signature", "\0n"


@dataclass(frozen=True)
class Signatures:
    """Persons grouped by a signature: how many groups, and how many persons are exposed."""

    groups: int
    #: Persons whose signature nobody else has.
    unique: int
    #: Persons in groups of fewer than k persons.
    under_k: int
    #: The smallest group, in persons (0 when there are no persons).
    smallest: int


@dataclass(frozen=True)
class PersonRisk:
    """Person-level figures of a file. Holds column names and counts, never a record value."""

    person: str
    k: int
    m: int
    persons: int
    rows: int
    #: Persons with two rows or more: the ones whose rows can be tied together.
    multi_row_persons: int
    #: Columns other than the person column constant within every multi-row person.
    constant_columns: tuple[str, ...]
    #: Those of them that are not quasi-identifiers: added to the tuples for
    #: :attr:`by_set_with_constant` and :attr:`km_failing_with_constant`.
    added_columns: tuple[str, ...]
    by_set: Signatures
    by_multiset: Signatures
    by_set_with_constant: Signatures
    #: Persons with some m or fewer of their tuples held by fewer than k persons; None when
    #: that would take more than ``MAX_SUBSETS`` subsets (then it is not measured).
    km_failing: int | None
    km_failing_with_constant: int | None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (column lists as lists)."""
        data = asdict(self)
        data["constant_columns"] = list(self.constant_columns)
        data["added_columns"] = list(self.added_columns)
        return data

    def lines(self) -> list[str]:
        """The figures in words, one line each, for the check's output and the report."""

        def groups(s: Signatures) -> str:
            return (f"{s.unique:,} unique, {s.under_k:,} in groups under k, smallest group "
                    f"{s.smallest:,} ({s.groups:,} groups)")  # fmt: skip

        def km(n: int | None) -> str:
            return "not measured (too many subsets)" if n is None else f"{n:,}"

        if self.multi_row_persons == 0:
            constant = "none (every person has one row: nothing ties rows together)"
        else:
            constant = ", ".join(self.constant_columns) or "none"
        added = ", ".join(self.added_columns) or "none besides the quasi-identifiers"
        return [
            f"{self.persons:,} persons in {self.rows:,} rows, {self.multi_row_persons:,} with "
            f"2 or more rows (person column {self.person}, k = {self.k})",
            f"person-constant columns: {constant}",
            f"persons by set of QI tuples: {groups(self.by_set)}",
            f"persons by multiset of QI tuples: {groups(self.by_multiset)}",
            f"persons by set with person-constant columns ({added}): "
            + groups(self.by_set_with_constant),
            f"k^m (m = {self.m}), persons with {self.m} or fewer tuples held by fewer than k "
            f"persons: {km(self.km_failing)}; with person-constant columns: "
            f"{km(self.km_failing_with_constant)}",
        ]


def _number(frame: pl.DataFrame, columns: list[str], name: str) -> pl.DataFrame:
    """``frame`` with ``name``: a number per distinct combination of ``columns`` (nulls
    equal to each other). A join on the distinct combinations: exact, and several times
    faster than ranking a struct."""
    numbers = frame.select(columns).unique().with_row_index(name)
    return frame.join(numbers.with_columns(pl.col(name).cast(pl.Int64)), on=columns,
                      how="left", nulls_equal=True)  # fmt: skip


def _summary(sizes: pl.Series, k: int) -> Signatures:
    """:class:`Signatures` from the persons per signature."""
    if sizes.is_empty():
        return Signatures(0, 0, 0, 0)
    sizes = sizes.cast(pl.Int64)
    return Signatures(
        groups=sizes.len(),
        unique=int((sizes == 1).sum()),
        # capped: k may exceed any group size and the column type's range
        under_k=int(sizes.filter(sizes < min(k, int(sizes.sum()) + 1)).sum()),
        smallest=int(sizes.min()),  # type: ignore[arg-type]
    )


def _by_set(entries: pl.DataFrame, item: str, k: int, *, distinct: bool = False) -> Signatures:
    """Persons grouped by the sorted list of their distinct ``item`` numbers (``distinct``:
    each (person, item) is in ``entries`` once already)."""
    items = pl.col(item) if distinct else pl.col(item).unique()
    signatures = entries.group_by(_P).agg(items.sort().alias(_S))
    return _summary(signatures.group_by(_S).len()["len"], k)


def _km_failing(
    entries: pl.DataFrame, item: str, k: int, m: int, *, distinct: bool = False
) -> int | None:
    """Persons with a subset of 1..m of their distinct items held by fewer than k persons
    (None when there would be more than ``MAX_SUBSETS`` subsets).

    Apriori: a subset held by fewer than k persons fails every person holding it, and so
    does each of its supersets (held by fewer still), whose persons are counted already; so
    only the subsets held by k or more are extended. Each subset is one integer (its items'
    dense numbers as digits), so counting its holders groups one column."""
    pairs = entries.select(_P, item) if distinct else entries.select(_P, item).unique()
    if pairs.is_empty():
        return 0
    per_person = pairs.group_by(_P).len()["len"].value_counts()
    sizes, counts = per_person.to_series(0).to_list(), per_person.to_series(1).to_list()
    if subset_count(sizes, counts, m) > MAX_SUBSETS:
        return None
    cap = min(k, pairs[_P].n_unique() + 1)  # k may exceed the count type's range
    items = pairs.select(_P, pl.col(item).cast(pl.Int64).alias("\0i"))  # dense numbers
    radix = int(items["\0i"].max()) + 1  # type: ignore[arg-type]
    # a j-subset's key: its items (ascending) as digits of base radix; wider than 62 bits
    # it is numbered densely again before the next digit goes on
    level = items.with_columns(pl.col("\0i").alias("\0key"), pl.col("\0i").alias("\0last"))
    short = []
    for j in range(m):
        if j:  # the j+1-subsets: a held j-subset extended by a larger item of the person
            nxt = items.rename({"\0i": "\0next"})
            level = level.join(nxt, on=_P).filter(pl.col("\0next") > pl.col("\0last"))
            if level.is_empty():
                break
            width = int(level["\0key"].max()) + 1  # type: ignore[arg-type]
            key = pl.col("\0key")
            if width.bit_length() + radix.bit_length() > 62:
                key = key.rank("dense").cast(pl.Int64)
            level = level.select(_P, (key * radix + pl.col("\0next")).alias("\0key"),
                                 pl.col("\0next").alias("\0last"))  # fmt: skip
        held = pl.len().over("\0key")  # persons holding the subset
        short.append(level.filter(held < cap).select(_P))
        if j + 1 < m:
            level = level.filter(held >= cap)
        if level.is_empty():
            break
    return pl.concat(short)[_P].n_unique()


def person_risk(
    frame: pl.DataFrame, qis: Sequence[str], person: str, *, k: int, m: int = 2,
    path: str = "<table>", tuple_ids: pl.Series | None = None,
) -> PersonRisk:  # fmt: skip
    """The person-level figures of ``frame`` (see the module docstring).

    ``person`` names the column identifying a person (never released, never shown);
    ``qis`` the quasi-identifiers, taken as they are. ``tuple_ids`` (one integer per row,
    equal exactly when the rows' quasi-identifiers are: the class ids of
    :func:`~koble.anonymity.check.check_frame`) spares numbering the tuples from their
    values: the same figures, faster. Raises :class:`UsageError` for bad parameters (naming
    each) and :class:`ColumnError` for missing or unusable columns.
    """
    raise_problems([
        *column_list(list(qis), "qis (the quasi-identifiers)"),
        whole_number(k, "k"),
        m_problem(m, "m"),
        "the person column cannot also be a quasi-identifier" if person in qis else None,
    ])  # fmt: skip
    check_columns(frame, [*qis, person], path)
    if tuple_ids is not None and len(tuple_ids) != frame.height:
        raise ValueError("tuple_ids must have one value per row")
    constant, multi = constant_columns(frame, person)
    added = tuple(c for c in constant if c not in qis)
    extra = [pl.col(c).alias(f"\0c{i}") for i, c in enumerate(added)]
    if tuple_ids is None:
        keys = [pl.col(c).alias(f"\0qi{i}") for i, c in enumerate(qis)]
        names = [f"\0qi{i}" for i in range(len(qis))]
        rows = _number(frame.select(pl.col(person).alias(_P), *keys, *extra), names, _T)
    else:  # numbered densely, so a tuple and a row count fit one integer below
        rows = frame.select(pl.col(person).alias(_P), *extra).with_columns(
            tuple_ids.rank("dense").cast(pl.Int64).alias(_T)
        )
    if added:  # the tuple and the person-constant columns
        rows = _number(rows, [_T, *(f"\0c{i}" for i in range(len(added)))], _TC)
    rows = rows.select(_P, _T, *([_TC] if added else []))
    counted = rows.group_by(_P, _T).len()
    # (tuple, rows) as one integer: tuples are dense (below 2^32), counts at most the rows
    radix = int(counted["len"].max() or 0) + 1  # type: ignore[arg-type]
    multiset = counted.select(_P, (pl.col(_T) * radix + pl.col("len")).alias(_PAIR))
    pairs = counted.select(_P, _T)  # each (person, tuple) once
    by_set = _by_set(pairs, _T, k, distinct=True)
    km = _km_failing(pairs, _T, k, m, distinct=True)
    # no tuple twice in a person: the multisets are the sets, grouped alike
    once = radix <= 2
    return PersonRisk(
        person=person,
        k=k,
        m=m,
        persons=counted[_P].n_unique(),
        rows=frame.height,
        multi_row_persons=multi,
        constant_columns=constant,
        added_columns=added,
        by_set=by_set,
        by_multiset=by_set if once else _by_set(multiset, _PAIR, k, distinct=True),
        by_set_with_constant=_by_set(rows, _TC, k) if added else by_set,
        km_failing=km,
        km_failing_with_constant=_km_failing(rows, _TC, k, m) if added else km,
    )
