"""Two-level hierarchies: the value itself, or nothing (``*``).

Sex, and any categorical quasi-identifier without a meaningful grouping, can only be kept
or suppressed. The values are not checked (registries code sex as ``1``/``2``, ``M``/``K``
or ``mann``/``kvinne``); whatever the column holds is level 0, labelled by its text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from koble.anonymity.generalisation import Generalisation
from koble.anonymity.hierarchies.base import TOP, Encoded, build, to_text

__all__ = ["CategoricalHierarchy", "SexHierarchy"]


@dataclass(frozen=True)
class CategoricalHierarchy:
    """Any column: level 0 is the value (as text), level 1 is ``*``."""

    level_name: str = "value"

    @property
    def level_names(self) -> tuple[str, ...]:
        """``(level_name, "*")``."""
        return (self.level_name, TOP)

    def apply(self, column: pl.Series, *, encoded: Encoded | None = None) -> Generalisation:
        """Generalise ``column``; never fails (every value is allowed)."""

        def labels(values: pl.Series) -> Sequence[pl.Series]:
            return [values, pl.Series([TOP] * len(values), dtype=pl.String)]

        return build(column, self.level_names, to_text, labels, encoded=encoded)


def SexHierarchy() -> CategoricalHierarchy:  # noqa: N802 - reads as a class at call sites
    """Sex: kept or suppressed, nothing in between."""
    return CategoricalHierarchy(level_name="sex")
