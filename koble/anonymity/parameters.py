"""The rules for anonymity parameters, in one place for the CLI, ``ANON.toml`` and the library.

Each rule returns a problem (a sentence naming the parameter, never its value: a value typed
by mistake may be an identifier) or ``None``, so callers can collect every problem and report
them at once. :func:`check_columns` refuses columns that are missing or whose type cannot be
compared as a value (lists, structs, binary), naming each with its type, before any
group-by turns them into an internal error.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from numbers import Integral, Real
from pathlib import Path

import polars as pl

from koble.errors import ColumnError, UsageError, redact

__all__ = [
    "UNSUPPORTED_TYPES",
    "at_least",
    "check_columns",
    "column_list",
    "grouping_keys",
    "one_of",
    "raise_problems",
    "share",
    "whole_number",
]

#: Column types whose values cannot serve as quasi-identifiers or sensitive values.
UNSUPPORTED_TYPES: tuple[type[pl.DataType], ...] = (
    pl.List,
    pl.Array,
    pl.Struct,
    pl.Binary,
    pl.Object,
    pl.Duration,  # polars cannot compare durations as text
)


def _real(value: object) -> float | None:
    """``value`` as a finite float, or None (booleans, text, NaN and infinities are not)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def whole_number(value: object, name: str, *, minimum: int = 1) -> str | None:
    """A problem unless ``value`` is a whole number of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        return f"{name} must be a whole number of at least {minimum}"
    return None


def one_of(value: object, choices: Sequence[str], name: str) -> str | None:
    """A problem unless ``value`` is one of ``choices`` (named in the problem, not ``value``)."""
    if not isinstance(value, str) or value not in choices:
        return f"{name} must be one of {', '.join(choices)}"
    return None


def at_least(value: object, name: str, *, minimum: float = 1.0) -> str | None:
    """A problem unless ``value`` is a finite number of at least ``minimum``."""
    number = _real(value)
    if number is None or number < minimum:
        return f"{name} must be a finite number of at least {minimum:g}"
    return None


def share(value: object, name: str, *, open_low: bool = False) -> str | None:
    """A problem unless ``value`` is a finite number in [0, 1] (or (0, 1] with ``open_low``)."""
    number = _real(value)
    low_ok = number is not None and (number > 0 if open_low else number >= 0)
    if number is None or not low_ok or number > 1:
        return f"{name} must be a number in {'(0' if open_low else '[0'}, 1]"
    return None


def column_list(columns: Sequence[object], name: str) -> list[str]:
    """Problems with a list of column names: empty, blank or repeated names."""
    if not columns:
        return [f"{name} must name at least one column"]
    problems = []
    if any(not isinstance(c, str) or not c.strip() for c in columns):
        problems.append(f"{name} has an empty or non-text column name")
    repeated = [c for c, n in Counter(columns).items() if n > 1]
    if repeated:
        names = ", ".join(redact(repr(c)) for c in repeated)
        problems.append(f"{name} names a column more than once ({names})")
    return problems


def grouping_keys(columns: Sequence[str]) -> list[pl.Expr]:
    """``columns`` as text under names no user column can have (``\0qi0``, ``\0qi1``, ...),
    for a ``group_by`` whose aggregations (``n``, ``len``, ``distinct``) must never collide
    with a quasi-identifier of the same name."""
    return [pl.col(c).cast(pl.String).alias(f"\0qi{i}") for i, c in enumerate(columns)]


def raise_problems(problems: Iterable[str | None], *, source: str | None = None) -> None:
    """Raise one :class:`UsageError` listing every problem (``None`` is none), if any."""
    found = [problem for problem in problems if problem]
    if found:
        raise UsageError(("" if source is None else f"{source}: ") + "; ".join(found))


def check_columns(frame: pl.DataFrame, columns: Iterable[str], path: str | Path) -> None:
    """Every column is present and of a type that can be compared as a value.

    Raises one :class:`ColumnError` naming every missing column and every unsupported one
    with its type (all at once); column names are redacted since a header-less file has
    its first row as names.
    """
    wanted = list(dict.fromkeys(columns))
    missing = [c for c in wanted if c not in frame.columns]
    available = redact(", ".join(frame.columns[:20])) + (" ..." if len(frame.columns) > 20 else "")
    unusable = [
        f"{redact(repr(c))} ({frame.schema[c].base_type()!s})"
        for c in wanted
        if c in frame.columns and isinstance(frame.schema[c], UNSUPPORTED_TYPES)
    ]
    problems = []
    if unusable:
        problems.append(
            f"columns of these types cannot be compared as values: {', '.join(unusable)}; "
            "use plain values (text, numbers or dates)"
        )
    if len(missing) == 1 and not problems:
        raise ColumnError(
            f"no such column; the file has: {available}", path=path, column=redact(missing[0])
        )
    if missing:
        names = ", ".join(redact(repr(c)) for c in missing)
        problems.insert(0, f"no such columns: {names}; the file has: {available}")
    if problems:
        raise ColumnError("; ".join(problems), path=path)
