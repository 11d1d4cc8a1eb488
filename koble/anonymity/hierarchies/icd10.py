"""ICD-10 diagnoses: code, three-character category, block, chapter, ``*``.

=============  ==============  =====================================================
level          ``J18.9``       how
=============  ==============  =====================================================
``code``       ``J18.9``       normalised: upper case, dot after the third character
``category``   ``J18``         the first three characters
``block``      ``J09-J18``     WHO block whose range holds the category
``chapter``    ``J00-J99``     the block's chapter, by its range (chapter X)
``*``          ``*``
=============  ==============  =====================================================

Input may be dotted or not (``J18.9``, ``J189``, ``j18.9``): both spellings are the same
level-0 value. Codes are checked for form (a letter, two digits, up to four more letters or
digits, as in the Norwegian edition's five-character codes) and their category must fall in
a WHO block; anything else is an error naming the row. Blocks are found by range comparison
over the distinct categories (a binary search in the sorted block starts), not by a table
of every code, so valid codes unknown to the table's edition still place correctly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import polars as pl

from koble.anonymity.generalisation import Generalisation
from koble.anonymity.hierarchies.base import TOP, Canonicaliser, Encoded, build, reject, to_text
from koble.anonymity.hierarchies.reference import reference_table

__all__ = ["Icd10Hierarchy", "icd10_block"]

_FORM = r"^[A-Z][0-9]{2}[0-9A-Z]{0,4}$"


def icd10_block(categories: pl.Series) -> pl.DataFrame:
    """Block and chapter labels for three-character categories (null where none holds it).

    Returns columns ``block`` (``J09-J18``) and ``chapter`` (``J00-J99``), one row per
    category, found by binary search in the sorted block starts.
    """
    table = _blocks()
    index = table.get_column("first").search_sorted(categories, side="right").cast(pl.Int64) - 1
    found = table.select(pl.all().gather(index.clip(lower_bound=0)))
    inside = (index >= 0) & (categories <= found.get_column("last"))
    return found.select(
        pl.when(inside).then(pl.col("block")).alias("block"),
        pl.when(inside).then(pl.col("chapter")).alias("chapter"),
    )


@cache
def _blocks() -> pl.DataFrame:
    """The WHO blocks, sorted by first category, with block and chapter range labels."""
    chapters = reference_table("icd10_chapters.csv").select(
        "chapter", pl.format("{}-{}", "first", "last").alias("chapter_range")
    )
    return (
        reference_table("icd10_blocks.csv")
        .join(chapters, on="chapter", how="left")
        .sort("first")
        .select(
            "first",
            "last",
            pl.format("{}-{}", "first", "last").alias("block"),
            pl.col("chapter_range").alias("chapter"),
        )
    )


@dataclass(frozen=True)
class Icd10Hierarchy:
    """ICD-10 codes to category, WHO block and chapter."""

    @property
    def level_names(self) -> tuple[str, ...]:
        """``code, category, block, chapter, *``."""
        return ("code", "category", "block", "chapter", TOP)

    def apply(self, column: pl.Series, *, encoded: Encoded | None = None) -> Generalisation:
        """Generalise a column of ICD-10 codes."""
        return build(column, self.level_names, _normalise(column), _labels, encoded=encoded)


def _normalise(column: pl.Series) -> Canonicaliser:
    def canonical(raw: pl.Series) -> pl.Series:
        compact = (
            to_text(raw).str.strip_chars().str.to_uppercase().str.replace_all(".", "", literal=True)
        )
        bad = ~compact.str.contains(_FORM)
        if bad.any():
            raise reject(column, raw.filter(bad), "is not an ICD-10 code (like J18.9 or J189)")
        category = compact.str.slice(0, 3)
        inside = icd10_block(category).get_column("block").is_not_null()
        if not inside.all():
            raise reject(column, raw.filter(~inside), "is not in any ICD-10 block")
        rest = compact.str.slice(3)
        dotted = pl.DataFrame({"c": category, "r": rest}).select(
            pl.when(pl.col("r") == "")
            .then(pl.col("c"))
            .otherwise(pl.format("{}.{}", "c", "r"))
            .alias("code")
        )
        return dotted.get_column("code")

    return canonical


def _labels(codes: pl.Series) -> Sequence[pl.Series]:
    category = codes.str.slice(0, 3)
    placed = icd10_block(category)
    top = pl.Series([TOP] * len(codes), dtype=pl.String)
    return [codes, category, placed.get_column("block"), placed.get_column("chapter"), top]
