"""k in persons (``requirements.person``): files with several rows per person, as the
central linkage route produces, must not let one person fill a class alone."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.anonymity.config import AnonymiseConfig
from koble.anonymity.release import anonymise_file, check_frame
from koble.errors import UsageError


def _config(k: int, person: str | None, suppression: float = 0.0) -> AnonymiseConfig:
    """The row model: k persons per row class (test_longitudinal.py has the person models)."""
    return AnonymiseConfig(
        k=k,
        quasi_identifiers={"age": "age", "sex": "sex"},
        suppression=suppression,
        person=person,
        model="row",
    )


def _release(tmp_path: Path, frame: pl.DataFrame, config: AnonymiseConfig) -> pl.DataFrame:
    source = tmp_path / "in.parquet"
    frame.write_parquet(source)
    release = anonymise_file(source, config, tmp_path / "out.parquet", tmp_path / "held.parquet")
    assert release.result.feasible
    return pl.read_parquet(tmp_path / "out.parquet")


def test_one_person_with_many_rows_does_not_make_a_class(tmp_path: Path) -> None:
    # Person 1 has five rows aged 40; persons 2-6 are aged 50, one row each.
    frame = pl.DataFrame(
        {
            "pid": [1, 1, 1, 1, 1, 2, 3, 4, 5, 6],
            "age": [40] * 5 + [50] * 5,
            "sex": ["1"] * 10,
            "pid_copy": [1, 1, 1, 1, 1, 2, 3, 4, 5, 6],
        }
    )
    by_rows = _release(tmp_path, frame, _config(5, None))
    assert sorted(by_rows["age"].unique().to_list()) == ["40", "50"]  # 5 rows each: kept
    by_persons = _release(tmp_path, frame, _config(5, "pid"))
    assert "pid" not in by_persons.columns  # the person column is never released
    persons = by_persons.group_by("age", "sex").agg(pl.col("pid_copy").n_unique())
    assert persons["pid_copy"].min() >= 5  # type: ignore[operator]
    assert by_persons.height == frame.height


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 40), st.integers(18, 90), st.sampled_from(["1", "2"])),
        min_size=20,
        max_size=200,
    ),
    st.integers(2, 6),
)
def test_released_classes_hold_k_persons_and_rows_are_conserved(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[int, int, str]], k: int
) -> None:
    tmp_path = tmp_path_factory.mktemp("persons")
    pid, age, sex = map(list, zip(*rows, strict=True))
    frame = pl.DataFrame({"pid": pid, "age": age, "sex": sex, "who": pid})
    if frame["pid"].n_unique() < k:
        return
    source = tmp_path / "in.parquet"
    frame.write_parquet(source)
    config = _config(k, "pid", suppression=0.1)
    release = anonymise_file(source, config, tmp_path / "out.parquet", tmp_path / "held.parquet")
    if not release.result.feasible:
        return
    released = pl.read_parquet(tmp_path / "out.parquet")
    held = pl.read_parquet(tmp_path / "held.parquet")
    assert released.height + held.height == frame.height
    persons = released.group_by("age", "sex").agg(pl.col("who").n_unique())["who"]
    assert persons.min() >= k  # type: ignore[operator]
    assert release.after is not None and release.after.meets
    assert release.after.smallest_class_persons == persons.min()


def test_check_frame_judges_k_and_risk_in_persons() -> None:
    frame = pl.DataFrame({"pid": [1, 1, 1, 2, 3], "age": [30] * 5, "sex": ["1"] * 5})
    rows = check_frame(frame, ["age", "sex"], k=5)
    persons = check_frame(frame, ["age", "sex"], k=5, person="pid")
    assert rows.meets and rows.smallest_class == 5
    assert not persons.meets and persons.smallest_class_persons == 3
    assert persons.risk.prosecutor.highest == pytest.approx(1 / 3)


def test_config_person_rules(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[requirements]\nk = 5\nperson = "age"\nl = 2\n[quasi_identifiers]\nage = "age"\n'
        '[sensitive]\ncolumn = "dx"\n'
    )
    with pytest.raises(UsageError) as info:
        AnonymiseConfig.read(bad)
    assert "cannot be combined with a [sensitive] column" in str(info.value)
    assert "cannot also be a quasi-identifier" in str(info.value)
    good = tmp_path / "good.toml"
    good.write_text('[requirements]\nk = 5\nperson = "pid"\n[quasi_identifiers]\nage = "age"\n')
    assert AnonymiseConfig.read(good).person == "pid"
