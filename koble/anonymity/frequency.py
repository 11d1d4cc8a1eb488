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

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from koble.anonymity.generalisation import Codes, Generalisation

__all__ = [
    "FrequencyTable",
    "Int64s",
    "Lookups",
    "TableCache",
    "aggregate",
    "base_table",
    "build_table",
    "class_keys",
    "entry_keys",
    "locate",
    "roll_up",
]

Int64s = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
_LIMIT = 1 << 62
_NONE = np.iinfo(np.int64).max


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


def _combine(
    columns: Sequence[tuple[npt.NDArray[np.integer], int]], length: int
) -> tuple[Int64s, int, bool]:
    """One int64 key per entry over ``(codes, cardinality)`` columns, the key space, and
    whether the key had to be re-coded densely on the way (its digits are then lost)."""
    key: Int64s | None = None
    first: npt.NDArray[np.integer] | None = None  # the first column, not yet copied
    space = 1
    recoded = False
    for codes, card in columns:
        if card <= 1:
            continue
        if first is None and key is None:
            first, space = codes, card
            continue
        if space * card >= _LIMIT:
            whole = key if key is not None else first
            assert whole is not None
            key = np.unique(whole, return_inverse=True)[1].astype(np.int64)
            first, space, recoded = None, int(key.max()) + 1 if length else 1, True
        if key is None:
            assert first is not None
            key = np.multiply(first, card, dtype=np.int64)
            first = None
        else:
            key *= card
        key += codes
        space *= card
    if key is None:
        key = np.zeros(length, dtype=np.int64) if first is None else first.astype(np.int64)
    return key, space, recoded


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
    columns: Sequence[tuple[npt.NDArray[np.integer], int]],
    sensitive: Codes | None,
    n_sensitive: int,
    length: int,
) -> tuple[Int64s, int, bool]:
    """Keys for entries with these ``(codes, cardinality)`` columns: mixed radix over the
    cardinalities (the sensitive code lowest), re-coded densely when it would get too wide;
    the key space; and whether it was re-coded (the key's digits are then lost)."""
    key, space, recoded = _combine(columns, length)
    if sensitive is not None:
        if space * n_sensitive >= _LIMIT:
            key = np.unique(key, return_inverse=True)[1].astype(np.int64)
            space = int(key.max()) + 1 if length else 1
            recoded = True
        key, space = key * n_sensitive + sensitive, space * n_sensitive
    return key, space, recoded


def _group(keys: Int64s, space: int, counts: Int64s, weights: Floats) -> tuple[Int64s, Int64s]:
    """:func:`aggregate` without representatives: sorted unique keys and summed counts
    (``weights`` is ``counts`` as floats, for ``np.bincount``)."""
    m = len(keys)
    if space <= max(1 << 12, 3 * m):
        sums = np.bincount(keys, weights=weights, minlength=space)
        if space <= 16 * m:  # scanning the sums is cheaper than sorting the keys
            unique = np.flatnonzero(sums > 0)
        else:
            ordered = np.sort(keys)
            new = np.empty(m, dtype=np.bool_)
            new[:1] = True
            np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
            unique = ordered[new]
        return unique, sums[unique].astype(np.int64)
    unique, sums, _, _ = aggregate(keys, space, counts)
    return unique, sums


def _table(
    levels: tuple[int, ...],
    keys: Int64s,
    counts: Int64s,
    sensitive: Codes | None,
    cards: tuple[int, ...] | None,
    radix: int,
    stored: tuple[Codes, ...] | None = None,
) -> FrequencyTable:
    return FrequencyTable(levels, counts, keys, radix, sensitive is not None, cards, stored)


def _row_codes(g: Generalisation, level: int) -> Codes:
    """Every row's code at ``level`` (level 0 of the usual identity map: the codes as they
    are, not gathered through it)."""
    m = g.maps[level]
    if level == 0 and np.array_equal(m, np.arange(len(m))):
        return g.codes
    return g.at(level)


def _group_rows(
    lookups: Lookups, levels: tuple[int, ...], sensitive: Codes | None, inverse: bool,
    counts: Int64s | None = None,
) -> tuple[FrequencyTable, Int64s | None]:  # fmt: skip
    codes = [_row_codes(g, lv) for g, lv in zip(lookups.qis, levels, strict=True)]
    cards = tuple(lookups.cards[i][lv] for i, lv in enumerate(levels))
    columns = list(zip(codes, cards, strict=True))
    length = len(lookups.qis[0].codes)
    key, space, recoded = _keys(columns, sensitive, lookups.n_sensitive, length)
    keys, sums, rep, entries = aggregate(key, space, counts, inverse=inverse)
    radix = 1 if sensitive is None else lookups.n_sensitive
    # Stored, not decoded: a gather is cheaper than a division, and every code of the base
    # table is wanted (bounds, roll-ups).
    stored = tuple(c[rep] for c in codes)
    at = None if recoded else cards
    return _table(levels, keys, sums, sensitive, at, radix, stored), entries


def build_table(
    lookups: Lookups, levels: tuple[int, ...], sensitive: Codes | None = None
) -> tuple[FrequencyTable, Int64s]:
    """Group the rows themselves at ``levels``; ``apply`` uses it for the chosen node, to
    place each row (the second value is every row's entry number)."""
    table, entries = _group_rows(lookups, levels, sensitive, True)
    assert entries is not None
    return table, entries


def base_table(
    lookups: Lookups, sensitive: Codes | None = None, counts: Int64s | None = None
) -> FrequencyTable:
    """The rows grouped with every QI at level 0: the only table a search builds from the
    rows (every other is rolled up from it). ``counts``: each row stands for that many
    (rows counted already, e.g. by an engine's ``GROUP BY``)."""
    return _group_rows(lookups, (0,) * len(lookups.qis), sensitive, False, counts)[0]


def base_rows(lookups: Lookups, counts: Int64s | None = None) -> tuple[FrequencyTable, Int64s]:
    """:func:`base_table` (no sensitive attribute) and every row's entry in it: a release
    then places each row by one gather instead of building its key again."""
    table, entries = _group_rows(lookups, (0,) * len(lookups.qis), None, True, counts)
    assert entries is not None
    return table, entries


def class_keys(lookups: Lookups, levels: tuple[int, ...]) -> Int64s:
    """One int64 per row, equal exactly for rows in the same class at ``levels`` (not dense,
    not grouped): what a check of the rows groups by, instead of their labels as text."""
    columns: list[tuple[npt.NDArray[np.integer], int]] = []
    for i, (g, lv) in enumerate(zip(lookups.qis, levels, strict=True)):
        card = lookups.cards[i][lv]
        if card > 1:  # a QI of one value is no part of the key: its codes are not gathered
            columns.append((_row_codes(g, lv), card))
    return _keys(columns, None, 1, len(lookups.qis[0].codes))[0]


def entry_keys(table: FrequencyTable, target: tuple[int, ...], lookups: Lookups) -> Int64s:
    """Each entry's key at ``target`` (levels at or above the table's): what
    :func:`roll_up` groups by, and :func:`class_keys` gives rows. Only for keys that need
    no re-coding (``ValueError`` otherwise), so they compare with the rows'."""
    columns: list[tuple[npt.NDArray[np.integer], int]] = []
    for i, dst in enumerate(target):
        card, src = lookups.cards[i][dst], table.levels[i]
        if card > 1:
            codes = table.digits(i)
            columns.append((codes if src == dst else lookups.lut(i, src, dst)[codes], card))
    key, _, recoded = _keys(columns, table.sensitive, lookups.n_sensitive, table.size)
    if recoded:
        raise ValueError("the keys at these levels are re-coded")
    return key


def locate(table: FrequencyTable, keys: Int64s) -> npt.NDArray[np.integer]:
    """The entry of ``table`` holding each of ``keys`` (keys at ``table``'s levels, as
    :func:`class_keys` makes them for rows): through a dense lookup over the key space when
    it is small, else by binary search. Raises ``ValueError`` for a key the table lacks
    (the table is not that of these rows)."""
    if table.cards is None or table.tracked:
        raise ValueError("locate needs a table keyed by its classes alone, not re-coded")
    space = math.prod(max(c, 1) for c in table.cards)
    if len(keys) and (int(keys.min()) < 0 or int(keys.max()) >= space):
        raise ValueError("a key is not in the table")
    if space <= max(1 << 16, 2 * len(keys)):
        # int32 when it fits: less new memory to touch, at 5 M rows that is the cost
        where: npt.NDArray[np.integer] = (
            np.full(space, -1, dtype=np.int32) if table.size < (1 << 31)
            else np.full(space, -1, dtype=np.int64)
        )  # fmt: skip
        where[table.keys] = np.arange(table.size)
        found = where[keys]
        if len(found) and int(found.min()) < 0:
            raise ValueError("a key is not in the table")
        return found
    found = np.searchsorted(table.keys, keys)
    np.minimum(found, max(table.size - 1, 0), out=found)
    if len(keys) and not np.array_equal(table.keys[found], keys):
        raise ValueError("a key is not in the table")
    return found


def roll_up(
    table: FrequencyTable,
    target: tuple[int, ...],
    lookups: Lookups,
    memo: dict[tuple[int, int], Int64s] | None = None,
) -> FrequencyTable:
    """The table at ``target`` from a table at levels component-wise ≤ ``target``.

    Only the QIs with more than one value at ``target`` enter the new key: their codes are
    read off the source and mapped through the lookup tables; the new table's codes are read
    off its own keys when needed (see :class:`FrequencyTable`).
    ``memo``, if given, keeps ``table``'s codes for QI i mapped to level b under ``(i, b)``
    (filled as they are computed, as int64 so the key needs no conversion), so a table
    rolled up from again and again (the base) gathers each QI's codes at each level once."""
    levels, all_cards = table.levels, lookups.cards
    if len(target) != len(levels):
        raise ValueError("the target needs a level for every QI of the table")
    cards: list[int] = []
    columns: list[tuple[npt.NDArray[np.integer], int]] = []
    picked: list[npt.NDArray[np.integer] | None] = []
    for i, dst in enumerate(target):
        src, card = levels[i], all_cards[i][dst]
        cards.append(card)
        if src > dst:
            raise ValueError(f"cannot roll up QI {i} from level {src} down to {dst}")
        if card <= 1:  # one value: no part of the key
            picked.append(None)
            continue
        if memo is not None:
            found = memo.get((i, dst))
            if found is None:
                mapped = table.code(i) if src == dst else lookups.lut(i, src, dst)[table.code(i)]
                found = memo[(i, dst)] = mapped.astype(np.int64)
            codes: npt.NDArray[np.integer] = found
        elif src == dst:
            codes = table.digits(i)
        else:
            codes = lookups.lut(i, src, dst)[table.digits(i)]
        picked.append(codes)
        columns.append((codes, card))
    sensitive = table.sensitive
    key, space, recoded = _keys(columns, sensitive, lookups.n_sensitive, table.size)
    if not recoded:
        keys, sums = _group(key, space, table.counts, table.weights)
        return _table(target, keys, sums, sensitive, tuple(cards), table.radix)
    keys, sums, rep, _ = aggregate(key, space, table.counts)
    # A QI with one value at ``target`` has code 0 throughout.
    stored = tuple(
        np.zeros(len(rep), np.int32) if c is None else c[rep].astype(np.int32) for c in picked
    )
    return _table(target, keys, sums, sensitive, None, table.radix, stored)


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
