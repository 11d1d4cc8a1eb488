"""Vectorised construction of valid identifiers: fødselsnummer (and D-/H-numbers), orgnr, HPR.

Person numbers are built from birth dates in whole columns. Uniqueness is by construction,
not by retry-and-check: persons are grouped by their first six digits and number class, each
group walks a random affine permutation of its individual-number range, so two persons in a
group never get the same individual number. Candidates whose check digit would be 10 (about
one in six) move on to the group's next unused rank, in vectorised rounds over the failing
subset only.

Rules (design.md §1.2; constants from ``koble.registries.identifiers._rules``):

* individual numbers 000-499 for births 1900-1999 and 500-999 for 2000-2039; the ninth digit
  is odd for men and even for women;
* D-number: day + 40; H-number: month + 40;
* 2032 rule: (Σ w·d over the first nine digits + k1) mod 11 ∈ {1, 2, 3} (never 0, so the
  number fails the classic rule); such numbers encode neither sex nor century, so their
  individual number is drawn from 000-999.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from koble.registries.identifiers import _mod11
from koble.registries.identifiers._rules import K1_WEIGHTS, K2_WEIGHTS

__all__ = [
    "KIND_DNR",
    "KIND_FNR",
    "KIND_HNR",
    "format_ids",
    "mod11_numbers",
    "person_numbers",
]

I64 = npt.NDArray[np.int64]
KIND_FNR: Final = 0
KIND_DNR: Final = 1
KIND_HNR: Final = 2
_K1 = np.array(K1_WEIGHTS, dtype=np.int64)
_K2 = np.array(K2_WEIGHTS, dtype=np.int64)


def _units(modulus: int) -> I64:
    """The multipliers that make ``x -> a*x + b (mod modulus)`` a permutation."""
    return np.array([a for a in range(1, modulus) if math.gcd(a, modulus) == 1], dtype=np.int64)


_UNITS = {250: _units(250), 1000: _units(1000)}


def _date_parts(days: npt.NDArray[np.int32]) -> tuple[I64, I64, I64]:
    """(year, month, day) of days since 1970-01-01."""
    d = days.astype("datetime64[D]")
    year_start = d.astype("datetime64[Y]")
    month_start = d.astype("datetime64[M]")
    year = year_start.astype(np.int64) + 1970
    month = (month_start - year_start.astype("datetime64[M]")).astype(np.int64) + 1
    day = (d - month_start.astype("datetime64[D]")).astype(np.int64) + 1
    return year, month, day


def _check_digits(
    rng: np.random.Generator, prefix6: I64, individual: I64, rule2032: npt.NDArray[np.bool_]
) -> tuple[I64, npt.NDArray[np.bool_]]:
    """Complete 9-digit stems with k1 and k2; returns (ids, ok) where ok is False for stems
    that have no valid number (a check digit would be 10)."""
    stem = prefix6 * 1000 + individual
    digits = (stem[:, None] // 10 ** np.arange(8, -1, -1, dtype=np.int64)) % 10
    s1 = digits @ _K1
    k1 = (-s1) % 11
    residue = rng.integers(1, 4, size=len(stem))
    alt = (residue - s1) % 11
    alt = np.where(alt == 10, ((residue % 3) + 1 - s1) % 11, alt)
    k1 = np.where(rule2032, alt, k1)
    s2 = digits @ _K2[:9] + _K2[9] * k1
    k2 = (-s2) % 11
    ok = (k1 < 10) & (k2 < 10)
    return stem * 100 + np.minimum(k1, 9) * 10 + np.minimum(k2, 9), ok


def person_numbers(
    rng: np.random.Generator,
    birth_days: npt.NDArray[np.int32],
    male: npt.NDArray[np.bool_],
    kind: npt.NDArray[np.int8],
    rule2032: npt.NDArray[np.bool_],
) -> I64:
    """Distinct valid 11-digit person numbers (as int64) for the given persons.

    ``kind`` is KIND_FNR, KIND_DNR or KIND_HNR; ``rule2032`` marks numbers to be valid only
    under the 2032 rule (fnr and D-numbers only). Raises ValueError when a birth date has
    more persons than its individual-number range can hold (about 200 per sex and day).
    """
    n = len(birth_days)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if np.any(rule2032 & (kind == KIND_HNR)):
        raise ValueError("H-numbers follow the classic rule only")
    year, month, day = _date_parts(birth_days)
    if np.any((year < 1900) | (year > 2039)):
        raise ValueError("birth years must be within 1900-2039")
    day = day + 40 * (kind == KIND_DNR)
    month = month + 40 * (kind == KIND_HNR)
    prefix6 = day * 10_000 + month * 100 + year % 100
    lo = np.where(rule2032, 0, np.where(year >= 2000, 500, 0)).astype(np.int64)
    step = np.where(rule2032, 1, 2).astype(np.int64)
    parity = np.where(rule2032, 0, male.astype(np.int64))
    modulus = np.where(rule2032, 1000, 250).astype(np.int64)
    klass = np.where(rule2032, 4, (lo // 500) * 2 + parity)
    key = prefix6 * 5 + klass
    order = np.lexsort((rng.random(n), key))
    skey = key[order]
    starts = np.r_[0, np.flatnonzero(skey[1:] != skey[:-1]) + 1]
    counts = np.diff(np.r_[starts, n])
    group = np.empty(n, dtype=np.int64)
    group[order] = np.repeat(np.arange(len(starts)), counts)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.repeat(starts, counts)
    g_mod = modulus[order][starts]
    g_mult = np.where(
        g_mod == 1000,
        _UNITS[1000][rng.integers(0, len(_UNITS[1000]), size=len(starts))],
        _UNITS[250][rng.integers(0, len(_UNITS[250]), size=len(starts))],
    )
    g_shift = rng.integers(0, g_mod)
    next_free = counts.copy()
    ids = np.zeros(n, dtype=np.int64)
    pending = np.arange(n)
    while pending.size:
        g = group[pending]
        r = rank[pending]
        if np.any(r >= g_mod[g]):
            raise ValueError("too many persons share a birth date for its number range")
        offset = (g_mult[g] * r + g_shift[g]) % g_mod[g]
        individual = lo[pending] + offset * step[pending] + parity[pending]
        cand, ok = _check_digits(rng, prefix6[pending], individual, rule2032[pending])
        ids[pending[ok]] = cand[ok]
        bad = pending[~ok]
        if bad.size:
            bad = bad[np.argsort(group[bad], kind="stable")]
            gb = group[bad]
            first = np.r_[0, np.flatnonzero(gb[1:] != gb[:-1]) + 1]
            cnt = np.diff(np.r_[first, len(gb)])
            rank[bad] = next_free[gb] + np.arange(len(gb)) - np.repeat(first, cnt)
            next_free[gb[first]] += cnt
        pending = bad
    return ids


def mod11_numbers(rng: np.random.Generator, n: int, length: int, low: int, high: int) -> I64:
    """``n`` distinct valid mod-11 numbers of ``length`` digits (orgnr: 9, HPR: 7) whose
    payload (all digits but the check digit) lies in [low, high)."""
    weights = np.array(_mod11.weights(length - 1), dtype=np.int64)
    found = np.zeros(0, dtype=np.int64)
    while len(found) < n:
        payload = rng.integers(low, high, size=2 * (n - len(found)) + 16)
        digits = (payload[:, None] // 10 ** np.arange(length - 2, -1, -1, dtype=np.int64)) % 10
        check = (-(digits @ weights)) % 11
        cand = payload[check < 10] * 10 + check[check < 10]
        merged = np.concatenate([found, cand])
        _, first = np.unique(merged, return_index=True)
        found = merged[np.sort(first)]
    return found[:n]


def format_ids(values: I64 | pa.Array, width: int = 11) -> pa.Array:
    """Zero-padded strings of ``width`` characters (leading zeros kept); nulls stay null."""
    arr = values if isinstance(values, pa.Array) else pa.array(values, type=pa.int64())
    return pc.utf8_lpad(pc.cast(arr, pa.string()), width=width, padding="0")
