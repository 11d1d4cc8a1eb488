"""The operator's population and key list as engine work over named tables (issue 17, §2).

:func:`~koble.linkage.steps_keys.assign_serials_step` checks and resolves the population's
identifiers locally, a column at a time; what follows runs on the run's engine (DuckDB or
Spark) over named tables:

* ``checked``: one row per population row: its number (``row``, from 1), the compact,
  resolved identifier as an integer and the reason it fails (NULL: valid);
* which valid rows repeat an earlier row's person (a ``GROUP BY``: the first row is kept);
* the key list: each person's current identifier with their løpenummer, in population
  order, then the older identifiers the identity history resolves to them (a join), by
  løpenummer and identifier.

The rejects (the failing rows with reason and message, in row order, with their own
columns as read) are the Polars of every rejects file koble writes
(:func:`~koble.registries.identifiers.check.rejects_chunks`), a slice of the population at a
time: they need only the population's columns and reasons, which are here already, and no
engine keeps a time zone or a category as read.

The keyed numbering stays NumPy (:func:`~koble.pseudonym.serials.assign_serials`) over the
column of persons the engine hands over: sorting 16-byte blocks there takes a third of the
CPU time of a window over their text in DuckDB. Files are written from the engine's Arrow
batches by one writer (:func:`~koble.linkage.engine.write_batches`), so DuckDB and Spark
write the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from koble.linkage.engine import ROW_GROUP_ROWS, Engine, Table, quote, write_batches
from koble.linkage.plan import FNR, SERIAL
from koble.pseudonym.identity import IdentityHistory
from koble.registries.identifiers.check import rejects_chunks

__all__ = ["DUPLICATE", "Population", "write_key_list"]

DUPLICATE = "duplicate_person"
ROW, REASON, MESSAGE = "row", "reason", "message"
_COUNT = "count"
_CURRENT, _POS, _KEY = "current", "pos", "key"
#: Polars hands its columns to the engine as they are (string views), without a copy.
_ARROW = pl.CompatLevel.newest()


class Population:
    """The validated population on the engine: per row its compact, resolved identifier and
    :attr:`reason` (null: valid), which :meth:`persons` completes with the duplicates."""

    def __init__(
        self, engine: Engine, compact: pl.Series, reason: pl.Series, dropped_zero: pl.Series
    ) -> None:
        self._engine = engine
        self._compact = compact.cast(pl.String)
        self.reason = reason.cast(pl.String)
        self._zero = dropped_zero
        self.counts: dict[str, int] = {}

    def _checked(self) -> pa.Table:
        """The ``checked`` table. A valid identifier is 11 digits, so as an integer
        (``key``) it is distinct exactly when its text is, and cheaper to group."""
        return pa.table(
            {
                ROW: pl.Series(np.arange(1, self.reason.len() + 1, dtype=np.uint32)).to_arrow(),
                _KEY: self._compact.cast(pl.Int64, strict=False).to_arrow(),
                REASON: self.reason.to_arrow(compat_level=_ARROW),
            }
        )

    def persons(self) -> pl.Series:
        """The valid persons in population order, each once (its first row); the later rows
        of a person become :data:`DUPLICATE` rejects in :attr:`reason`."""
        sql = (
            f"SELECT MIN({quote(ROW)}) AS {quote(ROW)} FROM checked WHERE {quote(REASON)} "
            f"IS NULL GROUP BY {quote(_KEY)} ORDER BY {quote(ROW)} NULLS LAST"
        )
        found = self._engine.query(sql, {"checked": self._checked()}).column(ROW)
        rows = pl.Series(found).to_numpy()  # through Polars: pyarrow's to_numpy loads pandas
        first = rows.astype(np.int64) - 1
        kept = np.zeros(self.reason.len(), dtype=bool)
        kept[first] = True
        repeated = self.reason.is_null() & ~pl.Series(kept)
        if repeated.any():
            self.reason = pl.select(
                pl.when(repeated).then(pl.lit(DUPLICATE)).otherwise(self.reason)
            ).to_series()
        return self._compact.gather(first).alias(FNR)

    def write_rejects(self, frame: pl.DataFrame, messages: Mapping[str, str], path: Path) -> int:
        """Write the rows of ``frame`` (the population as read) that fail, as ``row``,
        ``reason``, ``message`` and ``frame``'s columns, in row order; count them by reason in
        :attr:`counts`. Returns the number of rejects.

        The rows are :func:`~koble.registries.identifiers.check.rejects_table`'s, the shape
        of every rejects file, taken a slice of :data:`~koble.linkage.engine.ROW_GROUP_ROWS`
        population rows at a time (:func:`~koble.registries.identifiers.check.rejects_chunks`),
        so only one slice's rejects are held, and written by the one writer of the engines'
        files (:func:`~koble.linkage.engine.write_batches`): the same bytes whichever engine
        runs the job. A reject's own columns keep the types the population was read with
        (an engine would turn a time zone into UTC, or a category into text)."""
        found = self.reason.drop_nulls().value_counts(sort=False, name=_COUNT)
        counts = {str(code): int(n) for code, n in found.iter_rows()}
        unknown = sorted(set(counts) - set(messages))
        if unknown:  # a reason code koble gave without its message: a bug, named by code
            raise RuntimeError(f"reject reasons without a message: {unknown}")
        own = frame.head(0).to_arrow().schema
        schema = pa.schema([
            pa.field(ROW, pa.uint32()), pa.field(REASON, pa.string()),
            pa.field(MESSAGE, pa.string()), *own,
        ])  # fmt: skip
        chunks = rejects_chunks(
            frame, self.reason, dict(messages), dropped_zero=self._zero, rows=ROW_GROUP_ROWS
        )
        batches = (b for chunk in chunks for b in chunk.to_arrow().cast(schema).to_batches())
        rows = write_batches(batches, schema, path)
        self.counts = dict(sorted(counts.items()))
        return rows


def write_key_list(
    engine: Engine, numbered: pl.DataFrame, history: IdentityHistory | None, path: Path
) -> int:
    """Write the key list of ``numbered`` (``fnr``, ``lopenr``: each person once, in
    population order) to ``path``: those rows (``current`` true), then every older
    identifier ``history`` resolves to one of them with that person's løpenummer (``current``
    false), by løpenummer and identifier. Returns its number of rows."""
    persons = pa.table(
        {
            FNR: numbered[FNR].to_arrow(compat_level=_ARROW),
            SERIAL: numbered[SERIAL].to_arrow().cast(pa.int64()),
            _POS: pl.Series(np.arange(numbered.height, dtype=np.int64)).to_arrow(),
        }
    )
    tables: dict[str, Table] = {"persons": persons}
    fnr, serial, current, pos = quote(FNR), quote(SERIAL), quote(_CURRENT), quote(_POS)
    select = f"SELECT p.{fnr}, p.{serial}, TRUE AS {current}, p.{pos} FROM persons p"
    if history is not None:
        mapping = history.mapping
        tables["history"] = pa.table(
            {
                "old": mapping["old"].to_arrow(compat_level=_ARROW),
                _CURRENT: mapping["current"].to_arrow(compat_level=_ARROW),
            }
        )
        select += (
            f" UNION ALL SELECT h.old AS {fnr}, p.{serial}, FALSE AS {current}, "
            f"CAST(NULL AS BIGINT) AS {pos} FROM history h JOIN persons p ON h.{current} = p.{fnr}"
        )
    sql = (
        f"SELECT {fnr}, {serial}, {current} FROM ({select}) k "
        f"ORDER BY {pos} NULLS LAST, {serial} NULLS LAST, {fnr} NULLS LAST"
    )
    with engine.batches(sql, tables) as reader:
        return write_batches(reader, reader.schema, path)
