"""Columns that are quasi-identifiers at the person level, and the hierarchies they get.

In a file with several rows per person, a column that never (or hardly ever) changes within a
person (education level, birth year, sex) is repeated on every row of that person: it ties the
rows together, and an attacker who knows it (they usually do) narrows the persons down as
well as any declared quasi-identifier. Under a person-level model such columns are therefore
quasi-identifiers too (:func:`person_constant`), generalised with the hierarchy their name
and type suggest (:func:`infer_hierarchy`) unless one is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
import polars as pl

from koble.anonymity.parameters import UNSUPPORTED_TYPES
from koble.errors import ColumnError

__all__ = [
    "NEARLY_EVERY",
    "constant_columns",
    "dense",
    "dense_ids",
    "infer_hierarchy",
    "person_constant",
    "refuse_missing_persons",
    "refuse_unjudgeable",
    "value_ids",
]

Ints = npt.NDArray[np.int64]


#: A column constant within at least this share of the persons with 2+ rows is a person's
#: attribute: one person whose education changes, or one stray null, must not switch the
#: protection off for everyone else.
NEARLY_EVERY = 0.9


def value_ids(column: pl.Series) -> Ints:
    """One integer per row, equal exactly when the values are (a null is a value, equal to
    the other nulls; NaN equals NaN and -0.0 equals 0.0, as ``n_unique`` counts them):
    the physical codes of text (as Categorical), integers, dates and booleans, else the
    dense rank. Neither dense nor ordered."""
    if column.dtype == pl.String:
        column = column.cast(pl.Categorical)
    physical = column.to_physical()
    if physical.dtype.is_integer() and physical.dtype != pl.UInt64:
        values = physical.cast(pl.Int64)
        if values.null_count():
            values = values.fill_null(int(values.max() or 0) + 1)  # type: ignore[arg-type]
        return values.to_numpy()
    ranks = column.rank("dense")  # nulls stay null: they become 0, the ranks start at 1
    return ranks.fill_null(0).cast(pl.Int64).to_numpy()


def dense_ids(column: pl.Series) -> Ints:
    """:func:`value_ids` made dense (0 .. distinct values - 1), for counting by them."""
    return dense(value_ids(column))


def dense(values: npt.NDArray[np.integer]) -> Ints:
    """``values`` numbered densely (0 .. distinct - 1) in their order: by a lookup over a
    small range, else by sorting each id with its position packed into one integer (a plain
    sort, several times faster than the argsort of ``np.unique``), else by ``np.unique``."""
    ids: Ints = np.asarray(values, dtype=np.int64)
    if not len(ids):
        return ids
    low, high = int(ids.min()), int(ids.max())
    span = high - low
    if span < 4 * len(ids) + 1024:
        present = np.zeros(span + 1, dtype=np.bool_)
        present[ids - low] = True
        if present.all():
            return ids - low if low else ids
        numbers: Ints = np.cumsum(present, dtype=np.int64) - 1
        return numbers[ids - low]
    bits = (len(ids) - 1).bit_length()
    if span.bit_length() + bits > 62:
        inverse: Ints = np.unique(ids, return_inverse=True)[1].astype(np.int64)
        return inverse.ravel()
    packed = np.sort(((ids - low) << bits) | np.arange(len(ids), dtype=np.int64))
    values = packed >> bits
    new = np.empty(len(ids), dtype=np.bool_)
    new[0] = True
    np.not_equal(values[1:], values[:-1], out=new[1:])
    out = np.empty(len(ids), dtype=np.int64)
    out[packed & ((1 << bits) - 1)] = np.cumsum(new) - 1
    return out


def constant_columns(
    frame: pl.DataFrame, person: str, *, share: float = NEARLY_EVERY,
    ids: Mapping[str, npt.NDArray[np.integer]] | None = None,
) -> tuple[tuple[str, ...], int]:  # fmt: skip
    """The columns constant within (nearly) every person with 2+ rows: within at least
    ``share`` of them; and the number of such persons.

    A null counts as a value (null on one row, a value on another is a change). Columns of
    types that cannot be compared as values (lists, durations: ``UNSUPPORTED_TYPES``) are
    left out: :func:`refuse_unjudgeable` refuses them where a person model is enforced.
    When every person has one row nothing ties rows together: none is reported.
    ``ids`` may give, per column (the person's included), one integer per row equal
    exactly when the values are (:func:`value_ids`, or codes known already).

    Each row is compared with its person's first row: a person is constant in a column when
    no row differs (integers compared, then counted per person: no grouping of values).
    """
    others = [
        c for c in frame.columns
        if c != person and not isinstance(frame.schema[c], UNSUPPORTED_TYPES)
    ]  # fmt: skip
    known = {} if ids is None else ids
    who = dense(known[person]) if person in known else dense_ids(frame[person])
    n = int(who.max()) + 1 if len(who) else 0
    rows = np.bincount(who, minlength=n)
    multi = rows >= 2
    persons = int(np.count_nonzero(multi))
    if not persons:
        return (), 0
    first = np.empty(n, dtype=np.int64)
    first[who[::-1]] = np.arange(len(who) - 1, -1, -1, dtype=np.int64)  # the first wins
    first_row = first[who]
    found = []
    for c in others:
        values = known[c] if c in known else value_ids(frame[c])
        changed = np.bincount(who[values != values[first_row]], minlength=n) > 0
        constant = int(np.count_nonzero(multi & ~changed))
        if constant / persons >= share:  # the share of multi-row persons, as a mean would be
            found.append(c)
    return tuple(found), persons


def refuse_unjudgeable(frame: pl.DataFrame, person: str, path: str) -> None:
    """Refuse a release judged per person that holds columns whose values cannot be compared
    (lists, structs, durations): whether they are a person's attribute cannot be told, so
    they could carry one past the model. Names them; exit 2."""
    found = [
        c for c in frame.columns
        if c != person and isinstance(frame.schema[c], UNSUPPORTED_TYPES)
    ]  # fmt: skip
    if found:
        raise ColumnError(
            f"columns of these types cannot be judged per person: {', '.join(found)}; drop "
            "them or use plain values (text, numbers or dates)",
            path=path,
        )


def refuse_missing_persons(frame: pl.DataFrame, person: str, path: str) -> None:
    """Refuse rows without a person: they would all count as one person. Names the first
    such row (counted from 1, as in the file), never a value."""
    missing = frame[person].is_null()
    if missing.any():
        row = int(missing.arg_true()[0]) + 1
        raise ColumnError(
            f"{int(missing.sum()):,} rows have no person; the first is row {row}",
            path=path, column=person,
        )  # fmt: skip


def person_constant(frame: pl.DataFrame, person: str, columns: Sequence[str]) -> list[str]:
    """Those of ``columns`` that are constant within (nearly) every person (see
    :func:`constant_columns`), in the order given. Only they are compared: each column is
    judged on its own."""
    if not columns:
        return []
    found = set(constant_columns(frame.select(person, *dict.fromkeys(columns)), person)[0])
    return [c for c in columns if c in found]


def infer_hierarchy(name: str, dtype: pl.DataType) -> str:
    """A hierarchy for a quasi-identifier given none, from its name and type: dates get the
    date hierarchy, names that say kommune, ICD-10, ATC, sex or age get theirs, and anything
    else is categorical (the value, or ``*``)."""
    lowered = name.lower()
    if dtype == pl.Date or dtype == pl.Datetime:
        return "date"
    for key in ("kommune", "icd10", "atc", "sex", "age"):
        if key in lowered:
            return key
    return "categorical"
