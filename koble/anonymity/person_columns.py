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

from koble.anonymity.generalisation import Generalisation
from koble.anonymity.hierarchies import TOP, hierarchy_for
from koble.anonymity.hierarchies.base import ChunkedIndex, encode
from koble.anonymity.parameters import UNSUPPORTED_TYPES
from koble.errors import ColumnError

__all__ = [
    "NEARLY_EVERY",
    "constant_columns",
    "dense",
    "dense_ids",
    "infer_hierarchy",
    "person_constant",
    "person_slot",
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
    found = []
    for c in others:
        values = known[c] if c in known else value_ids(frame[c])
        # each row against its person's first value: a gather from one value per person
        # (a small table), not from the rows
        changed = np.zeros(n, dtype=np.bool_)
        changed[who[values != values[first][who]]] = True
        constant = int(np.count_nonzero(multi & ~changed))
        if constant / persons >= share:  # the share of multi-row persons, as a mean would be
            found.append(c)
    return tuple(found), persons


def person_slot(column: pl.Series) -> Generalisation:
    """``column`` under the categorical hierarchy (value or ``*``), as the search takes the
    person column (or the sensitive attribute): exactly what
    ``hierarchy_for("categorical").apply(column)`` gives, built faster for the usual person
    column (whole numbers or text, no nulls, a million distinct values): level 0 is the
    values in the order of their texts, found once (:func:`_by_digits` for whole numbers
    over a short range: no hashing, no text sorted), not sorted, looked up and numbered
    again as strings at each level."""
    if not (column.dtype.is_integer() or column.dtype == pl.String) or column.null_count():
        return hierarchy_for("categorical").apply(column)
    found = _by_digits(column) if column.dtype.is_integer() else None
    if found is None:
        raw, index = encode(column)  # distinct values in order of appearance, each row's
        if not len(raw):
            return hierarchy_for("categorical").apply(column)
        text = raw.cast(pl.String)  # distinct values give distinct texts
        order = text.arg_sort().to_numpy()  # the texts' order: the level-0 codes
        raw_codes = np.empty(len(raw), dtype=np.int32)
        raw_codes[order] = np.arange(len(raw), dtype=np.int32)
        with_missing = np.append(raw_codes, np.int32(len(raw)))  # missing last, as ever
        codes = index.take(with_missing) if isinstance(index, ChunkedIndex) else raw_codes[index]
        labels = text.gather(order)
    else:
        raw, raw_codes, codes, labels = found
    n = len(raw)
    return Generalisation(
        name=column.name,
        level_names=hierarchy_for("categorical").level_names,
        codes=codes.astype(np.int32, copy=False),
        labels=(tuple(labels.to_list()), (TOP,)),
        maps=(np.arange(n, dtype=np.int32), np.zeros(n, dtype=np.int32)),
        raw=raw,
        has_missing=False,
        raw_codes=raw_codes,
    )


#: 10, 100, ..., 10**18: a whole number's digits are one more than the powers up to it.
_POWERS = 10 ** np.arange(1, 19, dtype=np.uint64)


def _by_digits(
    column: pl.Series,
) -> tuple[pl.Series, npt.NDArray[np.int32], npt.NDArray[np.int32], pl.Series] | None:
    """For :func:`person_slot`: the distinct values of a whole-number column without nulls
    whose range is at most a few times its length (else None), in order of appearance (as
    Arrow's dictionary encoding gives them), each one's and each row's level-0 code, and
    the labels. Distinct values by a lookup over the range; their order as texts (bytes)
    from their digits: negatives first ("-" sorts before the digits), then by the digits
    left-aligned, a prefix before the longer number."""
    if column.dtype == pl.UInt64 or not len(column):
        return None
    values = column.to_numpy().astype(np.int64, copy=False)
    low, high = int(values.min()), int(values.max())
    if low == np.iinfo(np.int64).min or high - low >= 4 * len(values) + 1024:
        return None
    offset = values - low
    first = np.full(high - low + 1, len(values), dtype=np.int64)
    first[offset[::-1]] = np.arange(len(values) - 1, -1, -1, dtype=np.int64)  # first wins
    present = np.flatnonzero(first < len(values))  # the distinct values, ascending
    distinct = present + low
    size = np.abs(distinct).astype(np.uint64)
    digits = np.searchsorted(_POWERS, size, side="right") + 1
    aligned = size * (np.uint64(10) ** (19 - digits).astype(np.uint64))
    as_text = np.lexsort((digits, aligned, distinct >= 0))
    code = np.empty(len(distinct), dtype=np.int32)  # of each distinct value, ascending
    code[as_text] = np.arange(len(distinct), dtype=np.int32)
    position = np.full(high - low + 1, -1, dtype=np.int32)
    position[present] = np.arange(len(present), dtype=np.int32)
    appearance = np.argsort(first[present], kind="stable")
    raw = pl.Series(column.name, distinct[appearance]).cast(column.dtype)
    labels = pl.Series(distinct[as_text]).cast(pl.String)
    return raw, code[appearance], code[position[offset]], labels


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
