"""The pre-aggregated frequency table the lattice search works on, and its roll-ups.

The rows are grouped once, by every quasi-identifier's level-0 code (and the sensitive
attribute's code when l-diversity or t-closeness is asked for), into a :class:`FrequencyTable`:
one entry per distinct combination, with its count. A lattice node (one level per QI) is then
evaluated by mapping each QI's codes through a lookup table (level a → level b, composed from
the hierarchy's ``maps``) and re-aggregating, starting from the smallest cached table of a
node at or below it, so the rows are never scanned again.

This module builds tables from the rows (:func:`base_table`, :func:`base_rows`,
:func:`build_table`), rolls them up (:func:`roll_up`) and places rows or entries in them
(:func:`class_keys`, :func:`entry_keys`, :func:`locate`). The table itself and the lookups
are :mod:`koble.anonymity.frequency_table`; the int64 keys and the grouping by them,
:mod:`koble.anonymity.frequency_keys`; the cache of evaluated tables,
:mod:`koble.anonymity.table_cache`. Their names are importable from here as ever.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from koble.anonymity.frequency_keys import aggregate, group, keys_of
from koble.anonymity.frequency_table import Floats, FrequencyTable, Int64s, Lookups
from koble.anonymity.generalisation import Codes, Generalisation
from koble.anonymity.table_cache import TableCache

__all__ = [
    "Floats",
    "FrequencyTable",
    "Int64s",
    "Lookups",
    "TableCache",
    "aggregate",
    "base_rows",
    "base_table",
    "build_table",
    "class_keys",
    "entry_keys",
    "locate",
    "roll_up",
]


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
    key, space, recoded = keys_of(columns, sensitive, lookups.n_sensitive, length)
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
    return keys_of(columns, None, 1, len(lookups.qis[0].codes))[0]


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
    key, _, recoded = keys_of(columns, table.sensitive, lookups.n_sensitive, table.size)
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
    key, space, recoded = keys_of(columns, sensitive, lookups.n_sensitive, table.size)
    if not recoded:
        keys, sums = group(key, space, table.counts, table.weights)
        return _table(target, keys, sums, sensitive, tuple(cards), table.radix)
    keys, sums, rep, _ = aggregate(key, space, table.counts)
    # A QI with one value at ``target`` has code 0 throughout.
    stored = tuple(
        np.zeros(len(rep), np.int32) if c is None else c[rep].astype(np.int32) for c in picked
    )
    return _table(target, keys, sums, sensitive, None, table.radix, stored)
