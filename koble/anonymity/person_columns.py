"""Columns that are quasi-identifiers at the person level, and the hierarchies they get.

In a file with several rows per person, a column that never changes within a person
(education level, birth year, sex) is repeated on every row of that person: it ties the
rows together, and an attacker who knows it (they usually do) narrows the persons down as
well as any declared quasi-identifier. Under a person-level model such columns are therefore
quasi-identifiers too (:func:`person_constant`), generalised with the hierarchy their name
and type suggest (:func:`infer_hierarchy`) unless one is given.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from koble.anonymity.parameters import UNSUPPORTED_TYPES

__all__ = ["constant_columns", "infer_hierarchy", "person_constant"]


def constant_columns(frame: pl.DataFrame, person: str) -> tuple[tuple[str, ...], int]:
    """The columns constant within every person with 2+ rows, and the number of such persons.

    A null counts as a value (null on one row, a value on another is a change). Columns of
    types that cannot be compared as values (lists, durations: ``UNSUPPORTED_TYPES``) are
    left out. When every person has one row nothing ties rows together: none is reported.
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
    flags = distinct.select((pl.col(f"\0c{i}") == 1).all() for i in range(len(others))).row(0)
    return tuple(c for c, constant in zip(others, flags, strict=True) if constant), distinct.height


def person_constant(frame: pl.DataFrame, person: str, columns: Sequence[str]) -> list[str]:
    """Those of ``columns`` that are constant within every person (see
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
