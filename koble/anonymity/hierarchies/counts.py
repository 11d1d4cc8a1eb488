"""Counts (how many services of one type a person had): exact, banded, any/none, ``*``.

=============  ======================  ==============================================
level          7 / 0 (default bands)   note
=============  ======================  ==============================================
``count``      ``7`` / ``0``           the exact count
``band``       ``5-9`` / ``0``         bands from ``bands`` (lower bounds; default
                                       1, 2, 5, 10 give ``1``, ``2-4``, ``5-9``,
                                       ``10+``); 0 stays ``0``
``any``        ``any`` / ``none``      whether the person had any
``*``          ``*``
=============  ======================  ==============================================

Made for the ``n_<type>`` columns of the one-row-per-person delivery shape
(:mod:`koble.anonymity.person_shape`), but any column of non-negative whole numbers will do:
integers, whole floats or digit strings (a CSV read as text). Anything else is an error
naming the column and the first bad row, never the value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from koble.anonymity.generalisation import Generalisation
from koble.anonymity.hierarchies.base import TOP, Canonicaliser, Encoded, build, reject
from koble.errors import ColumnError, UsageError

__all__ = ["DEFAULT_BANDS", "CountHierarchy"]

DEFAULT_BANDS = (1, 2, 5, 10)
#: The highest band bound allowed: more says nothing, and bounds past Int64 overflow.
MAX_BOUND = 1_000_000_000


@dataclass(frozen=True)
class CountHierarchy:
    """Non-negative counts to bands (lower bounds ``bands``, starting at 1), any/none, ``*``."""

    bands: tuple[int, ...] = DEFAULT_BANDS

    def __post_init__(self) -> None:
        if not self.bands or self.bands[0] != 1:
            raise UsageError("count bands are lower bounds and must start at 1 (as in 1,2,5,10)")
        if any(b >= a for a, b in zip(self.bands[1:], self.bands, strict=False)):
            raise UsageError("count bands must be strictly ascending (as in 1,2,5,10)")
        if self.bands[-1] > MAX_BOUND:
            raise UsageError(f"count bands must be at most {MAX_BOUND:,}")

    @property
    def level_names(self) -> tuple[str, ...]:
        """``count, band, any, *``."""
        return ("count", "band", "any", TOP)

    def apply(self, column: pl.Series, *, encoded: Encoded | None = None) -> Generalisation:
        """Generalise a count column."""
        return build(column, self.level_names, _counts(column), self._labels, encoded=encoded)

    def _labels(self, counts: pl.Series) -> Sequence[pl.Series]:
        c = pl.col("c")
        band: pl.Expr = pl.lit("0")
        # nested when/then, the highest bound outermost: the highest bound <= c names the band
        bounds = list(self.bands)
        uppers = [*(b - 1 for b in bounds[1:]), None]
        for low, high in zip(bounds, uppers, strict=True):
            label = f"{low}+" if high is None else f"{low}-{high}" if high > low else str(low)
            band = pl.when(c >= low).then(pl.lit(label)).otherwise(band)
        labelled = pl.DataFrame({"c": counts}).select(
            c.cast(pl.String).alias("count"),
            band.alias("band"),
            pl.when(c > 0).then(pl.lit("any")).otherwise(pl.lit("none")).alias("any"),
            pl.lit(TOP).alias("top"),
        )
        return [labelled.get_column(name) for name in labelled.columns]


def _counts(column: pl.Series) -> Canonicaliser:
    """Counts as Int64: integers as they are, whole floats and digit strings converted."""

    def canonical(raw: pl.Series) -> pl.Series:
        dtype = raw.dtype
        if dtype == pl.String:
            counts = raw.str.strip_chars().cast(pl.Int64, strict=False)
        elif dtype.is_integer() or dtype.is_float():
            counts = raw.cast(pl.Int64, strict=False)  # out of range (or NaN): null
        else:
            raise ColumnError(
                f"a count column must hold whole numbers, not {dtype}", column=column.name
            )
        bad = counts.is_null()
        if dtype.is_float():
            bad = bad | (counts.cast(pl.Float64) != raw)  # a fraction, cut off by the cast
        if bad.any():
            raise reject(column, raw.filter(bad), "is not a whole number")
        negative = counts < 0
        if negative.any():
            raise reject(column, raw.filter(negative), "is not a count (negative)")
        return counts

    return canonical
