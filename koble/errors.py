"""The koble exception tree: every error koble raises on purpose is a ``KobleError``.

::

    KobleError
    ├── InputError                 bad input: precise, names file, column and row
    │   ├── UsageError             a request that makes no sense (bad option, bad value)
    │   ├── FileFormatError        missing, unreadable or malformed file
    │   │   └── OutputError        an output that cannot be written (disk full, read-only, limit)
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

import functools
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
    "OutputError",
    "UsageError",
    "redact",
    "sanitise",
    "show_path",
]


@functools.cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """The redaction patterns, built from THE person-number shapes
    (:func:`koble.registries.identifiers.scan.shapes`, imported here lazily: that module
    raises errors from this one). With ``\\d`` as the digit, Unicode digits count too."""
    from koble.registries.identifiers.scan import shapes

    _, separated, dotted = shapes(r"\d")
    written = rf"(?:{separated}|{dotted})\d*"  # a person number written with separators
    # Runs of 6 or more digits (possibly split by one space or hyphen) can be identifiers.
    digit_run = re.compile(rf"{written}|\d(?:[ \-]?\d){{5,}}")
    # Shaped like a person number, or 11 digits or more; unless inside a hex token of 16 or
    # more characters with a letter in it (a key id, hash, fingerprint or pseudonym), whose
    # digit runs are part of it, not an identifier.
    person_shape = re.compile(
        r"(?P<hex>(?<![0-9A-Za-z])(?=[0-9]*[A-Fa-f])[0-9A-Fa-f]{16,}(?![0-9A-Za-z]))"
        rf"|{written}|\d{{11,}}"
    )
    return digit_run, person_shape


def redact(text: str) -> str:
    """Replace every run of six or more digits in ``text``, and anything written in a person
    number's shape (``DD.MM.YY NNNNN``, ``DDMMYY  NNNNN``), by ``<redacted>``.

    Used on messages koble did not write itself (from polars, pyarrow, the OS) before they
    are shown, since such messages may quote the data that caused them.
    """
    return _patterns()[0].sub("<redacted>", text)


# C0 and C1 control characters, DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _ESCAPES:
        return _ESCAPES[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def sanitise(text: str) -> str:
    """``text`` made safe to print as one line: control characters (a bare CR from a file's
    line endings, an ESC starting a terminal sequence) shown as escapes such as ``\\r``,
    and anything shaped like a person number (the shapes of
    :func:`~koble.registries.identifiers.scan.shapes`, valid or not, or 11 or more digits)
    replaced by ``<redacted>`` (a hash, key id or pseudonym in hex is kept whole).

    Every koble error goes through this when it is turned into text (``str(exc)``), so no
    message a user, a log or an HTTP client sees can carry either, whoever wrote it.
    """
    numbers = _patterns()[1].sub(lambda m: m.group("hex") or "<redacted>", text)
    return _CONTROL.sub(_escape, numbers)


def show_path(path: str) -> str:
    """A path a user gave, made safe to print but shown whole: control characters escaped,
    and only digit runs that hold a valid person number (THE rule,
    :func:`~koble.registries.identifiers.scan.contains_person_number`) replaced by
    ``<redacted>``. Paths are the user's own words, and an operator with several
    timestamped exports (``export_20241205235959.csv``) must see which one failed; the broad
    redaction of :func:`sanitise` is for text that may quote data."""
    from koble.registries.identifiers.scan import contains_person_number

    def hide(match: re.Match[str]) -> str:
        return "<redacted>" if contains_person_number(match.group()) else match.group()

    return _CONTROL.sub(_escape, _patterns()[0].sub(hide, path))


class KobleError(Exception):
    """Root of every error koble raises on purpose. ``exit_code`` is what the CLI returns.

    Its text always passes through :func:`sanitise`: one line, no control characters and no
    person number, whatever the message quoted.
    """

    exit_code: int = 2

    def __str__(self) -> str:
        return sanitise(super().__str__())


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

    def _render(self, *, with_path: bool = True) -> str:
        where = []
        if self.path is not None and with_path:
            where.append(self.path)
        if self.column is not None:  # a name is data: it may hold an identifier
            where.append(f"column {redact(self.column)!r}")
        if self.row is not None:
            where.append(f"row {self.row}")
        return f"{': '.join(where)}: {self.message}" if where else self.message

    def __str__(self) -> str:
        """The message sanitised as every koble error's is, but the path shown whole unless
        it holds a valid person number (:func:`show_path`)."""
        rest = sanitise(self._render(with_path=False))
        return rest if self.path is None else f"{show_path(self.path)}: {rest}"


class UsageError(InputError):
    """A request that cannot be carried out as asked (conflicting options, bad parameter)."""


class FileFormatError(InputError):
    """A file that is missing, unreadable or malformed."""


class ColumnError(InputError):
    """A column that is missing, or present with a type koble cannot use."""


class OutputError(FileFormatError):
    """An output koble cannot write: the disk is full, the directory read-only or missing, a
    file-size limit was hit. The user's environment, not a bug: exit 2, naming the path."""


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
