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

Everything is exact and works on integer columns (numpy), never on the values: the rows'
distinct (person, tuple) pairs are sorted once, so each person's set is a run of ascending
tuple numbers; persons are grouped by hashes of their runs and every run is then compared
with its group's first, item by item (a hash collision parts the group by the runs
themselves); k^m subsets are built level by level from a person's later tuples and counted
as integers. It shares no code with the search's models in
:mod:`koble.anonymity.longitudinal`, so the tests can compare the two. Nulls count as a
value, in the quasi-identifiers, the person column and the person-constant columns alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from koble.anonymity.longitudinal import MAX_SUBSETS, m_problem, subset_count
from koble.anonymity.parameters import (
    check_columns,
    column_list,
    raise_problems,
    whole_number,
)
from koble.anonymity.person_columns import constant_columns, dense, dense_ids, value_ids

__all__ = ["PersonRisk", "Signatures", "person_figures", "person_risk"]

Ints = npt.NDArray[np.int64]
#: The salt of a person's run's 64-bit hash (kept beside its length; runs are then compared).
_SALT = 0xD6E8FEB86659FD93


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


def _summary(sizes: Ints, k: int) -> Signatures:
    """:class:`Signatures` from the persons per signature."""
    if not len(sizes):
        return Signatures(0, 0, 0, 0)
    total = int(sizes.sum())
    return Signatures(
        groups=len(sizes),
        unique=int(np.count_nonzero(sizes == 1)),
        # capped: k may exceed any group size and the column type's range
        under_k=int(sizes[sizes < min(k, total + 1)].sum()),
        smallest=int(sizes.min()),
    )


def _mix(values: Ints, salt: int) -> npt.NDArray[np.uint64]:
    """A well-spread 64-bit hash of each value (splitmix64's finaliser)."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(salt)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))  # type: ignore[no-any-return]


def _by_set(items: Ints, starts: Ints, k: int) -> Signatures:
    """Persons grouped by their sequence of items: person i's are ``items[starts[i]:
    starts[i + 1]]``, ascending and distinct, so equal sequences are equal sets.

    Exact: persons are grouped by a 64-bit hash of their sequence and its length, and every
    person sharing a group is then compared, item by item, with its group's first (a person
    alone in a group needs no comparison); a group holding two different sequences (a hash
    collision) is parted by the sequences."""
    n = len(starts)
    if not n:
        return _summary(np.zeros(0, dtype=np.int64), k)
    lengths = np.diff(np.append(starts, len(items)))
    digest = np.add.reduceat(_mix(items, _SALT), starts)
    order = np.argsort(digest)
    tied = digest[order][1:] == digest[order][:-1]
    if np.any(tied & (lengths[order][1:] != lengths[order][:-1])):
        order = np.lexsort((lengths, digest))
    flags = np.empty(n, dtype=np.bool_)
    flags[0] = True
    flags[1:] = (lengths[order][1:] != lengths[order][:-1]) | (
        digest[order][1:] != digest[order][:-1]
    )
    group = np.empty(n, dtype=np.int64)
    group[order] = np.cumsum(flags) - 1
    first = order[flags]  # each group's first person
    shared = np.flatnonzero(np.bincount(group)[group] > 1)  # persons not alone in a group
    if len(shared):
        length = lengths[shared]
        owner = np.repeat(shared, length)
        offset = np.arange(len(owner)) - np.repeat(np.cumsum(length) - length, length)
        same = items[starts[owner] + offset] == items[starts[first[group[owner]]] + offset]
        if not same.all():  # a collision: those groups by their sequences themselves
            group = _parted(items, starts, lengths, group, np.unique(group[owner[~same]]))
    return _summary(np.bincount(dense(group)), k)


def _parted(items: Ints, starts: Ints, lengths: Ints, group: Ints, mixed: Ints) -> Ints:
    """``group`` with the persons of the ``mixed`` groups (hash collisions, which real data
    never shows) numbered anew by their sequences: a loop over those persons only."""
    group = group.copy()
    numbers: dict[tuple[int, ...], int] = {}
    top = int(group.max()) + 1
    for person in np.flatnonzero(np.isin(group, mixed)).tolist():
        start = int(starts[person])
        sequence = tuple(items[start : start + int(lengths[person])].tolist())
        group[person] = numbers.setdefault(sequence, top + len(numbers))
    return group


def _pairs(who: Ints, item: Ints) -> tuple[Ints, Ints, Ints]:
    """The distinct (person, item) pairs of the rows, sorted by person then item: their
    persons, items and rows. ``item`` is dense (0 .. items - 1)."""
    radix = int(item.max()) + 1 if len(item) else 1
    keys, counts = np.unique(who * radix + item, return_counts=True)
    return keys // radix, keys % radix, counts.astype(np.int64)


def _starts(persons: Ints) -> Ints:
    """Where each person's run starts in ``persons`` (sorted)."""
    flags = np.empty(len(persons), dtype=np.bool_)
    flags[:1] = True
    np.not_equal(persons[1:], persons[:-1], out=flags[1:])
    return np.flatnonzero(flags)


def _km_failing(persons: Ints, items: Ints, starts: Ints, k: int, m: int) -> int | None:
    """Persons with a subset of 1..m of their distinct items held by fewer than k persons
    (None when there would be more than ``MAX_SUBSETS`` subsets). ``persons``/``items``:
    the distinct (person, item) pairs sorted by person then item, ``starts`` each person's.

    Apriori: a subset held by fewer than k persons fails every person holding it, and so
    does each of its supersets (held by fewer still), whose persons are counted already; so
    only the subsets held by k or more are extended, each by a later item of its person.
    A subset is one integer (its items as digits, numbered densely again when too wide),
    so counting its holders is counting equal integers."""
    if not len(items):
        return 0
    lengths = np.diff(np.append(starts, len(items)))
    sizes, counts = np.unique(lengths, return_counts=True)
    if subset_count(sizes.tolist(), counts.tolist(), m) > MAX_SUBSETS:
        return None
    cap = min(k, len(starts) + 1)  # k may exceed the count type's range
    ends = np.repeat(starts + lengths, lengths)  # each pair's person's end
    radix = int(items.max()) + 1
    key, last = items.copy(), np.arange(len(items))  # the subset, its last item's pair
    failing = np.zeros(int(persons[-1]) + 1, dtype=np.bool_)
    for j in range(m):
        if j:  # the j+1-subsets: each held j-subset with each later item of its person
            more = ends[last] - last - 1
            source = np.repeat(np.arange(len(key)), more)
            step = np.arange(len(source)) - np.repeat(np.cumsum(more) - more, more)
            last = last[source] + 1 + step
            key = key[source]
            if int(key.max(initial=0)).bit_length() + radix.bit_length() > 62:
                key = dense(key)
            key = key * radix + items[last]
        if not len(key):
            break
        numbered = dense(key)
        short = np.bincount(numbered)[numbered] < cap  # persons holding the subset
        failing[persons[last[short]]] = True
        if j + 1 < m:
            key, last = key[~short], last[~short]
    return int(np.count_nonzero(failing))


def person_risk(
    frame: pl.DataFrame, qis: Sequence[str], person: str, *, k: int, m: int = 2,
    path: str = "<table>", tuple_ids: pl.Series | npt.NDArray[np.integer] | None = None,
    ids: Mapping[str, npt.NDArray[np.integer]] | None = None,
) -> PersonRisk:  # fmt: skip
    """The person-level figures of ``frame`` (see the module docstring).

    ``person`` names the column identifying a person (never released, never shown);
    ``qis`` the quasi-identifiers, taken as they are. ``tuple_ids`` (one integer per row,
    equal exactly when the rows' quasi-identifiers are: the class ids of
    :func:`~koble.anonymity.check.check_frame`) spares numbering the tuples from their
    values; ``ids`` likewise gives, per column, one integer per row equal exactly when the
    values are (the person's codes, a quasi-identifier's codes): the same figures, faster.
    Raises :class:`UsageError` for bad parameters (naming each) and :class:`ColumnError`
    for missing or unusable columns.
    """
    return person_figures(frame, qis, person, k=k, m=m, path=path, tuple_ids=tuple_ids,
                          ids=ids)[0]  # fmt: skip


def person_figures(
    frame: pl.DataFrame, qis: Sequence[str], person: str, *, k: int, m: int = 2,
    path: str = "<table>", tuple_ids: pl.Series | npt.NDArray[np.integer] | None = None,
    ids: Mapping[str, npt.NDArray[np.integer]] | None = None,
) -> tuple[PersonRisk, Ints, Ints]:  # fmt: skip
    """:func:`person_risk`, and per distinct tuple (numbered densely in the order of their
    ``tuple_ids``, or of their values) its rows and its distinct persons: counted from the
    (person, tuple) pairs the figures need anyway, so a check that has them need not group
    the rows again."""
    raise_problems([
        *column_list(list(qis), "qis (the quasi-identifiers)"),
        whole_number(k, "k"),
        m_problem(m, "m"),
        "the person column cannot also be a quasi-identifier" if person in qis else None,
    ])  # fmt: skip
    check_columns(frame, [*qis, person], path)
    if tuple_ids is not None and len(tuple_ids) != frame.height:
        raise ValueError("tuple_ids must have one value per row")
    known = dict(ids or {})
    who = known[person] = dense(known[person]) if person in known else dense_ids(frame[person])
    constant, multi = constant_columns(frame, person, ids=known)
    added = tuple(c for c in constant if c not in qis)
    if tuple_ids is None:
        tuple_of = _combined([_column_ids(frame, c, known) for c in qis], frame.height)
    else:
        tuple_of = dense(np.asarray(tuple_ids, dtype=np.int64))
    persons, items, counts = _pairs(who, tuple_of)
    tuples = int(tuple_of.max()) + 1 if len(tuple_of) else 0
    tuple_rows = np.bincount(tuple_of, minlength=tuples).astype(np.int64)
    tuple_persons = np.bincount(items, minlength=tuples).astype(np.int64)
    starts = _starts(persons)
    by_set = _by_set(items, starts, k)
    km = _km_failing(persons, items, starts, k, m)
    if len(counts) and int(counts.max()) > 1:  # (tuple, rows) as one integer per pair
        paired = items * (int(counts.max()) + 1) + counts
        by_multiset = _by_set(paired, starts, k)  # ascending within a person, as items are
    else:  # no tuple twice in a person: the multisets are the sets
        by_multiset = by_set
    by_constant, km_constant = by_set, km
    if added:  # the tuple and the person-constant columns
        plus = _combined([tuple_of, *(_column_ids(frame, c, known) for c in added)],
                         frame.height)  # fmt: skip
        c_persons, c_items, _ = _pairs(who, plus)
        c_starts = _starts(c_persons)
        by_constant = _by_set(c_items, c_starts, k)
        km_constant = _km_failing(c_persons, c_items, c_starts, k, m)
    figures = PersonRisk(
        person=person,
        k=k,
        m=m,
        persons=len(starts),
        rows=frame.height,
        multi_row_persons=multi,
        constant_columns=constant,
        added_columns=added,
        by_set=by_set,
        by_multiset=by_multiset,
        by_set_with_constant=by_constant,
        km_failing=km,
        km_failing_with_constant=km_constant,
    )
    return figures, tuple_rows, tuple_persons


def _column_ids(
    frame: pl.DataFrame, column: str, known: Mapping[str, npt.NDArray[np.integer]]
) -> Ints:
    """A column's integers equal exactly when its values are (given, else computed)."""
    found = known.get(column)
    return value_ids(frame[column]) if found is None else np.asarray(found, dtype=np.int64)


def _combined(columns: Sequence[Ints], rows: int) -> Ints:
    """One dense integer per row, equal exactly when the rows are in every column."""
    key = np.zeros(rows, dtype=np.int64)
    for column in columns:
        column = dense(column)
        radix = int(column.max()) + 1 if rows else 1
        key = dense(key) * radix + column
    return dense(key)
