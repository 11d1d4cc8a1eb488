"""The ``anonymise`` command's passes over the rows, kept to integer codes.

The search works on codes (:mod:`koble.anonymity.frequency`); so does what surrounds it at
millions of rows, where passes over strings would cost more than the search itself:

- :func:`read_coded` reads a Parquet file's text quasi-identifiers also dictionary-encoded,
  as the file stores them, and a CSV file's parsed straight into Categorical: the
  hierarchies take the dictionary and the indices
  (:func:`koble.anonymity.hierarchies.base.build`) instead of hashing every row's string.
  The file's SHA-256 (for the certificate) is taken in a thread once it is parsed, on the
  core the search (one thread of NumPy) leaves idle.
- :func:`release_coded` releases the rows at the chosen levels class by class: each row's
  class is found by its integer key in the chosen node's table (rolled up from the search's
  level-0 table), and each released column is the labels of the level with one index per
  row (dictionary-encoded), not a string per row.
- :func:`write_release` writes such a release as Parquet with dictionary-encoded columns
  that every reader sees as plain text (as the input's text columns were).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from koble.anonymity.frequency import Int64s, Lookups, entry_keys, locate, roll_up
from koble.anonymity.generalisation import Codes, Generalisation
from koble.anonymity.hierarchies.base import ChunkedIndex, Encoded, encode, integers, per_column
from koble.anonymity.search import REASON_COLUMN, SearchResult
from koble.digests import sha256_file
from koble.files import OutputSet, atomic_write
from koble.tables import PARQUET_SUFFIXES, read_table, refuse_duplicate_names, write_table

_TEXT = (pa.string(), pa.large_string())
#: Input rows per row group of a coded release (pyarrow's default group size).
ROW_GROUP = 1 << 20

__all__ = [
    "CodedRelease",
    "Source",
    "beside",
    "codable",
    "hashing",
    "read_coded",
    "read_encoded",
    "release_coded",
    "write_release",
]

T = TypeVar("T")


class Source(NamedTuple):
    """A file as :func:`read_coded` read it."""

    frame: pl.DataFrame
    #: The columns read dictionary-encoded (Categorical in ``frame``), encoded.
    encoded: dict[str, Encoded]
    #: The SHA-256 of the file's bytes (lower-case hex), being taken.
    sha256: Future[str]


def read_coded(path: str | Path, columns: Sequence[str], *, encoding: str = "utf-8") -> Source:
    """:func:`koble.tables.read_table`, except that the text ``columns`` are read
    dictionary-encoded: a Parquet file's as the file stores them, a CSV file's parsed into
    Categorical. They are returned encoded (see
    :data:`~koble.anonymity.hierarchies.base.Encoded`), so their hierarchies hash no row's
    string, and are in the frame as Categorical (the same values; the caller writes them
    back as text). Other columns are read as ever.

    The file's hash for the certificate is started in a thread once the file is parsed
    (which keeps both cores busy): it runs beside what follows (hierarchies, the search,
    one thread each; hashlib lets go of the interpreter lock), instead of after them."""
    frame, encoded = read_encoded(path, columns, encoding=encoding)
    return Source(frame, encoded, hashing(Path(path)))


def read_encoded(
    path: str | Path, columns: Sequence[str], *, encoding: str = "utf-8"
) -> tuple[pl.DataFrame, dict[str, Encoded]]:
    """:func:`read_coded` without the hash: for a caller that starts it (:func:`hashing`)
    where a core is idle (beside the search), not while the file's columns are encoded and
    generalised on both."""
    return _read(Path(path), columns, encoding)


def beside(work: Callable[..., T], *args: Any, name: str = "koble-beside") -> Future[T]:
    """``work(*args)`` in a daemon thread, its outcome (or exception) in the future: work a
    command needs later (or must see end before it goes on), run beside it meanwhile; a
    command that fails before it asks exits without waiting for it."""
    done: Future[T] = Future()

    def run() -> None:
        try:
            done.set_result(work(*args))
        except BaseException as exc:  # noqa: BLE001  # raised to whoever asks for it
            done.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return done


def hashing(path: Path) -> Future[str]:
    """The SHA-256 of ``path``, taken in a daemon thread (:func:`beside`)."""
    return beside(sha256_file, path, name="koble-sha256")


def _read(path: Path, columns: Sequence[str], encoding: str
          ) -> tuple[pl.DataFrame, dict[str, Encoded]]:  # fmt: skip
    """The frame of :func:`read_coded` and its columns read dictionary-encoded, encoded."""
    if path.suffix.lower() not in PARQUET_SUFFIXES or not path.is_file():
        frame = read_table(path, encoding=encoding, categorical=columns)
        names = [c for c in dict.fromkeys(columns) if frame.schema.get(c) == pl.Categorical]
        found = per_column(lambda name: encode(frame.get_column(name)), names)
        return frame, dict(zip(names, found, strict=True))
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
    # one column per core (Arrow and NumPy let go of the interpreter lock)
    found = per_column(lambda name: _encoded(coded.column(name), name), text)
    encoded = dict(zip(text, found, strict=True))
    as_read = pl.from_arrow(coded)  # Categorical: the dictionaries kept, no string per row
    assert isinstance(as_read, pl.DataFrame)
    out = [as_read.get_column(name) if name in encoded else rest.get_column(name)  # type: ignore[union-attr]
           for name in schema.names]  # fmt: skip
    return pl.DataFrame(out), encoded


def _encoded(column: pa.ChunkedArray, name: str) -> Encoded:
    """A dictionary-encoded column read in chunks (one dictionary per row group) as one
    dictionary of the values present and each row's index into it (missing: one past the
    last), the index kept as its chunks (:class:`~koble.anonymity.hierarchies.base.ChunkedIndex`).

    The chunks' dictionaries (a few values each) are unified; the rows are read once here,
    to find the values present (a dictionary page may list values no row holds), and once
    more when a hierarchy takes them through the chunks' translations."""
    chunks = [c for c in column.chunks if len(c)]
    if not chunks:
        return pl.Series(name, [], dtype=pl.String), np.zeros(len(column), dtype=np.int32)
    together = pc.dictionary_encode(pa.concat_arrays([c.dictionary for c in chunks]))
    dictionary = pl.Series(name, together.dictionary).cast(pl.String)
    translate = integers(together.indices).astype(np.int32)  # chunk dictionaries → one
    missing = np.int32(len(dictionary))
    used = np.zeros(len(dictionary) + 1, dtype=np.bool_)
    parts, offset = [], 0
    for chunk in chunks:
        width = len(chunk.dictionary)
        where = np.append(translate[offset : offset + width], missing)  # null: one past
        indices = chunk.indices
        if indices.null_count:
            indices = pc.fill_null(indices, width)
        rows = integers(indices)
        seen = np.zeros(width + 1, dtype=np.bool_)
        seen[rows] = True  # a scatter into a few bytes: cheaper than counting
        used[where[seen]] = True
        parts.append((where, rows))
        offset += width
    used = used[: len(dictionary)]
    if not used.all():  # values no row holds leave the dictionary
        dense = np.append(np.cumsum(used, dtype=np.int32) - 1, np.int32(used.sum()))
        parts = [(dense[where], rows) for where, rows in parts]
        dictionary = dictionary.filter(pl.Series(used))
    return dictionary, ChunkedIndex(tuple(parts), len(column))


@dataclass(frozen=True)
class CodedRelease:
    """The rows released and withheld at the chosen node, and what the checks and the report
    read of them. The released quasi-identifiers are kept as Arrow dictionary arrays only;
    :meth:`frame` makes a Polars frame of the release for a caller that needs its values."""

    #: The input's columns, in its order.
    columns: tuple[str, ...]
    #: Per quasi-identifier: the labels the release holds, each level-0 code's index among
    #: them, and every row's level-0 code (:meth:`arrays` gathers the released rows').
    labels: dict[str, tuple[pa.Array, npt.NDArray[np.int32], Codes]]
    #: The released rows' other columns, as read.
    rest: pl.DataFrame
    #: The withheld rows as read, with the reason their class failed.
    held: pl.DataFrame
    #: The rows of each released class, counted from the rows (each placed by its entry in
    #: the search's level-0 table): what the check after the release judges.
    sizes: pl.Series
    #: Rows released per level-0 code of each quasi-identifier (for the distributions).
    counts: tuple[Int64s, ...]
    #: Every row's entry in the level-0 table, and whether the row is released.
    entries: Int64s
    keep: npt.NDArray[np.bool_]
    #: Each level-0 entry's class at the chosen node.
    classes: npt.NDArray[np.integer]

    @property
    def rows(self) -> int:
        """The rows released."""
        return int(self.sizes.sum())

    def ids(self) -> pl.Series:
        """Each released row's class, for a check that groups the rows themselves."""
        return pl.Series(self.classes[self.entries[self.keep]])

    def arrays(
        self, start: int = 0, stop: int | None = None,
        into: dict[str, npt.NDArray[np.int32]] | None = None,
    ) -> dict[str, pa.DictionaryArray]:  # fmt: skip
        """Each quasi-identifier's released labels among input rows ``start:stop``, as
        int32 indices into the labels the release holds: the mask first, then a gather from
        a table of a few entries (cheaper than gathering every row's and masking).
        ``into``: a buffer per quasi-identifier, at least that long, to write the indices
        in (the arrays then view it: reuse it only once they are done with)."""
        keep = self.keep[start:stop]
        rows = int(np.count_nonzero(keep))
        out = {}
        for name, (dictionary, index_of_code, codes) in self.labels.items():
            indices = np.empty(rows, dtype=np.int32) if into is None else into[name][:rows]
            np.compress(keep, codes[start:stop], out=indices)
            np.take(index_of_code, indices, out=indices, mode="clip")  # in range
            out[name] = pa.DictionaryArray.from_arrays(  # pa.array would import pandas
                pa.Array.from_buffers(pa.int32(), rows, [None, pa.py_buffer(indices)]),
                dictionary,
            )
        return out

    def frame(self) -> pl.DataFrame:
        """The release as a Polars frame, the labels Categorical."""
        arrays = self.arrays()
        labels = pl.from_arrow(pa.table(list(arrays.values()), names=list(arrays)))
        assert isinstance(labels, pl.DataFrame)
        return pl.DataFrame([labels.get_column(c) if c in arrays else self.rest.get_column(c)
                             for c in self.columns])  # fmt: skip


def codable(result: SearchResult, qis: Sequence[Generalisation]) -> bool:
    """Whether :func:`release_coded` can release ``result``: rows as classes (no sensitive
    attribute or person tracked), plain quasi-identifiers, a level-0 table whose keys are the
    classes' own (not re-coded), and every row's entry in it (``row_entries``)."""
    base = result.base
    return (base is not None and not base.tracked and base.cards is not None
            and result.entries is not None
            and all(g.column_names == (g.name,) for g in qis))  # fmt: skip


def release_coded(
    frame: pl.DataFrame, qis: Sequence[Generalisation], result: SearchResult
) -> CodedRelease:
    """Release ``frame`` at ``result``'s levels (as :meth:`SearchResult.apply` does, for a
    :func:`codable` result). The chosen node's table is rolled up from the search's level-0
    table and settled there; each level-0 entry finds its class, and each row its entry
    (``result.entries``). Per row that is one gather for whether it is kept and one per
    quasi-identifier for its label; everything else is over entries, not rows."""
    base, entries = result.base, result.entries
    assert base is not None and entries is not None and codable(result, qis)
    lookups = Lookups(qis)
    node = roll_up(base, result.levels, lookups)
    reason = result.requirements.settle(node).reason
    to_node = locate(node, entry_keys(base, result.levels, lookups))  # entry → its class
    kept_classes = reason < 0
    kept_entries = kept_classes[to_node]
    keep = kept_entries[entries]
    gone = ~keep
    # the rows of each level-0 entry counted again from the rows, for the check after
    per_entry = np.where(kept_entries, np.bincount(entries, minlength=base.size), 0)
    sizes = np.bincount(to_node, weights=per_entry, minlength=node.size).astype(np.int64)
    weights = per_entry.astype(np.float64)
    counts = tuple(
        np.bincount(base.code(i), weights=weights, minlength=len(g.labels[0])).astype(np.int64)
        for i, g in enumerate(qis)
    )
    labels = {}
    for i, (g, level) in enumerate(zip(qis, result.levels, strict=True)):
        codes = node.code(i)
        present = np.zeros(len(g.labels[level]), dtype=np.bool_)
        present[codes[kept_classes]] = True  # labels of released classes only: a label of
        dense = np.cumsum(present, dtype=np.int32) - 1  # withheld rows alone never appears
        names = [label for label, p in zip(g.labels[level], present, strict=True) if p]
        text = pl.Series(g.name, names, dtype=pl.String).to_arrow().cast(pa.string())
        labels[g.name] = (text, dense[g.maps[level]], g.codes)
    others = [c for c in frame.columns if c not in labels]
    rest = frame.select(others).filter(pl.Series(keep)) if others else pl.DataFrame()
    texts = pl.Series(result.requirements.texts(), dtype=pl.String)
    why = texts.gather(reason[to_node[entries[gone]]]).alias(REASON_COLUMN)
    held = frame.filter(pl.Series(gone)).with_columns(why)
    return CodedRelease(tuple(frame.columns), labels, rest, held,
                        pl.Series(sizes[kept_classes]), counts, entries, keep, to_node)  # fmt: skip


def _plain(dtype: pl.DataType) -> bool:
    """Whether a column of ``dtype`` reads back from Parquet as the same type without the
    Arrow schema stored beside it (time zones and durations need that schema)."""
    if isinstance(dtype, pl.Datetime):
        return dtype.time_zone is None
    return dtype.is_numeric() or dtype in (pl.String, pl.Boolean, pl.Date, pl.Time, pl.Binary)


def write_release(
    release: CodedRelease, path: str | Path, *, outputs: OutputSet | None = None,
    last: bool = False,
) -> Path:  # fmt: skip
    """Write a release of :func:`release_coded` like :func:`koble.tables.write_table`
    (atomically, by suffix; CSV as ever). In Parquet the quasi-identifiers are written from
    their dictionaries (about twice as fast as their strings) and described as plain text,
    so every reader sees strings, as in the input. That description leaves out the Arrow
    schema, so a release with other columns whose type needs it (a time zone, a duration)
    has its labels written as strings instead.

    Parquet is written a row group at a time: the next group's labels are gathered while
    the writer (which holds no lock Python needs) encodes the last, so on two cores the
    gathering costs almost nothing beside the writing."""
    path = Path(path)
    rest, names = release.rest, release.labels
    if path.suffix.lower() not in PARQUET_SUFFIXES or not all(map(_plain, rest.dtypes)):
        as_text = [pl.col(c).cast(pl.String) for c in names]
        return write_table(release.frame().with_columns(as_text), path, outputs=outputs,
                           last=last)  # fmt: skip
    others = rest.to_arrow()
    label_type = pa.dictionary(pa.int32(), pa.string())
    # labels are never null ("(missing)" is a label): required columns spare the writer
    # a definition level per row
    schema = pa.schema([pa.field(c, label_type, nullable=False) if c in names
                        else others.schema.field(c) for c in release.columns])  # fmt: skip
    staged = atomic_write(path) if outputs is None else outputs.file(path, last=last)
    with (
        staged as temp,
        pq.ParquetWriter(
            temp, schema, compression="zstd", store_schema=False,
            write_statistics=[c for c in release.columns if c not in names],
        ) as writer,
        ThreadPoolExecutor(1) as pool,
    ):  # fmt: skip
        pending: Future[None] | None = None
        written = 0
        # two sets of buffers, taken in turn: a group's are rewritten only after its write
        # (awaited before the next group's is submitted), so new memory is touched twice
        # over a group's size, not over the release's
        size = min(ROW_GROUP, len(release.keep))
        sets = [{c: np.empty(size, dtype=np.int32) for c in names} for _ in range(2)]
        for group, start in enumerate(range(0, len(release.keep), ROW_GROUP)):
            arrays = release.arrays(start, start + ROW_GROUP, into=sets[group % 2])
            rows = int(np.count_nonzero(release.keep[start : start + ROW_GROUP]))
            part = others.slice(written, rows)
            columns = [arrays[c] if c in arrays else part.column(c) for c in release.columns]
            if pending is not None:
                pending.result()
            if rows:
                pending = pool.submit(writer.write_table, pa.table(columns, schema=schema))
            written += rows
        if pending is not None:
            pending.result()
    return path
