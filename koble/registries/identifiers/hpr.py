"""HPR number: the health-personnel number in Helsepersonellregisteret.

A serial number with a modulus-11 check digit as its last digit (weights 2-7 repeating from
the right), the same scheme as organisasjonsnummer. Numbers in use have seven digits; six to
nine are accepted so the series can grow. The check-digit scheme is not published as a
standard; it is confirmed by every HPR number found in public test material (see
tests/identifiers/test_hpr.py). Prescribers in Reseptregisteret are pseudonymised by HPR number.
"""

from __future__ import annotations

from koble.registries.identifiers import _mod11

__all__ = ["LENGTHS", "calc_check_digit", "compact", "format", "is_valid", "validate"]

LENGTHS = range(6, 10)
compact = _mod11.compact


def calc_check_digit(payload: str) -> int | None:
    """The check digit for ``payload``, or None when no valid number exists for it."""
    return _mod11.check_digit(payload)


def validate(number: str) -> str:
    """Return the compact form of a valid number; raise ``InvalidIdentifier`` if not."""
    return _mod11.validate(number, LENGTHS)


def is_valid(number: str | None) -> bool:
    """True when ``number`` is a valid HPR number; never raises."""
    try:
        return _mod11.reason(number, LENGTHS) is None
    except Exception:  # noqa: BLE001 - is_valid must never raise
        return False


def format(number: str) -> str:  # noqa: A001 - python-stdnum's name
    """HPR numbers are written as plain digits."""
    return compact(number)
