"""ATC drug codes: the five ATC levels, then ``*``.

An ATC code's levels are its prefixes of length 7, 5, 4, 3 and 1 (WHO Collaborating Centre
for Drug Statistics Methodology):

==============================  ============  ========
level                           ``N02BE01``   length
==============================  ============  ========
``chemical substance``          ``N02BE01``   7
``chemical subgroup``           ``N02BE``     5
``pharmacological subgroup``    ``N02B``      4
``therapeutic subgroup``        ``N02``       3
``anatomical main group``       ``N``         1
``*``                           ``*``
==============================  ============  ========

Values are upper-cased and stripped. A code recorded only to a coarser level (``N02B`` in a
prescription register that lacks the substance) is allowed: it is its own group at the
finer levels and joins its parents above. Anything not shaped like an ATC code of one of
the five lengths is an error naming the row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from koble.anonymity.generalisation import Generalisation
from koble.anonymity.hierarchies.base import TOP, Canonicaliser, Encoded, build, reject, to_text

__all__ = ["AtcHierarchy"]

_FORM = r"^[A-Z](?:[0-9]{2}(?:[A-Z](?:[A-Z](?:[0-9]{2})?)?)?)?$"
_LENGTHS = (7, 5, 4, 3, 1)


@dataclass(frozen=True)
class AtcHierarchy:
    """ATC codes to their five levels."""

    @property
    def level_names(self) -> tuple[str, ...]:
        """The WHO names of the five ATC levels, finest first, then ``*``."""
        return (
            "chemical substance",
            "chemical subgroup",
            "pharmacological subgroup",
            "therapeutic subgroup",
            "anatomical main group",
            TOP,
        )

    def apply(self, column: pl.Series, *, encoded: Encoded | None = None) -> Generalisation:
        """Generalise a column of ATC codes."""
        return build(column, self.level_names, _normalise(column), _labels, encoded=encoded)


def _normalise(column: pl.Series) -> Canonicaliser:
    def canonical(raw: pl.Series) -> pl.Series:
        code = to_text(raw).str.strip_chars().str.to_uppercase()
        bad = ~code.str.contains(_FORM)
        if bad.any():
            raise reject(column, raw.filter(bad), "is not an ATC code (like N02BE01)")
        return code

    return canonical


def _labels(codes: pl.Series) -> Sequence[pl.Series]:
    prefixes = [codes.str.slice(0, length) for length in _LENGTHS]
    return [*prefixes, pl.Series([TOP] * len(codes), dtype=pl.String)]
