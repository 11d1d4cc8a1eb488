"""The answer to a sealed ingest: the forwarded batch and the rejects, in one body.

``POST /v1/ingest`` answers 200 with media type ``application/vnd.koble.ingest-result``::

    offset   size   content
    0        8      magic b"KOBLEIR1"
    8        8      N, the length of the forwarded batch: unsigned, big-endian
    16       N      the forwarded batch, byte for byte what ``koble ingest pseudonymise``
                    writes (sealed to the registry; the sender cannot open it)
    16 + N   rest   the rejects as one Arrow IPC stream: batch_id, row (1-based), column,
                    reason, message; zero rows when every identifier was valid

The sender gets back the rows the TTP rejected (its own rows: it still has the identifiers)
together with the batch to pass on, so nothing is dropped silently under ``partial=true``;
the rejects never hold an identifier. Without ``partial`` a batch with any reject is not
forwarded at all: that is a 422 whose body is the rejects stream alone.
"""

from __future__ import annotations

import struct

import polars as pl

from koble.errors import FileFormatError
from koble.pseudonym.service.arrowio import read_table

__all__ = ["INGEST_RESULT", "MAGIC", "pack", "unpack"]

INGEST_RESULT = "application/vnd.koble.ingest-result"
MAGIC = b"KOBLEIR1"
_LENGTH = struct.Struct(">Q")
_HEADER = len(MAGIC) + _LENGTH.size


def pack(forwarded: bytes, rejects_stream: bytes) -> bytes:
    """One ingest result from the forwarded batch and the rejects' Arrow IPC stream."""
    return b"".join((MAGIC, _LENGTH.pack(len(forwarded)), forwarded, rejects_stream))


def unpack(body: bytes) -> tuple[bytes, pl.DataFrame]:
    """The forwarded batch and the rejects table of an ingest result."""
    if len(body) < _HEADER or not body.startswith(MAGIC):
        raise FileFormatError(f"the service's answer is not an ingest result ({INGEST_RESULT})")
    (length,) = _LENGTH.unpack_from(body, len(MAGIC))
    if length > len(body) - _HEADER:
        raise FileFormatError("the service's ingest result is cut short")
    forwarded = body[_HEADER : _HEADER + length]
    return forwarded, read_table(body[_HEADER + length :], what="rejects in the ingest result")
