"""Arrow IPC request and response bodies, with a size limit and precise errors.

Bulk endpoints take and return Arrow IPC *streams* (``application/vnd.apache.arrow.stream``):
millions of identifiers go in one request, typed, without JSON's per-value overhead. The
body is read with a hard byte limit (413 beyond it) before it is parsed.

A body's size must bound the memory it takes, so before Arrow reads a batch
(:func:`_refuse_inflating`) the stream's message headers are checked: compressed batches
(LZ4/ZSTD buffers, which Arrow would inflate before any check: a 66 KB body can hold a 2 GiB
column) are refused, as are batches declaring more rows than the body could hold (a null
column costs no bytes at all). Dictionary-encoded (categorical) text is decoded to plain
text, once the size it decodes to is known to be within :data:`DECODED_PER_BYTE` times the
body's (else refused: a one-megabyte value repeated a million times is a small body).
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import AsyncIterator

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
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
    not_arrow = FileFormatError(f"the {what} is not an Arrow IPC stream ({ARROW})")
    try:
        _refuse_inflating(body, what)
        table = pa.ipc.open_stream(body).read_all()
        table.validate(full=True)
        table = _decoded(table, what, DECODED_PER_BYTE * len(body) + (1 << 20))
    except (pa.ArrowException, ValueError, OSError, struct.error, IndexError):
        raise not_arrow from None
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


#: Dictionary-encoded text may decode to at most this many times the body's size (+1 MiB).
DECODED_PER_BYTE = 4


def _decoded(table: pa.Table, what: str, budget: int) -> pa.Table:
    """``table`` with its dictionary-encoded text columns decoded to plain text, refused
    (FileFormatError) when they would decode to more than ``budget`` bytes in all. The size
    is counted from the dictionary's value lengths before anything is decoded."""
    for index, field in enumerate(table.schema):
        kind = field.type
        if not (pa.types.is_dictionary(kind) and _is_text(kind.value_type)):
            continue
        column = table.column(index)
        for chunk in column.chunks:
            lengths = pc.binary_length(chunk.dictionary)
            budget -= pc.sum(pc.take(lengths, chunk.indices)).as_py() or 0
        if budget < 0:
            raise FileFormatError(
                f"the dictionary-encoded (categorical) columns of the {what} decode to more "
                "than its size allows; send them as plain text"
            )
        plain = pa.chunked_array(
            [chunk.dictionary_decode().cast(pa.large_string()) for chunk in column.chunks],
            type=pa.large_string(),
        )
        table = table.set_column(index, field.with_type(pa.large_string()), plain)
    return table


def _is_text(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(kind) or pa.types.is_large_string(kind)
        or pa.types.is_string_view(kind)
    )  # fmt: skip


#: Fewest bytes a row costs in a batch of the types taken (a bit of a bitmap); a batch that
#: declares more rows than this allows for its body's size is refused.
ROWS_PER_BYTE = 8


def _refuse_inflating(body: bytes, what: str) -> None:
    """Refuse, before Arrow reads a batch, a stream whose record or dictionary batches are
    compressed, or that declares more rows than its bytes could hold (see the module).
    A malformed header raises ValueError, struct.error or IndexError (not an Arrow stream)."""
    rows = 0
    for message in pa.ipc.MessageReader.open_stream(body):
        batch = _batch_header(message.metadata.to_pybytes())
        if batch is None:
            continue
        if _field(batch[0], batch, _COMPRESSION) is not None:
            raise FileFormatError(
                f"the {what} is a compressed Arrow IPC stream; compression is not accepted "
                "(a small body could inflate without bound): send it uncompressed"
            )
        length = _field(batch[0], batch, _LENGTH)
        rows += 0 if length is None else _read("<q", batch[0], length)
        if rows < 0 or rows > ROWS_PER_BYTE * len(body) + 64:
            raise FileFormatError(
                f"the {what} declares more rows than its {len(body)} bytes can hold"
            )


# Arrow's Message.fbs: Message {version, header_type, header, bodyLength, custom_metadata};
# RecordBatch {length, nodes, buffers, compression, ...}; DictionaryBatch {id, data, isDelta}.
_HEADER_TYPE, _HEADER, _DICTIONARY_DATA, _LENGTH, _COMPRESSION = 1, 2, 1, 0, 3
_DICTIONARY_BATCH, _RECORD_BATCH = 2, 3
_Table = tuple[bytes, int, int]  # the flatbuffer, the table's position, its vtable's


def _read(fmt: str, buffer: bytes, at: int) -> int:
    if at < 0 or at + struct.calcsize(fmt) > len(buffer):
        raise ValueError("flatbuffer offset out of range")
    value: int = struct.unpack_from(fmt, buffer, at)[0]
    return value


def _table(buffer: bytes, at: int) -> _Table:
    return buffer, at, at - _read("<i", buffer, at)


def _field(buffer: bytes, table: _Table, slot: int) -> int | None:
    """Where field ``slot`` of ``table`` is in ``buffer``, or None when it is absent."""
    _, at, vtable = table
    if 4 + 2 * slot + 2 > _read("<H", buffer, vtable):
        return None
    offset = _read("<H", buffer, vtable + 4 + 2 * slot)
    return None if offset == 0 else at + offset


def _child(buffer: bytes, table: _Table, slot: int) -> _Table | None:
    where = _field(buffer, table, slot)
    return None if where is None else _table(buffer, where + _read("<I", buffer, where))


def _batch_header(metadata: bytes) -> _Table | None:
    """The RecordBatch table of a record or dictionary batch message, else None."""
    message = _table(metadata, _read("<I", metadata, 0))
    kind_at = _field(metadata, message, _HEADER_TYPE)
    kind = 0 if kind_at is None else _read("<B", metadata, kind_at)
    header = _child(metadata, message, _HEADER)
    if header is None or kind not in (_DICTIONARY_BATCH, _RECORD_BATCH):
        return None
    return _child(metadata, header, _DICTIONARY_DATA) if kind == _DICTIONARY_BATCH else header


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
        or pa.types.is_null(kind)
    )  # fmt: skip


def arrow_bytes(frame: pl.DataFrame) -> bytes:
    """``frame`` as one Arrow IPC stream."""
    table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    data: bytes = sink.getvalue().to_pybytes()
    return data
