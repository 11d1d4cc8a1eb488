"""Resolving identifiers to the stable person key through the identity-history table.

A person may move from an H- or D-number to a fødselsnummer, or get a new fødselsnummer
(design.md §1.2). The trusted third party pseudonymises the *current* identifier, so that a
person's pseudonym does not change with their number. :class:`IdentityHistory` maps every
old identifier to its current one, following chains (D → fnr → new fnr) with whole-column
joins. An old identifier with conflicting successors in its newest version, or a chain that
loops, is *ambiguous*: such identifiers are rejected, never passed through as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from koble.errors import ColumnError
from koble.registries.identifiers.column import validate_column
from koble.tables import read_table, require_column

__all__ = ["IdentityHistory", "Resolution"]

MAX_CHAIN = 32


@dataclass(frozen=True)
class Resolution:
    """Per input row: the resolved identifier, whether history changed it, and whether the
    history was ambiguous for it (then ``resolved`` is null)."""

    resolved: pl.Series
    changed: pl.Series
    ambiguous: pl.Series


class IdentityHistory:
    """Old identifier → current identifier, flattened, with ambiguous old identifiers set apart."""

    def __init__(self, mapping: pl.DataFrame, ambiguous: pl.Series) -> None:
        self._mapping = mapping  # columns old, current: one row per old id, fully resolved
        self._ambiguous = ambiguous

    @classmethod
    def from_frame(
        cls,
        frame: pl.DataFrame,
        *,
        path: str | Path = "<history>",
        old: str = "old_id",
        current: str = "current_id",
        version: str = "version",
    ) -> IdentityHistory:
        """Build from a table with old id, current id and (optionally) a version column."""
        columns = {
            "old": require_column(frame, old, path),
            "current": require_column(frame, current, path),
        }
        for name, series in columns.items():
            checked = validate_column(series.cast(pl.String), test_numbers=True)
            bad = (~checked["valid"]).arg_true()
            if len(bad):
                column = old if name == "old" else current
                raise ColumnError(
                    f"{len(bad)} invalid identifiers in the identity history, first at this row",
                    path=path, column=column, row=int(bad[0]) + 1,
                )  # fmt: skip
            columns[name] = checked["compact"]
        table = pl.DataFrame(columns).with_columns(
            (frame[version].cast(pl.Int64) if version in frame.columns else pl.lit(1)).alias("v")
        )
        newest = table.filter(pl.col("v") == pl.col("v").max().over("old"))
        per_old = newest.group_by("old").agg(
            pl.col("current").n_unique().alias("n"), pl.col("current").first()
        )
        ambiguous = per_old.filter(pl.col("n") > 1)["old"]
        mapping = per_old.filter(pl.col("n") == 1).select("old", "current")
        mapping, looping = _flatten(mapping)
        return cls(mapping, pl.concat([ambiguous, looping]).unique())

    @classmethod
    def read(cls, path: str | Path, **columns: str) -> IdentityHistory:
        return cls.from_frame(read_table(path), path=path, **columns)

    @property
    def size(self) -> int:
        return self._mapping.height

    @property
    def mapping(self) -> pl.DataFrame:
        """Every old identifier (``old``) with the current one it resolves to (``current``),
        chains followed; ambiguous and looping old identifiers are not in it."""
        return self._mapping

    def aliases(self, current: pl.Series) -> pl.DataFrame:
        """Every old identifier (``old``) that resolves to one of ``current`` (``current``)."""
        wanted = pl.DataFrame({"current": current.cast(pl.String)}).unique()
        return self._mapping.join(wanted, on="current", how="semi").select("old", "current")

    def resolve(self, compact: pl.Series) -> Resolution:
        """Resolve a column of valid, compact identifiers (row order kept)."""
        frame = pl.DataFrame({"old": compact.cast(pl.String)}).with_row_index("_row")
        joined = frame.join(self._mapping, on="old", how="left").sort("_row")
        ambiguous = joined["old"].is_in(self._ambiguous.implode()).fill_null(False)
        resolved = pl.when(ambiguous.not_()).then(joined["current"].fill_null(joined["old"]))
        resolved_series = pl.select(resolved.alias("resolved")).to_series()
        return Resolution(
            resolved=resolved_series,
            changed=joined["current"].is_not_null(),
            ambiguous=ambiguous,
        )


def _flatten(mapping: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series]:
    """Follow chains until every current id is final; ids on a loop are returned apart."""
    for _ in range(MAX_CHAIN):
        step = mapping.join(
            mapping.rename({"old": "current", "current": "next"}), on="current", how="left"
        )
        if step["next"].null_count() == step.height:
            return mapping, pl.Series("old", [], dtype=pl.String)
        mapping = step.select("old", pl.col("next").fill_null(pl.col("current")).alias("current"))
    looping = mapping.join(mapping.rename({"old": "current", "current": "next"}), on="current")
    bad = looping["old"]
    return mapping.filter(~pl.col("old").is_in(bad.implode())), bad
