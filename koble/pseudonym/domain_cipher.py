"""A keyset's primary key for one domain, to pseudonymise whole columns where the keyset
cannot go: an engine's worker processes (issue 17: the TTP's pseudonymisation on Spark).

A :class:`~koble.pseudonym.keys.Keyset` refuses to be pickled, so no key reaches a file, a
cache or another process by accident. A :class:`DomainCipher` is the one deliberate
exception: it holds the domain's derived key (HKDF of the primary key and the domain, as
:func:`koble.pseudonym.pseudonymise.pseudonymise_values` uses it, never the keyset's own
material, which would open every domain) and it can be pickled, because an engine ships the
function that uses it to its workers. Hand it only to an engine session that is the TTP's
own. Its ``repr`` shows the domain and key version, never the key.

The scheme is koble's, bit for bit (:mod:`koble.pseudonym.scheme`: encode, AES, format) over
a whole Arrow array at a time; the values must be valid, compact, resolved identifiers (the
TTP's step has checked them); anything else stops with an error that does not show it.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from koble.errors import UsageError
from koble.pseudonym import scheme
from koble.pseudonym.keys import Keyset, check_domain

__all__ = ["DomainCipher", "domain_cipher"]

_COMPACT = r"^[0-9]{1,19}$"


class DomainCipher:
    """Pseudonyms in one domain under one key version (see the module docstring)."""

    __slots__ = ("_key", "domain", "id_scheme", "version")

    def __init__(self, key: bytes, version: int, domain: str, id_scheme: scheme.IdScheme) -> None:
        self._key = key
        self.version = version
        self.domain = domain
        self.id_scheme = id_scheme

    def pseudonymise(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """The pseudonym of every identifier of ``values`` (NULL stays NULL), as strings."""
        series = pl.Series(values).cast(pl.String)
        present = series.drop_nulls()
        if not present.str.contains(_COMPACT).all():
            raise UsageError(
                "a value is not a compact identifier (1-19 digits): validate and resolve the "
                "column before pseudonymising it"
            )
        encrypted = scheme.encrypt(self._key, scheme.encode(present, self.id_scheme))
        made = scheme.format_pseudonyms(self.version, encrypted).to_arrow().cast(pa.string())
        if present.len() == series.len():
            return made
        mask = series.is_not_null().to_arrow()
        return pc.replace_with_mask(pa.nulls(len(series), pa.string()), mask, made)

    def __repr__(self) -> str:
        return f"DomainCipher(domain={self.domain!r}, version={self.version}, key=<hidden>)"

    def __reduce__(self) -> tuple[Any, ...]:
        # deliberate: an engine pickles the function that holds this to reach its workers
        return (DomainCipher, (self._key, self.version, self.domain, self.id_scheme))


def domain_cipher(keyset: Keyset, domain: str, id_scheme: scheme.IdScheme = "fnr") -> DomainCipher:
    """``keyset``'s primary key for ``domain`` as a :class:`DomainCipher`."""
    version = keyset.primary.version
    return DomainCipher(keyset._domain_key(version, check_domain(domain)), version, domain,
                        id_scheme)  # fmt: skip
