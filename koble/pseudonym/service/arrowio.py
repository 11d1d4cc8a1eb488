"""Arrow IPC request and response bodies, with a size limit and precise errors.

Bulk endpoints take and return Arrow IPC *streams* (``application/vnd.apache.arrow.stream``):
millions of identifiers go in one request, typed, without JSON's per-value overhead. The
body is read with a hard byte limit (413 beyond it) before it is parsed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import polars as pl
import pyarrow as pa

from koble.errors import FileFormatError, KobleError

__all__ = ["ARROW", "TooLargeError", "arrow_bytes", "read_body", "read_table"]

ARROW = "application/vnd.apache.arrow.stream"


class TooLargeError(KobleError):
    """The request body is over the configured limit (HTTP 413)."""

    exit_code = 2


async def read_body(stream: AsyncIterator[bytes], limit: int) -> bytes:
    """The whole body, refusing it as soon as it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise TooLargeError(f"request body over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def read_table(body: bytes, *, what: str = "request body") -> pl.DataFrame:
    """The Arrow IPC stream in ``body`` as a DataFrame; anything else is a FileFormatError."""
    if not body:
        raise FileFormatError(f"the {what} is empty; send an Arrow IPC stream ({ARROW})")
    try:
        table = pa.ipc.open_stream(body).read_all()
        table.validate(full=True)
    except (pa.ArrowException, ValueError, OSError):
        raise FileFormatError(f"the {what} is not an Arrow IPC stream ({ARROW})") from None
    frame = pl.from_arrow(table)
    if not isinstance(frame, pl.DataFrame):
        raise FileFormatError(f"the {what} is not a table")
    return frame


def arrow_bytes(frame: pl.DataFrame) -> bytes:
    """``frame`` as one Arrow IPC stream."""
    table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    data: bytes = sink.getvalue().to_pybytes()
    return data
