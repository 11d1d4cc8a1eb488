"""libsodium's ristretto255 functions, loaded once, for the OPRF of
:mod:`koble.pseudonym.hazmat.oprf`.

!!! Hazardous material: these are the C functions themselves, called on raw buffers, ``bytes``
or addresses. Only :mod:`~koble.pseudonym.hazmat.oprf`, which validates what it passes them,
should call them.

The functions (``crypto_core_ristretto255_*``, ``crypto_scalarmult_ristretto255*``) are in
the system library (Debian: ``libsodium23``; ristretto255 needs libsodium >= 1.0.18), found
and loaded by the maintained binding pysodium; the OPRF calls the C functions on that handle
directly, so a whole batch works in one buffer (pysodium's per-call wrappers allocate per
element). PyNaCl does not expose these functions (its ristretto255 pull request,
pyca/pynacl#646, was never merged), and its bundled copy does not export them.
``KOBLE_LIBSODIUM``, when set, names the one library file to load instead. The library is
loaded on first use (:func:`sodium`), so importing this module never fails.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Sodium", "sodium"]

_Returns = Callable[..., int]
_Void = Callable[..., None]


@dataclass(frozen=True)
class Sodium:
    """The libsodium functions :mod:`~koble.pseudonym.hazmat.oprf` calls (arguments: buffers,
    bytes or addresses)."""

    from_hash: _Returns
    is_valid_point: _Returns
    scalar_reduce: _Void
    scalar_invert: _Returns
    scalar_mul: _Void
    scalarmult: _Returns
    scalarmult_base: _Returns


#: field -> (symbol, number of pointer arguments, returns an int)
_SIGNATURES = {
    "from_hash": ("crypto_core_ristretto255_from_hash", 2, True),
    "is_valid_point": ("crypto_core_ristretto255_is_valid_point", 1, True),
    "scalar_reduce": ("crypto_core_ristretto255_scalar_reduce", 2, False),
    "scalar_invert": ("crypto_core_ristretto255_scalar_invert", 2, True),
    "scalar_mul": ("crypto_core_ristretto255_scalar_mul", 3, False),
    "scalarmult": ("crypto_scalarmult_ristretto255", 3, True),
    "scalarmult_base": ("crypto_scalarmult_ristretto255_base", 2, True),
}
_CANDIDATES = ("libsodium.so.26", "libsodium.so.23", "libsodium.dylib", "libsodium.dll")


@functools.cache
def sodium() -> Sodium:
    """Load libsodium once; a clear ImportError if it is missing or older than 1.0.18."""
    named = os.environ.get("KOBLE_LIBSODIUM")
    library = None
    if not named:
        try:  # the maintained binding finds and loads the system libsodium
            import pysodium  # type: ignore[import-untyped]

            library = pysodium.sodium
        except (ImportError, OSError, ValueError, TypeError):
            library = None
    found = ctypes.util.find_library("sodium")
    candidates = [named] if named else [*([found] if found else []), *_CANDIDATES]
    for candidate in [] if library is not None else candidates:
        try:
            library = ctypes.CDLL(candidate)
            break
        except OSError:
            continue
    if library is None or library.sodium_init() < 0:
        raise ImportError(
            "blind pseudonyms need libsodium >= 1.0.18: install it (Debian: apt-get install "
            "libsodium23) or set KOBLE_LIBSODIUM to the library file"
        )
    functions = {}
    for field, (symbol, arity, returns) in _SIGNATURES.items():
        try:
            function = getattr(library, symbol)
        except AttributeError:
            raise ImportError(
                f"libsodium has no {symbol}: blind pseudonyms need libsodium >= 1.0.18"
            ) from None
        function.argtypes = [ctypes.c_void_p] * arity
        function.restype = ctypes.c_int if returns else None
        functions[field] = function
    return Sodium(**functions)
