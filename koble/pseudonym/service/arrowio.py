"""Arrow IPC request and response bodies, with a size limit and precise errors.

Bulk endpoints take and return Arrow IPC *streams* (``application/vnd.apache.arrow.stream``):
millions of identifiers go in one request, typed, without JSON's per-value overhead. The
body is read with a hard byte limit (413 beyond it) before it is parsed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import polars as pl
import pyarrow as pa
from starlette.requests import ClientDisconnect

from koble.errors import FileFormatError, KobleError, redact

__all__ = [
    "ARROW",
    "ClientAbortedError",
    "TooLargeError",
    "arrow_bytes",
    "read_body",
    "read_table",
]

ARROW = "application/vnd.apache.arrow.stream"


class TooLargeError(KobleError):
    """The request body is over the configured limit (HTTP 413)."""

    exit_code = 2


class ClientAbortedError(KobleError):
    """The body never arrived whole: the client closed the connection, or sent a body the
    HTTP layer could not parse (malformed chunks), which uvicorn answers with 400 itself.
    Recorded as 400 with the outcome "client-aborted", never as a server error."""

    exit_code = 2

    def __init__(self) -> None:
        super().__init__(
            "the request body did not arrive whole (connection closed, or malformed framing)"
        )


async def read_body(stream: AsyncIterator[bytes], limit: int) -> bytes:
    """The whole body, refusing it as soon as it passes ``limit`` bytes;
    :class:`ClientAbortedError` when the connection ends before the body does."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in stream:
            size += len(chunk)
            if size > limit:
                raise TooLargeError(f"request body over the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientAbortedError() from None
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
    _refuse_repeated_names(table.schema.names, what)
    for index, field in enumerate(table.schema):
        if not _allowed(field.type):
            raise FileFormatError(
                f"column {index + 1} ({redact(field.name)!r}) of the {what} has type "
                f"{field.type}; send text, binary, integer or null columns"
            )
    try:
        frame = pl.from_arrow(table)
    except BaseException as exc:  # polars panics are BaseException; never let one escape
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise FileFormatError(f"the {what} holds columns that cannot be read") from None
    if not isinstance(frame, pl.DataFrame):
        raise FileFormatError(f"the {what} is not a table")
    return frame


def _refuse_repeated_names(names: list[str], what: str) -> None:
    """Refuse a body that names a column twice (polars cannot read it, and a renamed copy of
    an identifier column would pass through). The names are shown unless one holds a digit:
    a name is data, and a caller may have put an identifier there."""
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        if any(char.isdigit() for name in repeated for char in name):
            listed = f"{len(repeated)} names, withheld: they hold digits"
        else:
            listed = ", ".join(repr(name) for name in repeated)
        raise FileFormatError(
            f"the {what} has repeated column names ({listed}): every column needs a name of its own"
        )


def _allowed(kind: pa.DataType) -> bool:
    """The column types bulk endpoints take: identifiers and pseudonyms are text (or binary
    elements in blind mode); integers and nulls are tolerated in other columns."""
    return bool(
        pa.types.is_string(kind) or pa.types.is_large_string(kind)
        or pa.types.is_string_view(kind) or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind)
        or pa.types.is_fixed_size_binary(kind) or pa.types.is_integer(kind)
        or pa.types.is_null(kind) or (pa.types.is_dictionary(kind)
        and pa.types.is_string(kind.value_type))
    )  # fmt: skip


def arrow_bytes(frame: pl.DataFrame) -> bytes:
    """``frame`` as one Arrow IPC stream."""
    table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    data: bytes = sink.getvalue().to_pybytes()
    return data
