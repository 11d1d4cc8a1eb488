"""What the audit log refuses to hold: identifiers and anything that looks like key material.

:class:`~koble.pseudonym.audit.AuditLog` passes every value through these checks before it
writes a line. A value is refused when it contains a valid fødselsnummer, D-, H-, FH- or test
number (koble's one rule, :func:`koble.registries.identifiers.scan.contains_person_number`:
11 digits, ``DDMMYY NNNNN`` or ``DD.MM.YY NNNNN`` with up to three separators, passing the
check-digit and date rules; Unicode digits count as digits),
or, outside the fields made for them, a run of 32 or more hex digits or 40 or more base64
characters (standard or URL-safe alphabet) that could be a key, a hash or a token. Hashes go
in ``input_sha256``/``output_sha256`` and key ids in ``key_id``, which are checked against
their exact formats instead. Errors name the field and never contain the value.

The key-material rule is deliberately blunt: a long path or name without dots or spaces is
refused too; shorten it, or record it under a detail name split into parts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from koble.errors import UsageError
from koble.pseudonym.audit_verify import DETAIL_KEY
from koble.pseudonym.keys import DOMAIN_PATTERN
from koble.registries.identifiers.scan import ascii_digits, contains_person_number, shapes

__all__ = [
    "DetailValue",
    "check_count",
    "check_details",
    "check_pattern",
    "check_text",
    "contains_person_number",
    "refuse_sensitive",
]

DetailValue = str | int | float | bool | None

_HEX_RUN = re.compile(r"[0-9A-Fa-f]{32,}")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_\-]{40,}")
#: A person-number shape with no ASCII letter or digit beside it. The standalone rule
#: (:func:`contains_person_number` with ``standalone``) finds only numbers no letter or digit
#: touches, so each one it finds matches this too: a value without a match cannot hold one,
#: and is passed without that rule's column scan (about 0.4 ms a value, where a job's audit
#: log checks three hashes or key ids per event). A SHA-256 in hex never matches: every
#: character of it is a letter or digit.
_MAYBE_STANDALONE = re.compile(rf"(?<![0-9A-Za-z])(?:{'|'.join(shapes())})(?![0-9A-Za-z])")


def refuse_sensitive(field: str, value: str, *, key_like: bool = True) -> None:
    """Raise :class:`UsageError` when ``value`` holds a person number or, with ``key_like``,
    something that could be key material. The message names the field, never the value."""
    if contains_person_number(value):
        raise UsageError(
            f"audit field {field!r} contains a person number; "
            "the audit log must never hold identifiers"
        )
    text = ascii_digits(value)
    if key_like and (_HEX_RUN.search(text) or _BASE64_RUN.search(text)):
        raise UsageError(
            f"audit field {field!r} contains a long hex or base64 run that could be key "
            "material; record key ids and hashes in their own fields"
        )


def check_text(field: str, value: object, *, optional: bool) -> str | None:
    """A non-empty free-text field (actor, operation, domain), or None when optional."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise UsageError(f"audit field {field!r} must be a non-empty string")
    refuse_sensitive(field, value)
    return value


def check_domain_text(value: object) -> str | None:
    """The ``domain`` field: a pseudonym domain (``project:p2026-014-adverse-drug-cohort``)
    is a name, not key material, however long its run of letters, digits and hyphens; it is
    still refused if it holds a person number. Anything that is not a valid domain gets the
    free-text rules."""
    if isinstance(value, str) and DOMAIN_PATTERN.fullmatch(value):
        refuse_sensitive("domain", value, key_like=False)
        return value
    return check_text("domain", value, optional=True)


def check_count(field: str, value: object) -> int | None:
    """A row count: a non-negative integer (not a bool), or None."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise UsageError(f"audit field {field!r} must be a non-negative integer")
    refuse_sensitive(field, str(value), key_like=False)
    return value


def check_pattern(field: str, value: object, pattern: re.Pattern[str], what: str) -> str | None:
    """A field with an exact format (key id, SHA-256 hex), exempt from the key-material rule
    because the format already bounds what it can hold; None passes.

    Hex digests and fingerprints are full of digit runs, and about one hash in a few hundred
    holds 11 digits that happen to pass the fødselsnummer checks. Here only a person number
    standing alone (no letter or digit touching it) is refused; a run inside a hex string
    is part of the hash, not an identifier.
    """
    if value is None:
        return None
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise UsageError(f"audit field {field!r} must be {what}")
    if _may_hold_standalone(value) and contains_person_number(value, standalone=True):
        raise UsageError(
            f"audit field {field!r} contains a person number; "
            "the audit log must never hold identifiers"
        )
    return value


def _may_hold_standalone(value: str) -> bool:
    """Whether ``value`` could hold a person number standing alone (:data:`_MAYBE_STANDALONE`);
    False means it holds none, so the full check is not needed."""
    return _MAYBE_STANDALONE.search(ascii_digits(value)) is not None


def check_details(value: Mapping[str, DetailValue] | None) -> dict[str, DetailValue] | None:
    """A copy of ``details`` after checking every name and value; None passes."""
    if value is None:
        return None
    clean: dict[str, DetailValue] = {}
    for key, item in value.items():
        if not isinstance(key, str) or DETAIL_KEY.fullmatch(key) is None:
            raise UsageError("detail names must match [a-z][a-z0-9_]{0,39}")
        refuse_sensitive("details", key)
        field = f"details.{key}"
        if isinstance(item, float) and not math.isfinite(item):
            raise UsageError(f"audit field {field!r} must be a finite number")
        if item is not None and not isinstance(item, str | int | float):
            raise UsageError(f"audit field {field!r} must be a string, number, boolean or None")
        if item is not None and not isinstance(item, bool):
            refuse_sensitive(field, item if isinstance(item, str) else repr(item))
        clean[key] = item
    return clean
