"""The pre-aggregated frequency table the lattice search works on, and its roll-ups.

The rows are grouped once, by every quasi-identifier's level-0 code (and the sensitive
attribute's code when l-diversity or t-closeness is asked for), into a :class:`FrequencyTable`:
one entry per distinct combination, with its count. A lattice node (one level per QI) is then
evaluated by mapping each QI's codes through a lookup table (level a → level b, composed from
the hierarchy's ``maps``) and re-aggregating, starting from the smallest cached table of a
node at or below it, so the rows are never scanned again.

Grouping uses one int64 key per entry, built by mixed radix over the level cardinalities with
the sensitive code as the lowest digit, so an equivalence class is a run of consecutive
entries of the sorted table (``keys // radix`` is the class key). When the key space would
pass 2**62 the partial key is re-coded densely first. Small key spaces are grouped with
``np.bincount``, large ones by sorting (the entry index packed into the low bits of the key
when it fits: a plain sort is about three times faster than ``argsort``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from koble.anonymity.generalisation import Codes, Generalisation

__all__ = [
    "FrequencyTable",
    "Int64s",
    "Lookups",
    "TableCache",
    "aggregate",
    "build_table",
    "class_keys",
    "roll_up",
]

Int64s = npt.NDArray[np.int64]
_LIMIT = 1 << 62
_NONE = np.iinfo(np.int64).max


@dataclass(frozen=True, eq=False)
class FrequencyTable:
    """Counts per distinct combination of codes at ``levels``, sorted by ``keys``.

    ``codes[i][j]`` is entry j's code for QI i at ``levels[i]``; ``sensitive[j]`` its
    sensitive code (or ``None`` when no sensitive attribute is tracked); ``counts[j]`` the
    number of rows. Entries j and j' are in the same equivalence class exactly when
    ``keys[j] // radix == keys[j'] // radix``.
    """

    levels: tuple[int, ...]
    codes: tuple[Codes, ...]
    sensitive: Codes | None
    counts: Int64s
    keys: Int64s
    radix: int

    @property
    def size(self) -> int:
        """Number of entries (distinct combinations), not rows."""
        return len(self.counts)

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays, for the cache budget."""
        extra = 0 if self.sensitive is None else self.sensitive.nbytes
        return sum(c.nbytes for c in self.codes) + self.counts.nbytes + self.keys.nbytes + extra


class Lookups:
    """Per-QI lookup tables from codes at one level to codes at a higher level (memoised)."""

    def __init__(self, qis: Sequence[Generalisation], n_sensitive: int = 1) -> None:
        self.qis = tuple(qis)
        self.cards = tuple(tuple(len(lab) for lab in g.labels) for g in self.qis)
        self.n_sensitive = n_sensitive
        self._memo: dict[tuple[int, int, int], Codes] = {}

    def lut(self, qi: int, src: int, dst: int) -> Codes:
        """Codes at ``dst`` indexed by codes at ``src`` (well defined by consistency)."""
        key = (qi, src, dst)
        found = self._memo.get(key)
        if found is None:
            maps = self.qis[qi].maps
            found = np.zeros(self.cards[qi][src], dtype=np.int32)
            found[maps[src]] = maps[dst]
            self._memo[key] = found
        return found


def _combine(
    columns: Sequence[tuple[npt.NDArray[np.integer], int]], length: int
) -> tuple[Int64s, int]:
    """One int64 key per entry over ``(codes, cardinality)`` columns, and the key space."""
    key = np.zeros(length, dtype=np.int64)
    space = 1
    for codes, card in columns:
        if card <= 1:
            continue
        if space == 1:
            key, space = codes.astype(np.int64), card
            continue
        if space * card >= _LIMIT:
            key = np.unique(key, return_inverse=True)[1].astype(np.int64)
            space = int(key.max()) + 1 if length else 1
        key *= card
        key += codes
        space *= card
    return key, space


def aggregate(
    keys: Int64s, space: int, counts: Int64s | None, *, inverse: bool = False
) -> tuple[Int64s, Int64s, Int64s, Int64s | None]:
    """Group equal keys: sorted unique keys, summed counts, one representative entry per
    group, and (if asked) each entry's group number. ``counts=None`` counts entries."""
    m = len(keys)
    if space <= max(1 << 12, 3 * m):
        sums = np.bincount(keys, weights=counts, minlength=space)
        present = sums > 0
        unique = np.flatnonzero(present)
        rep = np.empty(space, dtype=np.int64)
        rep[keys] = np.arange(m, dtype=np.int64)
        inv = None
        if inverse:
            rank = np.cumsum(present, dtype=np.int64) - 1
            inv = rank[keys]
        return unique, sums[unique].astype(np.int64), rep[unique], inv
    bits = max(m - 1, 1).bit_length()
    if space << bits < _LIMIT:
        packed = np.sort((keys << bits) | np.arange(m, dtype=np.int64))
        order = packed & ((1 << bits) - 1)
        ordered = packed >> bits
    else:
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
    flags = np.empty(m, dtype=np.bool_)
    flags[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=flags[1:])
    starts = np.flatnonzero(flags)
    weights = np.ones(m, dtype=np.int64) if counts is None else counts[order]
    sums = np.add.reduceat(weights, starts) if m else weights
    inv = None
    if inverse:
        inv = np.empty(m, dtype=np.int64)
        inv[order] = np.cumsum(flags, dtype=np.int64) - 1
    return ordered[starts], sums.astype(np.int64), order[starts], inv


def _keys(
    lookups: Lookups, codes: Sequence[Codes], levels: tuple[int, ...], sensitive: Codes | None
) -> tuple[Int64s, int]:
    """Keys for entries with these codes at ``levels``: mixed radix over the cardinalities at
    ``levels`` (the sensitive code lowest), re-coded densely when it would get too wide."""
    n_s = lookups.n_sensitive
    length = len(codes[0]) if codes else 0
    cards = [lookups.cards[i][lv] for i, lv in enumerate(levels)]
    key, space = _combine(list(zip(codes, cards, strict=True)), length)
    if sensitive is not None:
        if space * n_s >= _LIMIT:
            key = np.unique(key, return_inverse=True)[1].astype(np.int64)
            space = int(key.max()) + 1 if length else 1
        key, space = key * n_s + sensitive, space * n_s
    return key, space


def _table(
    levels: tuple[int, ...],
    codes: Sequence[Codes],
    sensitive: Codes | None,
    grouped: tuple[Int64s, Int64s, Int64s, Int64s | None],
    radix: int,
) -> FrequencyTable:
    keys, sums, rep, _ = grouped
    picked = None if sensitive is None else sensitive[rep]
    return FrequencyTable(levels, tuple(c[rep] for c in codes), picked, sums, keys, radix)


def build_table(
    lookups: Lookups, levels: tuple[int, ...], sensitive: Codes | None = None
) -> tuple[FrequencyTable, Int64s]:
    """Group the rows themselves at ``levels``: the base table (all zeros) is the only one
    built this way in a search; ``apply`` uses it for the chosen node, to place each row
    (the second value is every row's entry number)."""
    codes = [g.at(lv) for g, lv in zip(lookups.qis, levels, strict=True)]
    key, space = _keys(lookups, codes, levels, sensitive)
    grouped = aggregate(key, space, None, inverse=True)
    assert grouped[3] is not None
    radix = 1 if sensitive is None else lookups.n_sensitive
    return _table(levels, codes, sensitive, grouped, radix), grouped[3]


def class_keys(lookups: Lookups, levels: tuple[int, ...]) -> Int64s:
    """One int64 per row, equal exactly for rows in the same class at ``levels`` (not dense,
    not grouped): what a check of the rows groups by, instead of their labels as text."""
    codes = [g.at(lv) for g, lv in zip(lookups.qis, levels, strict=True)]
    return _keys(lookups, codes, levels, None)[0]


def roll_up(
    table: FrequencyTable,
    target: tuple[int, ...],
    lookups: Lookups,
    memo: dict[tuple[int, int], Codes] | None = None,
) -> FrequencyTable:
    """The table at ``target`` from a table at levels component-wise ≤ ``target``.

    ``memo``, if given, keeps ``table``'s codes for QI i mapped to level b under ``(i, b)``
    (filled as they are computed), so a table rolled up from again and again (the base)
    gathers each QI's codes at each level once."""
    codes = list(table.codes)
    for i, (src, dst) in enumerate(zip(table.levels, target, strict=True)):
        if src > dst:
            raise ValueError(f"cannot roll up QI {i} from level {src} down to {dst}")
        if src == dst:
            continue
        found = None if memo is None else memo.get((i, dst))
        if found is None:
            found = lookups.lut(i, src, dst)[codes[i]]
            if memo is not None:
                memo[(i, dst)] = found
        codes[i] = found
    key, space = _keys(lookups, codes, target, table.sensitive)
    grouped = aggregate(key, space, table.counts)
    return _table(target, codes, table.sensitive, grouped, table.radix)


class TableCache:
    """Tables of evaluated nodes, to roll up from: the smallest one at or below the target.

    The base table is always kept; others are kept within ``budget`` bytes, least recently
    used evicted first. Lookup is vectorised over the cached nodes' levels.
    """

    def __init__(self, base: FrequencyTable, budget: int) -> None:
        self.base = base
        self.budget = budget
        self._tables: list[FrequencyTable | None] = []
        self._levels = np.zeros((64, len(base.levels)), dtype=np.int16)
        self._sizes = np.zeros(64, dtype=np.int64)
        self._used = np.zeros(64, dtype=np.int64)
        self._clock = 0
        self._bytes = 0

    def source(self, target: tuple[int, ...]) -> FrequencyTable:
        """The smallest cached table whose levels are all ≤ ``target`` (else the base)."""
        n = len(self._tables)
        if n:
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
        self._clock += 1
        self._levels[n] = table.levels
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
