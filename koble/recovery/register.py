"""The population register the TTP resolves records against: a directory of Parquet files.

:meth:`Register.open` checks, before any data is read, that the directory holds the files of
:data:`~koble.recovery.contract.REGISTER_FILES` (``identity_history.parquet`` optional) and
that each has the contract's columns with usable types, naming the file and column of the
first problem. The tables themselves are read on first use and kept: a run that links
everything exactly never reads the name history. :meth:`Register.from_frames` builds one in
memory (tests, benchmarks). Nothing here prints or repr's a name or a number.
"""

from __future__ import annotations

import functools
from pathlib import Path

import polars as pl

from koble.errors import ColumnError, FileFormatError
from koble.pseudonym.identity import IdentityHistory
from koble.recovery.contract import (
    ADDRESS_SCHEMA,
    NAMES_SCHEMA,
    REGISTER_FILES,
    REGISTER_SCHEMA,
)
from koble.recovery.records import normalise_sex

__all__ = ["Register"]

_SCHEMAS = {"persons": REGISTER_SCHEMA, "names": NAMES_SCHEMA, "addresses": ADDRESS_SCHEMA}
_HISTORY = pl.Schema({"old_id": pl.String, "current_id": pl.String})
_TEXT = (pl.String, pl.Categorical, pl.Enum, pl.Null)


class Register:
    """The TTP's population register: persons, their names and addresses over time, and
    (optionally) the identity history, each a polars DataFrame of the contract's schema."""

    def __init__(self, tables: dict[str, pl.DataFrame | Path], where: str) -> None:
        self._tables = tables
        self._where = where

    def __repr__(self) -> str:
        return f"Register({self._where})"

    @classmethod
    def open(cls, directory: str | Path) -> Register:
        """Check the register at ``directory`` (files and columns, not yet the data)."""
        root = Path(directory)
        if not root.is_dir():
            raise FileFormatError("the population register must be a directory", path=root)
        tables: dict[str, pl.DataFrame | Path] = {}
        for key, name in REGISTER_FILES.items():
            path = root / name
            if not path.is_file():
                if key == "history":
                    continue
                raise FileFormatError(f"the population register has no {name}", path=path)
            schema = _HISTORY if key == "history" else _SCHEMAS[key]
            _check_schema(_file_schema(path), schema, path)
            tables[key] = path
        return cls(tables, f"{str(root)!r}")

    @classmethod
    def from_frames(
        cls,
        persons: pl.DataFrame,
        *,
        names: pl.DataFrame | None = None,
        addresses: pl.DataFrame | None = None,
        history: pl.DataFrame | None = None,
    ) -> Register:
        """A register held in memory. Missing columns of ``persons`` are null; without
        ``names`` each person's current name is their only one; without ``addresses`` none."""
        persons = _conform(persons, REGISTER_SCHEMA, "<persons>")
        if names is None:
            names = persons.select(
                "person_id", "first_name", "middle_name", "last_name",
                pl.col("birth_date").alias("valid_from"), pl.lit(None, pl.Date).alias("valid_to"),
                pl.lit("birth").alias("reason"),
            )  # fmt: skip
        tables: dict[str, pl.DataFrame | Path] = {
            "persons": persons,
            "names": _conform(names, NAMES_SCHEMA, "<names>"),
        }
        where = pl.DataFrame(schema=ADDRESS_SCHEMA) if addresses is None else addresses
        tables["addresses"] = _conform(where, ADDRESS_SCHEMA, "<addresses>")
        if history is not None:
            tables["history"] = _conform(history, _HISTORY, "<history>")
        return cls(tables, f"in memory, {persons.height} persons")

    def _table(self, key: str) -> pl.DataFrame:
        table = self._tables[key]
        if isinstance(table, Path):
            schema = _HISTORY if key == "history" else _SCHEMAS[key]
            try:
                frame = pl.read_parquet(table, columns=list(schema))
            except (pl.exceptions.PolarsError, OSError) as exc:
                raise FileFormatError(f"cannot read: {type(exc).__name__}", path=table) from None
            table = _conform(frame, schema, table)
            self._tables[key] = table
        return table

    @functools.cached_property
    def persons(self) -> pl.DataFrame:
        """One row per person (:data:`REGISTER_SCHEMA`); ``person_id`` unique and present;
        ``sex`` folded as the records' is (``K`` -> ``F``, any case; other codes refused)."""
        where = self._tables.get("persons")
        persons = self._table("persons")
        path = where if isinstance(where, Path) else "<persons>"
        _refuse_bad_ids(persons["person_id"], path)
        return persons.with_columns(normalise_sex(persons["sex"], path, "sex"))

    @property
    def names(self) -> pl.DataFrame:
        """Every name each person has had, current included (:data:`NAMES_SCHEMA`)."""
        return self._table("names")

    @property
    def addresses(self) -> pl.DataFrame:
        """Each person's address kommune over time (:data:`ADDRESS_SCHEMA`)."""
        return self._table("addresses")

    @property
    def history(self) -> pl.DataFrame | None:
        """``old_id`` -> ``current_id`` as the world's identity history has it, or None."""
        return self._table("history") if "history" in self._tables else None

    @functools.cached_property
    def ids(self) -> pl.DataFrame:
        """Every number that names a registered person: ``id`` (Int64, the 11 digits as a
        number, for fast joins), ``person_id`` (the current number) and ``row`` (the
        person's row in :attr:`persons`, to gather their fields without a join). A person's
        own number, plus each old number of the identity history that resolves (through
        chains) to a registered person; old numbers with conflicting successors are left
        out, and so are numbers that are not 11 digits. Sorted by ``id``."""
        persons = self.persons.select("person_id").with_row_index("row")
        frames = [persons.select(pl.col("person_id").alias("old"), "person_id", "row")]
        history = self.history
        if history is not None and history.height:
            where = self._tables["history"]
            resolved = IdentityHistory.from_frame(
                history, path=where if isinstance(where, Path) else "<history>"
            ).aliases(persons["person_id"])
            old = resolved.rename({"current": "person_id"}).join(persons, on="person_id")
            old = old.join(persons, left_on="old", right_on="person_id", how="anti")
            frames.append(old.select("old", "person_id", "row"))
        ids = pl.concat(frames).filter(pl.col("old").str.contains(r"^[0-9]{11}$"))
        ids = ids.select(pl.col("old").cast(pl.Int64, strict=False).alias("id"), "person_id", "row")
        return ids.drop_nulls("id").sort("id")  # sorted: a join with sorted keys merges


def _file_schema(path: Path) -> pl.Schema:
    try:
        return pl.scan_parquet(path).collect_schema()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise FileFormatError(f"not a readable Parquet file ({type(exc).__name__})",
                              path=path) from None  # fmt: skip


def _check_schema(
    found: pl.Schema, wanted: pl.Schema, path: str | Path, *, optional: bool = False
) -> None:
    """Each column of ``wanted`` is in ``found`` (unless ``optional``) with a type that
    converts to it."""
    for name, dtype in wanted.items():
        if name not in found:
            if optional:
                continue
            raise ColumnError(f"missing; {Path(str(path)).name} needs {', '.join(wanted)}",
                              path=path, column=name)  # fmt: skip
        have = found[name]
        ok = have in _TEXT if dtype == pl.String else have in (pl.Date, pl.Datetime, pl.Null)
        if not ok:
            raise ColumnError(f"must be {dtype}, the column is {have}", path=path, column=name)


def _conform(frame: pl.DataFrame, schema: pl.Schema, path: str | Path) -> pl.DataFrame:
    """``frame`` with exactly ``schema``'s columns, in order (missing ones null)."""
    _check_schema(frame.schema, schema, path, optional=True)
    return frame.select(
        (pl.col(k).cast(v) if k in frame.columns else pl.lit(None, v)).alias(k)
        for k, v in schema.items()
    )


def _refuse_bad_ids(ids: pl.Series, path: str | Path) -> None:
    """person_id must be present and unique: a register with two rows for one number would
    make every record of that person ambiguous."""
    for bad, what in ((ids.is_null(), "missing"), (ids.is_duplicated(), "not unique")):
        rows = bad.arg_true()
        if len(rows):
            raise ColumnError(f"person_id {what} ({len(rows)} row(s), the first here)",
                              path=path, column="person_id", row=int(rows[0]) + 1)  # fmt: skip
