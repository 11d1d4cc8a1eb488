"""Who is linked: records by how they were linked, and the link rate by group.

Linkage is never neutral: a mistyped number or a missing one is more common in some groups
(older paper journals, names spelt in other alphabets), and a study that loses them is
biased. The quality report's linkage section therefore shows, beside the counts per method,
the link rate by sex, age group, birth cohort and fylke with its difference from the whole,
as the national linkage reports of ONS and ABS do. The groups come from the record's own
fields (a population file's, or the records a registry sent), so unlinked records are
counted where they belong. A cell with 1-4 records, linked or unlinked is hidden, as koble's
other tables of persons are, and so is a second cell beside it, so that no hidden cell can be
recomputed from the total.
"""

from __future__ import annotations

import datetime
from typing import Any, Final

import polars as pl

from koble.recovery.contract import METHODS

__all__ = ["MIN_CELL", "OUTCOMES", "bias_table", "outcome_counts", "suppress"]

#: The smallest count a table shows (1-4 are hidden).
MIN_CELL: Final = 5
#: Every way a record can end: linked by one of the methods, unresolved, or (population
#: rows only) a repeat of a person already on an earlier row.
OUTCOMES: Final = (*METHODS, "unresolved", "duplicate")
_AGES: Final = ((0, 17), (18, 39), (40, 59), (60, 79), (80, 200))


def outcome_counts(outcome: pl.Series) -> dict[str, int]:
    """Records per outcome (:data:`OUTCOMES`), every outcome present."""
    return {o: int((outcome == o).sum()) for o in OUTCOMES}


def _age_group(birth: pl.Expr, death: pl.Expr | None, reference: datetime.date) -> Any:
    """Age in years at death for the deceased (where the records carry a death date), else at
    ``reference``: an age at the run date would put every dead journal holder in ``80+``."""
    end = pl.lit(reference) if death is None else pl.coalesce(death, pl.lit(reference))
    years = (end - birth).dt.total_days() // 365.25
    expr: Any = pl.when(birth.is_null()).then(pl.lit("unknown"))
    for low, high in _AGES:
        label = f"{low}+" if high >= 200 else f"{low}-{high}"
        expr = expr.when(years.is_between(low, high)).then(pl.lit(label))
    return expr.otherwise(pl.lit("unknown"))


def _dimensions(columns: list[str], reference: datetime.date) -> dict[str, pl.Expr]:
    """The grouping expressions the records' fields allow."""
    out: dict[str, pl.Expr] = {}
    if "sex" in columns:
        out["sex"] = pl.col("sex").fill_null("unknown")
    if "birth_date" in columns:
        birth = pl.col("birth_date")
        death = pl.col("death_date") if "death_date" in columns else None
        out["age_group"] = _age_group(birth, death, reference)
        decade = (birth.dt.year() // 10) * 10
        out["birth_cohort"] = (
            pl.when(birth.is_null())
            .then(pl.lit("unknown"))
            .otherwise(decade.cast(pl.String) + "-" + (decade + 9).cast(pl.String))
        )
    if "kommune" in columns:
        out["fylke"] = pl.col("kommune").str.slice(0, 2).fill_null("unknown")
    return out


def suppress(cells: list[tuple[int, int]]) -> list[bool]:
    """Which cells of one dimension (``(records, linked)`` each) to hide.

    Primary: a cell whose smallest count (records, linked or unlinked) is 1-4. Zero is
    shown: it names nobody. Complementary: a dimension's cells add up to the shown total, so
    a single hidden cell could be recomputed by subtraction; then the next smallest cell is
    hidden too (two hidden cells give away only their sum)."""
    hidden = [any(0 < c < MIN_CELL for c in (n, k, n - k)) or n < MIN_CELL for n, k in cells]
    if sum(hidden) == 1 and len(cells) > 1:
        shown = sorted((n, i) for i, (n, _) in enumerate(cells) if not hidden[i])
        hidden[shown[0][1]] = True
    return hidden


def bias_table(records: pl.DataFrame, reference: datetime.date) -> dict[str, Any]:
    """The link rate overall and by group. ``records`` has ``outcome`` (:data:`OUTCOMES`,
    duplicates already left out) and whichever of ``sex``, ``birth_date``, ``death_date``,
    ``kommune`` the records carry; ages are taken at death for the deceased, else at
    ``reference`` (the run's date). Cells are hidden as :func:`suppress` says; a dimension
    with one group only (a fylke unknown for every record) is left out, named in
    ``single_group``: it would only repeat the whole."""
    linked = pl.col("outcome").is_in(list(METHODS))
    rows = records.height
    total = int(records.select(linked.sum()).item()) if rows else 0
    overall = total / rows if rows else None
    groups: list[dict[str, Any]] = []
    single: list[str] = []
    dims = _dimensions(records.columns, reference)
    for name, expr in dims.items():
        table = (
            records.group_by(expr.alias("group"))
            .agg(pl.len().alias("rows"), linked.sum().alias("linked"))
            .sort("group")
        )
        if table.height < 2:
            single.append(name)
            continue
        cells = [(int(n), int(k)) for n, k in table.select("rows", "linked").iter_rows()]
        # one row per group, never per record
        for group, (n, k), hidden in zip(table["group"], cells, suppress(cells), strict=True):
            rate = None if hidden or not n else k / n
            groups.append({
                "by": name, "group": group, "hidden": hidden,
                "rows": None if hidden else n, "linked": None if hidden else k,
                "rate": None if rate is None else round(rate, 4),
                "difference": None if rate is None or overall is None
                else round(rate - overall, 4),
            })  # fmt: skip
    missing = [d for d in ("sex", "age_group", "birth_cohort", "fylke") if d not in dims]
    return {
        "rows": rows,
        "linked": total,
        "rate": None if overall is None else round(overall, 4),
        "reference_date": reference.isoformat(),
        "ages_at_death": "death_date" in records.columns
        and records["death_date"].null_count() < rows,
        "groups": groups,
        "not_carried": missing,
        "single_group": single,
    }
