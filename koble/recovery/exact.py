"""Stage 1, exact: a record whose number is a registered person's, and whose birth data agree.

A record links exactly when its compacted number passes the fødselsnummer rules (the column
validator of :mod:`koble.registries.identifiers.column`, the same one every other step
uses), names a registered person, either as the person's current number or as an old number
of the identity history (then the current one is linked), and its birth date and sex agree
with the register's where the record has them. Such a link has probability 1.0 and no match
weight.

A valid registered number whose birth date or sex disagree is not linked: the number may be
someone else's, typed for the wrong person. The record goes on to the next stages, marked
``conflict``; if none of them resolves it, that is its reject reason. Everything is one
validation over the column and two joins.
"""

from __future__ import annotations

import polars as pl

from koble.recovery.contract import LINK_SCHEMA, RECORD_SCHEMA, REJECT_SCHEMA, StageResult, empty
from koble.recovery.register import Register
from koble.registries.identifiers.column import validate_column

__all__ = ["REVIEW_BASE", "agrees", "certain", "exact", "number_keys"]

#: The review columns every stage has (a probabilistic stage adds ``gamma_<field>``).
REVIEW_BASE = pl.Schema({
    "record_id": pl.String, "person_id": pl.String,
    "match_probability": pl.Float64, "match_weight": pl.Float64,
})  # fmt: skip


def number_keys(records: pl.DataFrame, *, test_numbers: bool = True) -> pl.Series:
    """Per record, its number as an Int64 when it is a valid 11-digit person number, else
    null. ``test_numbers`` accepts synthetic test numbers (the register decides who exists)."""
    checked = validate_column(records["fnr"], test_numbers=test_numbers)
    compact = checked["compact"]
    return (
        pl.select(pl.when(checked["valid"]).then(compact.cast(pl.Int64, strict=False)))
        .to_series()
        .alias("key")
    )


def agrees(record: str, person: str) -> pl.Expr:
    """True where the record's field is missing or equals the person's."""
    return pl.col(record).is_null() | (pl.col(record) == pl.col(person)).fill_null(False)


def certain(found: pl.DataFrame, method: str) -> pl.DataFrame:
    """Links (:data:`LINK_SCHEMA`) of a deterministic stage: probability 1.0, no weight."""
    return found.select(
        "record_id",
        "person_id",
        method=pl.lit(method),
        match_probability=pl.lit(1.0),
        match_weight=pl.lit(None, pl.Float64),
    ).cast(dict(LINK_SCHEMA))  # type: ignore[arg-type]


def exact(records: pl.DataFrame, register: Register, *, test_numbers: bool = True) -> StageResult:
    """Link the records whose number is exactly a registered person's (module docstring)."""
    keyed = records.with_row_index("_row").with_columns(
        number_keys(records, test_numbers=test_numbers)
    )
    persons = register.persons.select(
        "person_id", pl.col("birth_date").alias("_p_birth"), pl.col("sex").alias("_p_sex")
    )
    found = (
        keyed.join(register.ids, left_on="key", right_on="id", how="left", maintain_order="left")
        .join(persons, on="person_id", how="left", maintain_order="left")
        .with_columns(
            agrees("birth_date", "_p_birth").alias("_birth_ok"),
            agrees("sex", "_p_sex").alias("_sex_ok"),
        )
    )
    registered = pl.col("person_id").is_not_null()
    ok = registered & pl.col("_birth_ok") & pl.col("_sex_ok")
    linked = certain(found.filter(ok), "exact")
    conflict = found.filter(registered & ~ok)
    pending = conflict.select(
        "record_id",
        reason=pl.lit("conflict"),
        detail=pl.concat_str(
            pl.lit("a registered number whose "),
            pl.when(~pl.col("_birth_ok") & ~pl.col("_sex_ok"))
            .then(pl.lit("birth date and sex"))
            .when(~pl.col("_birth_ok"))
            .then(pl.lit("birth date"))
            .otherwise(pl.lit("sex")),
            pl.lit(" disagree with the record's"),
        ),
    )
    remaining = found.filter(~ok).select(RECORD_SCHEMA.names())
    return StageResult(
        linked=linked,
        rejected=empty(REJECT_SCHEMA),
        remaining=remaining,
        review=empty(REVIEW_BASE),
        pending=pending.cast(dict(REJECT_SCHEMA)),  # type: ignore[arg-type]
    )
