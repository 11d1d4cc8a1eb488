"""What the probabilistic stage compares: records and register rows prepared for Splink.

:func:`prepare_records` and :func:`prepare_register` make the compared columns of
:mod:`koble.recovery.model` (Norwegian name keys of :mod:`koble.recovery.normalise`, birth
and death dates, places, a caller's extra fields). The register is exploded by name history:
one row per person and name they have had, so a record written under a maiden name still
meets its person. All on whole columns (no Python loop over rows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from koble.errors import ColumnError, UsageError
from koble.recovery import candidates, model
from koble.recovery.contract import RECORD_SCHEMA, RegisterLike
from koble.recovery.normalise import name_key, name_tokens, phonetic_key

__all__ = ["RECORDS", "REGISTER", "RegisterLike", "prepare_records", "prepare_register"]

#: Splink's names of the two sides (its ``source_dataset``)
RECORDS, REGISTER = "records", "register"


def _with_keys(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with the compared name and birth columns added. Names repeat (a register
    of millions has thousands of distinct names), so each key is computed once per
    distinct name and joined back."""
    parts = {
        "first_name": ("fn_key", "fn_tok", "fn_ph"),
        "middle_name": ("mn_key",),
        "last_name": ("ln_key", "ln_tok", "ln_ph"),
    }
    for column, outputs in parts.items():
        distinct = frame.select(pl.col(column).unique().drop_nulls())
        name = pl.col(column)
        exprs = {
            "fn_key": name_key(name), "mn_key": name_key(name), "ln_key": name_key(name),
            "fn_tok": name_tokens(name), "ln_tok": name_tokens(name),
            "fn_ph": phonetic_key(name), "ln_ph": phonetic_key(name),
        }  # fmt: skip
        lookup = distinct.with_columns(exprs[o].alias(o) for o in outputs)
        frame = frame.join(lookup, on=column, how="left", maintain_order="left")
    sound = candidates.name_sound(pl.col("fn_ph"), pl.col("ln_ph"))
    return frame.with_columns(*candidates.birth_parts(pl.col("birth_date")), sound.alias("rare_ph"))


_COMPARED = (
    "unique_id", "source_dataset", "entity_id", "fn_key", "mn_key", "ln_key", "fn_tok",
    "ln_tok", "fn_ph", "ln_ph", "birth_date", "bd_str", "bd_year", "bd_month", "bd_day",
    "bd_decade", "bd_day_tens", "bd_day_units", "sex", "death_date", "places", "nr", "rare_ph",
)  # fmt: skip


def _extra_values(frame: pl.DataFrame, key: str, compare: Mapping[str, str] | None,
                  where: str) -> pl.DataFrame:  # fmt: skip
    """``key`` and the compared column ``x_<field>`` of each extra field (text lowercased
    and trimmed, empty as null) of ``frame``; a declared field it lacks is an error."""
    out = [pl.col(key)]
    for field in compare or {}:
        if field not in frame.columns:
            raise ColumnError(f"the extra comparison field is missing in the {where}",
                              column=field)  # fmt: skip
        text = pl.col(field).cast(pl.String).str.strip_chars().str.to_lowercase()
        out.append(pl.when(text != "").then(text).alias(model.extra_column(field)))
    return frame.select(out)


def _compared(compare: Mapping[str, str] | None) -> list[str]:
    return [*_COMPARED, *(model.extra_column(f) for f in compare or {})]


def prepare_records(
    records: pl.DataFrame, compare: Mapping[str, str] | None = None
) -> pl.DataFrame:
    """The records side: one row per record (``unique_id`` = ``entity_id`` = record_id);
    ``compare``: the extra fields (columns of ``records``) to compare as ``x_<field>``."""
    recs = records.select(
        pl.col(c) if c in records.columns else pl.lit(None, t).alias(c)
        for c, t in RECORD_SCHEMA.items()
    )
    return (
        _with_keys(recs)
        .with_columns(
            pl.col("record_id").alias("unique_id"),
            pl.col("record_id").alias("entity_id"),
            pl.lit(RECORDS).alias("source_dataset"),
            pl.when(pl.col("kommune").is_not_null())
            .then(pl.concat_list(pl.col("kommune")))
            .otherwise(None)
            .alias("places"),
            pl.col("fnr").alias("nr"),
        )
        .join(_extra_values(records, "record_id", compare, "records"), on="record_id",
              how="left", maintain_order="left")
        .select(_compared(compare))
    )  # fmt: skip


def prepare_register(
    register: RegisterLike,
    compare: Mapping[str, str] | None = None,
    fields: pl.DataFrame | None = None,
    *,
    keys: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The register side: one row per person and distinct name they have had (current name
    included), ``unique_id`` = ``person_id#n``, ``entity_id`` = person_id, and ``places`` the
    sorted kommuner of the address history, the current and the birth kommune. ``nr`` is
    the person's number; ``fields`` (``person_id`` + the extra fields of ``compare``) gives
    the ``x_<field>`` columns. ``keys``: :func:`koble.recovery.candidates.key_rows` of a
    register holding these persons (made once for the whole register, then reused; the
    register's ``names`` are not read then)."""
    if keys is None:
        keys = candidates.key_rows(register)
    persons = register.persons.select("person_id", "death_date")
    rows = (  # lazy: no full intermediate copy of millions of rows between the steps
        keys.lazy()
        .join(persons.lazy(), on="person_id")
        .sort("person_id", "ln_key", "fn_key", "mn_key", nulls_last=True)
        .join(_places(register).lazy(), on="person_id", how="left", maintain_order="left")
        .with_columns(
            pl.col("fn_key").str.split(" ").alias("fn_tok"),
            pl.col("ln_key").str.split(" ").alias("ln_tok"),
            (
                pl.col("person_id") + "#" + pl.int_range(pl.len()).over("person_id").cast(pl.String)
            ).alias("unique_id"),
            pl.col("person_id").alias("entity_id"),
            pl.lit(REGISTER).alias("source_dataset"),
        )
        .select(_COMPARED)
        .collect()
    )
    return _join_fields(rows, compare, fields)


def _places(register: RegisterLike) -> pl.DataFrame:
    """Per person the sorted distinct kommuner of the address history, the current and the
    birth kommune. Kommune numbers are four digits: they are grouped as small integers
    (half the time of strings at national scale) and written back zero-padded, the same
    strings in the same order; other values are grouped as they are."""
    persons = register.persons
    every = pl.concat(
        [
            register.addresses.select("person_id", "kommune"),
            persons.select("person_id", "kommune"),
            persons.select("person_id", pl.col("birth_kommune").alias("kommune")),
        ],
        how="vertical_relaxed",
    ).drop_nulls()
    if every["kommune"].str.contains(r"^[0-9]{4}$").all():
        number = pl.col("kommune").cast(pl.UInt16)
        return every.group_by("person_id").agg(
            number.unique().sort().cast(pl.String).str.zfill(4).alias("places")
        )
    return every.unique().group_by("person_id").agg(pl.col("kommune").sort().alias("places"))


def _field_candidates(
    prepared: pl.DataFrame, compare: Mapping[str, str], fields: pl.DataFrame | None,
    block: Sequence[str],
) -> pl.Series:  # fmt: skip
    """The persons whose value of a blocking extra field (``block``) equals some record's:
    the candidates :func:`koble.recovery.model.blocking_rules` adds to the fixed rules."""
    found = [pl.Series("person_id", [], pl.String)]
    if block and fields is not None:
        values = _extra_values(fields, "person_id", {f: compare[f] for f in block}, "register")
        for field in block:
            col = model.extra_column(field)
            wanted = prepared.select(col).drop_nulls().unique()
            found.append(values.join(wanted, on=col, how="semi")["person_id"])
    return pl.concat(found).unique().sort()


def _join_fields(
    rows: pl.DataFrame, compare: Mapping[str, str] | None, fields: pl.DataFrame | None
) -> pl.DataFrame:
    """The register rows with the extra fields joined on (null where a person has none)."""
    if compare:
        if fields is None:
            raise UsageError("extra comparison fields need the register's values of them")
        values = _extra_values(fields.unique("person_id", keep="first"), "person_id",
                               compare, "register")  # fmt: skip
        rows = rows.join(values, left_on="entity_id", right_on="person_id", how="left",
                         maintain_order="left")  # fmt: skip
    return rows.select(_compared(compare))
