"""Dates: day, month, quarter, year, multi-year period, ``*``.

==========  ===============  =================================================
level       2021-03-15       note
==========  ===============  =================================================
``day``     ``2021-03-15``   ISO date
``month``   ``2021-03``
``quarter`` ``2021-Q1``
``year``    ``2021``
``period``  ``2020-2024``    ``period_years`` long, aligned to ``period_start``
``*``       ``*``
==========  ===============  =================================================

Accepted columns: ``Date``; ``Datetime`` (read as its calendar date: the time of day is
dropped, the day being the finest level this hierarchy offers); ISO date strings
(``YYYY-MM-DD``; anything else is an error naming the row).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from koble.anonymity.generalisation import Generalisation
from koble.anonymity.hierarchies.base import TOP, Canonicaliser, Encoded, build, reject
from koble.errors import ColumnError, UsageError

__all__ = ["DateHierarchy", "to_dates"]


def to_dates(column: pl.Series) -> Canonicaliser:
    """A canonicaliser turning Date, Datetime or ISO-string values into ``Date``."""

    def canonical(raw: pl.Series) -> pl.Series:
        dtype = raw.dtype
        if dtype == pl.Date:
            return raw
        if isinstance(dtype, pl.Datetime):
            return raw.dt.date()
        if dtype == pl.String:
            text = raw.str.strip_chars()
            parsed = text.str.to_date("%Y-%m-%d", strict=False)
            bad = parsed.is_null() | (text.str.len_chars() != 10)
            if bad.any():
                raise reject(column, raw.filter(bad), "is not an ISO date (YYYY-MM-DD)")
            return parsed
        raise ColumnError(
            f"a date column must hold dates or ISO date strings, not {dtype}",
            column=column.name,
        )

    return canonical


@dataclass(frozen=True)
class DateHierarchy:
    """Dates to month, quarter, year and ``period_years``-year periods, then ``*``."""

    period_years: int = 5
    period_start: int = 2000

    def __post_init__(self) -> None:
        if self.period_years < 2:
            raise UsageError(
                f"a period must span at least two years, got {self.period_years} "
                "(the year level already covers one)"
            )
        # years are 1-9999 (Python's and Polars' dates): a period or start past them says
        # nothing more, and overflows the labels
        if self.period_years > 9999 or not -9999 <= self.period_start <= 9999:
            raise UsageError("a period must be at most 9999 years and start in a year -9999..9999")

    @property
    def level_names(self) -> tuple[str, ...]:
        """``day, month, quarter, year, N-year period, *``."""
        return ("day", "month", "quarter", "year", f"{self.period_years}-year period", TOP)

    def apply(self, column: pl.Series, *, encoded: Encoded | None = None) -> Generalisation:
        """Generalise a date column."""
        return build(column, self.level_names, to_dates(column), self._labels, encoded=encoded)

    def _labels(self, days: pl.Series) -> Sequence[pl.Series]:
        d = pl.col("d")
        year = d.dt.year().cast(pl.Int64)
        first = (
            pl.lit(self.period_start)
            + ((year - self.period_start) // self.period_years) * self.period_years
        )
        labelled = pl.DataFrame({"d": days}).select(
            d.dt.strftime("%Y-%m-%d").alias("day"),
            d.dt.strftime("%Y-%m").alias("month"),
            pl.format("{}-Q{}", year, d.dt.quarter()).alias("quarter"),
            year.cast(pl.String).alias("year"),
            pl.format("{}-{}", first, first + (self.period_years - 1)).alias("period"),
            pl.lit(TOP).alias("top"),
        )
        return [labelled.get_column(name) for name in labelled.columns]
