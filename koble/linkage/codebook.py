"""The codebook that documents a delivery (design.md §1.5).

Every delivery documents, per file, its rows, the distinct persons in it (distinct
``lopenr``), and its exact duplicate rows; and per variable its delivered and original
name, type, label, code list, null count and whether it is identifying. The researcher reads
it next to the files; the auditor re-computes it from the files and compares.

:func:`codebook` gives it as a typed record (:class:`Codebook`: a registry's extract report
carries its file's entry to the operator in JSON, read back as this type);
:func:`render_codebook_markdown` renders it as Markdown. Both are deterministic: files
sorted by name, variables in file order, codes sorted, no timestamps, so the same delivery
gives the same bytes. Counts are computed by polars over whole columns, never row by row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import polars as pl

from koble.linkage.delivery_records import Nested, _Record
from koble.linkage.formats import delivery_name

__all__ = [
    "PERSON_COLUMN",
    "CodeLabel",
    "Codebook",
    "CodebookFile",
    "CodebookVariable",
    "codebook",
    "counted_file",
    "render_codebook_markdown",
    "sorted_duplicates",
]

#: The column whose distinct values count the persons of a file.
PERSON_COLUMN: Final = "lopenr"


def _type_name(dtype: pl.DataType) -> str:
    """A short, tool-neutral type name for the codebook."""
    if dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum):
        return "string"
    if dtype.is_integer():
        return "integer"
    if dtype.is_float() or isinstance(dtype, pl.Decimal):
        return "decimal"
    if dtype == pl.Boolean:
        return "boolean"
    if dtype == pl.Date:
        return "date"
    if isinstance(dtype, pl.Datetime):
        return "datetime"
    return str(dtype).lower()


@dataclass(frozen=True)
class CodeLabel(_Record):
    code: int | str
    label: str


@dataclass(frozen=True, kw_only=True)
class CodebookVariable(_Record):
    """A delivered variable: its delivered and original name, type, label, code list,
    nulls, and whether it is identifying."""

    name: str
    original: str
    type: str
    label: str
    codes: list[CodeLabel] | None
    nulls: int
    identifying: bool
    _records: ClassVar[Nested] = {"codes": ("list", CodeLabel)}


@dataclass(frozen=True, kw_only=True)
class CodebookFile(_Record):
    """A delivered file: rows, distinct persons (None without ``lopenr``), exact duplicate
    rows, and its variables in file order."""

    file: str
    rows: int
    persons: int | None
    duplicate_rows: int
    variables: list[CodebookVariable]
    _records: ClassVar[Nested] = {"variables": ("list", CodebookVariable)}


@dataclass(frozen=True)
class Codebook(_Record):
    """A delivery's codebook (or a registry's entry of it): its files, sorted by name."""

    files: list[CodebookFile]
    _records: ClassVar[Nested] = {"files": ("list", CodebookFile)}


def _code_list(codes: Mapping[Any, str] | None) -> list[CodeLabel] | None:
    if not codes:
        return None
    order = sorted(codes, key=lambda k: (str(type(k)), k))
    return [CodeLabel(k, codes[k]) for k in order]


#: Chunks beyond which :func:`sorted_duplicates` copies a frame into one rather than compare
#: chunk by chunk (each chunk costs two small comparisons).
_CHUNKS: Final = 64


def sorted_duplicates(frame: pl.DataFrame) -> int:
    """Rows equal to an earlier row (rows minus distinct rows), for a frame sorted on every
    column: there equal rows are adjacent, so one comparison with the row before suffices
    instead of hashing every row. Nulls compare equal to nulls, as in ``n_unique``.

    An extract arrives as the engine's batches, so its columns are in chunks (a few dozen
    for a national one). A row compared with the row before it pairs two slices whose chunks
    do not line up, and Polars copies them whole to line them up (a third of the time at
    5.5 M persons). So each chunk is compared within itself (its two slices are views that
    line up), and each chunk's first row with the row before it. Columns chunked apart, or
    in more than :data:`_CHUNKS` chunks (small batches), are copied once instead."""
    if frame.height < 2 or not frame.width:
        return 0
    chunkings = {tuple(n for n in frame[c].chunk_lengths() if n) for c in frame.columns}
    lengths = chunkings.pop()
    if chunkings or len(lengths) > _CHUNKS:
        return _adjacent_equal(frame.rechunk())
    total, start = 0, 0
    for length in lengths:
        if start:  # the chunk's first row against the previous chunk's last
            total += _adjacent_equal(frame.slice(start - 1, 2))
        total += _adjacent_equal(frame.slice(start, length))
        start += length
    return total


def _adjacent_equal(frame: pl.DataFrame) -> int:
    """Rows of ``frame`` equal to the row before them (nulls equal to nulls)."""
    if frame.height < 2:
        return 0
    head, tail = frame.slice(0, frame.height - 1), frame.slice(1)
    same = pl.DataFrame([tail[c].eq_missing(head[c]).alias(c) for c in frame.columns])
    return int(same.select(pl.all_horizontal(pl.all()).sum()).item())


def _file(
    name: str,
    frame: pl.DataFrame,
    labels: Mapping[str, str],
    value_labels: Mapping[str, Mapping[Any, str]],
    identifying: set[str] | frozenset[str],
    duplicates: int | None = None,
) -> CodebookFile:
    rows = frame.height
    if duplicates is None:
        duplicates = rows - frame.n_unique() if rows and frame.width else 0
    persons = None
    if PERSON_COLUMN in frame.columns:
        persons = frame.select(pl.col(PERSON_COLUMN).drop_nulls().n_unique()).item()
    nulls = frame.null_count().row(0) if frame.width else ()
    variables = [
        CodebookVariable(
            name=delivery_name(col),
            original=col,
            type=_type_name(frame.schema[col]),
            label=labels.get(col, col),
            codes=_code_list(value_labels.get(col)),
            nulls=int(n),
            identifying=col in identifying,
        )
        for col, n in zip(frame.columns, nulls, strict=True)
    ]
    return CodebookFile(file=name, rows=rows, persons=persons, duplicate_rows=duplicates,
                        variables=variables)  # fmt: skip


def counted_file(
    name: str,
    schema: pl.Schema,
    *,
    rows: int,
    persons: int,
    duplicates: int,
    nulls: Mapping[str, int],
    labels: Mapping[str, str],
    value_labels: Mapping[str, Mapping[Any, str]],
    identifying: set[str] | frozenset[str],
) -> CodebookFile:
    """A file's entry from figures counted elsewhere than in a frame of its rows (an
    engine's SQL, a stream of batches): its variables as :func:`codebook` describes a file of
    ``schema``, with ``nulls`` per column; ``persons`` (distinct non-null ``lopenr``) is
    kept only for a file with a :data:`PERSON_COLUMN`, as :func:`codebook` counts it."""
    blank = _file(name, pl.DataFrame(schema=schema), labels, value_labels, identifying)
    variables = [dataclasses.replace(v, nulls=nulls.get(v.original, 0)) for v in blank.variables]
    return dataclasses.replace(
        blank,
        rows=rows,
        persons=persons if PERSON_COLUMN in schema else None,
        duplicate_rows=duplicates,
        variables=variables,
    )


def codebook(
    files: Mapping[str, pl.DataFrame],
    *,
    labels: Mapping[str, str],
    value_labels: Mapping[str, Mapping[Any, str]],
    identifying: set[str] | frozenset[str],
    duplicates: Mapping[str, int] | None = None,
) -> Codebook:
    """The codebook of a delivery whose files (by file name) hold ``files``.

    ``labels`` and ``value_labels`` are keyed by original column name; a column without a
    label is labelled with its own name. ``persons`` is ``None`` for a file without a
    ``lopenr`` column (an anonymous file). ``duplicates`` gives a file's duplicate rows
    when the caller already knows them (e.g. from :func:`sorted_duplicates`).
    """
    out = []
    for name in sorted(files):
        known = None if duplicates is None else duplicates.get(name)
        out.append(_file(name, files[name], labels, value_labels, identifying, known))
    return Codebook(out)


def _cell(value: object) -> str:
    """``value`` as one Markdown table cell."""
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_codebook_markdown(data: Codebook) -> str:
    """The codebook as Markdown: a section per file with its counts, a variable table and
    the code lists."""
    lines = ["# Kodebok", ""]
    for f in data.files:
        persons = "–" if f.persons is None else f.persons
        lines += [f"## {_cell(f.file)}", ""]
        lines += [f"- Rader: {f.rows}", f"- Personer (distinkte løpenummer): {persons}"]
        lines += [f"- Dupliserte rader: {f.duplicate_rows}", ""]
        lines += ["| Variabel | Opprinnelig navn | Type | Etikett | Mangler | Identifiserende |"]
        lines += ["|---|---|---|---|---:|---|"]
        for v in f.variables:
            cells: list[object] = [v.name, v.original, v.type, v.label, v.nulls]
            cells.append("ja" if v.identifying else "nei")
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        lines.append("")
        for v in f.variables:
            if v.codes:
                lines += [f"### {v.name}: kodeliste", "", "| Kode | Etikett |", "|---|---|"]
                lines += [f"| {_cell(c.code)} | {_cell(c.label)} |" for c in v.codes]
                lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"
