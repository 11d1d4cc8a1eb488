"""Kommune to fylke to health region (or landsdel) to Norway to ``*``.

============  ============================  ===========================================
level         kommune ``3005`` (Drammen,    how
              2020-2023 code)
============  ============================  ===========================================
``kommune``   ``3005``                      the kommunenummer, 4 digits
``fylke``     ``30`` (as coded) or ``33``   first two digits, or the fylke the kommune
              (``vintage=2024``)            lies in under the chosen vintage
``region``    ``Helse Sør-Øst``             the fylke's regional health authority (or
                                            SSB landsdel with ``region="landsdel"``)
``land``      ``Norge``
``*``         ``*``
============  ============================  ===========================================

Codes of every vintage from 2016 to 2024 are accepted, mixed in one column if need be (a
registry extract spanning the 2020 and 2024 reforms holds ``1201``, ``4601`` and ``0602``,
``3005``, ``3301`` side by side). ``vintage=None`` (the default) keeps the fylke *as coded*
(the first two digits), so ``0602`` is in ``06`` Buskerud, ``3005`` in ``30`` Viken and
``3301`` in ``33`` Buskerud. ``vintage=2024`` (or ``2020``) maps every code to the fylke its
kommune belongs to in that structure, from the correspondence in
``koble/anonymity/data/kommuner_2016_2024.csv``; all three Drammen codes are then in ``33``.
Either way the region level is a function of the fylke, so the hierarchy nests.

Integer columns are read as kommunenummer with the leading zero restored (``301`` is
``0301``). A code that was never a kommune in 2016-2024 is an error naming the row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import polars as pl

from koble.anonymity.generalisation import Generalisation
from koble.anonymity.hierarchies.base import TOP, Canonicaliser, Encoded, build, reject
from koble.anonymity.hierarchies.reference import reference_table
from koble.errors import ColumnError, UsageError

__all__ = ["COUNTRY", "VINTAGES", "KommuneHierarchy"]

COUNTRY = "Norge"
VINTAGES = (2020, 2024)
"""Structures the fylke level can be harmonised to (``None`` keeps the fylke as coded)."""

Region = Literal["helseregion", "landsdel"]


@dataclass(frozen=True)
class KommuneHierarchy:
    """Kommune codes (any vintage 2016-2024) to fylke, region, ``Norge`` and ``*``."""

    vintage: int | None = None
    region: Region = "helseregion"

    def __post_init__(self) -> None:
        if self.vintage is not None and self.vintage not in VINTAGES:
            raise UsageError(
                f"kommune codes can be harmonised to the fylker of {VINTAGES}, "
                f"not {self.vintage}; leave the vintage out to keep the fylke as coded"
            )
        if self.region not in ("helseregion", "landsdel"):
            raise UsageError(f"region must be 'helseregion' or 'landsdel', not {self.region!r}")

    @property
    def level_names(self) -> tuple[str, ...]:
        """``kommune, fylke, helseregion|landsdel, land, *``."""
        fylke = "fylke" if self.vintage is None else f"fylke ({self.vintage})"
        return ("kommune", fylke, self.region, "land", TOP)

    def apply(self, column: pl.Series, *, encoded: Encoded | None = None) -> Generalisation:
        """Generalise a column of kommunenummer."""
        return build(
            column, self.level_names, _kommune_codes(column), self._labels, encoded=encoded
        )

    def _labels(self, codes: pl.Series) -> Sequence[pl.Series]:
        kommuner = reference_table("kommuner_2016_2024.csv")
        if self.vintage is None:
            fylke = codes.str.slice(0, 2)
        else:
            fylke = codes.replace_strict(
                kommuner.get_column("code"), kommuner.get_column(f"fylke_{self.vintage}")
            )
        fylker = reference_table("fylker.csv")
        region = fylke.replace_strict(fylker.get_column("code"), fylker.get_column(self.region))
        n = len(codes)
        return [
            codes,
            fylke,
            region,
            pl.Series([COUNTRY] * n, dtype=pl.String),
            pl.Series([TOP] * n, dtype=pl.String),
        ]


def _kommune_codes(column: pl.Series) -> Canonicaliser:
    """4-digit kommunenummer strings, checked against every code in use 2016-2024."""

    def canonical(raw: pl.Series) -> pl.Series:
        if raw.dtype.is_integer():
            if (raw < 0).any():
                raise reject(column, raw.filter(raw < 0), "is not a kommunenummer")
            codes = raw.cast(pl.String).str.zfill(4)
        elif raw.dtype == pl.String:
            codes = raw
        else:
            raise ColumnError(
                f"a kommune column must hold 4-digit codes, not {raw.dtype}", column=column.name
            )
        known = codes.is_in(reference_table("kommuner_2016_2024.csv").get_column("code").implode())
        if not known.all():
            raise reject(column, raw.filter(~known), "is not a kommunenummer in use 2016-2024")
        return codes

    return canonical
