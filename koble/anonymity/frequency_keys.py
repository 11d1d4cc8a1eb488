"""Keys and grouping for the frequency tables: one int64 per entry, equal entries summed.

The key is built by mixed radix over the level cardinalities, the sensitive code as the
lowest digit, so an equivalence class is a run of consecutive entries of the sorted table.
When the key space would pass 2**62 the partial key is re-coded densely first (its digits
are then lost). Small key spaces are grouped with ``np.bincount``, large ones by sorting
(the entry index packed into the low bits of the key when it fits: a plain sort is about
three times faster than ``argsort``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from koble.anonymity.frequency_table import Floats, Int64s
from koble.anonymity.generalisation import Codes

__all__ = ["aggregate", "group", "keys_of"]

#: Key spaces this wide or wider are re-coded densely.
_LIMIT = 1 << 62


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


def keys_of(
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


def group(keys: Int64s, space: int, counts: Int64s, weights: Floats) -> tuple[Int64s, Int64s]:
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
