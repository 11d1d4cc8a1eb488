"""Vectorised identifier validation over whole columns.

:func:`validate_column` takes a Polars Series, an Arrow array or a list of strings and returns
one row per input row: the compact value, the kind, the check-digit rule, whether it is valid
and the reason when not. Values that are already clean (exactly the expected number of ASCII
digits, the usual case) are checked in place with the word arithmetic of :mod:`._swar`; only
the others go through a regular-expression pass that strips separators. Nothing runs per row
in Python.

The scalar modules (``fodselsnummer``, ``orgnr``, ``hpr``) implement the same rules one value
at a time; the test suite checks that both agree on arbitrary strings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from koble.errors import UsageError
from koble.registries.identifiers import _swar, fodselsnummer, hpr, orgnr
from koble.registries.identifiers._mod11 import weights as mod11_weights
from koble.registries.identifiers._rules import (
    K1_WEIGHTS,
    K2_WEIGHTS,
    KINDS_2032,
    SEPARATOR_CLASS,
    TEST_KINDS,
    Kind,
    Reason,
    Rule,
)

__all__ = [
    "KIND_DTYPE",
    "REASON_DTYPE",
    "RULE_DTYPE",
    "Scheme",
    "dropped_leading_zero",
    "validate_column",
]

Scheme = Literal["fnr", "hpr", "orgnr"]
ColumnLike: TypeAlias = "pl.Series | pa.Array | pa.ChunkedArray | Sequence[str | None]"

KINDS: list[str] = [k.value for k in Kind]
RULES: list[str] = [r.value for r in Rule]
REASONS: list[str] = [r.value for r in Reason]
KIND_DTYPE = pl.Enum(KINDS)
RULE_DTYPE = pl.Enum(RULES)
REASON_DTYPE = pl.Enum(REASONS)

_NONE = -1
_I8 = npt.NDArray[np.int8]
_LENGTHS: dict[Scheme, range] = {"fnr": range(11, 12), "hpr": hpr.LENGTHS, "orgnr": orgnr.LENGTHS}


def _code(member: Kind | Rule | Reason) -> int:
    table = KINDS if isinstance(member, Kind) else RULES if isinstance(member, Rule) else REASONS
    return table.index(member.value)


def _kind_table() -> _I8:
    """Kind code for every (day, month, leap-year) triple, from the scalar classifier."""
    table = np.full(100 * 100 * 2, _NONE, dtype=np.int8)
    for day in range(100):
        for month in range(100):
            for leap in (0, 1):
                yy = (0, 0) if leap else (0, 1)
                digits = [day // 10, day % 10, month // 10, month % 10, *yy, 0, 0, 0, 0, 0]
                found = fodselsnummer._classify(digits)
                if found is not None:
                    table[(day * 100 + month) * 2 + leap] = _code(found)
    return table


_KIND_TABLE = _kind_table()
# Indexed by kind code + 1 (so that -1, no kind, is index 0).
_MAY_2032 = np.array([False] + [Kind(k) in KINDS_2032 for k in KINDS])
_IS_TEST = np.array([False] + [Kind(k) in TEST_KINDS for k in KINDS])
# Two digit bytes read as one little-endian 16-bit value (tens + 256 * units) -> their number.
_PAIR = np.zeros(0x0A0A, dtype=np.uint16)
for _tens in range(10):
    for _units in range(10):
        _PAIR[_tens + 256 * _units] = 10 * _tens + _units


def _as_utf8(values: ColumnLike) -> pl.Series:
    if isinstance(values, pl.Series):
        series = values
    elif isinstance(values, pa.Array | pa.ChunkedArray):
        converted = pl.from_arrow(values)
        assert isinstance(converted, pl.Series)
        series = converted
    else:
        series = pl.Series("value", list(values), dtype=pl.String)
    if series.dtype != pl.String:
        raise UsageError(f"identifiers must be strings, got a column of type {series.dtype}")
    return series


_BLOCK = 1 << 16  # rows per block: keeps every temporary in the CPU cache


def _blocked(
    check: Callable[[npt.NDArray[np.uint32]], tuple[npt.NDArray[Any], ...]],
    w: npt.NDArray[np.uint32],
) -> tuple[npt.NDArray[Any], ...]:
    """Run ``check`` over ``w`` in cache-sized blocks and concatenate the results."""
    if len(w) <= _BLOCK:
        return check(w)
    parts = [check(w[start : start + _BLOCK]) for start in range(0, len(w), _BLOCK)]
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))


def _check_fnr(w: npt.NDArray[np.uint32], test_numbers: bool) -> tuple[_I8, _I8, _I8]:
    """Kind, rule and reason codes for rows of exactly 11 digits (one block)."""
    d = _swar.digits(w, 11)
    s1, s2 = _swar.weighted_sums(d, [(*K1_WEIGHTS, 1), (*K2_WEIGHTS, 1)])
    day = _PAIR[d[0] & np.uint32(0xFFFF)].astype(np.uint32)
    month = _PAIR[d[0] >> np.uint32(16)]
    leap = (_PAIR[d[1] & np.uint32(0xFFFF)] % 4 == 0).astype(np.uint32)
    kind = _KIND_TABLE[(day * 100 + month) * 2 + leap]
    residue = s1 % 11
    classic = residue == 0
    k1_ok = classic | ((residue <= 3) & _MAY_2032[kind + 1])
    reason = np.full(len(kind), _NONE, dtype=np.int8)
    if not test_numbers:
        reason[_IS_TEST[kind + 1]] = _code(Reason.TEST_NUMBER)
    reason[s2 % 11 != 0] = _code(Reason.CHECK_DIGIT_2)
    reason[~k1_ok] = _code(Reason.CHECK_DIGIT_1)
    reason[kind == _NONE] = _code(Reason.DATE)
    passed = (reason == _NONE) | (reason == _code(Reason.TEST_NUMBER))
    rule = np.where(classic, _code(Rule.CLASSIC), _code(Rule.RULE_2032))
    return kind, np.where(passed, rule, _NONE).astype(np.int8), reason


def _check_mod11(w: npt.NDArray[np.uint32], width: int) -> tuple[_I8]:
    """Reason codes for rows of ``width`` digits carrying a mod-11 check digit last (one block)."""
    d = _swar.digits(w, width)
    (total,) = _swar.weighted_sums(d, [(*mod11_weights(width - 1), 1)])
    return (np.where(total % 11 == 0, _NONE, _code(Reason.CHECK_DIGIT)).astype(np.int8),)


def _enum(codes: _I8, dtype: pl.Enum, name: str) -> pl.Series:
    """Codes to an Enum column by gathering from the categories (code -1 reads as 255: null)."""
    table = pl.Series(name, [*dtype.categories.to_list(), *[None] * 256], dtype=dtype)[:256]
    return table.gather(codes.view(np.uint8))


def validate_column(
    values: ColumnLike, *, scheme: Scheme = "fnr", test_numbers: bool = False
) -> pl.DataFrame:
    """Validate every value of a column at once.

    Returns a DataFrame with one row per input row, in order: ``compact`` (separators removed),
    ``valid``, ``reason`` (null when valid) and, for the fødselsnummer scheme, ``kind`` (null
    when it cannot be read) and ``rule`` (classic or 2032). ``test_numbers`` accepts synthetic
    test numbers; otherwise they are rejected with reason ``test_number_not_allowed``.
    """
    if scheme not in _LENGTHS:
        raise UsageError(f"unknown identifier scheme {scheme!r}; use one of {sorted(_LENGTHS)}")
    series = _as_utf8(values)
    lengths = _LENGTHS[scheme]
    width = lengths.stop - 1
    n = len(series)
    reason = np.full(n, _NONE, dtype=np.int8)
    kind = np.full(n, _NONE, dtype=np.int8)
    rule = np.full(n, _NONE, dtype=np.int8)

    size = series.str.len_bytes().fill_null(0).to_numpy()
    fast = np.flatnonzero((size >= lengths.start) & (size < lengths.stop))
    fast_words = _words(series, fast, n, width)
    (dirty,) = _blocked(lambda w: (_swar.non_digits(w, width),), fast_words)
    candidates, candidate_words = fast, fast_words
    is_slow = np.ones(n, dtype=np.bool_)
    if dirty.any():
        candidates, candidate_words = fast[~dirty], fast_words[~dirty]
    is_slow[candidates] = False
    slow = np.flatnonzero(is_slow)

    compact = series
    if len(slow):
        stripped = series.gather(slow).str.replace_all(SEPARATOR_CLASS, "")
        compact = series.scatter(slow, stripped) if len(slow) < n else stripped
        slow_size = stripped.str.len_bytes().fill_null(0).to_numpy()
        reason[slow[(slow_size < lengths.start) | (slow_size >= lengths.stop)]] = _code(
            Reason.LENGTH
        )
        reason[slow[stripped.str.contains("[^0-9]").fill_null(False).to_numpy()]] = _code(
            Reason.CHARACTERS
        )
        reason[slow[slow_size == 0]] = _code(Reason.MISSING)
        rescued = np.flatnonzero(reason[slow] == _NONE)
        if len(rescued):
            candidates = np.concatenate([candidates, slow[rescued]])
            more = _words(stripped, rescued, len(slow), width)
            candidate_words = np.concatenate([candidate_words, more])

    check = (
        partial(_check_fnr, test_numbers=test_numbers)
        if scheme == "fnr"
        else partial(_check_mod11, width=width)
    )
    found = _blocked(check, candidate_words)
    if len(slow) == 0:  # the usual clean column: results are already in row order
        reason = found[-1]
        if scheme == "fnr":
            kind, rule = found[0], found[1]
    else:
        reason[candidates] = found[-1]
        if scheme == "fnr":
            kind[candidates], rule[candidates] = found[0], found[1]

    columns = [compact.alias("compact")]
    if scheme == "fnr":
        columns += [_enum(kind, KIND_DTYPE, "kind"), _enum(rule, RULE_DTYPE, "rule")]
    columns += [pl.Series("valid", reason == _NONE), _enum(reason, REASON_DTYPE, "reason")]
    return pl.DataFrame(columns)


def dropped_leading_zero(result: pl.DataFrame) -> pl.Series:
    """Per row of a fødselsnummer :func:`validate_column` result: rejected for its length
    with exactly 10 digits, not starting with 0. The mark of a spreadsheet that read the
    column as numbers and dropped the leading zero (everyone born on the 1st to the 9th of a
    month). Column-wise; the reason code stays ``wrong_length``, only the message says so
    (:data:`~koble.registries.identifiers._rules.LEADING_ZERO_MESSAGE`)."""
    length = result["reason"].cast(pl.String) == Reason.LENGTH.value
    compact = result["compact"]  # all digits where the reason is wrong_length
    ten = (compact.str.len_bytes() == 10) & ~compact.str.starts_with("0")
    return (length & ten).fill_null(False).alias("dropped_leading_zero")


def _words(
    series: pl.Series, rows: npt.NDArray[np.intp], n: int, width: int
) -> npt.NDArray[np.uint32]:
    """Data words of ``series[rows]``, left-padded with zeros to ``width`` characters."""
    picked = series if len(rows) == n else series.gather(rows)
    if width != 11:
        picked = picked.str.zfill(width)
    return _swar.words(picked)
