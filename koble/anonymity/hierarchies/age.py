"""Age: single years, top-coding, then 5-, 10- and 20-year bands, then ``*``.

The levels are what a registry owner delivering aggregated data expects (IPLOS, NPR and
KPR tables use ``0-4``, ``5-9``, ..., ``85-89``, ``90+``):

====================  ==========================================================
level                 age 37 / age 93 with the defaults (bands 5, 10, 20; top 90)
====================  ==========================================================
``age``               ``37`` / ``93``
``age (90+)``         ``37`` / ``90+``  single years, the oldest top-coded
``5-year``            ``35-39`` / ``90+``
``10-year``           ``30-39`` / ``90+``
``20-year``           ``20-39`` / ``90+``
``*``                 ``*``
====================  ==========================================================

Top-coding applies at every level above ``age``: the oldest are few and easy to single out,
so ``90+`` is one group however wide the bands. A band cut by the top code is labelled by
what remains of it (top 90, 20-year bands: ``80-89`` then ``90+``). Bands are aligned at 0
and each width must divide the next, so the levels nest. ``top=None`` drops top-coding
(and its level).

Birth dates instead of ages: :meth:`AgeHierarchy.from_birth_dates` takes a reference date
(the date of the extract, or the end of the study period). Level 0 is then the birth date
itself, level 1 the age in whole years at the reference date, and the bands follow. Age is
computed over the distinct birth dates, vectorised: the difference in years, less one if the
birthday has not yet come in the reference year (someone born on 29 February turns a year
older on 1 March in other years). A birth date after the reference date is an error.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from koble.anonymity.generalisation import Generalisation
from koble.anonymity.hierarchies.base import TOP, Canonicaliser, Encoded, build, reject
from koble.anonymity.hierarchies.dates import to_dates
from koble.errors import ColumnError, UsageError

__all__ = ["MAX_AGE", "AgeHierarchy"]

#: The widest age band and the highest top code: older than anyone has lived.
MAX_AGE = 150


@dataclass(frozen=True)
class AgeHierarchy:
    """Ages (whole years, or birth dates with ``reference_date``) to bands to ``*``."""

    bands: tuple[int, ...] = (5, 10, 20)
    top: int | None = 90
    reference_date: dt.date | None = None

    def __post_init__(self) -> None:
        if any(width < 1 for width in self.bands):
            raise UsageError(f"age bands must be positive, got {self.bands}")
        if any(width > MAX_AGE for width in self.bands) or (self.top or 0) > MAX_AGE:
            # wider bands say nothing more, and past Int64 they overflow the labels
            raise UsageError(f"age bands and the top code must be at most {MAX_AGE} years")
        for narrow, wide in zip(self.bands, self.bands[1:], strict=False):
            if wide <= narrow or wide % narrow:
                raise UsageError(
                    f"each age band must divide the next so the levels nest, got {self.bands}"
                )
        if self.top is not None and self.top < 1:
            raise UsageError(f"the top code must be a positive age, got {self.top}")

    @classmethod
    def from_birth_dates(
        cls,
        reference_date: dt.date,
        bands: tuple[int, ...] = (5, 10, 20),
        top: int | None = 90,
    ) -> AgeHierarchy:
        """A hierarchy for a birth-date column: age at ``reference_date``, then bands."""
        return cls(bands=bands, top=top, reference_date=reference_date)

    @property
    def level_names(self) -> tuple[str, ...]:
        """Names of the levels, finest first."""
        names: list[str] = []
        if self.reference_date is not None:
            names.append("birth date")
        names.append("age")
        if self.top is not None:
            names.append(f"age ({self.top}+)")
        names.extend(f"{width}-year" for width in self.bands)
        names.append(TOP)
        return tuple(names)

    def apply(self, column: pl.Series, *, encoded: Encoded | None = None) -> Generalisation:
        """Generalise an age column (or a birth-date column, with a reference date)."""
        reference = self.reference_date
        if reference is None:
            return build(column, self.level_names, _ages(column), self._age_labels, encoded=encoded)

        def birth_labels(births: pl.Series) -> Sequence[pl.Series]:
            ages = _age_at(births, reference)
            return [births.dt.strftime("%Y-%m-%d"), *self._age_labels(ages)]

        return build(
            column, self.level_names, _births(column, reference), birth_labels, encoded=encoded
        )

    def _age_labels(self, ages: pl.Series) -> Sequence[pl.Series]:
        frame = pl.DataFrame({"a": ages.cast(pl.Int64)})
        a = pl.col("a")
        exprs = [a.cast(pl.String).alias("age")]
        if self.top is not None:
            top_label = pl.lit(f"{self.top}+")
            exprs.append(
                pl.when(a >= self.top).then(top_label).otherwise(a.cast(pl.String)).alias("top")
            )
        for width in self.bands:
            low = (a // width) * width
            high = low + (width - 1)
            if self.top is not None:
                high = pl.min_horizontal(high, pl.lit(self.top - 1))
            band = (
                pl.when(low == high)
                .then(low.cast(pl.String))
                .otherwise(pl.format("{}-{}", low, high))
            )
            if self.top is not None:
                band = pl.when(a >= self.top).then(pl.lit(f"{self.top}+")).otherwise(band)
            exprs.append(band.alias(f"b{width}"))
        exprs.append(pl.lit(TOP).alias("top_level"))
        labelled = frame.select(exprs)
        return [labelled.get_column(name) for name in labelled.columns]


def _ages(column: pl.Series) -> Canonicaliser:
    """Ages as Int64: integers as they are, whole floats and digit strings converted."""

    def canonical(raw: pl.Series) -> pl.Series:
        dtype = raw.dtype
        if dtype.is_integer():
            ages = raw.cast(pl.Int64)
        elif dtype.is_float():
            whole = raw.is_finite() & (raw == raw.floor())
            if not whole.all():
                raise reject(column, raw.filter(~whole), "is not an age in whole years")
            ages = raw.cast(pl.Int64)
        elif dtype == pl.String:
            ages = raw.str.strip_chars().cast(pl.Int64, strict=False)
            if ages.null_count():
                raise reject(column, raw.filter(ages.is_null()), "is not an age in whole years")
        else:
            raise ColumnError(
                f"an age column must hold whole years, not {dtype}; for birth dates give "
                "a reference date (age:reference_date=YYYY-MM-DD)",
                column=column.name,
            )
        negative = ages < 0
        if negative.any():
            raise reject(column, raw.filter(negative), "is not an age (negative)")
        return ages

    return canonical


def _births(column: pl.Series, reference: dt.date) -> Canonicaliser:
    """Birth dates as Date, none after the reference date."""
    dates = to_dates(column)

    def canonical(raw: pl.Series) -> pl.Series:
        births = dates(raw)
        late = births > reference
        if late.any():
            raise reject(column, raw.filter(late), f"is a birth date after {reference}")
        return births

    return canonical


def _age_at(births: pl.Series, reference: dt.date) -> pl.Series:
    """Age in whole years at ``reference`` for each (distinct) birth date."""
    frame = pl.DataFrame({"b": births})
    b = pl.col("b")
    before_birthday = (b.dt.month() > reference.month) | (
        (b.dt.month() == reference.month) & (b.dt.day() > reference.day)
    )
    age = pl.lit(reference.year) - b.dt.year().cast(pl.Int64) - before_birthday.cast(pl.Int64)
    return frame.select(age.alias("age")).get_column("age")
