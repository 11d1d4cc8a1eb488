"""Fødselsnummer and its relatives: D-, H-, FH- and synthetic test numbers (scalar API).

The API follows python-stdnum: ``compact``, ``validate`` (returns the compact form or raises
:class:`~koble.errors.InvalidIdentifier`), ``is_valid`` (never raises) and ``format``, plus
``kind``, ``rule``, ``birth_date`` and ``sex``.

Rules (design.md §1.2):

* 11 digits: DDMMYY, a three-digit individual number, two check digits.
* Classic first check digit: (Σ w·d over digits 1-9 + k1) ≡ 0 (mod 11). The **2032 rule**
  accepts residues 0-3 for numbers Skatteetaten allocates (fnr, D-numbers, test numbers).
  The second check digit is unchanged under both rules.
* D-number: day + 40. H-number: month + 40. Synthetic test number: month + 80 (may combine
  with D). FH-number: first digit 8 or 9 and no date at all.
* Birth date and sex read from a number are *hints*: a number that passes the classic rule
  may still be a 2032 allocation, which encodes neither. A number is never rejected because
  its date lies in the future or its century cannot be read.

For whole columns use :func:`koble.registries.identifiers.column.validate_column`.
"""

from __future__ import annotations

import datetime
from typing import NamedTuple

from koble.errors import InvalidIdentifier
from koble.registries.identifiers._rules import (
    DAYS_IN_MONTH,
    K1_WEIGHTS,
    K2_WEIGHTS,
    KINDS_2032,
    LEADING_ZERO_MESSAGE,
    MESSAGES,
    RESIDUES_2032,
    SEPARATORS,
    TEST_KINDS,
    Kind,
    Reason,
    Rule,
)

__all__ = [
    "Analysis",
    "analyse",
    "birth_date",
    "compact",
    "format",
    "is_valid",
    "kind",
    "rule",
    "sex",
    "validate",
]

_STRIP = str.maketrans("", "", SEPARATORS)
_DIGITS = frozenset("0123456789")


class Analysis(NamedTuple):
    """What :func:`analyse` found: the compact value, the kind and rule when they can be read,
    and the reason when the number is not valid (``None`` when it is)."""

    compact: str | None
    kind: Kind | None
    rule: Rule | None
    reason: Reason | None

    @property
    def valid(self) -> bool:
        return self.reason is None


def compact(number: str) -> str:
    """Remove separators (spaces, hyphens, colons, dots) anywhere in ``number``."""
    return number.translate(_STRIP)


def _classify(d: list[int]) -> Kind | None:
    """The kind encoded in the date part, or None when the date part is invalid."""
    if d[0] >= 8:
        return Kind.FHNR
    day, month, yy = d[0] * 10 + d[1], d[2] * 10 + d[3], d[4] * 10 + d[5]
    is_d = 41 <= day <= 71
    if is_d:
        day -= 40
    if 41 <= month <= 52:
        if is_d:
            return None
        found, month = Kind.HNR, month - 40
    elif 81 <= month <= 92:
        found, month = (Kind.TEST_DNR if is_d else Kind.TEST_FNR), month - 80
    else:
        found = Kind.DNR if is_d else Kind.FNR
    if not 1 <= month <= 12 or not 1 <= day <= DAYS_IN_MONTH[month]:
        return None
    if month == 2 and day == 29 and yy % 4:
        return None
    return found


def analyse(number: str | None, *, test_numbers: bool = False) -> Analysis:
    """Check ``number`` and say what it is; never raises.

    ``test_numbers`` accepts synthetic test numbers; in production mode they are rejected.
    """
    if number is None:
        return Analysis(None, None, None, Reason.MISSING)
    value = compact(number)
    if not value:
        return Analysis(value, None, None, Reason.MISSING)
    if not _DIGITS.issuperset(value):
        return Analysis(value, None, None, Reason.CHARACTERS)
    if len(value) != 11:
        return Analysis(value, None, None, Reason.LENGTH)
    d = [ord(c) - 48 for c in value]
    found = _classify(d)
    if found is None:
        return Analysis(value, None, None, Reason.DATE)
    residue = (sum(w * x for w, x in zip(K1_WEIGHTS, d, strict=False)) + d[9]) % 11
    if residue == 0:
        found_rule = Rule.CLASSIC
    elif residue in RESIDUES_2032 and found in KINDS_2032:
        found_rule = Rule.RULE_2032
    else:
        return Analysis(value, found, None, Reason.CHECK_DIGIT_1)
    if (sum(w * x for w, x in zip(K2_WEIGHTS, d, strict=False)) + d[10]) % 11:
        return Analysis(value, found, None, Reason.CHECK_DIGIT_2)
    if found in TEST_KINDS and not test_numbers:
        return Analysis(value, found, found_rule, Reason.TEST_NUMBER)
    return Analysis(value, found, found_rule, None)


def validate(number: str, *, test_numbers: bool = False) -> str:
    """Return the compact form of a valid ``number``; raise :class:`InvalidIdentifier` if not.

    The error names the reason and never contains the number.
    """
    result = analyse(number, test_numbers=test_numbers)
    value = result.compact or ""
    if result.reason is Reason.LENGTH and len(value) == 10 and not value.startswith("0"):
        raise InvalidIdentifier(result.reason, LEADING_ZERO_MESSAGE)
    if result.reason is not None:
        raise InvalidIdentifier(result.reason, MESSAGES[result.reason])
    assert result.compact is not None
    return result.compact


def is_valid(number: str | None, *, test_numbers: bool = False) -> bool:
    """True when ``number`` is valid; never raises."""
    try:
        return analyse(number, test_numbers=test_numbers).valid
    except Exception:  # noqa: BLE001 - is_valid must never raise, whatever it is given
        return False


def kind(number: str, *, test_numbers: bool = False) -> Kind:
    """The :class:`Kind` of a valid ``number``."""
    result = analyse(validate(number, test_numbers=test_numbers), test_numbers=test_numbers)
    assert result.kind is not None
    return result.kind


def rule(number: str, *, test_numbers: bool = False) -> Rule:
    """The check-digit :class:`Rule` a valid ``number`` passes."""
    result = analyse(validate(number, test_numbers=test_numbers), test_numbers=test_numbers)
    assert result.rule is not None
    return result.rule


def format(number: str) -> str:  # noqa: A001 - python-stdnum's name
    """The usual presentation ``DDMMYY IIIKK``."""
    value = compact(number)
    return f"{value[:6]} {value[6:]}"


def _century(individual: int, yy: int) -> int | None:
    if individual < 500:
        return 1900
    if individual < 750 and yy >= 54:
        return 1800
    if yy < 40:
        return 2000
    if individual >= 900:
        return 1900
    return None


def birth_date(number: str, *, test_numbers: bool = False) -> datetime.date | None:
    """The birth date the number suggests, or None where it encodes none reliably.

    A hint only (prefer the register's own field): None for FH-numbers, for D-numbers (the
    widened series since 2021 breaks the century rule), for numbers valid only under the
    2032 rule, and where the individual number gives no century.
    """
    result = analyse(validate(number, test_numbers=test_numbers), test_numbers=test_numbers)
    if result.rule is not Rule.CLASSIC or result.kind not in (Kind.FNR, Kind.HNR, Kind.TEST_FNR):
        return None
    value = result.compact
    assert value is not None
    day, month, yy = int(value[0:2]), int(value[2:4]) % 40, int(value[4:6])
    century = _century(int(value[6:9]), yy)
    if century is None:
        return None
    try:
        return datetime.date(century + yy, month, day)
    except ValueError:  # 29 February 1900 and 1800: the number is valid, the date hint is not
        return None


def sex(number: str, *, test_numbers: bool = False) -> str | None:
    """``"F"`` or ``"M"`` from the ninth digit (even = F), or None where not encoded.

    A hint only: numbers valid only under the 2032 rule and FH-numbers encode no sex, and a
    number that passes the classic rule may still be a 2032 allocation.
    """
    result = analyse(validate(number, test_numbers=test_numbers), test_numbers=test_numbers)
    if result.rule is not Rule.CLASSIC or result.kind is Kind.FHNR:
        return None
    assert result.compact is not None
    return "M" if int(result.compact[8]) % 2 else "F"
