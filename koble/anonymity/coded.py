"""The ``anonymise`` command's passes over the rows, kept to integer codes.

The search works on codes (:mod:`koble.anonymity.frequency`); so does what surrounds it at
millions of rows, where passes over strings would cost more than the search itself:

- :func:`read_coded` reads a Parquet file's text quasi-identifiers also dictionary-encoded,
  as the file stores them: the hierarchies take the dictionary and the indices
  (:func:`koble.anonymity.hierarchies.base.build`) instead of hashing every row's string.
- :func:`release_coded` releases the rows at the chosen levels class by class: each row's
  class is found by its integer key in the chosen node's table (rolled up from the search's
  level-0 table), and each released column is the labels of the level with one index per
  row (dictionary-encoded), not a string per row.
- :func:`write_release` writes such a release as Parquet with dictionary-encoded columns
  that every reader sees as plain text (as the input's text columns were).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from koble.anonymity.frequency import Int64s, Lookups, entry_keys, locate, roll_up
from koble.anonymity.generalisation import Generalisation
from koble.anonymity.hierarchies.base import Encoded, integers
from koble.anonymity.search import REASON_COLUMN, SearchResult
from koble.files import OutputSet, atomic_write
from koble.tables import PARQUET_SUFFIXES, read_table, refuse_duplicate_names, write_table

_TEXT = (pa.string(), pa.large_string())

__all__ = ["CodedRelease", "codable", "read_coded", "release_coded", "write_release"]


def read_coded(path: str | Path, columns: Sequence[str]) -> tuple[pl.DataFrame, dict[str, Encoded]]:
    """:func:`koble.tables.read_table`, except that a Parquet file's text ``columns`` are read
    as the file stores them, dictionary-encoded: returned encoded (see
    :data:`~koble.anonymity.hierarchies.base.Encoded`), so their hierarchies hash no row's
    string, and in the frame as Categorical (the same values; the caller writes them back as
    text). Other files and columns are read as ever (an empty mapping)."""
    path = Path(path)
    if path.suffix.lower() not in PARQUET_SUFFIXES or not path.is_file():
        return read_table(path), {}
    try:
        schema = pq.read_schema(path)
        refuse_duplicate_names(schema.names, path)
        wanted = set(columns)
        text = [f.name for f in schema if f.name in wanted and f.type in _TEXT]
        if not text:
            return read_table(path), {}
        coded = pq.ParquetFile(path, read_dictionary=text).read(columns=text)
        others = [c for c in schema.names if c not in text]
        rest = pl.read_parquet(path, columns=others) if others else None
    except (pl.exceptions.PolarsError, pa.ArrowException, OSError, ValueError):
        return read_table(path), {}  # which words the error as every read does
    encoded = {name: _encoded(coded.column(name), name) for name in text}
    out = []
    for name in schema.names:
        if name in encoded:
            out.append(_categorical(*encoded[name]))
        else:
            assert rest is not None
            out.append(rest.get_column(name))
    return pl.DataFrame(out), encoded


def _categorical(values: pl.Series, index: npt.NDArray[np.integer]) -> pl.Series:
    """The column of ``values[index]`` as Categorical (index ``len(values)``: missing), by
    an integer gather. Built in Polars, not through ``pa.array``, which imports pandas."""
    with_missing = pl.concat([values, pl.Series(values.name, [None], dtype=values.dtype)])
    return with_missing.cast(pl.Categorical).gather(pl.Series(index))


def _encoded(column: pa.ChunkedArray, name: str) -> Encoded:
    """A dictionary-encoded column read in chunks (one dictionary per row group) as one
    dictionary of the values present and each row's index (missing: one past the last).

    The chunks' dictionaries (a few values each) are unified first, and each chunk's
    indices are translated straight into one preallocated array: in a fresh process,
    touching new memory costs more than the arithmetic, so no intermediate copy is made."""
    chunks = [c for c in column.chunks if len(c)]
    if not chunks:
        return pl.Series(name, [], dtype=pl.String), np.zeros(len(column), dtype=np.int32)
    together = pc.dictionary_encode(pa.concat_arrays([c.dictionary for c in chunks]))
    dictionary = pl.Series(name, together.dictionary).cast(pl.String)
    translate = integers(together.indices).astype(np.int32)  # chunk dictionaries → one
    missing = np.int32(len(dictionary))
    index = np.empty(len(column), dtype=np.int32)
    start = offset = 0
    for chunk in chunks:
        width = len(chunk.dictionary)
        lut = np.append(translate[offset : offset + width], missing)  # null: one past the last
        indices = chunk.indices
        if indices.null_count:
            indices = pc.fill_null(indices, width)
        np.take(lut, integers(indices), out=index[start : start + len(chunk)])
        start, offset = start + len(chunk), offset + width
    used = np.zeros(len(dictionary) + 1, dtype=np.bool_)
    used[index] = True  # a scatter: cheaper than counting
    used = used[: len(dictionary)]
    if not used.all():  # a dictionary page may list values no row holds
        dense = np.append(np.cumsum(used, dtype=np.int32) - 1, np.int32(used.sum()))
        index, dictionary = dense[index], dictionary.filter(pl.Series(used))
    return dictionary, index


@dataclass(frozen=True)
class CodedRelease:
    """The rows released and withheld at the chosen node, and what the checks and the report
    read of them."""

    #: The released rows: each quasi-identifier's labels dictionary-encoded (Categorical).
    released: pl.DataFrame
    #: The withheld rows as read, with the reason their class failed.
    held: pl.DataFrame
    #: Each released row's class key (:func:`~koble.anonymity.frequency.class_keys`).
    ids: pl.Series
    #: Rows released per level-0 code of each quasi-identifier (for the distributions).
    counts: tuple[Int64s, ...]
    #: Each quasi-identifier's released column as Arrow (int32 indices into the labels the
    #: release holds), for :func:`write_release`.
    arrays: dict[str, pa.DictionaryArray]


def codable(result: SearchResult, qis: Sequence[Generalisation]) -> bool:
    """Whether :func:`release_coded` can release ``result``: rows as classes (no sensitive
    attribute or person tracked), plain quasi-identifiers, and a level-0 table whose keys
    are the classes' own (not re-coded)."""
    base = result.base
    return (base is not None and not base.tracked and base.cards is not None
            and all(g.column_names == (g.name,) for g in qis))  # fmt: skip


def release_coded(
    frame: pl.DataFrame, qis: Sequence[Generalisation], result: SearchResult, keys: Int64s
) -> CodedRelease:
    """Release ``frame`` at ``result``'s levels (as :meth:`SearchResult.apply` does, for a
    :func:`codable` result): ``keys`` are the rows' class keys at those levels. The chosen
    node's table is rolled up from the search's level-0 table and settled there; each row
    finds its class by its key, and each released column is built from the classes' codes."""
    base = result.base
    assert base is not None and codable(result, qis)
    lookups = Lookups(qis)
    node = roll_up(base, result.levels, lookups)
    reason = result.requirements.settle(node).reason
    entry = locate(node, keys)  # every row's class: a key the table lacks is an error
    kept_classes = reason < 0
    keep = kept_classes[entry]  # masks and int32 indices: new memory is the cost here
    gone = ~keep
    kept_entry = entry[keep]
    # the base entries released, for the distributions: their class at the chosen levels
    base_keys = entry_keys(base, result.levels, lookups)
    released_base = kept_classes[locate(node, base_keys)]
    weights = np.where(released_base, base.counts, 0).astype(np.float64)
    counts = tuple(
        np.bincount(base.code(i), weights=weights, minlength=len(g.labels[0])).astype(np.int64)
        for i, g in enumerate(qis)
    )
    arrays: dict[str, pa.DictionaryArray] = {}
    columns: dict[str, pl.Series] = {}
    for i, (g, level) in enumerate(zip(qis, result.levels, strict=True)):
        codes = node.code(i)
        present = np.zeros(len(g.labels[level]), dtype=np.bool_)
        present[codes[kept_classes]] = True  # labels of released classes only: a label of
        dense = np.cumsum(present, dtype=np.int32) - 1  # withheld rows alone never appears
        labels = [label for label, p in zip(g.labels[level], present, strict=True) if p]
        indices = pl.Series(g.name, dense[codes][kept_entry])
        text = pl.Series(g.name, labels, dtype=pl.String)
        arrays[g.name] = pa.DictionaryArray.from_arrays(
            indices.to_arrow(), text.to_arrow().cast(pa.string())
        )
        columns[g.name] = text.cast(pl.Categorical).gather(indices)
    mask = pl.Series(gone)
    names = set(arrays)
    others = [c for c in frame.columns if c not in names]
    rest = frame.select(others).filter(~mask) if others else pl.DataFrame()
    released = pl.DataFrame([columns[c] if c in columns else rest.get_column(c)
                             for c in frame.columns])  # fmt: skip
    texts = pl.Series(result.requirements.texts(), dtype=pl.String)
    why = texts.gather(reason[entry[gone]]).alias(REASON_COLUMN)
    held = frame.filter(mask).with_columns(why)
    return CodedRelease(released, held, pl.Series(keys[keep]), counts, arrays)


def _plain(dtype: pl.DataType) -> bool:
    """Whether a column of ``dtype`` reads back from Parquet as the same type without the
    Arrow schema stored beside it (time zones and durations need that schema)."""
    if isinstance(dtype, pl.Datetime):
        return dtype.time_zone is None
    return dtype.is_numeric() or dtype in (pl.String, pl.Boolean, pl.Date, pl.Time, pl.Binary)


def write_release(
    frame: pl.DataFrame, arrays: dict[str, pa.DictionaryArray], path: str | Path, *,
    outputs: OutputSet | None = None, last: bool = False,
) -> Path:  # fmt: skip
    """Write a release of :func:`release_coded` like :func:`koble.tables.write_table`
    (atomically, by suffix; CSV as ever). In Parquet the columns of ``arrays`` are written
    from their dictionaries (about twice as fast as their strings) and described as plain
    text, so every reader sees strings, as in the input. That description leaves out the
    Arrow schema, so a release with other columns whose type needs it (a time zone, a
    duration) has its labels written as strings instead."""
    path = Path(path)
    rest = frame.select(c for c in frame.columns if c not in arrays)
    if path.suffix.lower() not in PARQUET_SUFFIXES or not all(map(_plain, rest.dtypes)):
        as_text = [pl.col(c).cast(pl.String) for c in arrays]
        return write_table(frame.with_columns(as_text), path, outputs=outputs, last=last)
    others = rest.to_arrow()
    columns = [arrays[c] if c in arrays else others.column(c) for c in frame.columns]
    table = pa.table(columns, names=frame.columns)
    staged = atomic_write(path) if outputs is None else outputs.file(path, last=last)
    with staged as temp:
        pq.write_table(
            table, temp, compression="zstd", store_schema=False,
            write_statistics=[c for c in frame.columns if c not in arrays],
        )  # fmt: skip
    return path
