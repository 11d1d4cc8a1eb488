"""Cleartext keysets: for known-answer tests and deliberate escrow only.

Importing this module is a statement that key material is about to exist outside an
encrypted keyset file. Production code paths never import it.
"""

from __future__ import annotations

import datetime

from koble.pseudonym.keys import KeyInfo, Keyset, KeyStatus, _fingerprint

__all__ = ["export_key", "keyset_from_key"]


def keyset_from_key(material: bytes, *, created: str = "1970-01-01T00:00:00+00:00") -> Keyset:
    """A one-key keyset (version 1, primary) holding exactly ``material`` (32 bytes)."""
    datetime.datetime.fromisoformat(created)
    info = KeyInfo(1, KeyStatus.ENABLED, created, _fingerprint(material))
    return Keyset({1: info}, {1: material}, 1)


def export_key(keyset: Keyset, version: int) -> bytes:
    """The raw material of key ``version``."""
    return keyset._material_any(version)
