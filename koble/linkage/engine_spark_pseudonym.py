"""The TTP's pseudonymisation inside its own Spark session (issue 17, §2):
:meth:`SparkEngine.pseudonymise <koble.linkage.engine_spark.SparkEngine.pseudonymise>`
(:func:`write_pseudonymised`), and :func:`pseudonymise_query` for a result as Arrow.

The scheme is koble's, bit for bit: the column's identifiers are encoded, encrypted and
formatted by :mod:`koble.pseudonym.scheme` exactly as
:func:`koble.pseudonym.pseudonymise.pseudonymise_values` does, a whole Arrow batch at a time
in Spark's Python workers (``mapInArrow``), never a row at a time.

Where the key goes. The keyset stays in the driver (it cannot be pickled); only a
:class:`~koble.pseudonym.domain_cipher.DomainCipher` (the domain key of its primary version,
HKDF of the key and the domain) is captured in the closure Spark ships to its own
executors' Python workers. It is not in the SQL, in the Spark
configuration, in the plan's text (the plan shows the function's name) or in a log (the
engine's JVM logs nowhere and its event log is off). What remains: the pickled closure sits
in the session's memory and, if Spark spills a broadcast, in the engine's private scratch
directory (removed on close); on a cluster or Spark Connect it travels to the executors
like any task (use Spark's RPC and I/O encryption there). So the TTP calls this only on an
engine that is its own session.

Validation is not repeated here: the column must hold valid, compact, resolved identifiers
(what the TTP's step has already checked); a value that is not 1-19 digits stops the query
with an error that does not show it. NULLs stay NULL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from koble.errors import UsageError
from koble.linkage.engine import Table, write_batches
from koble.linkage.engine_spark import SparkEngine, pyspark_module
from koble.pseudonym import scheme
from koble.pseudonym.domain_cipher import DomainCipher, domain_cipher
from koble.pseudonym.keys import Keyset

__all__ = ["pseudonymise_query", "write_pseudonymised"]

Batches = Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]


def pseudonymise_query(
    engine: SparkEngine,
    sql: str,
    tables: Mapping[str, Table],
    *,
    column: str,
    keyset: Keyset,
    domain: str,
    id_scheme: scheme.IdScheme = "fnr",
) -> pa.Table:
    """The result of ``sql`` with ``column`` replaced by its pseudonyms in ``domain`` under
    the primary key of ``keyset``, computed in ``engine``'s Spark session. Rows in the
    result's order; the other columns as the engine's :meth:`~SparkEngine.collect` gives."""
    ciphers = {column: domain_cipher(keyset, domain, id_scheme)}  # the domain key only
    with engine.tables(tables):
        return engine.collect(_mapped(engine.frame(sql), ciphers))


def write_pseudonymised(
    engine: SparkEngine,
    sql: str,
    tables: Mapping[str, Table],
    ciphers: Mapping[str, DomainCipher],
    path: Path,
) -> int:
    """:meth:`koble.linkage.engine.Engine.pseudonymise` on Spark: the batches come from the
    executors already pseudonymised and are written as DuckDB's engine writes them
    (:func:`~koble.linkage.engine.write_batches`, so both give the same bytes): the
    engine's :meth:`~SparkEngine.batches` with the pseudonymisation as its ``then``, so
    the other columns have DuckDB's types and the pseudonyms are strings."""
    with engine.batches(sql, tables, then=lambda frame: _mapped(frame, ciphers)) as reader:
        return write_batches(reader, reader.schema, path)


def _mapped(frame: Any, ciphers: Mapping[str, DomainCipher]) -> Any:
    """``frame`` with the columns of ``ciphers`` pseudonymised by ``mapInArrow``."""
    types = pyspark_module("pyspark.sql.types")
    for column in ciphers:
        if column not in frame.columns:
            raise UsageError(f"the query has no column {column!r} to pseudonymise")
    fields = [
        types.StructField(f.name, types.StringType(), True) if f.name in ciphers else f
        for f in frame.schema.fields
    ]
    return frame.mapInArrow(_columns_pseudonymiser(dict(ciphers)), types.StructType(fields))


def _pseudonymiser(column: str, cipher: DomainCipher) -> Batches:
    """The batch function Spark runs for one column; the domain key lives only in ``cipher``."""
    return _columns_pseudonymiser({column: cipher})


def _columns_pseudonymiser(ciphers: dict[str, DomainCipher]) -> Batches:
    """The batch function Spark runs; the domain keys live only in ``ciphers``."""

    def pseudonymise(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for column, cipher in ciphers.items():
                index = batch.schema.get_field_index(column)
                try:
                    values = cipher.pseudonymise(batch.column(index))
                except UsageError:
                    raise UsageError(
                        f"column {column!r} holds a value that is not a compact identifier "
                        "(1-19 digits): validate and resolve the column before pseudonymising it"
                    ) from None
                batch = batch.set_column(index, pa.field(column, pa.string()), values)
            yield batch

    return pseudonymise
