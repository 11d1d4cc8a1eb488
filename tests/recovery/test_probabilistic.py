"""The probabilistic stage: Splink links dirty records of a synthetic register to their truth."""

from __future__ import annotations

import json
import logging
import random

import polars as pl
import pytest

from koble.errors import KobleError, UsageError
from koble.recovery.contract import LINK_SCHEMA, RECORD_SCHEMA, REJECT_SCHEMA, StageResult
from koble.recovery.probabilistic import (
    GAMMA_COLUMNS,
    ModelReport,
    classify,
    probabilistic,
)
from koble.recovery.register import Register
from tests.recovery.synthetic_names import records_of, world

KINDS = ("swap", "maiden", "daymonth", "no_middle", "ascii", "typo", "digit")
THRESHOLDS = (0.5, 0.99)


def _eligible(persons: pl.DataFrame, names: pl.DataFrame, kind: str) -> pl.Expr:
    if kind == "maiden":
        married = names.filter(pl.col("reason") == "marriage")["person_id"]
        return pl.col("person_id").is_in(married.implode())
    if kind == "daymonth":
        bd = pl.col("birth_date")
        return (bd.dt.day() <= 12) & (bd.dt.day() != bd.dt.month())
    if kind == "no_middle":
        return pl.col("middle_name").is_not_null()
    if kind == "ascii":
        return (pl.col("first_name") + pl.col("last_name")).str.contains("[æøåÆØÅ]")
    return pl.lit(True)


class World:
    """A register of 2000 persons, 500 exactly linked (dirty like real ones) records to train
    on, dirty records of each kind, two clean records for the TF check, and ghosts."""

    def __init__(self) -> None:
        persons, names, addresses = world(2000, seed=11)
        self.register = Register.from_frames(persons, names=names, addresses=addresses)
        rng = random.Random(5)
        picks = [(i, rng.choice(KINDS) if rng.random() < 0.3 else "clean") for i in range(500)]
        self.training = records_of(persons, names, picks, "T").drop("kind")
        rows = persons.with_row_index("i").filter(pl.col("i") >= 1000)
        dirty: list[tuple[int, str]] = []
        for kind in KINDS:
            ok = rows.filter(_eligible(persons, names, kind))["i"].head(4).to_list()
            dirty += [(int(i), kind) for i in ok]
        # the TF pair: a Hansen and a rare surname with the same first name, both clean
        alive = rows.filter(pl.col("middle_name").is_null() & pl.col("death_date").is_null())
        rare = alive.filter(~pl.col("last_name").str.ends_with("sen"))
        hansen = alive.filter(pl.col("last_name") == "Hansen")
        pair = hansen.join(rare, on="first_name", suffix="_r").head(1)
        self.tf_people = (pair["person_id"][0], pair["person_id_r"][0])
        dirty += [(int(pair["i"][0]), "clean"), (int(pair["i_r"][0]), "clean")]
        self.truth = records_of(persons, names, dirty, "R")
        ghosts = pl.DataFrame(
            {
                "record_id": ["G0", "G1", "G2"],
                "first_name": ["Xavera", "Quillon", None],
                "last_name": ["Zyxqvist", "Wobblethorpe", None],
                "birth_date": [None, None, None],
                "sex": ["F", "M", None],
            },
            schema_overrides={"birth_date": pl.Date},
        )
        self.records = pl.concat(
            [self.truth.select(RECORD_SCHEMA.names()), ghosts], how="diagonal_relaxed"
        ).select(RECORD_SCHEMA.names())

    def run(self, thresholds: tuple[float, float] = THRESHOLDS) -> tuple[StageResult, ModelReport]:
        return probabilistic(
            self.records, self.register, training=self.training, thresholds=thresholds,
            seed=42, u_max_pairs=2e5,
        )  # fmt: skip


@pytest.fixture(scope="module")
def w() -> World:
    return World()


@pytest.fixture(scope="module")
def run(w: World) -> tuple[StageResult, ModelReport]:
    return w.run()


def test_dirty_records_link_to_their_truth(w: World, run: tuple[StageResult, ModelReport]) -> None:
    result, _ = run
    got = w.truth.join(result.linked, on="record_id", how="left", suffix="_linked")
    wrong = got.filter(pl.col("person_id_linked") != pl.col("person_id"))
    assert wrong.height == 0
    missed = got.filter(pl.col("person_id_linked").is_null())
    assert missed.height == 0, missed.select("record_id", "kind")
    assert set(result.linked["method"]) == {"probabilistic"}
    assert result.linked.schema == LINK_SCHEMA


def test_ghosts_are_rejected_with_a_reason(run: tuple[StageResult, ModelReport]) -> None:
    result, _ = run
    rejected = dict(result.rejected.select("record_id", "reason").iter_rows())
    assert set(rejected) == {"G0", "G1", "G2"}
    assert rejected["G2"] == "no_candidate"  # nothing to block on
    assert set(rejected.values()) <= {"no_candidate", "below_threshold"}
    assert result.rejected.schema == REJECT_SCHEMA


def test_every_record_ends_in_exactly_one_place(
    w: World, run: tuple[StageResult, ModelReport]
) -> None:
    result, _ = run
    ids = [
        *result.linked["record_id"], *result.rejected["record_id"],
        *result.review["record_id"].unique(), *result.remaining["record_id"],
    ]  # fmt: skip
    assert sorted(ids) == sorted(w.records["record_id"])


def test_common_surname_weighs_less_than_a_rare_one(
    w: World, run: tuple[StageResult, ModelReport]
) -> None:
    result, _ = run
    weight = dict(
        result.linked.join(w.truth.select("record_id", "person_id"), on=["record_id", "person_id"])
        .select("person_id", "match_weight")
        .iter_rows()
    )
    hansen, rare = w.tf_people
    assert weight[rare] > weight[hansen] + 1.0


def test_same_inputs_give_identical_links_and_report(
    w: World, run: tuple[StageResult, ModelReport]
) -> None:
    first, report = run
    again, report2 = w.run()
    assert again.linked.equals(first.linked)
    assert again.rejected.equals(first.rejected)
    assert again.review.equals(first.review)
    assert report2.to_json() == report.to_json()


def test_report_holds_settings_parameters_and_estimates(
    w: World, run: tuple[StageResult, ModelReport]
) -> None:
    _, report = run
    doc = json.loads(report.to_json())
    assert doc["thresholds"] == list(THRESHOLDS) and doc["seed"] == 42
    assert [c["output_column_name"] for c in doc["model"]["comparisons"]] == [
        g.removeprefix("gamma_") for g in GAMMA_COLUMNS
    ]
    assert doc["model"]["blocking_rules_to_generate_predictions"]
    levels = [p for p in doc["parameters"] if p["gamma"] >= 0]
    assert all(0 < p["m"] < 1 and 0 < p["u"] < 1 for p in levels)
    for comp in doc["model"]["comparisons"]:  # m and u each sum to one per comparison
        non_null = [lv for lv in comp["comparison_levels"] if not lv.get("is_null_level")]
        assert sum(lv["m_probability"] for lv in non_null) == pytest.approx(1.0)
        assert sum(lv["u_probability"] for lv in non_null) == pytest.approx(1.0)
    assert doc["n_training_pairs"] == w.training.height
    # near-linear: far fewer comparisons than the cartesian product
    assert 0 < doc["n_comparisons"] < w.records.height * w.register.persons.height / 20
    assert 0.9 < doc["estimated_precision"] <= 1.0
    assert 0.9 < doc["estimated_recall"] <= 1.0


def test_no_name_in_the_report(w: World, run: tuple[StageResult, ModelReport]) -> None:
    _, report = run
    text = report.to_json()
    names = set(w.register.names["last_name"]) | set(w.register.persons["first_name"])
    assert not [n for n in names if len(n) >= 4 and n in text]


def test_thresholds_route_pairs_to_review_and_rejects(
    w: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    strict, _ = w.run(thresholds=(1 - 2**-12, 1 - 2**-20))
    assert not [r for r in caplog.records if r.name.startswith("splink")]
    assert strict.review.height > 0 and strict.linked.height > 0
    assert (strict.linked["match_weight"] >= 20).all()
    assert set(strict.review["review_reason"]) <= {"between_thresholds", "ambiguous"}
    between = strict.review.filter(pl.col("review_reason") == "between_thresholds")
    assert between["match_probability"].is_between(1 - 2**-12, 1 - 2**-20, closed="left").all()
    assert between.select(GAMMA_COLUMNS).null_count().sum_horizontal().item() == 0
    below = strict.rejected.filter(pl.col("reason") == "below_threshold")
    assert below.height > len({"G0", "G1"} & set(below["record_id"]))  # real records too
    total = strict.linked.height + strict.rejected.height + strict.review["record_id"].n_unique()
    assert total == w.records.height


def _pairs(rows: list[tuple[str, str, float]]) -> pl.DataFrame:
    import math

    return pl.DataFrame(
        [
            {
                "record_id": r,
                "person_id": p,
                "match_weight": wt,
                "match_probability": 2**wt / (1 + 2**wt),
                **dict.fromkeys(GAMMA_COLUMNS, 1),
            }
            for r, p, wt in rows
        ]
    ).with_columns(pl.col("match_probability").fill_nan(math.nan))


def test_classify_routes_by_best_candidate_and_margin() -> None:
    records = pl.DataFrame({"record_id": ["a", "b", "c", "d", "e", "f"]})
    pairs = _pairs([
        ("a", "P1", 12.0), ("a", "P2", 2.0),  # clearly ahead: linked
        ("b", "P1", 12.0), ("b", "P3", 11.0),  # two above high within the margin: ambiguous
        ("c", "P4", 2.0),  # between the thresholds: review
        ("d", "P5", -4.0),  # below low
        ("e", "P6", 9.0), ("e", "P7", 2.5),  # linked, runner-up 6.5 bits behind
    ])  # fmt: skip
    result, precision, recall = classify(records, pairs, 0.5, 0.99, 3.0)
    assert dict(result.linked.select("record_id", "person_id").iter_rows()) == {
        "a": "P1", "e": "P6",
    }  # fmt: skip
    review = result.review.select("record_id", "person_id", "review_reason").rows()
    assert sorted(review) == [
        ("b", "P1", "ambiguous"), ("b", "P3", "ambiguous"), ("c", "P4", "between_thresholds"),
    ]  # fmt: skip
    assert dict(result.rejected.select("record_id", "reason").iter_rows()) == {
        "d": "below_threshold", "f": "no_candidate",
    }  # fmt: skip
    assert precision is not None and 0.99 < precision <= 1
    assert recall is not None and 0 < recall < 1


def test_no_training_pairs_trains_by_em(w: World) -> None:
    """Without exact links the stage trains by EM (tests/recovery/test_training.py); with
    neither links nor records there is nothing to learn from: a clear error."""
    _, report = probabilistic(
        w.records, w.register, training=w.training.head(0), thresholds=THRESHOLDS, seed=1
    )
    assert report.training == "em"
    with pytest.raises(UsageError, match="nothing to train the model on") as err:
        probabilistic(
            w.records.head(0), w.register, training=w.training.head(0), thresholds=THRESHOLDS,
            seed=1,
        )  # fmt: skip
    assert "Hansen" not in str(err.value)


@pytest.mark.parametrize("bad", [(0.9, 0.5), (0.0, 0.5), (0.5, 1.0)])
def test_bad_thresholds_are_refused(w: World, bad: tuple[float, float]) -> None:
    with pytest.raises(UsageError, match="thresholds"):
        probabilistic(w.records, w.register, training=w.training, thresholds=bad, seed=1)


def test_a_failure_inside_splink_never_quotes_values(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb

    import koble.recovery.probabilistic as stage

    def boom(*_: object) -> pl.DataFrame:
        raise duckdb.ConversionException("Could not convert string 'Sæther' to INT32")

    monkeypatch.setattr(stage, "_best_per_person", boom)
    with pytest.raises(KobleError, match="probabilistic model failed") as err:
        w.run()
    assert "Sæther" not in str(err.value) and err.value.__cause__ is None
