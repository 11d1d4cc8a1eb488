"""Small file helpers shared across koble."""

from __future__ import annotations

import hashlib
from pathlib import Path

from koble.errors import FileFormatError

__all__ = ["read_text", "sha256_file"]


def sha256_file(path: str | Path) -> str:
    """Lower-case hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_text(path: str | Path) -> str:
    """A UTF-8 text file's content; a missing or unreadable file is a FileFormatError naming it."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileFormatError("no such file", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"cannot read the file: {exc}", path=path) from None
