"""Naming the secret and the file when a key fails to open.

Several secrets can be in play in one command (the keyset's passphrase, the audit key's,
a party key's), and :class:`~koble.errors.CryptoError` deliberately says only that the
operation failed. :func:`opening` adds which secret failed to open which file, so the user
knows which passphrase to fix, and still never why it failed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from koble.errors import CryptoError

__all__ = ["opening"]


@contextmanager
def opening(what: str, path: str | Path, secret: str) -> Iterator[None]:
    """Turn a :class:`CryptoError` raised inside into "cannot open WHAT PATH with SECRET: ...".

    ``secret`` names where the secret came from ("the passphrase from KOBLE_AUDIT_PASSPHRASE"),
    never the secret itself.
    """
    try:
        yield
    except CryptoError:
        raise CryptoError(f"cannot open {what} {path} with {secret}: {CryptoError()}") from None
