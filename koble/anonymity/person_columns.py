"""Columns that are quasi-identifiers at the person level, and the hierarchies they get.

In a file with several rows per person, a column that never (or hardly ever) changes within a
person (education level, birth year, sex) is repeated on every row of that person: it ties the
rows together, and an attacker who knows it (they usually do) narrows the persons down as
well as any declared quasi-identifier. Under a person-level model such columns are therefore
quasi-identifiers too (:func:`person_constant`), generalised with the hierarchy their name
and type suggest (:func:`infer_hierarchy`) unless one is given.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from koble.anonymity.parameters import UNSUPPORTED_TYPES
from koble.errors import ColumnError

__all__ = [
    "NEARLY_EVERY",
    "constant_columns",
    "infer_hierarchy",
    "person_constant",
    "refuse_missing_persons",
    "refuse_unjudgeable",
]


#: A column constant within at least this share of the persons with 2+ rows is a person's
#: attribute: one person whose education changes, or one stray null, must not switch the
#: protection off for everyone else.
NEARLY_EVERY = 0.9


def constant_columns(
    frame: pl.DataFrame, person: str, *, share: float = NEARLY_EVERY
) -> tuple[tuple[str, ...], int]:
    """The columns constant within (nearly) every person with 2+ rows: within at least
    ``share`` of them; and the number of such persons.

    A null counts as a value (null on one row, a value on another is a change). Columns of
    types that cannot be compared as values (lists, durations: ``UNSUPPORTED_TYPES``) are
    left out: :func:`refuse_unjudgeable` refuses them where a person model is enforced.
    When every person has one row nothing ties rows together: none is reported.
    """
    others = [
        c for c in frame.columns
        if c != person and not isinstance(frame.schema[c], UNSUPPORTED_TYPES)
    ]  # fmt: skip
    distinct = (
        frame.group_by(pl.col(person).alias("\0person"))
        .agg(
            pl.len().alias("\0rows"),
            *(pl.col(c).n_unique().alias(f"\0c{i}") for i, c in enumerate(others)),
        )
        .filter(pl.col("\0rows") >= 2)
    )
    if distinct.is_empty():
        return (), 0
    flags = distinct.select(
        (pl.col(f"\0c{i}") == 1).mean() >= share for i in range(len(others))
    ).row(0)
    return tuple(c for c, constant in zip(others, flags, strict=True) if constant), distinct.height


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
    :func:`constant_columns`), in the order given."""
    found = set(constant_columns(frame, person)[0])
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
