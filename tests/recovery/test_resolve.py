"""The pipeline: stage order, marks, clerical decisions, counts, same-person report, and the
invariant that every record ends in exactly one place."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from koble.errors import ColumnError, UsageError
from koble.recovery.contract import LINK_SCHEMA, REJECT_SCHEMA, StageResult, empty
from koble.recovery.register import Register
from koble.recovery.resolve import Resolution, resolve
from tests.recovery.conftest import from_persons, make_persons, make_register, records, transpose

PERSONS = make_persons(40, seed=9)
REGISTER = make_register(PERSONS)


def _mixed() -> pl.DataFrame:
    """Records 1-2 exact (the same person), 3 a transposition, 4 a conflict, 5 nothing."""
    p = PERSONS["person_id"]
    frame = from_persons(
        PERSONS[[0, 0, 1, 2, 3]],
        [p[0], p[0], transpose(p[1], 9) if p[1][9] != p[1][10] else transpose(p[1], 8), p[2], None],
    )
    return frame.with_columns(
        birth_date=pl.when(pl.col("record_id") == "4")
        .then(pl.lit(dt.date(1900, 1, 1)))
        .otherwise(pl.col("birth_date")),
        first_name=pl.when(pl.col("record_id") == "5").then(None).otherwise("first_name"),
    )


def test_deterministic_pipeline_sorts_every_record() -> None:
    result = resolve(_mixed(), REGISTER)
    assert result.links.select("record_id", "method").rows() == [
        ("1", "exact"),
        ("2", "exact"),
        ("3", "repaired"),
    ]
    assert result.links["person_id"].to_list() == PERSONS["person_id"][[0, 0, 1]].to_list()
    assert result.rejects.select("record_id", "reason").rows() == [
        ("4", "conflict"),
        ("5", "no_candidate"),
    ]
    assert result.counts | {} == result.counts and result.counts["records"] == 5
    assert {
        k: result.counts[k]
        for k in (
            "exact",
            "repaired",
            "linked",
            "rejected",
            "conflict",
            "no_candidate",
            "awaiting_review",
        )
    } == {
        "exact": 2,
        "repaired": 1,
        "linked": 3,
        "rejected": 2,
        "conflict": 1,
        "no_candidate": 1,
        "awaiting_review": 0,
    }
    assert result.same_person.rows() == [(PERSONS["person_id"][0], ["1", "2"], 2)]
    assert result.model is None
    assert result.links.schema == LINK_SCHEMA and result.rejects.schema == REJECT_SCHEMA


class FakeStage:
    """A probabilistic stage that does what it is told, and records what it was given."""

    def __init__(self, link: dict[str, str], review: dict[str, list[str]], reject: str) -> None:
        self.link, self.review, self.reject = link, review, reject
        self.seen: dict[str, Any] = {}

    def __call__(
        self,
        records: pl.DataFrame,
        register: Register,
        *,
        training: pl.DataFrame,
        thresholds: tuple[float, float],
        seed: int,
    ) -> tuple[StageResult, object]:
        self.seen = {
            "records": records["record_id"].to_list(),
            "thresholds": thresholds,
            "training": training.select("record_id", "person_id").rows(),
            "training_columns": training.columns,
            "seed": seed,
        }
        ids = set(records["record_id"])
        linked = pl.DataFrame(
            [(r, p, "probabilistic", 0.999, 12.0) for r, p in self.link.items() if r in ids],
            schema=LINK_SCHEMA,
            orient="row",
        )
        pairs = [(r, p, 0.9, 3.0, 2) for r, ps in self.review.items() if r in ids for p in ps]
        review = pl.DataFrame(
            pairs,
            orient="row",
            schema={
                "record_id": pl.String,
                "person_id": pl.String,
                "match_probability": pl.Float64,
                "match_weight": pl.Float64,
                "gamma_last_name": pl.Int8,
            },
        )
        rest = ids - set(self.link) - set(self.review)
        rejected = pl.DataFrame(
            [(r, self.reject, "under the threshold") for r in sorted(rest)],
            schema=REJECT_SCHEMA,
            orient="row",
        )
        return StageResult(linked, rejected, empty(records.schema), review), {"lambda": 0.1}


def test_the_probabilistic_stage_gets_the_rest_and_the_exact_links_as_training() -> None:
    stage = FakeStage({"5": PERSONS["person_id"][3]}, {}, "below_threshold")
    result = resolve(_mixed(), REGISTER, probabilistic=stage, thresholds=(0.5, 0.9), seed=7)
    assert stage.seen["records"] == ["4", "5"]
    assert stage.seen["training"] == [
        ("1", PERSONS["person_id"][0]),
        ("2", PERSONS["person_id"][0]),
    ]
    assert {"first_name", "last_name", "birth_date", "sex"} <= set(stage.seen["training_columns"])
    assert (stage.seen["thresholds"], stage.seen["seed"]) == ((0.5, 0.9), 7)
    assert result.links.filter(pl.col("record_id") == "5")["method"].to_list() == ["probabilistic"]
    # the stage rejected record 4 below the threshold; the exact stage's mark says more
    assert result.rejects.select("record_id", "reason").rows() == [("4", "conflict")]
    assert result.model == {"lambda": 0.1}


def test_review_pairs_and_decisions() -> None:
    p = PERSONS["person_id"]
    stage = FakeStage({}, {"4": [p[2], p[5]], "5": [p[3]]}, "below_threshold")
    first = resolve(_mixed(), REGISTER, probabilistic=stage)
    assert first.counts["awaiting_review"] == 2 and first.review.height == 3
    assert first.unresolved().filter(pl.col("reason") == "awaiting_review").height == 2
    decisions = pl.DataFrame(
        {
            "record_id": ["4", "5", "9"],
            "person_id": [p[2], p[3], p[1]],
            "decision": ["Match", "non-match", "match"],
            "reviewer": ["x", "y", "z"],
        }
    )
    second = resolve(_mixed(), REGISTER, probabilistic=stage, decisions=decisions)
    clerical = second.links.filter(pl.col("method") == "clerical")
    assert clerical.select("record_id", "person_id", "match_probability").rows() == [
        ("4", p[2], 0.9)
    ]
    assert second.rejects.filter(pl.col("record_id") == "5")["reason"].to_list() == [
        "rejected_in_review"
    ]
    assert second.review.height == 0
    assert (second.counts["decisions_applied"], second.counts["decisions_unmatched"]) == (2, 1)
    partly = resolve(
        _mixed(),
        REGISTER,
        probabilistic=stage,
        decisions=decisions[[1]].vstack(
            pl.DataFrame(
                {
                    "record_id": ["4"],
                    "person_id": [p[5]],
                    "decision": ["non_match"],
                    "reviewer": ["x"],
                }
            )
        ),
    )
    assert partly.review.select("record_id", "person_id").rows() == [("4", p[2])]


@pytest.mark.parametrize(
    ("rows", "words", "row"),
    [
        ([("4", 2, "maybe")], "must be one of", 1),
        ([("4", 2, "match"), ("4", 5, "match")], "two persons", 2),
        ([("4", 2, "match"), ("4", 2, "non_match")], "both", 2),
    ],
)
def test_bad_decisions_name_the_row(rows: list[tuple[str, int, str]], words: str, row: int) -> None:
    p = PERSONS["person_id"]
    stage = FakeStage({}, {"4": [p[2], p[5]]}, "below_threshold")
    decisions = pl.DataFrame(
        [(r, p[i], d) for r, i, d in rows],
        orient="row",
        schema=["record_id", "person_id", "decision"],
    )
    with pytest.raises(ColumnError) as caught:
        resolve(
            _mixed(), REGISTER, probabilistic=stage, decisions=decisions, decisions_path="d.csv"
        )
    assert words in str(caught.value) and caught.value.row == row
    assert caught.value.path == "d.csv"


def test_thresholds_out_of_order_are_a_usage_error() -> None:
    with pytest.raises(UsageError):
        resolve(_mixed(), REGISTER, thresholds=(0.9, 0.5))


def test_a_stage_that_breaks_the_contract_is_caught() -> None:
    stage = FakeStage({"5": "00000000000"}, {}, "below_threshold")
    with pytest.raises(AssertionError, match="not in the register"):
        resolve(_mixed(), REGISTER, probabilistic=stage)


def test_rejects_and_counts_hold_no_name_or_number() -> None:
    result = resolve(_mixed(), REGISTER)
    text = str(result.rejects["detail"].to_list()) + str(result.counts)
    assert not re.search(r"\d{6}", text)
    names = set(PERSONS["first_name"]) | set(PERSONS["last_name"])
    assert not any(name in text for name in names)


_OUTCOME = st.sampled_from(["link", "review", "reject", "leave"])


@given(
    fnr_kind=st.lists(
        st.sampled_from(["exact", "typo", "conflict", "none"]), min_size=0, max_size=30
    ),
    outcomes=st.lists(_OUTCOME, min_size=30, max_size=30),
    verdicts=st.lists(st.sampled_from([None, "match", "non_match"]), min_size=30, max_size=30),
    reason=st.sampled_from(["no_candidate", "below_threshold", "ambiguous"]),
)
def test_every_record_ends_in_exactly_one_place(
    fnr_kind: list[str], outcomes: list[str], verdicts: list[str | None], reason: str
) -> None:
    people = PERSONS["person_id"]
    fnrs = []
    for k, kind in enumerate(fnr_kind):
        number = people[k % PERSONS.height]
        fnrs.append(
            {
                "exact": number,
                "conflict": number,
                "none": None,
                "typo": transpose(number, 9) if number[9] != number[10] else transpose(number, 8),
            }[kind]
        )
    frame = from_persons(PERSONS[[k % PERSONS.height for k in range(len(fnr_kind))]], fnrs)
    frame = frame.with_columns(
        birth_date=pl.Series(
            [dt.date(1900, 1, 1) if kind == "conflict" else None for kind in fnr_kind],
            dtype=pl.Date,
        )
    )
    ids = frame["record_id"].to_list()
    link = {r: people[(k + 1) % 40] for k, r in enumerate(ids) if outcomes[k] == "link"}
    review = {
        r: [people[k % 40], people[(k + 7) % 40]]
        for k, r in enumerate(ids)
        if outcomes[k] == "review"
    }
    decided = [
        (r, review[r][0], verdicts[k])
        for k, r in enumerate(ids)
        if r in review and verdicts[k] is not None
    ]
    decisions = pl.DataFrame(decided, orient="row", schema=["record_id", "person_id", "decision"])

    class Leaving(FakeStage):
        def __call__(self, records: pl.DataFrame, *args: Any, **kwargs: Any) -> Any:
            result, report = super().__call__(records, *args, **kwargs)
            left = [r for k, r in enumerate(ids) if outcomes[k] == "leave"]
            return StageResult(
                result.linked,
                result.rejected.filter(~pl.col("record_id").is_in(left)),
                records.filter(pl.col("record_id").is_in(left)),
                result.review,
            ), report

    result = resolve(
        frame, REGISTER, probabilistic=Leaving(link, review, reason), decisions=decisions
    )
    _assert_partition(result, ids)


def _assert_partition(result: Resolution, ids: list[str]) -> None:
    places = (
        result.links["record_id"].to_list()
        + result.rejects["record_id"].to_list()
        + result.review["record_id"].unique().to_list()
    )
    assert sorted(places) == sorted(ids)
    assert result.links["record_id"].is_unique().all()
    unresolved = result.unresolved()
    assert sorted(
        result.links["record_id"].to_list() + unresolved["record_id"].to_list()
    ) == sorted(ids)
    counts = result.counts
    assert counts["linked"] + counts["rejected"] + counts["awaiting_review"] == len(ids)
    assert (
        sum(counts[m] for m in ("exact", "repaired", "probabilistic", "clerical"))
        == counts["linked"]
    )
    assert set(unresolved["reason"]) <= {
        "no_candidate",
        "ambiguous",
        "below_threshold",
        "rejected_in_review",
        "awaiting_review",
        "conflict",
    }


def test_empty_records() -> None:
    result = resolve(records(pl.DataFrame({"fnr": []}, schema={"fnr": pl.String})), REGISTER)
    assert result.links.height == result.rejects.height == 0
    assert result.counts["records"] == 0
