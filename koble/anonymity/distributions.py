"""The report's distributions: each quasi-identifier's most frequent values before and after.

:func:`top_values` counts a column's values (the reference: one ``value_counts``). The
release counts by the integer codes the search already holds instead (:func:`top_from_codes`):
a ``bincount`` over the level-0 codes of the rows, a representative value per code, and the
same ordering; no pass over millions of strings. The two agree exactly (tested), ties
included: equal counts are ordered by value, so a report is the same on every run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import polars as pl

from koble.anonymity.generalisation import Generalisation

__all__ = ["TOP_VALUES", "exact_codes", "top_from_codes", "top_from_counts", "top_values"]

TOP_VALUES = 15
_V, _N = "\0value", "\0count"


def _ordered(counts: pl.DataFrame, order: Sequence[str] | None) -> dict[str, int]:
    """The top :data:`TOP_VALUES` of ``counts`` (columns value, count; a value may appear
    more than once, its counts are summed): most frequent first (equal counts by value), or,
    for an ordered hierarchy (``order``: its labels in order; empty for the raw values), the
    most frequent in that order. Missing values show as ``(missing)``."""
    if order is None:
        counts = counts.with_columns(pl.col(_V).cast(pl.String).fill_null("(missing)"))
    counts = counts.group_by(_V).agg(pl.col(_N).sum())
    top = counts.sort([_N, _V], descending=[True, False], nulls_last=True).head(TOP_VALUES)
    if order:  # generalised labels: by the hierarchy's order
        rank = {label: i for i, label in enumerate(order)}
        rows = sorted(top.iter_rows(), key=lambda r: rank.get(str(r[0]), len(rank)))
    elif order is not None:  # raw values: by their own order (numbers, dates), missing last
        rows = list(top.sort(_V, nulls_last=True).iter_rows())
    else:
        rows = list(top.iter_rows())
    return {"(missing)" if v is None else str(v): int(n) for v, n in rows}


def top_values(series: pl.Series, order: Sequence[str] | None = None) -> dict[str, int]:
    """The most frequent values of ``series`` and their counts (see :func:`_ordered`)."""
    counts = series.rename(_V).value_counts(name=_N)
    return _ordered(counts.with_columns(pl.col(_N).cast(pl.Int64)), order)


def exact_codes(
    values: pl.Series, g: Generalisation, codes: npt.NDArray[np.integer] | None = None
) -> bool:
    """Whether ``g``'s level-0 codes part the rows of ``values`` exactly as the values do:
    as many distinct codes as distinct values (a hierarchy may read two spellings as one
    value, ``J18.9`` and ``J189``; then they do not). ``codes``: the codes present, if known
    from fewer values than the rows (a frequency table's, each code at least once)."""
    if g.column_names != (g.name,):
        return False
    codes = g.codes if codes is None else codes
    present = int(np.count_nonzero(np.bincount(codes, minlength=len(g.labels[0]))))
    distinct = values.n_unique() if g.raw is None else len(g.raw) + g.has_missing
    return distinct == present


def top_from_codes(
    values: pl.Series | None, g: Generalisation, level: int, rows: npt.NDArray[np.integer] | None,
    order: Sequence[str] | None,
) -> dict[str, int]:  # fmt: skip
    """:func:`top_values` of a quasi-identifier counted by its codes: at ``level`` 0 of
    ``values`` (the column, whose codes must be :func:`exact_codes`: each code's value is
    read from one row of it), else of its labels at ``level`` (what the release holds);
    over the rows ``rows`` only (all when None)."""
    codes = g.codes if rows is None else g.codes[rows]
    counts = np.bincount(codes, minlength=len(g.labels[0])).astype(np.int64)
    if level == 0 and values is not None:
        present = np.flatnonzero(counts)
        where = np.zeros(len(g.labels[0]), dtype=np.int64)
        where[g.codes] = np.arange(len(g.codes))  # some row of each code: all hold its value
        picked = values.gather(where[present]).alias(_V)
        return _ordered(pl.DataFrame([picked, pl.Series(_N, counts[present])]), order)
    at_level = np.bincount(g.maps[level], weights=counts, minlength=len(g.labels[level]))
    present = np.flatnonzero(at_level)
    labels = pl.Series(_V, list(g.labels[level]), dtype=pl.String).gather(present)
    return _ordered(pl.DataFrame([labels, pl.Series(_N, at_level[present].astype(np.int64))]),
                    order)  # fmt: skip


def top_from_counts(
    g: Generalisation, level: int, counts: npt.NDArray[np.integer], order: Sequence[str] | None,
    *, values: bool = False,
) -> dict[str, int]:  # fmt: skip
    """:func:`top_values` from the rows counted per level-0 code (``counts``, e.g. summed
    over the search's frequency table): of ``g``'s labels at ``level``, or with ``values``
    of the column's own values (``g.raw``, whose codes must be :func:`exact_codes`)."""
    if values:
        if g.raw is None or g.raw_codes is None:
            raise ValueError("the values need a generalisation that kept them")
        n = counts[g.raw_codes].astype(np.int64)
        raw = g.raw.alias(_V)
        if g.has_missing:  # the missing value's code is the last at level 0
            raw = pl.concat([raw, pl.Series(_V, [None], dtype=raw.dtype)])  # g.raw unchanged
            n = np.append(n, np.int64(counts[len(g.labels[0]) - 1]))
        present = n > 0
        return _ordered(pl.DataFrame([raw.filter(pl.Series(present)),
                                      pl.Series(_N, n[present])]), order)  # fmt: skip
    at_level = np.bincount(g.maps[level], weights=counts, minlength=len(g.labels[level]))
    present_codes = np.flatnonzero(at_level)
    labels = pl.Series(_V, list(g.labels[level]), dtype=pl.String).gather(present_codes)
    return _ordered(
        pl.DataFrame([labels, pl.Series(_N, at_level[present_codes].astype(np.int64))]), order
    )
