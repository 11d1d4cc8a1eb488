"""Shared machinery: turn a column and a per-level labelling into a :class:`Generalisation`.

Every built-in hierarchy works the same way, on the **distinct** values of the column. It
brings them into a *canonical* form (a kommune code as a 4-digit string, an ICD-10 code in
dotted upper case, a date as a ``Date``), raising :class:`~koble.errors.ColumnError` for
values it cannot place; it labels each distinct canonical value at every level (polars
expressions over a few hundred or thousand values, never a loop over rows); and
:func:`build` numbers the labels densely per level, in the sorted order of the values, so
codes follow the natural order (ages ascending, dates in time). The rows are touched twice
in all: once to find the distinct values and once to map each row to its level-0 code.

Missing values: a null is a level-0 value of its own, labelled ``(missing)``. It stays
``(missing)`` at every level and joins the others only at the top ``*`` (a null kommune is
not in any fylke; a suppressed column says nothing about anyone). The codes of ``(missing)``
come after the codes of real values at every level below the top.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from polars import CompatLevel

from koble.anonymity.generalisation import Codes, Generalisation
from koble.errors import ColumnError, redact

__all__ = [
    "BLOCK",
    "MISSING",
    "TOP",
    "Canonicaliser",
    "ChunkedIndex",
    "Encoded",
    "Labeller",
    "blocks",
    "build",
    "encode",
    "integers",
    "per_column",
    "reject",
    "shown",
    "to_text",
]

MISSING = "(missing)"
TOP = "*"

T = TypeVar("T")
R = TypeVar("R")

Canonicaliser = Callable[[pl.Series], pl.Series]
"""Distinct non-null raw values in, their canonical forms out (same length, no nulls)."""

Labeller = Callable[[pl.Series], Sequence[pl.Series]]
"""Sorted distinct canonical values in, one String Series of labels per level out."""


#: Rows a gather or a scatter by index takes at a time. NumPy first converts indices of
#: another integer type (Arrow's int32, Polars' uint32 codes) to its own, in a buffer as long
#: as the indices: over millions of rows that is a fresh buffer of 8 bytes a row per column,
#: whose pages the kernel faults in one by one (more CPU than the gather itself); a block of
#: this size reuses one small buffer that stays in the cache.
BLOCK = 1 << 16


def blocks(length: int) -> Iterator[slice]:
    """The slices of ``range(length)`` a :data:`BLOCK` at a time."""
    return (slice(at, min(at + BLOCK, length)) for at in range(0, length, BLOCK))


def per_column(work: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``work`` of each of ``items`` (columns), in their order, on as many threads as Polars
    uses (one per core unless ``POLARS_MAX_THREADS`` says fewer). A column's pass over
    millions of rows is NumPy's gathers and scatters and Polars' kernels, which let go of
    the interpreter lock: one column per core takes half the time on two. An exception is
    raised as it would be in a loop, the first column's first."""
    threads = min(len(items), pl.thread_pool_size())
    if threads <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(threads, thread_name_prefix="koble-column") as pool:
        return list(pool.map(work, items))


@dataclass(frozen=True)
class ChunkedIndex:
    """Each row's index into a column's distinct values, kept as the chunks a Parquet file's
    dictionary pages (or a CSV reader's Categorical chunks) gave: per chunk, its indices
    into its own dictionary and where each of that dictionary's values (and a missing
    value, one past the last) stands in the distinct values. :meth:`take` maps the rows
    through both in one pass, so the translation to one dictionary is never written out
    row by row, nor the chunks copied into one array."""

    parts: tuple[tuple[npt.NDArray[np.integer], npt.NDArray[np.integer]], ...]
    length: int

    def __len__(self) -> int:
        return self.length

    def take(self, values: npt.NDArray[np.integer]) -> npt.NDArray[np.integer]:
        """``values[index]`` for every row (``values`` indexed by position, missing last),
        a :data:`BLOCK` of rows at a time (see there)."""
        out = np.empty(self.length, dtype=values.dtype)
        start = 0
        for where, indices in self.parts:
            table = values[where]
            for block in blocks(len(indices)):
                # mode "clip": the indices are in range, and "raise" would buffer ``out``
                np.take(table, indices[block], out=out[start:][block], mode="clip")
            start += len(indices)
        return out


Encoded = tuple[pl.Series, "npt.NDArray[np.integer] | ChunkedIndex"]
"""A column encoded already: its distinct non-null values (in its dtype) and each row's
index into them (a missing value: one past the last), as :func:`encode` makes them, or as
chunks (:class:`ChunkedIndex`): a Parquet file's own dictionary pages
(:func:`koble.anonymity.coded.read_coded`), a categorical column's chunks (:func:`encode`)."""


def shown(value: object) -> str:
    """A value quoted for an error message, with long digit runs redacted.

    Quasi-identifier values (a kommune code, an age) are not identifiers and are named in
    messages so the operator can fix them; but a column mixed up with a fødselsnummer
    column must not leak one into a log, so runs of six or more digits are hidden.
    """
    return redact(repr(value) if isinstance(value, str) else repr(str(value)))


def reject(column: pl.Series, bad: pl.Series, problem: str) -> ColumnError:
    """The error for the first row of ``column`` whose value is in ``bad``, naming the
    column and row, never the value.

    ``bad`` holds offending *raw* values (from the distinct values, so cheap to find); the
    row is located with one vectorised pass, only on the error path. Rows are 1-based, as
    everywhere in koble's messages.
    """
    if column.dtype in (pl.Categorical, pl.Enum):
        column = column.cast(pl.String)
    hits = column.is_in(bad.cast(column.dtype).implode()).arg_true()
    row = int(hits[0]) + 1 if len(hits) else None
    # the value itself is never quoted: it is data (a mistyped column may hold identifiers)
    return ColumnError(f"the value {problem}", column=column.name, row=row)


def to_text(column: pl.Series) -> pl.Series:
    """The column as strings (categoricals and enums by their text, numbers in decimal)."""
    if column.dtype == pl.String:
        return column
    return column.cast(pl.String)


def _dense(labels: pl.Series) -> tuple[Codes, list[str]]:
    """Number labels densely in order of first appearance; return codes and the label list."""
    distinct = labels.unique(maintain_order=True)
    codes = labels.replace_strict(
        distinct, np.arange(len(distinct), dtype=np.int32), return_dtype=pl.Int32
    )
    return codes.to_numpy().astype(np.int32, copy=False), distinct.to_list()


def integers(array: pa.Array) -> npt.NDArray[np.integer]:
    """An Arrow integer array without nulls as NumPy, viewing its buffer (``to_numpy``
    would import pandas, a second's worth of CPU on a loaded machine, for nothing)."""
    if array.null_count:
        raise ValueError("integers() takes an array without nulls")
    dtype = np.dtype(array.type.to_pandas_dtype())
    data = array.buffers()[1]
    if data is None:
        return np.zeros(len(array), dtype=dtype)
    return np.frombuffer(data, dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize)


def encode(column: pl.Series) -> Encoded:
    """The distinct non-null values of ``column`` (in its dtype) and each row's index into
    them (missing: one past the last), from one hash pass over the rows (Arrow's
    dictionary encoding, zero-copy from Polars); a categorical column's from its own
    dictionary, its values no row holds left out (the index then a :class:`ChunkedIndex`
    through its codes, rather than the rows' codes rewritten)."""
    dtype = column.dtype
    coded = isinstance(dtype, (pl.Categorical, pl.Enum))
    if column.null_count() == len(column):  # Arrow encodes a null-typed column as [null]
        empty = column.clear()
        return empty.cast(pl.String) if coded else empty, np.zeros(len(column), dtype=np.int32)
    # A categorical column is encoded already (a Parquet file read dictionary-encoded, a
    # CSV file's parsed so): its dictionary and indices are taken as they are, kept to the
    # values present. A Categorical's categories (all the process holds, unless it has
    # its own) are its dictionary, indexed by its physical codes: no conversion of the rows
    # to Arrow, unless the categories outnumber the rows.
    dictionary = dtype.categories.to_series() if isinstance(dtype, pl.Categorical) else None
    if dictionary is not None and len(dictionary) <= len(column):
        dictionary = dictionary.alias(column.name)
        return _categorical(dictionary, _physical_chunks(column, len(dictionary)), len(column))
    array = column.to_arrow(compat_level=CompatLevel.newest())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    encoded = array if coded else pc.dictionary_encode(array)
    indices = encoded.indices
    if indices.null_count:
        indices = pc.fill_null(indices, len(encoded.dictionary))
    index = integers(indices)
    dictionary = pl.Series(column.name, encoded.dictionary)
    if coded:
        return _categorical(dictionary, [index], len(index))
    if dictionary.dtype != column.dtype:
        dictionary = dictionary.cast(column.dtype)
    return dictionary, index


def _physical_chunks(column: pl.Series, missing: int) -> list[npt.NDArray[np.integer]]:
    """A categorical column's codes, chunk by chunk as its reader made them (a CSV file's
    in a few hundred), each viewed in place where it has no missing value (else those set
    to ``missing``): never copied into one array of every row's code."""
    out = []
    for chunk in column.to_physical().get_chunks():
        if chunk.null_count():
            chunk = chunk.fill_null(missing)
        out.append(chunk.to_numpy())
    return out


def _categorical(dictionary: pl.Series, chunks: Sequence[npt.NDArray[np.integer]],
                 length: int) -> Encoded:  # fmt: skip
    """A categorical column's :data:`Encoded` from its categories (``dictionary``) and its
    codes in ``chunks`` (missing: one past the last category): the categories no row holds
    left out, each chunk indexed through the same translation (a :class:`ChunkedIndex`)."""
    used = np.zeros(len(dictionary) + 1, dtype=np.bool_)
    for chunk in chunks:
        for block in blocks(len(chunk)):
            used[chunk[block]] = True  # a scatter: cheaper than counting
    used = used[: len(dictionary)]
    dense = np.cumsum(used, dtype=np.int32) - 1
    dense = np.append(dense, np.int32(used.sum()))  # a missing value: one past the last
    # the rows keep their codes, read through ``dense`` when they are taken
    index = ChunkedIndex(tuple((dense, chunk) for chunk in chunks), length)
    return dictionary.filter(pl.Series(used)).cast(pl.String), index


def build(
    column: pl.Series,
    level_names: tuple[str, ...],
    canonicalise: Canonicaliser,
    labeller: Labeller,
    *,
    top: str | None = TOP,
    encoded: Encoded | None = None,
) -> Generalisation:
    """Generalise ``column`` under a hierarchy given by two vectorised functions.

    ``canonicalise`` receives the distinct non-null raw values (in ``column``'s dtype, with
    categoricals as strings) and returns their canonical forms, one per value and without
    nulls; it raises :class:`~koble.errors.ColumnError` (see :func:`reject`) for values it
    cannot place. Several raw values may share a canonical form (``J18.9`` and ``J189``).
    ``labeller`` receives the sorted distinct canonical values and returns one String
    Series per level (level 0 first), each as long as its input. ``top`` is the label every
    value has at the last level (``*`` for the built-ins); missing values join it there.
    Pass ``top=None`` when the last level may hold several labels (a user's CSV): then
    ``(missing)`` stays apart at the top too. ``encoded``: the column's values encoded
    already (they must be ``column``'s), which spares the pass over the rows for them.

    The rows are read twice: once for their distinct values, once to map each row to its
    level-0 code. Everything else is over distinct values.

    Raises ``ValueError`` if the labelling is not a hierarchy (a code at level l with two
    parents at level l+1): for built-ins that is a bug, and user CSVs are checked earlier
    with a message that names the file.
    """
    # categoricals as their text
    raw, raw_index = encode(column) if encoded is None else encoded
    if len(raw_index) != len(column):
        raise ValueError("the encoded column differs in length")
    canonical_raw = canonicalise(raw) if len(raw) else raw
    if len(canonical_raw) != len(raw) or canonical_raw.null_count():
        raise ValueError("canonicalise must return one non-null value per distinct value")
    distinct = canonical_raw.unique().sort()
    n = len(distinct)
    has_missing = column.null_count() > 0

    raw_codes = (
        canonical_raw.replace_strict(
            distinct, np.arange(n, dtype=np.int32), return_dtype=pl.Int32
        ).to_numpy()
        if n
        else np.zeros(0, dtype=np.int32)
    )
    # one slot past the distinct values for a missing value: code n
    with_missing = np.append(raw_codes, np.int32(n)).astype(np.int32)
    row_codes: Codes = (
        raw_index.take(with_missing).astype(np.int32, copy=False)
        if isinstance(raw_index, ChunkedIndex) else with_missing[raw_index]
    )  # fmt: skip

    per_level = list(labeller(distinct)) if n else []
    if n and len(per_level) != len(level_names):
        raise ValueError(f"labeller gave {len(per_level)} levels, expected {len(level_names)}")

    maps: list[Codes] = []
    labels: list[tuple[str, ...]] = []
    height = len(level_names) - 1
    for level in range(len(level_names)):
        if n:
            level_labels = per_level[level]
            if len(level_labels) != n or level_labels.null_count():
                raise ValueError(f"labeller gave bad labels at level {level}")
            codes, names = _dense(level_labels.cast(pl.String))
        else:
            codes, names = np.zeros(0, dtype=np.int32), []
        if level == 0 and len(names) != n:
            raise ValueError("level-0 labels must be distinct for distinct values")
        if level == height and top is not None:
            if names and names != [top]:
                raise ValueError(f"top level must be {top!r} only")
            names = [top]
            missing_code = 0
        else:
            missing_code = len(names)
            if has_missing:
                names = [*names, MISSING]
        if has_missing:
            codes = np.append(codes, np.int32(missing_code)).astype(np.int32)
        maps.append(codes)
        labels.append(tuple(names))

    _check_consistent(maps, labels, level_names)
    return Generalisation(
        name=column.name,
        level_names=level_names,
        codes=row_codes,
        labels=tuple(labels),
        maps=tuple(maps),
        raw=raw,
        has_missing=has_missing,
        raw_codes=raw_codes,
    )


def _check_consistent(
    maps: Sequence[Codes], labels: Sequence[tuple[str, ...]], level_names: tuple[str, ...]
) -> None:
    """Every code at level l has exactly one parent at level l+1 (vectorised per level)."""
    for level in range(len(maps) - 1):
        lower, upper = maps[level], maps[level + 1]
        parent = np.full(len(labels[level]), -1, dtype=np.int64)
        parent[lower] = upper
        clash = np.flatnonzero(parent[lower] != upper)
        if len(clash):
            label = labels[level][int(lower[clash[0]])]
            raise ValueError(
                f"not a hierarchy: {label!r} at level {level} ({level_names[level]}) "
                f"has more than one parent at level {level + 1}"
            )
