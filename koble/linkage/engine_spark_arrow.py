"""Arrow at the Spark engine's edges: a result's types made DuckDB's, an input's types
made what Spark takes, and a result read back from the Parquet files Spark wrote.

Split from :mod:`koble.linkage.engine_spark` (which re-exports :func:`normalise` and
:func:`sparkable`): pure functions over Arrow, no Spark session needed.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from koble.errors import UsageError

__all__ = ["SCRATCH_BATCH_ROWS", "normalise", "read_parts", "retyped", "sparkable"]

#: Rows per batch when a result is read back from Spark's Parquet files.
SCRATCH_BATCH_ROWS = 262_144

_PART = re.compile(r"part-(\d+)-.*-c(\d+)(?:\.\w+)*\.parquet")


def read_parts(directory: Path, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """The Parquet files Spark wrote into ``directory``, in the order of its partitions (the
    number in ``part-NNNNN-<job>-cNNN``), as batches cast to ``schema``; each file is removed
    once read."""
    found = [(m, p) for p in directory.iterdir() if (m := _PART.fullmatch(p.name))]
    for _, path in sorted(found, key=lambda f: (int(f[0].group(1)), int(f[0].group(2)))):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=SCRATCH_BATCH_ROWS):
            yield batch.cast(schema)
        path.unlink()


def _plain(kind: pa.DataType) -> pa.DataType:
    """Arrow's large string and binary types as the plain ones DuckDB gives."""
    if pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return pa.string()
    if pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        return pa.binary()
    return kind


def normalise(table: pa.Table, reference: pa.Schema | None) -> pa.Table:
    """``table`` cast to ``reference`` (DuckDB's schema for the same SQL) when its column
    names are the same, else with plain strings and every field nullable."""
    if reference is not None and reference.names == table.column_names:
        target = pa.schema([pa.field(f.name, f.type) for f in reference])
    else:
        target = pa.schema([pa.field(f.name, _plain(f.type)) for f in table.schema])
    try:
        return table.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        for field, wanted in zip(table.schema, target, strict=True):
            if field.type != wanted.type:
                try:
                    table.column(field.name).cast(wanted.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    raise UsageError(
                        f"Spark's result for column {field.name!r} ({field.type}) does not fit "
                        f"DuckDB's type for it ({wanted.type})"
                    ) from None
        raise


def retyped(
    reference: pa.Schema | None, schema: pa.Schema, changed: Collection[str]
) -> pa.Schema | None:
    """``reference`` (DuckDB's schema for a query) with the columns of ``changed`` in their
    type in ``schema`` (Spark's, plain): columns that Spark work after the query retyped,
    such as the pseudonyms ``mapInArrow`` made of identifiers."""
    if reference is None or not changed:
        return reference
    own = normalise(schema.empty_table(), None).schema
    return pa.schema([own.field(f.name) if f.name in changed else f for f in reference])


def sparkable(table: pa.Table) -> pa.Table:
    """``table`` with the types Spark takes from Arrow: dictionaries decoded, unsigned
    integers widened as Spark reads them from Parquet (uint64 as decimal(20, 0))."""
    wider = {
        pa.uint8(): pa.int16(),
        pa.uint16(): pa.int32(),
        pa.uint32(): pa.int64(),
        pa.uint64(): pa.decimal128(20, 0),
    }
    fields = []
    for field in table.schema:
        kind = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        fields.append(field.with_type(wider.get(kind, _plain(kind))))
    target = pa.schema(fields)
    return table if target == table.schema else table.cast(target)
