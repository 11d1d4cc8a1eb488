"""Organisasjonsnummer: the 9-digit number of an organisation in Enhetsregisteret.

Eight digits and a modulus-11 check digit (weights 3 2 7 6 5 4 3 2). Scalar API in
python-stdnum's shape; whole columns go through ``column.validate_column(..., scheme="orgnr")``.
"""

from __future__ import annotations

from koble.registries.identifiers import _mod11

__all__ = ["LENGTHS", "calc_check_digit", "compact", "format", "is_valid", "validate"]

LENGTHS = range(9, 10)
compact = _mod11.compact


def calc_check_digit(payload: str) -> int | None:
    """The check digit for the first eight digits, or None when no valid number exists."""
    return _mod11.check_digit(payload)


def validate(number: str) -> str:
    """Return the compact form of a valid number; raise ``InvalidIdentifier`` if not."""
    return _mod11.validate(number, LENGTHS)


def is_valid(number: str | None) -> bool:
    """True when ``number`` is a valid organisasjonsnummer; never raises."""
    try:
        return _mod11.reason(number, LENGTHS) is None
    except Exception:  # noqa: BLE001 - is_valid must never raise
        return False


def format(number: str) -> str:  # noqa: A001 - python-stdnum's name
    """The usual presentation ``NNN NNN NNN``."""
    value = compact(number)
    return f"{value[:3]} {value[3:6]} {value[6:]}"
