"""Tied quasi-identifiers: several columns generalised together, always to the same level.

A one-row-per-person table (:mod:`koble.anonymity.person_shape`) has many columns of one
kind: a first and a last date per service type, a count per service type. As separate
quasi-identifiers they would multiply the lattice (ten date columns of six levels each make
6**10 nodes), and a release with the first home-nursing date at the day and the last at the
year makes little sense anyway. :func:`tie` makes them ONE quasi-identifier whose level l
generalises every member to its level l (all dates at ``year``, say): the lattice gains one
dimension, not ten.

A :class:`TiedGeneralisation` is a :class:`~koble.anonymity.generalisation.Generalisation`,
so the frequency tables, metrics and search take it as they are. Its level-l code is the
dense code of the tuple of the members' level-l codes, numbered in lexicographic order of
the members' codes (the first member most significant). It is consistent by construction:
two rows sharing every member's code at level l share them at every level above, since each
member is consistent. Its labels join the members' labels with `` | ``; a release writes the
members' own columns instead (:meth:`TiedGeneralisation.columns`), and
:meth:`~koble.anonymity.search.SearchResult.apply` does so.

The codes are found without looping over rows: the members' codes are folded into one int64
key by mixed radix (re-coded densely whenever the key space would pass 2**62), then
numbered with ``np.unique``; the levels above 0 work on the distinct level-0 tuples only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from koble.anonymity.generalisation import Codes, Generalisation
from koble.errors import UsageError

__all__ = ["SEPARATOR", "TiedGeneralisation", "tie"]

SEPARATOR = " | "
_LIMIT = 1 << 62
Int64s = npt.NDArray[np.int64]


@dataclass(frozen=True)
class TiedGeneralisation(Generalisation):
    """Several columns generalised as one quasi-identifier (all at the same level).

    ``members`` are the columns' own generalisations; ``name`` names the tie (for reports
    and the search), not a column of the frame.
    """

    members: tuple[Generalisation, ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        """The members' columns, in order."""
        return tuple(m.name for m in self.members)

    def columns(self, level: int) -> list[pl.Series]:
        """Every member column's labels at ``level``, each named after its column."""
        return [m.column(level) for m in self.members]


def tie(name: str, members: Sequence[Generalisation]) -> TiedGeneralisation:
    """One quasi-identifier over ``members``, which share one level.

    The members must be over the same rows, have distinct names and the same number of
    levels; anything else is a :class:`~koble.errors.UsageError` naming the tie (and the
    member, by its column name).
    """
    members = tuple(members)
    if not members:
        raise UsageError(f"the tied quasi-identifier {name!r} needs at least one column")
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise UsageError(f"the columns of the tied quasi-identifier {name!r} must be distinct")
    for m in members[1:]:
        if len(m.codes) != len(members[0].codes):
            raise UsageError(
                f"the columns of the tied quasi-identifier {name!r} differ in length "
                f"(column {m.name!r})"
            )
        if m.height != members[0].height:
            raise UsageError(
                f"the columns of the tied quasi-identifier {name!r} must have the same number "
                f"of levels: {members[0].name!r} has {members[0].height + 1}, "
                f"{m.name!r} has {m.height + 1}"
            )

    # level 0, over the rows: the distinct tuples of member codes, and one row holding each
    row_codes, first = _dense(
        [m.codes for m in members], [len(m.labels[0]) for m in members], len(members[0].codes)
    )
    distinct = [m.codes[first] for m in members]  # level-0 codes of each distinct tuple
    maps: list[Codes] = []
    labels: list[tuple[str, ...]] = []
    for level in range(members[0].height + 1):
        at_level = [m.maps[level][codes] for m, codes in zip(members, distinct, strict=True)]
        cards = [len(m.labels[level]) for m in members]
        level_codes, representative = _dense(at_level, cards, len(first))
        maps.append(level_codes)
        labels.append(_labels(members, level, [c[representative] for c in at_level]))
    return TiedGeneralisation(
        name=name,
        level_names=_level_names(members),
        codes=row_codes,
        labels=tuple(labels),
        maps=tuple(maps),
        members=members,
    )


def _dense(columns: Sequence[Codes], cards: Sequence[int], n: int) -> tuple[Codes, Int64s]:
    """Dense codes of the tuples ``(columns[0][i], columns[1][i], ...)`` in lexicographic
    order, and for each code the first index holding it."""
    key = np.zeros(n, dtype=np.int64)
    span = 1
    for column, card in zip(columns, cards, strict=True):
        card = max(card, 1)
        if span * card >= _LIMIT:  # re-code densely (order kept) before the key overflows
            key = np.unique(key, return_inverse=True)[1].astype(np.int64).ravel()
            span = int(key.max()) + 1 if n else 1
        key = key * card + column.astype(np.int64)
        span *= card
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return inverse.astype(np.int32).ravel(), first.astype(np.int64)


def _labels(
    members: Sequence[Generalisation], level: int, codes: Sequence[Codes]
) -> tuple[str, ...]:
    """The label of each distinct tuple: the members' labels joined (vectorised)."""
    if not len(codes[0]):
        return ()
    parts = [
        pl.Series(list(m.labels[level]), dtype=pl.String).gather(c)
        for m, c in zip(members, codes, strict=True)
    ]
    joined = pl.DataFrame({str(i): p for i, p in enumerate(parts)}).select(
        pl.concat_str(pl.all(), separator=SEPARATOR)
    )
    return tuple(joined.to_series().to_list())


def _level_names(members: Sequence[Generalisation]) -> tuple[str, ...]:
    """The members' level names; where they differ, the distinct names joined by ``/``."""
    return tuple(
        "/".join(dict.fromkeys(m.level_names[level] for m in members))
        for level in range(members[0].height + 1)
    )
