"""Keysets: versioned pseudonym keys with one primary, in the manner of Tink.

A :class:`Keyset` holds numbered keys (versions 1, 2, ...), each *enabled*, *disabled* or
*destroyed*, and names one enabled key as primary: new pseudonyms are made with the primary,
and a pseudonym records the version that made it, so older pseudonyms stay reversible while
their key is enabled. Key bytes never leave the object through its public API: there is no
attribute, repr or pickle that shows them. Code in :mod:`koble.pseudonym` reaches the
material through :meth:`Keyset._material`; cleartext export for tests and escrow lives in
the deliberately named :mod:`koble.pseudonym.insecure_cleartext`.

Randomness and the clock are passed in (``randbytes``, ``now``) so that tests and auditors
can reproduce a keyset exactly.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from koble.errors import UsageError
from koble.pseudonym.hazmat.primitives import KEY_BYTES, hkdf_sha256
from koble.pseudonym.unshareable import Unshareable
from koble.registries.identifiers.scan import contains_person_number

__all__ = ["DOMAIN_PATTERN", "KeyInfo", "KeyStatus", "Keyset", "RandBytes", "check_domain"]

RandBytes = Callable[[int], bytes]
Clock = Callable[[], datetime.datetime]
MAX_VERSION = 0xFFFF
DOMAIN_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,63}$")
_DOMAIN_SALT = b"koble/pseudonym/domain/v1"
_FINGERPRINT_INFO = b"koble/pseudonym/fingerprint/v1"


class KeyStatus(StrEnum):
    ENABLED = "enabled"  #: usable for new pseudonyms (if primary) and for reversing
    DISABLED = "disabled"  #: kept but refused for every use until enabled again
    DESTROYED = "destroyed"  #: material erased; pseudonyms it made can never be reversed


@dataclass(frozen=True)
class KeyInfo:
    """Public facts about one key: never the material."""

    version: int
    status: KeyStatus
    created: str
    fingerprint: str

    @property
    def key_id(self) -> str:
        """The printable id used in logs and manifests: ``v<version>-<fingerprint>``."""
        return f"v{self.version}-{self.fingerprint}"


def check_domain(domain: str) -> str:
    """A domain is a registry or project name: lowercase letters, digits and ``_.:-``."""
    if not DOMAIN_PATTERN.match(domain):
        raise UsageError(  # never the value: it may be an identifier typed in the wrong place
            "invalid domain name: use 1-64 lowercase letters, digits and _.:- "
            "starting with a letter or digit"
        )
    # A domain is printed, audited and written into reports: it must never hold an identifier.
    if contains_person_number(domain):
        raise UsageError("invalid domain name: it holds a person number")
    return domain


def _fingerprint(material: bytes) -> str:
    derived = hkdf_sha256(material, info=_FINGERPRINT_INFO, salt=b"", length=32)
    return hashlib.sha256(derived).hexdigest()[:16]


class Keyset(Unshareable):
    """Versioned pseudonym keys with one primary. Never pickled, never printed."""

    refusal = "a Keyset cannot be pickled or copied; save it with koble.pseudonym.keystore"

    __slots__ = ("__weakref__", "_infos", "_keys", "_primary")

    def __init__(self, infos: dict[int, KeyInfo], keys: dict[int, bytes], primary: int) -> None:
        self._infos = dict(infos)
        self._keys = dict(keys)
        self._primary = primary
        self._check()

    def _check(self) -> None:
        if self._primary not in self._infos:
            raise UsageError("the primary key is not in the keyset")
        if self._infos[self._primary].status is not KeyStatus.ENABLED:
            raise UsageError("the primary key must be enabled")
        for version, info in self._infos.items():
            has = version in self._keys
            if (info.status is KeyStatus.DESTROYED) == has:
                raise UsageError(f"key v{version}: material and status disagree")
            if has and len(self._keys[version]) != KEY_BYTES:
                raise UsageError(f"key v{version}: wrong key length")
            if has and _fingerprint(self._keys[version]) != info.fingerprint:
                raise UsageError(f"key v{version}: material does not match its fingerprint")

    @classmethod
    def create(cls, *, randbytes: RandBytes, now: Clock) -> Keyset:
        """A new keyset with one enabled primary key (version 1)."""
        material = randbytes(KEY_BYTES)
        info = KeyInfo(1, KeyStatus.ENABLED, now().isoformat(), _fingerprint(material))
        return cls({1: info}, {1: material}, 1)

    # -- public facts ------------------------------------------------------------------
    @property
    def primary(self) -> KeyInfo:
        return self._infos[self._primary]

    @property
    def keys(self) -> list[KeyInfo]:
        return [self._infos[v] for v in sorted(self._infos)]

    def info(self, version: int) -> KeyInfo:
        if version not in self._infos:
            raise UsageError(f"no key v{version} in the keyset")
        return self._infos[version]

    # -- life cycle --------------------------------------------------------------------
    def rotate(self, *, randbytes: RandBytes, now: Clock) -> KeyInfo:
        """Add a new key and make it primary; older keys stay enabled for reversing."""
        version = max(self._infos) + 1
        if version > MAX_VERSION:
            raise UsageError("the keyset has used every key version")
        material = randbytes(KEY_BYTES)
        info = KeyInfo(version, KeyStatus.ENABLED, now().isoformat(), _fingerprint(material))
        self._infos[version], self._keys[version] = info, material
        self._primary = version
        return info

    def set_primary(self, version: int) -> None:
        if self.info(version).status is not KeyStatus.ENABLED:
            raise UsageError(f"key v{version} is not enabled and cannot be primary")
        self._primary = version

    def disable(self, version: int) -> None:
        self._change(version, KeyStatus.DISABLED)

    def enable(self, version: int) -> None:
        self._change(version, KeyStatus.ENABLED)

    def destroy(self, version: int) -> None:
        """Erase a key's material for good; pseudonyms it made can never be reversed."""
        self._change(version, KeyStatus.DESTROYED)
        self._keys.pop(version, None)

    def _change(self, version: int, status: KeyStatus) -> None:
        info = self.info(version)
        if info.status is KeyStatus.DESTROYED:
            raise UsageError(f"key v{version} is destroyed")
        if version == self._primary and status is not KeyStatus.ENABLED:
            raise UsageError(f"key v{version} is the primary; rotate or set another first")
        self._infos[version] = replace(info, status=status)

    # -- material, for koble.pseudonym only --------------------------------------------
    def _material(self, version: int) -> bytes:
        """The key bytes of an enabled key. Private to koble.pseudonym."""
        info = self.info(version)
        if info.status is not KeyStatus.ENABLED:
            raise UsageError(f"key v{version} is {info.status.value}")
        return self._keys[version]

    def _material_any(self, version: int) -> bytes:
        """The key bytes of an enabled or disabled key, for saving. Private to koble.pseudonym."""
        if version not in self._keys:
            raise UsageError(f"key v{version} has no material")
        return self._keys[version]

    def _domain_key(self, version: int, domain: str) -> bytes:
        """The key of ``domain`` under key ``version`` (HKDF-SHA256 with the domain as info)."""
        return hkdf_sha256(
            self._material(version), info=check_domain(domain).encode(), salt=_DOMAIN_SALT
        )

    # -- no leaks ----------------------------------------------------------------------
    def __repr__(self) -> str:
        keys = ", ".join(f"{i.key_id}:{i.status.value}" for i in self.keys)
        return f"Keyset(primary=v{self._primary}, keys=[{keys}])"
