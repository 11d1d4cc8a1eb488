"""Reading a reviewer's decisions file: spellings, blanks, the checks (file, column, row;
never a value), the pairs checked against the review, and the stage wrapper that does it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from koble.errors import ColumnError, FileFormatError, UsageError
from koble.recovery.contract import LINK_SCHEMA, RECORD_SCHEMA, REJECT_SCHEMA, StageResult, empty
from koble.recovery.decisions import CheckedStage, Decisions, read_decisions

P1, P2, P3 = "01017000027", "02027000034", "03037000050"  # person ids (no valid check digits)
REVIEW = pl.DataFrame({"record_id": ["r1", "r1", "r2", "r3"], "person_id": [P1, P2, P3, P1]})


def _write(tmp_path: Path, rows: Sequence[tuple[str | None, ...]], *, name: str = "d.csv",
           columns: tuple[str, ...] = ("record_id", "person_id", "decision", "reviewer"),
           ) -> Path:  # fmt: skip
    path = tmp_path / name
    frame = pl.DataFrame(rows, schema=list(columns), orient="row")
    if name.endswith(".parquet"):
        frame.write_parquet(path)
    else:
        frame.write_csv(path, separator=";")
    return path


def test_spellings_blanks_and_extra_columns(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [("r1", P1, " Match ", "kari", "Ingrid Nordmann"), ("r1", P2, "NON-MATCH", "kari", "x"),
         ("r2", P3, "non_match", "ola", "y"), ("r3", P1, "", "", "z"),
         ("r1", P1, "match", "kari", "again")],
        columns=("record_id", "person_id", "decision", "reviewer", "person_last_name"),
    )  # fmt: skip
    found = read_decisions(path)
    assert found.for_resolve().rows() == [
        ("r1", P1, "match", "kari"), ("r1", P2, "non_match", "kari"),
        ("r2", P3, "non_match", "ola"),
    ]  # fmt: skip
    assert found.table["row"].to_list() == [1, 2, 3]
    assert found.counts() == {"decisions": 3, "match": 1, "non_match": 2, "undecided": 1}
    assert found.by_reviewer().rows() == [("kari", 1, 1), ("ola", 0, 1)]
    assert len(found.sha256) == 64
    assert "kari" not in repr(found) and P1 not in repr(found) and "3 decided" in repr(found)
    found.check_pairs(REVIEW)  # every pair is in the review


def test_a_parquet_decisions_file(tmp_path: Path) -> None:
    path = _write(tmp_path, [("r2", P3, "match", "ola")], name="d.parquet")
    assert read_decisions(path).for_resolve().rows() == [("r2", P3, "match", "ola")]


@pytest.mark.parametrize(
    ("rows", "column", "row", "words"),
    [
        ([("r1", P1, "maybe", "kari")], "decision", 1, "must be match or non-match"),
        ([("r1", P1, "match", None)], "reviewer", 1, "needs its reviewer"),
        ([("r3", P1, None, None), (None, P1, "match", "k")], "record_id", 2, "needs its record"),
        ([("r1", None, "match", "k")], "person_id", 1, "needs its person_id"),
        ([("r1", P1, "match", "k"), ("r1", P1, "non-match", "o")], "decision", 2, "both"),
        ([("r1", P1, "match", "k"), ("r1", P2, "match", "o")], "decision", 2, "two persons"),
        ([("r1", P1, "match", "set below")], "reviewer", 1, "person number"),
    ],
)
def test_each_problem_names_file_column_and_row(
    tmp_path: Path, rows: list[tuple[str | None, ...]], column: str, row: int, words: str
) -> None:
    if words == "person number":  # a reviewer field holding a valid fødselsnummer
        from tests.recovery.conftest import make_persons

        number = make_persons(1)["person_id"][0]
        rows = [("r1", P1, "match", f"ola {number}")]
    path = _write(tmp_path, rows)
    with pytest.raises(ColumnError) as caught:
        read_decisions(path)
    error = caught.value
    assert (error.path, error.column, error.row) == (str(path), column, row)
    assert words in error.message
    assert P1 not in str(error) and "kari" not in str(error)


def test_a_missing_column_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, [("r1", P1, "match")], columns=("record_id", "person_id", "decision"))
    with pytest.raises(ColumnError) as caught:
        read_decisions(path)
    assert caught.value.column == "reviewer" and "missing" in caught.value.message


def test_a_file_that_decides_nothing_and_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="decides no pair"):
        read_decisions(_write(tmp_path, [("r1", P1, "", "")]))
    with pytest.raises(FileFormatError, match="no such file"):
        read_decisions(tmp_path / "nope.csv")


def test_a_pair_not_in_the_review_is_refused(tmp_path: Path) -> None:
    found = read_decisions(
        _write(
            tmp_path, [("r1", P1, "match", "k"), ("r2", P1, "match", "k"), ("r9", P1, "match", "k")]
        )
    )
    with pytest.raises(ColumnError) as caught:
        found.check_pairs(REVIEW)
    assert (caught.value.column, caught.value.row) == ("person_id", 2)
    assert "2 such row(s)" in caught.value.message
    with pytest.raises(ColumnError) as caught:
        found.check_pairs(REVIEW.filter(pl.col("record_id") != "r2"))
    assert (caught.value.column, caught.value.row) == ("record_id", 2)


class _Stage:
    """A probabilistic stage that sends REVIEW's pairs to review."""

    def __call__(
        self,
        records: pl.DataFrame,
        register: object,
        *,
        training: pl.DataFrame,
        thresholds: tuple[float, float],
        seed: int,
    ) -> tuple[StageResult, object]:
        review = REVIEW.with_columns(match_probability=pl.lit(0.7), match_weight=pl.lit(1.0))
        return StageResult(empty(LINK_SCHEMA), empty(REJECT_SCHEMA), empty(RECORD_SCHEMA),
                           review), {"model": 1}  # fmt: skip


def _call(stage: CheckedStage) -> object:
    return stage(empty(RECORD_SCHEMA), None, training=empty(RECORD_SCHEMA),
                 thresholds=(0.5, 0.9), seed=0)[1]  # fmt: skip


def test_the_checked_stage_refuses_unknown_pairs_before_they_are_applied(tmp_path: Path) -> None:
    good = read_decisions(_write(tmp_path, [("r2", P3, "match", "k")]))
    stage = CheckedStage(good, _Stage())
    assert _call(stage) == {"model": 1} and stage.ran
    stage.finish()
    bad = read_decisions(_write(tmp_path, [("r2", P1, "match", "k")], name="bad.csv"))
    with pytest.raises(ColumnError, match="not in the review"):
        _call(CheckedStage(bad, _Stage()))
    never = CheckedStage(good, _Stage())  # every record resolved before the stage
    with pytest.raises(ColumnError, match="no pair under review"):
        never.finish()
    CheckedStage(None, _Stage()).finish()  # no decisions: nothing to check


# the profile's suppressions (tests/conftest.py) kept; tmp_path is rewritten per example
@settings(
    suppress_health_check=[*settings().suppress_health_check, HealthCheck.function_scoped_fixture],
    max_examples=40,
)
@given(
    verdicts=st.lists(
        st.sampled_from([None, "match", "non-match", "Non_Match"]), min_size=4, max_size=4
    ),
    reviewers=st.lists(st.sampled_from(["kari", "ola", "per"]), min_size=4, max_size=4),
)
def test_valid_decisions_read_back_as_written(
    tmp_path: Path, verdicts: list[str | None], reviewers: list[str]
) -> None:
    """Any decisions on the review's pairs (one match per record at most) read back exactly,
    and the counts add up."""
    seen: set[str] = set()
    rows = []
    for (record, person), verdict, who in zip(REVIEW.rows(), verdicts, reviewers, strict=True):
        if verdict == "match":
            verdict = "non-match" if record in seen else verdict
            seen.add(record)
        rows.append((record, person, verdict, who if verdict else None))
    if all(v is None for _, _, v, _ in rows):
        return
    found: Decisions = read_decisions(_write(tmp_path, rows))
    want = [(r, p, v.lower().replace("-", "_"), w) for r, p, v, w in rows if v]
    assert found.for_resolve().rows() == want
    counts = found.counts()
    assert counts["match"] + counts["non_match"] == counts["decisions"] == len(want)
    assert counts["undecided"] == 4 - len(want)
    found.check_pairs(REVIEW)
