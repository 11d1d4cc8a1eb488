"""Shared rules for the 11-digit person numbers: weights, classes, reasons.

Both the scalar modules and the vectorised column API read these tables, so the two
implementations can only disagree in their code, never in their constants; the test suite
checks that they agree on arbitrary strings.
"""

from __future__ import annotations

from enum import StrEnum

#: Weights of the first check digit over digits 1-9.
K1_WEIGHTS: tuple[int, ...] = (3, 7, 6, 1, 8, 9, 4, 5, 2)
#: Weights of the second check digit over digits 1-10.
K2_WEIGHTS: tuple[int, ...] = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
#: Under the 2032 rule the first check digit is valid when (weighted sum + k1) mod 11 is one
#: of these residues; the classic rule is residue 0 only.
RESIDUES_2032: frozenset[int] = frozenset({0, 1, 2, 3})

#: Characters ``compact`` removes anywhere in the value: whitespace people type or paste
#: (including no-break and thin spaces), hyphens, colons and dots.
SEPARATORS = " \t\n\r\u00a0\u2009\u202f-:."
#: The same set as a regular-expression character class (identical in Python and Rust regex).
SEPARATOR_CLASS = r"[ \t\n\r\u00a0\u2009\u202f\-:.]"


class Kind(StrEnum):
    """What an 11-digit person number is."""

    FNR = "fnr"  #: fødselsnummer
    DNR = "dnr"  #: D-number: day + 40
    HNR = "hnr"  #: H-number: month + 40
    FHNR = "fhnr"  #: felles hjelpenummer: first digit 8 or 9, no birth date
    TEST_FNR = "test_fnr"  #: synthetic test number (Tenor): month + 80
    TEST_DNR = "test_dnr"  #: synthetic test D-number: day + 40 and month + 80


#: Kinds whose numbers Skatteetaten allocates and which may therefore follow the 2032 rule.
#: H- and FH-numbers are allocated by the health sector and keep the classic rule.
KINDS_2032: frozenset[Kind] = frozenset({Kind.FNR, Kind.DNR, Kind.TEST_FNR, Kind.TEST_DNR})
TEST_KINDS: frozenset[Kind] = frozenset({Kind.TEST_FNR, Kind.TEST_DNR})


class Rule(StrEnum):
    """Which check-digit rule a valid number passes."""

    CLASSIC = "classic"  #: passes the classic rule (may still be a 2032 allocation)
    RULE_2032 = "2032"  #: valid only under the 2032 rule


class Reason(StrEnum):
    """Why a value is not a valid identifier, in the order the checks run."""

    MISSING = "missing"
    CHARACTERS = "invalid_characters"
    LENGTH = "wrong_length"
    DATE = "invalid_date"
    CHECK_DIGIT_1 = "check_digit_1"
    CHECK_DIGIT_2 = "check_digit_2"
    CHECK_DIGIT = "check_digit"
    TEST_NUMBER = "test_number_not_allowed"


MESSAGES: dict[Reason, str] = {
    Reason.MISSING: "value is missing",
    Reason.CHARACTERS: "contains characters other than digits and separators",
    Reason.LENGTH: "wrong number of digits",
    Reason.DATE: "the date part is not a valid day and month for any number class",
    Reason.CHECK_DIGIT_1: "first check digit is wrong",
    Reason.CHECK_DIGIT_2: "second check digit is wrong",
    Reason.CHECK_DIGIT: "check digit is wrong",
    Reason.TEST_NUMBER: "synthetic test number, accepted only when test numbers are allowed",
}

#: The message for a fødselsnummer-family value of 10 digits (reason ``wrong_length``): a
#: spreadsheet that read the column as numbers dropped the leading zero of everyone born on
#: the 1st to the 9th of a month. Said outright, so the fix (store the column as text) is clear.
LEADING_ZERO_HINT = "10 digits: a leading zero may have been dropped by a spreadsheet"
LEADING_ZERO_MESSAGE = f"wrong number of digits ({LEADING_ZERO_HINT})"

#: Days per month; February 29 is checked separately (valid when YY is divisible by 4,
#: since 2000 was a leap year the century never makes it invalid).
DAYS_IN_MONTH: tuple[int, ...] = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def mod11_check(digits: list[int], weights: tuple[int, ...]) -> int | None:
    """The check digit for ``digits`` under ``weights`` (11 -> 0), or None when it would be 10."""
    k = 11 - sum(w * d for w, d in zip(weights, digits, strict=True)) % 11
    if k == 11:
        return 0
    return None if k == 10 else k
