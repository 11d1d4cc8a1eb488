"""The linkage bias table (koble.linkage.linkage_bias) of identity recovery's quality
report (issue 16): it accounts for every record, and hides small cells so that no hidden
cell can be recomputed from the total and the cells shown.
"""

from __future__ import annotations

import datetime

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.linkage.linkage_bias import MIN_CELL, bias_table


def _outcomes(rows: list[tuple[str | None, bool]]) -> pl.DataFrame:
    """Records of a sex (or none) each linked exactly or left unresolved."""
    return pl.DataFrame(
        {"sex": [r[0] for r in rows], "outcome": ["exact" if r[1] else "unresolved" for r in rows]},
        schema={"sex": pl.String, "outcome": pl.String},
    )


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["M", "F", None]), st.booleans()), max_size=60))
def test_bias_table_accounts_for_every_record_and_hides_small_cells(
    rows: list[tuple[str | None, bool]],
) -> None:
    frame = _outcomes(rows)
    table = bias_table(frame, datetime.date(2026, 1, 1))
    assert table["rows"] == len(rows) and table["linked"] == sum(r[1] for r in rows)
    assert table["not_carried"] == ["age_group", "birth_cohort", "fylke"]
    shown = 0
    for group in table["groups"]:
        if group["hidden"]:
            continue
        shown += group["rows"]
        unlinked = group["rows"] - group["linked"]
        assert group["rows"] >= MIN_CELL
        assert group["linked"] in (0,) or group["linked"] >= MIN_CELL
        assert unlinked == 0 or unlinked >= MIN_CELL
    assert shown <= len(rows)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["M", "F", "X", None]), st.booleans()), max_size=300))
def test_no_hidden_bias_cell_can_be_recomputed_from_the_total(
    rows: list[tuple[str | None, bool]],
) -> None:
    frame = _outcomes(rows)
    table = bias_table(frame, datetime.date(2026, 1, 1))
    cells = frame.group_by(pl.col("sex").fill_null("unknown")).agg(
        pl.len().alias("n"), (pl.col("outcome") == "exact").sum().alias("k")
    )
    truth = {g: (int(n), int(k)) for g, n, k in cells.iter_rows()}
    groups = table["groups"]
    if len(truth) < 2:  # one group only: it would repeat the whole, so it is left out
        assert not groups and table["single_group"] == ["sex"]
        return
    assert {g["group"] for g in groups} == set(truth)
    hidden = [g["hidden"] for g in groups]
    assert sum(hidden) != 1  # one hidden cell = the total minus the shown ones
    for g in groups:
        n, k = truth[g["group"]]
        small = any(0 < c < MIN_CELL for c in (n, k, n - k))
        if small:
            assert g["hidden"]  # primary suppression: the smallest count decides
        if g["hidden"]:
            assert g["rows"] is g["linked"] is g["rate"] is None
        else:
            assert (g["rows"], g["linked"]) == (n, k)
    # whatever is hidden, the shown cells and the total leave at least two unknowns
    shown_n = sum(g["rows"] for g in groups if not g["hidden"])
    if any(hidden):
        assert table["rows"] - shown_n == sum(truth[g["group"]][0] for g in groups if g["hidden"])
        assert sum(hidden) >= 2


def test_a_large_cell_hidden_for_few_unlinked_says_hidden_not_under_five() -> None:
    rows = [("M", True)] * 491 + [("M", False)] * 3 + [("F", True)] * 40 + [("F", False)] * 10
    frame = pl.DataFrame(
        {"sex": [r[0] for r in rows], "outcome": ["exact" if r[1] else "unresolved" for r in rows]}
    )
    table = bias_table(frame, datetime.date(2026, 1, 1))
    by_group = {g["group"]: g for g in table["groups"]}
    assert by_group["M"]["hidden"]  # 3 unlinked
    assert by_group["F"]["hidden"]  # complementary: else M = total - F
