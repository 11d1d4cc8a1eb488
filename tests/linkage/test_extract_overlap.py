"""The streamed extract reads ahead (koble.linkage.extract_stream, issue 17's wall time).

While the delivery's writer encodes a batch, a second thread counts it and reads the next
one from the engine. These tests check that the reading really overlaps the writing, that
the file and figures are those of reading in turns, and that a writer or an engine failing
part-way leaves no thread, no file and the failure itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest

import koble.linkage.extract_stream as extract_stream
from koble.errors import OutputError
from koble.linkage.engine import Table
from koble.linkage.extract_stream import IN_PERIOD, StreamedExtract, streamed_extract

STAMP = datetime(2024, 5, 17, 9, 30, 15, tzinfo=UTC)
BATCHES = 6


def _result() -> pa.Table:
    """A sorted extract result: 600 rows inside the period (with repeated rows and nulls),
    then 60 outside it, as the extract query gives them."""
    n = 600
    inside = pl.DataFrame(
        {
            "lopenr": [1 + i // 7 for i in range(n)],
            "code": [None if i % 11 == 0 else f"C{i % 2}" for i in range(n)],
            "day": [date(2016, 1, 1 + i % 2) for i in range(n)],
        },
        schema={"lopenr": pl.Int64, "code": pl.String, "day": pl.Date},
    ).sort(["lopenr", "code", "day"], nulls_last=True)
    outside = pl.DataFrame(
        {"lopenr": [500 + i for i in range(60)], "code": None, "day": None},
        schema=inside.schema,
    )
    return pl.concat(
        [inside.with_columns(pl.lit(True).alias(IN_PERIOD)),
         outside.with_columns(pl.lit(False).alias(IN_PERIOD))]
    ).to_arrow().combine_chunks()  # fmt: skip


class _Engine:
    """An engine giving ``_result()`` in :data:`BATCHES` batches; it records which batch
    was asked for (an event each) and can fail when asked for one."""

    name = "recording"

    def __init__(self, fail_at: int | None = None) -> None:
        table = _result()
        self.batches_ = table.to_batches(max_chunksize=-(-table.num_rows // BATCHES))
        assert len(self.batches_) == BATCHES
        self.schema = table.schema
        self.asked = [threading.Event() for _ in self.batches_]
        self.fail_at = fail_at
        self.closed = False

    def _produce(self) -> Iterator[pa.RecordBatch]:
        for i, batch in enumerate(self.batches_):
            self.asked[i].set()
            if i == self.fail_at:
                raise OSError("the engine lost its spill file")
            yield batch

    @contextlib.contextmanager
    def batches(
        self, sql: str, tables: Mapping[str, Table], *, views: bool = False
    ) -> Iterator[pa.RecordBatchReader]:
        try:
            yield pa.RecordBatchReader.from_batches(self.schema, self._produce())
        finally:
            self.closed = True


def _run(engine: Any, out: Path) -> StreamedExtract:
    with streamed_extract(engine, "SELECT 1", {}, out, "parquet", serial="lopenr",
                          labels={}, value_labels={}, identifying={"lopenr"},
                          timestamp=STAMP) as streamed:  # fmt: skip
        pass
    return streamed


def _extract_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("koble-extract")]


def test_the_next_batch_is_read_while_the_writer_holds_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer, holding batch i, waits for the engine to be asked for batch i + 1: read
    in turns, it would wait in vain; read ahead, it goes on. The file is the same."""
    engine = _Engine()
    real = extract_stream.write_delivery_batches
    overlapped: list[bool] = []

    def holding(batches: Iterable[pl.DataFrame], *args: Any, **kwargs: Any) -> int:
        def waiting() -> Iterator[pl.DataFrame]:
            for i, frame in enumerate(batches):
                if i + 1 < BATCHES:
                    overlapped.append(engine.asked[i + 1].wait(timeout=10))
                yield frame

        return real(waiting(), *args, **kwargs)

    monkeypatch.setattr(extract_stream, "write_delivery_batches", holding)
    ahead = _run(engine, tmp_path / "ahead.parquet")
    monkeypatch.setattr(extract_stream, "write_delivery_batches", real)
    plain = _run(_Engine(), tmp_path / "plain.parquet")
    assert overlapped == [True] * (BATCHES - 1)
    assert (tmp_path / "ahead.parquet").read_bytes() == (tmp_path / "plain.parquet").read_bytes()
    figures = ("rows", "persons", "persons_inside", "delivered", "duplicates")
    assert [getattr(ahead, f) for f in figures] == [getattr(plain, f) for f in figures]
    assert ahead.entry is not None and plain.entry is not None
    assert dataclasses.replace(ahead.entry, file=plain.entry.file) == plain.entry
    assert (ahead.rows, ahead.delivered, ahead.persons) == (660, 600, 86 + 60)
    assert ahead.duplicates > 0
    assert not _extract_threads()


def test_a_writer_that_stops_early_leaves_no_thread_and_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _Engine()

    def full(batches: Iterable[pl.DataFrame], schema: Any, path: Path, *a: Any, **k: Any) -> int:
        next(iter(batches))
        raise OutputError("cannot write: no space left on device", path=path)

    monkeypatch.setattr(extract_stream, "write_delivery_batches", full)
    out = tmp_path / "extract.parquet"
    with pytest.raises(OutputError) as caught:
        _run(engine, out)
    assert caught.value.path == str(out)
    assert not _extract_threads()
    assert engine.closed, "the engine's stream was left"
    assert not engine.asked[3].is_set(), "no more than one batch is read ahead"
    assert not out.exists() and not list(tmp_path.glob(".*"))


def test_an_engine_failing_part_way_fails_the_extract_with_its_own_error(
    tmp_path: Path,
) -> None:
    """The engine's error reaches the caller (through the writer, which reports an OS error
    as the file's), with nothing left behind."""
    out = tmp_path / "extract.parquet"
    with pytest.raises((OSError, OutputError), match="spill file"):
        _run(_Engine(fail_at=3), out)
    assert not _extract_threads()
    assert not out.exists() and not list(tmp_path.glob(".*"))
