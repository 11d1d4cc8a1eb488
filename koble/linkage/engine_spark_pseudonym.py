"""Prototype: the TTP's pseudonymisation inside its own Spark session (issue 17, §2).

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

import pyarrow as pa

from koble.errors import UsageError
from koble.linkage.engine import Table
from koble.linkage.engine_spark import SparkEngine, pyspark_module
from koble.pseudonym import scheme
from koble.pseudonym.domain_cipher import DomainCipher, domain_cipher
from koble.pseudonym.keys import Keyset

__all__ = ["pseudonymise_query"]

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
    cipher = domain_cipher(keyset, domain, id_scheme)  # the domain key only
    types = pyspark_module("pyspark.sql.types")
    with engine.tables(tables):
        frame = engine.frame(sql)
        if column not in frame.columns:
            raise UsageError(f"the query has no column {column!r} to pseudonymise")
        fields = [
            types.StructField(f.name, types.StringType(), True) if f.name == column else f
            for f in frame.schema.fields
        ]
        mapped = frame.mapInArrow(_pseudonymiser(column, cipher), types.StructType(fields))
        return engine.collect(mapped)


def _pseudonymiser(column: str, cipher: DomainCipher) -> Batches:
    """The batch function Spark runs; the domain key lives only in ``cipher``."""

    def pseudonymise(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            index = batch.schema.get_field_index(column)
            try:
                values = cipher.pseudonymise(batch.column(index))
            except UsageError:
                raise UsageError(
                    f"column {column!r} holds a value that is not a compact identifier "
                    "(1-19 digits): validate and resolve the column before pseudonymising it"
                ) from None
            yield batch.set_column(index, pa.field(column, pa.string()), values)

    return pseudonymise
