"""The standard modulus-11 check digit (weights 2, 3, 4, 5, 6, 7 repeating from the right).

Used by organisasjonsnummer and HPR numbers. Scalar helpers here; the column API in
``column.py`` applies the same weights to whole columns.
"""

from __future__ import annotations

from koble.errors import InvalidIdentifier
from koble.registries.identifiers._rules import MESSAGES, SEPARATORS, Reason

_STRIP = str.maketrans("", "", SEPARATORS)
_DIGITS = frozenset("0123456789")


def weights(payload_length: int) -> tuple[int, ...]:
    """Weights for ``payload_length`` digits, left to right (the rightmost digit gets 2)."""
    return tuple(2 + (i % 6) for i in range(payload_length))[::-1]


def check_digit(payload: str) -> int | None:
    """The check digit for ``payload`` (11 -> 0), or None when it would be 10 (no valid number)."""
    k = 11 - sum(w * int(c) for w, c in zip(weights(len(payload)), payload, strict=False)) % 11
    if k == 11:
        return 0
    return None if k == 10 else k


def compact(number: str) -> str:
    return number.translate(_STRIP)


def reason(number: str | None, lengths: range) -> Reason | None:
    """Why ``number`` is not a valid mod-11 number of one of ``lengths``, or None when it is."""
    if number is None:
        return Reason.MISSING
    value = compact(number)
    if not value:
        return Reason.MISSING
    if not _DIGITS.issuperset(value):
        return Reason.CHARACTERS
    if len(value) not in lengths:
        return Reason.LENGTH
    if check_digit(value[:-1]) != int(value[-1]):
        return Reason.CHECK_DIGIT
    return None


def validate(number: str, lengths: range) -> str:
    found = reason(number, lengths)
    if found is not None:
        raise InvalidIdentifier(found, MESSAGES[found])
    return compact(number)
