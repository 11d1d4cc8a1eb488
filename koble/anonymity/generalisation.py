"""The contract between hierarchies and the anonymity search: a column, generalised.

A :class:`Hierarchy` (age bands, kommune → fylke → region, dates, ICD-10, ATC, a user's CSV)
turns one quasi-identifier column into a :class:`Generalisation`: every row's value as an
integer code at level 0, and for every level a lookup array from level-0 codes to that
level's codes, with a label for each code. Level 0 is the original value; the last level is
usually a single ``*``. Everything the search does (roll up counts, test k, measure loss)
works on these integer arrays, never on strings, and never re-reads the rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt
import polars as pl

if TYPE_CHECKING:
    from koble.anonymity.hierarchies.base import Encoded

__all__ = ["Codes", "Domain", "Generalisation", "Hierarchy"]

Codes = npt.NDArray[np.int32]


@dataclass(frozen=True)
class Domain:
    """The hierarchy's whole domain, for ARX's *loss* metric (its "domain shares"): ``size``
    original values, of which ``counts[level][code]`` fall under ``code`` at ``level``.

    A hierarchy that lists its domain (an ARX CSV file) may list values the data lacks:
    ARX charges a generalised value by its share of that whole domain, not of the values
    present. Without a domain the values present are the domain.
    """

    size: int
    counts: tuple[npt.NDArray[np.int64], ...]


@dataclass(frozen=True)
class Generalisation:
    """One quasi-identifier column under its hierarchy.

    ``codes[i]`` is row i's level-0 code; ``maps[level][code0]`` is the code of level-0 code
    ``code0`` at ``level`` (``maps[0]`` is the identity); ``labels[level][code]`` is that
    code's text. Codes at each level are dense (0..len(labels[level])-1), and a hierarchy
    is consistent: two level-0 codes that share a code at level l share it at every level
    above l.
    """

    name: str
    level_names: tuple[str, ...]
    codes: Codes
    labels: tuple[tuple[str, ...], ...]
    maps: tuple[Codes, ...]
    #: The hierarchy's domain, when it knows more values than the data holds.
    domain: Domain | None = None
    #: The column's distinct non-null values as read (before any canonical form), when the
    #: hierarchy kept them: the scan for identifiers and the report read these instead of
    #: passing over the rows again.
    raw: pl.Series | None = field(default=None, compare=False, repr=False)
    #: Whether the column has missing values (with ``raw``).
    has_missing: bool = field(default=False, compare=False, repr=False)
    #: The level-0 code of each of ``raw``'s values (with ``raw``): the report counts the
    #: values by their codes.
    raw_codes: Codes | None = field(default=None, compare=False, repr=False)

    @property
    def height(self) -> int:
        """The top level (number of levels minus one)."""
        return len(self.maps) - 1

    def domain_counts(self) -> Domain:
        """The domain (see :class:`Domain`): the hierarchy's when known, else the level-0
        values present, each counted once under its code at every level."""
        if self.domain is not None:
            return self.domain
        counts = tuple(
            np.bincount(m, minlength=len(lab)).astype(np.int64)
            for m, lab in zip(self.maps, self.labels, strict=True)
        )
        return Domain(len(self.labels[0]), counts)

    def at(self, level: int) -> Codes:
        """Every row's code at ``level``."""
        return self.maps[level][self.codes]

    def column(self, level: int) -> pl.Series:
        """Every row's label at ``level``, as a string column named after the QI."""
        labels = pl.Series(self.name, list(self.labels[level]), dtype=pl.String)
        return labels.gather(self.at(level))

    @property
    def column_names(self) -> tuple[str, ...]:
        """The frame columns this QI stands for: its own name (a tied QI names its members)."""
        return (self.name,)

    def columns(self, level: int) -> list[pl.Series]:
        """The released columns at ``level``: ``[column(level)]`` here; a tied QI
        (:class:`koble.anonymity.tied.TiedGeneralisation`) gives one per member column."""
        return [self.column(level)]


class Hierarchy(Protocol):
    """Something that generalises one column: built-in hierarchies and ARX-style CSV files."""

    @property
    def level_names(self) -> tuple[str, ...]: ...

    def apply(
        self,
        column: pl.Series,
        *,
        encoded: Encoded | None = None,
    ) -> Generalisation:
        """Generalise ``column``; raise :class:`koble.errors.ColumnError` for values it cannot
        place (naming the column and the first such row). ``encoded``: its distinct values
        and each row's index into them, when known already (see ``hierarchies.base``)."""
        ...
