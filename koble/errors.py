"""The koble exception tree: every error koble raises on purpose is a ``KobleError``.

::

    KobleError
    ├── InputError                 bad input: precise, names file, column and row
    │   ├── UsageError             a request that makes no sense (bad option, bad value)
    │   ├── FileFormatError        missing, unreadable or malformed file
    │   ├── ColumnError            a column that is missing or has the wrong type
    │   └── InvalidIdentifier      an identifier that fails validation (never shows the value)
    ├── AuthorisationError         an operation the caller is not allowed (role, reason, basis)
    └── CryptoError                any failure of keys or ciphertexts: deliberately uninformative

Input errors say exactly what is wrong and where, so an operator can fix the file. They never
include the offending identifier itself: messages end up in logs and terminals, and an
identifier there is a leak. Crypto errors say only that the operation failed, so they cannot
be used as an oracle.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = [
    "AuthorisationError",
    "ColumnError",
    "CryptoError",
    "FileFormatError",
    "InputError",
    "InvalidIdentifier",
    "KobleError",
    "UsageError",
    "redact",
]

# Runs of 6 or more digits (possibly split by one space or hyphen) can be identifiers.
_DIGIT_RUN = re.compile(r"\d(?:[ \-]?\d){5,}")


def redact(text: str) -> str:
    """Replace every run of six or more digits in ``text`` by ``<redacted>``.

    Used on messages koble did not write itself (from polars, pyarrow, the OS) before they
    are shown, since such messages may quote the data that caused them.
    """
    return _DIGIT_RUN.sub("<redacted>", text)


class KobleError(Exception):
    """Root of every error koble raises on purpose. ``exit_code`` is what the CLI returns."""

    exit_code: int = 2


class InputError(KobleError):
    """Bad input, with where it is: ``path``, ``column`` and ``row`` (1-based data row)."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        column: str | None = None,
        row: int | None = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.column = column
        self.row = row
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.path is not None:
            where.append(self.path)
        if self.column is not None:
            where.append(f"column {self.column!r}")
        if self.row is not None:
            where.append(f"row {self.row}")
        return f"{': '.join(where)}: {self.message}" if where else self.message


class UsageError(InputError):
    """A request that cannot be carried out as asked (conflicting options, bad parameter)."""


class FileFormatError(InputError):
    """A file that is missing, unreadable or malformed."""


class ColumnError(InputError):
    """A column that is missing, or present with a type koble cannot use."""


class InvalidIdentifier(InputError, ValueError):  # noqa: N818 - python-stdnum's name
    """An identifier that fails validation. ``reason`` is a stable code; the value never shown."""

    def __init__(self, reason: str, message: str, **where: object) -> None:
        self.reason = reason
        super().__init__(message, **where)  # type: ignore[arg-type]


class AuthorisationError(KobleError):
    """The caller may not do this: missing role, reason or legal basis. Always audited."""

    exit_code = 4


class CryptoError(KobleError):
    """A key, signature or ciphertext operation failed. The message never says why."""

    def __init__(self, message: str = "cryptographic operation failed") -> None:
        super().__init__(message)
