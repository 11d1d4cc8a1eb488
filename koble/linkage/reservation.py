"""The reservation filter: a registry withholds what persons opted out of, before anything
leaves it (design.md §1.3–1.4).

Some identifiable registries let a person opt out (reservasjonsrett): of every release for
research (KPR), or of some variables (Kreftregisteret's risk factors and normal screening
findings, MFR's lifestyle and assisted-reproduction variables, SYSVAK's HPV vaccinations);
a quality registry under the reservation rule holds nobody who objected. The catalogue says
which registries have such rights (``Registry.reservations``, read by
:func:`koble.linkage.routes.route_for`); the registry's own opt-out table says who used them.

The opt-out table (Parquet; the ``reservations`` key of a registry's source) has one row per
opt-out:

* ``person`` (string): the person's identifier, as the registry's table is keyed
  (fødselsnummer);
* ``scope``: ``persons`` (none of the person's rows is released) or ``variables`` (only the
  listed variables are withheld, as nulls, in every row of the person);
* ``variables`` (list of strings): the registry's columns withheld (scope ``variables``);
* ``purpose``: what the person opted out of (``RESERVATION_PURPOSES``); only opt-outs whose
  purpose a job is subject to (:data:`koble.linkage.routes.JOB_PURPOSES`) withhold anything.

The filter matches opt-outs to the person list the registry was sent (identifier →
løpenummer), so an opt-out made under any of a person's numbers withholds all of that
person's rows whatever number each row carries. It is a semi-join and an anti-join on
løpenummer, never a loop over rows. It reports counts only (rows withheld, values nulled per
variable): never who.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from koble.errors import ColumnError, FileFormatError, InputError
from koble.linkage.plan import SERIAL
from koble.linkage.routes import JOB_PURPOSES
from koble.registries.catalogue_model import RESERVATION_PURPOSES, RESERVATION_SCOPES

__all__ = ["OPT_OUT_SCHEMA", "Withheld", "read_opt_outs", "withhold", "withhold_at_registry"]

#: The opt-out table's columns and types.
OPT_OUT_SCHEMA: Mapping[str, pl.DataType] = {
    "person": pl.String(),
    "scope": pl.String(),
    "variables": pl.List(pl.String()),
    "purpose": pl.String(),
}


@dataclass(frozen=True)
class Withheld:
    """What the reservation filter withheld from one extract: counts, never persons."""

    rows: int = 0
    values: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "values": dict(sorted(self.values.items()))}


def read_opt_outs(path: Path) -> pl.DataFrame:
    """The registry's opt-out table at ``path``, checked; errors name file, column and row
    (never a value: the ``person`` column holds fødselsnummer)."""
    try:
        schema = pq.read_schema(path)
        frame = pl.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise FileFormatError(
            f"cannot read the registry's opt-out table: {exc}", path=path
        ) from None
    for column, dtype in OPT_OUT_SCHEMA.items():
        if column not in schema.names:
            raise ColumnError("the opt-out table has no such column", path=path, column=column)
        if frame.schema[column] != dtype:
            raise ColumnError(
                f"the opt-out table's column must be of type {dtype}", path=path, column=column
            )
    frame = frame.select(list(OPT_OUT_SCHEMA)).with_row_index("_row", offset=1)
    checks = (
        ("person", pl.col("person").is_null() | (pl.col("person").str.len_chars() == 0),
         "is empty"),
        ("scope", ~pl.col("scope").is_in(list(RESERVATION_SCOPES)).fill_null(False),
         f"must be one of {', '.join(RESERVATION_SCOPES)}"),
        ("purpose", ~pl.col("purpose").is_in(list(RESERVATION_PURPOSES)).fill_null(False),
         f"must be one of {', '.join(RESERVATION_PURPOSES)}"),
        ("variables", (pl.col("scope") == "variables")
         & (pl.col("variables").list.len().fill_null(0) == 0),
         "names no variable, but the scope is variables"),
    )  # fmt: skip
    for column, bad, what in checks:
        rows = frame.filter(bad)["_row"]
        if rows.len():
            raise InputError(
                f"{what} ({rows.len():,} row(s))", path=path, column=column, row=int(rows[0])
            )
    return frame.drop("_row")


def withhold(
    extract: pl.DataFrame,
    persons: pl.DataFrame,
    key: str,
    opt_outs: pl.DataFrame,
    purposes: Collection[str] = JOB_PURPOSES,
) -> tuple[pl.DataFrame, Withheld]:
    """``extract`` (keyed by løpenummer) without what the persons opted out of.

    ``persons`` is the person list the registry was sent (``key`` → løpenummer); opt-outs
    whose purpose is not in ``purposes`` are ignored. Scope ``persons`` drops the person's
    rows; scope ``variables`` nulls those of the listed variables the extract holds, in the
    person's remaining rows. Row order is kept; returns the counts withheld.
    """
    applies = opt_outs.filter(pl.col("purpose").is_in(list(purposes)))
    linked = persons.select(pl.col(key).alias("person"), pl.col(SERIAL)).join(
        applies, on="person", how="inner"
    )
    whole = linked.filter(pl.col("scope") == "persons").select(SERIAL).unique()
    kept = extract.join(whole, on=SERIAL, how="anti", maintain_order="left")
    pairs = (
        linked.filter(pl.col("scope") == "variables")
        .select(SERIAL, pl.col("variables").alias("variable"))
        .explode("variable")
        .filter(pl.col("variable").is_in([c for c in kept.columns if c != SERIAL]))
        .unique()
    )
    values: dict[str, int] = {}
    nulls: list[pl.Expr] = []
    for variable, group in pairs.group_by("variable"):  # one pass per variable, not per row
        name = str(variable[0])
        hit = pl.col(SERIAL).is_in(group[SERIAL].implode())
        values[name] = int(kept.select((hit & pl.col(name).is_not_null()).sum()).item())
        nulls.append(pl.when(hit).then(None).otherwise(pl.col(name)).alias(name))
    if nulls:
        kept = kept.with_columns(nulls)
    return kept, Withheld(rows=extract.height - kept.height, values=values)


def withhold_at_registry(
    extract: pl.DataFrame,
    persons_file: Path,
    key: str,
    table: Path | None,
    *,
    registry: str,
    order: list[str],
) -> tuple[pl.DataFrame, Withheld]:
    """The registry step's reservation filter: read the opt-out ``table`` and the person
    list, withhold, and sort again if values were nulled (duplicate rows stay adjacent, as
    the codebook's duplicate count expects). A registry whose catalogue entry has
    reservations but whose source names no opt-out table is refused: koble cannot tell
    what to withhold, and releasing everything could release what persons opted out of."""
    if table is None:
        raise ColumnError(
            f"persons may opt out of data of registry {registry} (its catalogue entry has "
            "reservations), but its source names no opt-out table: give it "
            '`reservations = "FILE"` in the sources file',
            column="reservations",
        )
    persons = pl.read_parquet(persons_file, columns=[key, SERIAL])
    kept, withheld = withhold(extract, persons, key, read_opt_outs(table))
    if withheld.values:
        kept = kept.sort(order, nulls_last=True, maintain_order=True)
    if extract.height and not kept.height:
        raise InputError(
            f"registry {registry} withholds every one of the {extract.height:,} rows in the "
            "approved period for reservation (the persons opted out): nothing to deliver",
            path=table,
        )
    return kept, withheld
