"""A registry's extract streamed from the engine into its delivered file, counted on the way.

The extract query (:func:`koble.linkage.steps_registry.extract_step`) gives the joined rows
sorted: the rows inside the approved period first (flag column :data:`IN_PERIOD`), then by
løpenummer and every variable. Held whole, the rows inside the period cost memory outside
the engine's limit in proportion to the delivery (about 36 bytes a row for Reseptregisteret:
2.2 GB at the national job's 16-fold rows, beside DuckDB's own capped buffer pool). Here they
go a batch at a time from the engine's stream into the delivery's writer
(:func:`koble.linkage.formats.write_delivery_batches`: Parquet and CSV hold a batch and a
row group; the same bytes as the rows written as one frame), and what the registry's report
and codebook say of the file is counted from the same batches: rows, distinct løpenummer,
each column's nulls, and duplicate rows (the rows are sorted on every column, so equal rows
are adjacent: a batch is compared with itself and with the last row of the batch before).
Of the rows outside the period only their distinct løpenummer are kept, to count the
persons found. What stays in Python is two batches (one being written while the next is
read and counted, in a thread of its own: :meth:`_Counter.reading`), a row group and the
distinct løpenummer.

The file is written under a hidden name beside its final one and renamed to it only when
the caller's ``with`` ends without an error (the registry's checks that the delivery is not
empty come first); on an error it is removed (:func:`koble.files.atomic_write`: fsynced
with its directory, a replaced file's permissions kept).
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from koble.errors import OutputError
from koble.files import atomic_write
from koble.linkage.codebook import CodebookFile, counted_file, sorted_duplicates
from koble.linkage.engine import Engine, Table
from koble.linkage.formats import write_delivery_batches

__all__ = ["IN_PERIOD", "StreamedExtract", "held_extract", "streamed_extract"]

#: The extract query's flag column: TRUE for a row inside the approved period (sorted first).
IN_PERIOD = "_in_period"


@dataclass
class StreamedExtract:
    """What was written and counted: the delivered file's rows and codebook entry, and the
    join's figures over every row it found (inside the period or not)."""

    path: Path  # the delivered file (its final name)
    rows: int = 0  # rows the join found, inside the period or not
    delivered: int = 0  # rows inside the period: the file's rows
    persons: int = 0  # distinct løpenummer found
    persons_inside: int = 0  # distinct løpenummer delivered
    duplicates: int = 0  # delivered rows equal to an earlier one
    entry: CodebookFile | None = None  # the file's codebook entry


@dataclass
class _Counter:
    """The running counts over the batches (see the module docstring)."""

    serial: str
    schema: pl.Schema
    result: StreamedExtract
    nulls: dict[str, int] = field(default_factory=dict)
    inside: list[pl.Series] = field(default_factory=list)  # distinct løpenummer per batch
    outside: list[pl.Series] = field(default_factory=list)
    last: pl.DataFrame | None = None  # the last delivered row so far
    pending: Future[pl.DataFrame | None] | None = None  # the batch being read ahead

    @contextlib.contextmanager
    def reading(self, reader: pa.RecordBatchReader) -> Iterator[Iterator[pl.DataFrame]]:
        """The rows inside the period as frames with ``schema``'s types, counted as they
        pass; the rest only counted.

        One thread besides the caller's reads and counts: while the writer encodes a batch,
        that thread counts it and reads the next one from the engine (the engine's export,
        Polars' conversion and counts release the GIL), so the engine's stream, the counts
        and the writer overlap instead of taking turns. It holds one batch ahead at most;
        the batches reach the writer one at a time, in the engine's order, and the stream
        ends only once every batch is counted. However the ``with`` ends (the writer done,
        or stopped by an error), the thread's batch is finished, the stream closed and the
        thread stopped before it is left, whether or not the writer closed the iterator."""
        frames = self._frames(reader)
        with ThreadPoolExecutor(1, thread_name_prefix="koble-extract") as pool:
            try:
                yield self._ahead(pool, frames)
            finally:
                if self.pending is not None:  # a batch the writer never asked for
                    self.pending.cancel()
                    with contextlib.suppress(Exception):  # the writer's error comes first
                        self.pending.exception()
                pool.submit(frames.close).result()

    def _ahead(
        self, pool: ThreadPoolExecutor, frames: Generator[pl.DataFrame, None, None]
    ) -> Iterator[pl.DataFrame]:
        """``frames`` read one ahead in ``pool``'s thread, each counted there once handed on."""
        self.pending = pool.submit(next, frames, None)
        while (frame := self.pending.result()) is not None:
            self.pending = pool.submit(self._count_then_next, frame, frames)
            yield frame

    def _count_then_next(
        self, frame: pl.DataFrame, frames: Iterator[pl.DataFrame]
    ) -> pl.DataFrame | None:
        """Count ``frame`` (handed to the writer), then read the next one, or None at the end."""
        self._count(frame)
        return next(frames, None)

    def _frames(self, reader: pa.RecordBatchReader) -> Generator[pl.DataFrame, None, None]:
        """The engine's batches turned into frames of the rows inside the period; the rows
        outside give only their distinct løpenummer."""
        kept = [name for name in reader.schema.names if name != IN_PERIOD]
        for batch in reader:
            self.result.rows += batch.num_rows
            inside = int(pc.sum(batch.column(IN_PERIOD)).as_py() or 0)  # counts the TRUEs
            if inside and self.outside:
                raise RuntimeError("the extract's rows inside the period did not come first")
            if inside < batch.num_rows:
                rest = pl.from_arrow(batch.column(self.serial).slice(inside))
                assert isinstance(rest, pl.Series)
                self.outside = _distinct(self.outside, rest)
            if inside:
                frame = pl.from_arrow(batch.slice(0, inside).select(kept))
                assert isinstance(frame, pl.DataFrame)
                yield frame.cast(self.schema)

    def _count(self, frame: pl.DataFrame) -> None:
        self.result.delivered += frame.height
        for name, n in zip(frame.columns, frame.null_count().row(0), strict=True):
            self.nulls[name] = self.nulls.get(name, 0) + int(n)
        self.inside = _distinct(self.inside, frame.get_column(self.serial).drop_nulls())
        joined = frame if self.last is None else pl.concat([self.last, frame])
        self.result.duplicates += sorted_duplicates(joined)
        self.last = frame.tail(1)

    def count_persons(self, inside: list[pl.Series]) -> None:
        """The persons delivered (the distinct løpenummer of ``inside``) and found (those
        and the ones seen outside the period), once every batch has passed."""
        dtype = self.schema[self.serial]
        delivered = pl.concat([pl.Series(self.serial, [], dtype), *inside])
        self.result.persons_inside = delivered.n_unique()
        outside = [s.cast(dtype) for s in self.outside]
        self.result.persons = pl.concat([delivered, *outside]).n_unique()

    def finish(
        self,
        labels: Mapping[str, str],
        value_labels: Mapping[str, Mapping[Any, str]],
        identifying: set[str] | frozenset[str],
    ) -> None:
        """The persons counts and the codebook entry, once every batch has passed."""
        self.count_persons(self.inside)
        self.result.entry = counted_file(
            self.result.path.name,
            self.schema,
            rows=self.result.delivered,
            persons=self.result.persons_inside,
            duplicates=self.result.duplicates,
            nulls=self.nulls,
            labels=labels,
            value_labels=value_labels,
            identifying=identifying,
        )


def _distinct(held: list[pl.Series], values: pl.Series, *, at_most: int = 32) -> list[pl.Series]:
    """``held`` (distinct values, a series a batch) with the distinct ``values`` added; past
    ``at_most`` series they are merged into one, so what is held stays about the number of
    persons, not of rows."""
    held = [*held, values.unique()]
    if len(held) > at_most:
        held = [pl.concat(held).unique()]
    return held


def _kept_schema(reader: pa.RecordBatchReader) -> pl.Schema:
    """The Polars types of the extract's columns, the flag left out."""
    kept = pa.schema([f for f in reader.schema if f.name != IN_PERIOD])
    # not ``Schema.empty_table()``: that imports pandas (0.2 s of CPU, for nothing)
    empty = pl.from_arrow(pa.Table.from_batches([], schema=kept))
    assert isinstance(empty, pl.DataFrame)
    return empty.schema


def held_extract(
    engine: Engine, sql: str, tables: Mapping[str, Table], path: Path, *, serial: str
) -> tuple[pl.DataFrame, StreamedExtract]:
    """The rows of the extract query ``sql`` inside the period, held whole, for a caller
    that must see them all before any is written (a reservation filter withholds from the
    whole extract; the operator's input to central linkage is no delivery), with the join's
    figures: rows and persons found, rows and persons inside the period. Read as
    :func:`streamed_extract` reads them; the file's figures are the caller's to count."""
    with engine.batches(sql, tables, views=True) as reader:
        counter = _Counter(serial, _kept_schema(reader), StreamedExtract(path))
        frames = list(counter._frames(reader))
    extract = pl.concat(frames, rechunk=True) if frames else pl.DataFrame(schema=counter.schema)
    counter.result.delivered = extract.height
    counter.count_persons([extract.get_column(serial).drop_nulls()])
    return extract, counter.result


@contextlib.contextmanager
def streamed_extract(
    engine: Engine,
    sql: str,
    tables: Mapping[str, Table],
    path: Path,
    fmt: str,
    *,
    serial: str,
    labels: Mapping[str, str],
    value_labels: Mapping[str, Mapping[Any, str]],
    identifying: set[str] | frozenset[str],
    timestamp: datetime,
) -> Iterator[StreamedExtract]:
    """Write the rows of the extract query ``sql`` that are inside the period to ``path``
    as ``fmt`` (the delivery's writer, a batch at a time) and count them (the module
    docstring); ``serial`` names the løpenummer column. The ``with`` body sees the counts
    while the file is still under a hidden name; it becomes ``path`` when the body ends
    without an error, and is removed otherwise."""
    with atomic_write(path) as hidden:  # renamed to ``path`` only if the body succeeds
        with engine.batches(sql, tables, views=True) as reader:
            schema = _kept_schema(reader)
            counter = _Counter(serial, schema, StreamedExtract(path))
            try:
                with counter.reading(reader) as batches:
                    written = write_delivery_batches(
                        batches,
                        schema,
                        hidden,
                        fmt,
                        labels=labels,
                        value_labels=value_labels,
                        timestamp=timestamp,
                    )
            except OutputError as exc:  # named by the file the user knows, not the hidden one
                raise OutputError(exc.message, path=path) from None
        if written != counter.result.delivered:
            raise RuntimeError(
                f"{path.name}: {written:,} rows written, {counter.result.delivered:,} counted"
            )
        counter.finish(labels, value_labels, identifying)
        yield counter.result
