"""The tables a search has evaluated, kept to roll the next nodes up from
(:class:`TableCache`)."""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np

from koble.anonymity.frequency_table import FrequencyTable

__all__ = ["TableCache"]

_NONE = np.iinfo(np.int64).max


class TableCache:
    """Tables of evaluated nodes, to roll up from: the smallest one at or below the target.

    The base table is always kept; others are kept within ``budget`` bytes, least recently
    used evicted first. Lookup is vectorised over the cached nodes' levels. Given the QIs'
    top levels (``tops``), each node's levels are also packed into one int64, a field of
    ``bit_length(top) + 1`` bits per QI whose highest bit is a guard: ``(t | G) - c`` keeps
    every guard bit exactly when each of c's levels is ≤ t's (no field borrows from the next),
    so "at or below the target" is three operations on one int64 per cached table.
    """

    def __init__(
        self, base: FrequencyTable, budget: int, tops: Sequence[int] | None = None
    ) -> None:
        self.base = base
        self.budget = budget
        self._tables: list[FrequencyTable | None] = []
        self._levels = np.zeros((64, len(base.levels)), dtype=np.int16)
        self._sizes = np.zeros(64, dtype=np.int64)
        self._used = np.zeros(64, dtype=np.int64)
        self._clock = 0
        self._bytes = 0
        self._shifts: list[int] | None = None
        self._guards = 0
        widths = [int(t).bit_length() + 1 for t in tops] if tops is not None else []
        if tops is not None and sum(widths) <= 63:
            self._shifts, offset = [], 0
            for width in widths:
                self._shifts.append(offset)
                self._guards |= 1 << (offset + width - 1)
                offset += width
        self._packed = np.zeros(64, dtype=np.int64)

    def _pack(self, levels: Sequence[int]) -> int:
        assert self._shifts is not None
        return sum(map(operator.lshift, levels, self._shifts))

    def source(self, target: tuple[int, ...]) -> FrequencyTable:
        """The smallest cached table whose levels are all ≤ ``target`` (else the base)."""
        n = len(self._tables)
        if n:
            if self._shifts is not None:
                spread = (self._pack(target) | self._guards) - self._packed[:n]
                below = (spread & self._guards) == self._guards
            else:
                below = np.all(self._levels[:n] <= np.asarray(target, dtype=np.int16), axis=1)
            sizes = np.where(below, self._sizes[:n], _NONE)
            slot = int(np.argmin(sizes))
            if below[slot] and self._sizes[slot] < self.base.size:
                self._clock += 1
                self._used[slot] = self._clock
                found = self._tables[slot]
                assert found is not None
                return found
        return self.base

    def put(self, table: FrequencyTable) -> None:
        """Remember ``table`` (evicting least recently used tables beyond the budget)."""
        if table.nbytes > self.budget:
            return
        n = len(self._tables)
        if n == len(self._sizes):
            self._levels = np.concatenate([self._levels, np.zeros_like(self._levels)])
            self._sizes = np.concatenate([self._sizes, np.zeros_like(self._sizes)])
            self._used = np.concatenate([self._used, np.zeros_like(self._used)])
            self._packed = np.concatenate([self._packed, np.zeros_like(self._packed)])
        self._clock += 1
        self._levels[n] = table.levels
        if self._shifts is not None:
            self._packed[n] = self._pack(table.levels)
        self._sizes[n] = table.size
        self._used[n] = self._clock
        self._tables.append(table)
        self._bytes += table.nbytes
        while self._bytes > self.budget:
            slot = int(np.argmin(self._used[: n + 1]))
            old = self._tables[slot]
            assert old is not None
            self._bytes -= old.nbytes
            self._tables[slot] = None
            self._sizes[slot] = _NONE
            self._used[slot] = _NONE
