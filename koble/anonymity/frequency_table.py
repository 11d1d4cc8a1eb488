"""The frequency table a search works on, and the lookups between a hierarchy's levels.

A :class:`FrequencyTable` holds one entry per distinct combination of codes (with its count),
sorted by a mixed-radix int64 key (:mod:`koble.anonymity.frequency_keys`); its codes are read
off the keys when first asked for. :class:`Lookups` map each QI's codes from one level to a
higher one. How tables are built and rolled up is :mod:`koble.anonymity.frequency`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from koble.anonymity.generalisation import Codes, Generalisation

__all__ = ["Floats", "FrequencyTable", "Int64s", "Lookups"]

Int64s = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class FrequencyTable:
    """Counts per distinct combination of codes at ``levels``, sorted by ``keys``.

    ``codes[i][j]`` is entry j's code for QI i at ``levels[i]``; ``sensitive[j]`` its
    sensitive code (or ``None`` when no sensitive attribute is tracked); ``counts[j]`` the
    number of rows. Entries j and j' are in the same equivalence class exactly when
    ``keys[j] // radix == keys[j'] // radix``.

    The codes are read off the keys when first asked for, then kept: ``place[i]`` is QI i's
    ``(divisor, cardinality)`` in the mixed-radix key, and the sensitive code is the key's
    lowest digit. Most tables a search makes are only counted, never rolled up from, so
    gathering every QI's codes for each would be wasted work. Only when the keys had to be
    re-coded densely (``place`` is ``None``) are the codes stored (``stored``).
    """

    levels: tuple[int, ...]
    counts: Int64s
    keys: Int64s
    radix: int
    tracked: bool
    #: Each QI's number of values at ``levels`` (``None``: the keys were re-coded densely).
    cards: tuple[int, ...] | None
    stored: tuple[Codes, ...] | None = None
    _codes: dict[int, Codes] = field(default_factory=dict, repr=False)
    _digits: dict[int, Int64s] = field(default_factory=dict, repr=False)
    _floats: dict[int, Floats] = field(default_factory=dict, repr=False)
    _place: list[tuple[tuple[int, int], ...]] = field(default_factory=list, repr=False)

    @property
    def size(self) -> int:
        """Number of entries (distinct combinations), not rows."""
        return len(self.counts)

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays with every QI's codes (int64) and the sensitive codes
        decoded, for the cache budget."""
        columns = 8 * len(self.levels) + (4 if self.tracked else 0)
        return self.counts.nbytes + self.keys.nbytes + self.size * columns

    @property
    def place(self) -> tuple[tuple[int, int], ...] | None:
        """Each QI's ``(divisor, cardinality)`` in the mixed-radix key (the first QI most
        significant, the sensitive digit lowest); ``None`` when the keys were re-coded."""
        if self.cards is None:
            return None
        if not self._place:
            place, divisor = [], self.radix
            for card in reversed(self.cards):
                place.append((divisor, card))
                divisor *= max(card, 1)
            self._place.append(tuple(reversed(place)))
        return self._place[0]

    def digits(self, qi: int) -> Int64s:
        """Every entry's code for QI ``qi`` as int64, as keys are built from (read off the
        keys once, then kept)."""
        found = self._digits.get(qi)
        if found is None:
            place = self.place
            if self.stored is not None or place is None:
                assert self.stored is not None
                found = self.stored[qi].astype(np.int64)
            else:
                divisor, card = place[qi]
                if card <= 1:
                    found = np.zeros(self.size, dtype=np.int64)
                else:
                    found = (self.keys // divisor) % card
            self._digits[qi] = found
        return found

    def code(self, qi: int) -> Codes:
        """Every entry's code for QI ``qi``."""
        if self.stored is not None:
            return self.stored[qi]
        found = self._codes.get(qi)
        if found is None:
            found = self._codes[qi] = self.digits(qi).astype(np.int32)
        return found

    def codes_at(self, qi: int, entries: Int64s) -> Int64s:
        """The codes for QI ``qi`` of the given entries only (read off their keys, unless
        all codes are at hand): a metric wants those of the few suppressed entries."""
        found = self._digits.get(qi)
        place = self.place
        if found is not None or self.stored is not None or place is None:
            return self.digits(qi)[entries]
        divisor, card = place[qi]
        return (self.keys[entries] // divisor) % max(card, 1)

    @property
    def codes(self) -> tuple[Codes, ...]:
        """Every QI's codes, entry by entry."""
        return tuple(self.code(i) for i in range(len(self.levels)))

    @property
    def sensitive(self) -> Codes | None:
        """Every entry's sensitive code (the key's lowest digit), or ``None`` if untracked."""
        if not self.tracked:
            return None
        found = self._codes.get(-1)
        if found is None:
            found = self._codes[-1] = (self.keys % self.radix).astype(np.int32)
        return found

    @property
    def weights(self) -> Floats:
        """The counts as floats, for ``np.bincount`` (kept: a source is rolled up often)."""
        found = self._floats.get(0)
        if found is None:
            found = self._floats[0] = self.counts.astype(np.float64)
        return found


class Lookups:
    """Per-QI lookup tables from codes at one level to codes at a higher level (memoised)."""

    def __init__(self, qis: Sequence[Generalisation], n_sensitive: int = 1) -> None:
        self.qis = tuple(qis)
        self.cards = tuple(tuple(len(lab) for lab in g.labels) for g in self.qis)
        self.n_sensitive = n_sensitive
        self._memo: dict[tuple[int, int, int], Int64s] = {}

    def lut(self, qi: int, src: int, dst: int) -> Int64s:
        """Codes at ``dst`` indexed by codes at ``src`` (well defined by consistency), as
        int64 like the keys they go into."""
        key = (qi, src, dst)
        found = self._memo.get(key)
        if found is None:
            maps = self.qis[qi].maps
            found = np.zeros(self.cards[qi][src], dtype=np.int64)
            found[maps[src]] = maps[dst]
            self._memo[key] = found
        return found
