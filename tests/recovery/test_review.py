"""The clerical review table and its HTML page: both sides of each pair, which fields agree,
the per-field weights from the trained model, the page self-contained and escaped, and the
review CSV usable as the decisions file."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from pathlib import Path
from typing import Any

import polars as pl

from koble.recovery.decisions import read_decisions
from koble.recovery.register import Register
from koble.recovery.review import FIELDS, review_html, review_table
from koble.tables import write_table

P1, P2, P3 = "01017000027", "02027000034", "03037000050"
PERSONS = pl.DataFrame({
    "person_id": [P1, P2, P3], "first_name": ["Kari", "Kari", "Ola"],
    "last_name": ["Løkken", "Løkken-Berg", "<b>Dahl & co</b>"],
    "birth_date": [dt.date(1950, 3, 4), dt.date(1950, 4, 3), dt.date(1960, 1, 1)],
    "sex": ["F", "F", "M"], "death_date": [dt.date(2001, 5, 6), None, None],
    "kommune": ["0301", "4601", "5001"],
})  # fmt: skip
NAMES = pl.concat([
    PERSONS.select("person_id", "first_name", "last_name"),
    pl.DataFrame({"person_id": [P1], "first_name": ["Kari"], "last_name": ["Hansen"]}),
], how="diagonal")  # fmt: skip
RECORDS = pl.DataFrame({
    "record_id": ["r1", "r2"], "fnr": [None, "0101700002"], "first_name": ["Kari", "Ole"],
    "middle_name": [None, None], "last_name": ["Lokken", "Dahl"],
    "birth_date": [dt.date(1950, 3, 4), dt.date(1960, 1, 1)], "sex": ["F", None],
    "death_date": [dt.date(2001, 5, 6), None], "kommune": ["0301", None],
})  # fmt: skip
#: gamma per field, in Splink's numbering (fn, ln, mn, bd, sex, dd, place)
REVIEW = pl.DataFrame({
    "record_id": ["r1", "r1", "r2"], "person_id": [P2, P1, P3],
    "match_probability": [0.6, 0.9, 0.7], "match_weight": [1.5, 3.25, 2.0],
    "gamma_fn": [6, 6, 0], "gamma_ln": [3, 3, 6], "gamma_mn": [-1, -1, -1],
    "gamma_bd": [3, 4, 4], "gamma_sex": [1, 1, -1], "gamma_dd": [1, 3, -1],
    "gamma_place": [0, 1, -1], "review_reason": ["between_thresholds"] * 3,
})  # fmt: skip


@dataclasses.dataclass(frozen=True)
class FakeModel:
    """What the review reads of a ModelReport: λ and the levels' Bayes factors."""

    probability_two_random_records_match: float
    parameters: tuple[dict[str, Any], ...]


MODEL = FakeModel(0.001, (
    {"comparison": "fn", "gamma": 6, "bayes_factor": 8.0},
    {"comparison": "fn", "gamma": 0, "bayes_factor": 0.25},
    {"comparison": "bd", "gamma": 4, "bayes_factor": 1024.0},
    {"comparison": "bd", "gamma": 3, "bayes_factor": 32.0},
    {"comparison": "fn", "gamma": -1, "bayes_factor": None},
))  # fmt: skip


def _table() -> pl.DataFrame:
    register = Register.from_frames(PERSONS, names=NAMES)
    return review_table(REVIEW, RECORDS, register, MODEL)


def test_one_row_per_pair_with_both_sides_best_candidate_first() -> None:
    table = _table()
    assert table.height == 3
    assert table.select("record_id", "person_id", "candidate", "candidates").rows() == [
        ("r1", P1, 1, 2), ("r1", P2, 2, 2), ("r2", P3, 1, 1),
    ]  # fmt: skip
    first = table.row(0, named=True)
    assert (first["record_last_name"], first["person_last_name"]) == ("Lokken", "Løkken")
    assert first["person_death_date"] == dt.date(2001, 5, 6)
    assert first["person_other_names"] == "Kari Hansen"  # the name history
    assert first["decision"] is None and first["reviewer"] is None
    assert table.row(2, named=True)["record_number"] == "0101700002"
    for field, column, _ in FIELDS:
        assert {f"record_{column}", f"person_{column}", f"agree_{field}"} <= set(table.columns)


def test_agreement_levels_and_weights_follow_the_model() -> None:
    table = _table()
    r1 = table.row(0, named=True)  # r1 ↔ P1
    assert (r1["agree_fn"], r1["level_fn"]) == ("agree", "exact key")
    assert (r1["agree_ln"], r1["level_ln"]) == ("partial", "jaro-winkler>=0.92")
    assert (r1["agree_bd"], r1["bits_bd"]) == ("agree", 10.0)
    assert (r1["agree_mn"], r1["level_mn"]) == ("missing", "missing")
    assert (r1["agree_dd"], r1["agree_place"]) == ("agree", "agree")
    assert math.isclose(r1["bits_fn"], 3.0)
    r1b = table.row(1, named=True)  # r1 ↔ P2: day and month swapped, no place in common
    assert (r1b["agree_bd"], r1b["level_bd"], r1b["bits_bd"]) == (
        "partial", "day and month swapped", 5.0,
    )  # fmt: skip
    assert (r1b["agree_place"], r1b["agree_dd"]) == ("disagree", "partial")
    r2 = table.row(2, named=True)
    assert (r2["agree_fn"], r2["bits_fn"]) == ("disagree", -2.0)
    assert r2["bits_ln"] is None  # the model gave no factor for it


def test_without_a_model_the_levels_show_but_no_weights() -> None:
    register = Register.from_frames(PERSONS, names=NAMES)
    table = review_table(REVIEW.drop("review_reason"), RECORDS, register)
    assert table["bits_fn"].null_count() == 3
    assert table["agree_fn"].to_list() == ["agree", "agree", "disagree"]
    assert set(table["review_reason"]) == {"between_thresholds"}


def test_the_page_is_self_contained_escaped_and_explains_the_decisions() -> None:
    page = review_html(_table(), thresholds=(0.5, 0.99), model=MODEL, csv_name="rev.csv",
                       generated=dt.date(2026, 1, 2))  # fmt: skip
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"<script|<link|src=|https?://|@import|url\(", page)
    assert page.count('<section class="pair">') == 3
    assert "&lt;b&gt;Dahl &amp; co&lt;/b&gt;" in page and "<b>Dahl" not in page
    assert '<tr class="partial"><th scope="row">Last name</th><td>Lokken</td><td>Løkken' in page
    assert "≈ partly: jaro-winkler&gt;=0.92" in page
    assert '<td class="num">+10.0</td>' in page and '<td class="num">-2.0</td>' in page
    assert "<code>rev.csv</code>" in page and "non-match" in page and "--decisions" in page
    assert "0.5 – 0.99" in page and "2026-01-02" in page
    assert "Kari Hansen" in page  # earlier names shown
    prior = math.log2(0.001 / 0.999)
    assert f"{prior:+.2f}" in page


def test_an_empty_review_renders() -> None:
    page = review_html(_table().clear())
    assert "No pair awaits review" in page and '<section class="pair">' not in page


def test_the_review_csv_filled_in_is_a_decisions_file(tmp_path: Path) -> None:
    path = write_table(_table(), tmp_path / "review.csv")
    filled = pl.read_csv(path, separator=";", infer_schema=False).with_columns(
        decision=pl.Series(["match", "non-match", None]),
        reviewer=pl.Series(["kari.r", "kari.r", None]),  # a user id, not a name of the review
    )
    filled.write_csv(path, separator=";")
    decisions = read_decisions(path)
    assert decisions.for_resolve().rows() == [
        ("r1", P1, "match", "kari.r"), ("r1", P2, "non_match", "kari.r"),
    ]  # fmt: skip
    decisions.check_pairs(REVIEW)
    assert decisions.counts()["undecided"] == 1
