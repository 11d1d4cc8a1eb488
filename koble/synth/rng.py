"""Independent, reproducible random streams: one per (table, chunk).

Every stream is a PCG64 generator seeded from ``SeedSequence([seed, table, chunk])`` where
``table`` is a stable CRC32 of the table name. Tables therefore never share a stream (adding
a table does not change the others), and a chunk's stream does not depend on how many
chunks came before it.
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["stream"]


def stream(seed: int, table: str, chunk: int = 0) -> np.random.Generator:
    """The generator for ``table`` (and ``chunk`` of it) under ``seed``."""
    key = zlib.crc32(table.encode("utf-8"))
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, key, chunk])))
