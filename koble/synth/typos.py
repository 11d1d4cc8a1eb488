"""The ways a person number goes wrong when typed or digitised, over whole int64 columns.

Each function takes 11-digit numbers (as int64) and returns the damaged numbers and whether
the damage could be applied (a transposition needs two different adjacent digits, an OCR
confusion a 0, 1, 7 or 8). Positions are drawn uniformly among those that qualify, with
one random score per (row, position): no loop over rows.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl

from koble.registries.identifiers.column import validate_column
from koble.synth.numbers import format_ids

__all__ = ["digits", "invalid_typos", "ocr", "substitute", "transpose", "undigits", "valid"]

I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]
_POWERS = 10 ** np.arange(10, -1, -1, dtype=np.int64)
#: what OCR reads each digit as: 1 <-> 7, 0 <-> 8, the others as they are
_OCR = np.array([8, 7, 2, 3, 4, 5, 6, 1, 0, 9], dtype=np.int64)


def digits(numbers: I64) -> I64:
    """The 11 digits of each number, most significant first (rows x 11)."""
    out: I64 = (numbers[:, None] // _POWERS) % 10
    return out


def undigits(matrix: I64) -> I64:
    """Numbers from their digit rows."""
    out: I64 = matrix @ _POWERS
    return out


def _choose(rng: np.random.Generator, allowed: B) -> I64:
    score = np.where(allowed, rng.random(allowed.shape), -1.0)
    out: I64 = score.argmax(axis=1).astype(np.int64)
    return out


def substitute(rng: np.random.Generator, numbers: I64) -> tuple[I64, B]:
    """One digit, at a uniform position, replaced by another digit."""
    dig = digits(numbers)
    rows = np.arange(len(numbers))
    pos = rng.integers(0, 11, size=len(numbers))
    dig[rows, pos] = (dig[rows, pos] + rng.integers(1, 10, size=len(numbers))) % 10
    return undigits(dig), np.ones(len(numbers), dtype=bool)


def transpose(rng: np.random.Generator, numbers: I64) -> tuple[I64, B]:
    """Two different adjacent digits swapped."""
    dig = digits(numbers)
    rows = np.arange(len(numbers))
    can = dig[:, :-1] != dig[:, 1:]
    pos = _choose(rng, can)
    ok = can[rows, pos]
    left, right = dig[rows, pos].copy(), dig[rows, pos + 1].copy()
    dig[rows[ok], pos[ok]], dig[rows[ok], pos[ok] + 1] = right[ok], left[ok]
    return undigits(dig), ok


def ocr(rng: np.random.Generator, numbers: I64) -> tuple[I64, B]:
    """One 1/7 or 0/8 read as the other."""
    dig = digits(numbers)
    rows = np.arange(len(numbers))
    can = np.isin(dig, [0, 1, 7, 8])
    pos = _choose(rng, can)
    ok = can[rows, pos]
    dig[rows[ok], pos[ok]] = _OCR[dig[rows[ok], pos[ok]]]
    return undigits(dig), ok


def valid(numbers: I64) -> B:
    """Whether each number is a valid fødselsnummer, D- or H-number (either rule)."""
    checked = validate_column(pl.from_arrow(format_ids(numbers)), scheme="fnr")
    out: B = checked["valid"].to_numpy().astype(bool)
    return out


def invalid_typos(rng: np.random.Generator, numbers: I64, rounds: int = 8) -> tuple[I64, B]:
    """A substitution or (half of them) a transposition that leaves each number invalid;
    returns the numbers and which were transposed. Draws again, for the few valid by chance
    only, up to ``rounds`` times; what is still valid then gets its last check digit
    replaced (a substitution that cannot be valid: k2 is determined by the other ten)."""
    n = len(numbers)
    out = numbers.copy()
    transposed = rng.random(n) < 0.5
    todo = np.arange(n)
    for _ in range(rounds):
        if not todo.size:
            break
        sub, _ = substitute(rng, numbers[todo])
        swap, ok = transpose(rng, numbers[todo])
        out[todo] = np.where(transposed[todo] & ok, swap, sub)
        transposed[todo] &= ok
        todo = todo[valid(out[todo])]
    k2 = numbers[todo] % 10
    out[todo] = numbers[todo] - k2 + (k2 + rng.integers(1, 10, size=len(todo))) % 10
    transposed[todo] = False
    return out, transposed
