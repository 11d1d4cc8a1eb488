"""What the review of the person-level models found, each pinned: a column that becomes
constant within persons only in the release, nearly constant columns, columns that cannot be
judged, rows without a person, releases ordered by person, and unbounded m."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from koble.anonymity.config import AnonymiseConfig
from koble.anonymity.person_columns import constant_columns
from koble.anonymity.release import Release, anonymise_file, check_frame
from koble.errors import ColumnError, UsageError


def _run(tmp_path: Path, frame: pl.DataFrame, config: AnonymiseConfig) -> Release:
    source = tmp_path / "in.parquet"
    frame.write_parquet(source)
    return anonymise_file(source, config, tmp_path / "out.parquet", tmp_path / "held.parquet")


def _regulars_and_changers(changers: int) -> pl.DataFrame:
    """30 persons with rows A and B and an education shared by groups of 3; ``changers``
    more persons with rows A and B under an education of their own, and one row of a rare
    service under another education (so the column is not constant for them)."""
    rows = []
    for p in range(30):
        rows += [(f"r{p}", "A", f"e{p // 3}"), (f"r{p}", "B", f"e{p // 3}")]
    for x in range(changers):
        rows += [(f"x{x}", "A", f"own{x}"), (f"x{x}", "B", f"own{x}"), (f"x{x}", f"R{x}", "y")]
    return pl.DataFrame(rows, schema=["pid", "service", "edu"], orient="row")


def test_a_column_constant_only_in_the_release_joins_the_quasi_identifiers(
    tmp_path: Path,
) -> None:
    frame = _regulars_and_changers(5)  # 30 of 35 persons constant: under the 90 % rule
    assert "edu" not in constant_columns(frame, "pid")[0]
    config = AnonymiseConfig(k=3, quasi_identifiers={"service": "categorical"},
                             suppression=0.3, person="pid", model="person-set")  # fmt: skip
    release = _run(tmp_path, frame, config)
    assert release.result.feasible and "edu" in release.person_constant
    released = pl.read_parquet(tmp_path / "out.parquet")
    assert not released["edu"].str.starts_with("own").any()  # nobody's own education out
    assert release.after is not None and release.after.meets
    # the same release checked from outside, the person column put back from the input
    held = pl.read_parquet(tmp_path / "held.parquet")
    assert released.height + held.height == frame.height


def test_a_nearly_constant_column_is_a_persons_attribute(tmp_path: Path) -> None:
    frame = _regulars_and_changers(1)  # 30 of 31 persons constant: over the 90 % rule
    assert "edu" in constant_columns(frame, "pid")[0]
    assert "edu" not in constant_columns(frame, "pid", share=1.0)[0]
    config = AnonymiseConfig(k=3, quasi_identifiers={"service": "categorical"},
                             suppression=0.3, person="pid")  # fmt: skip
    release = _run(tmp_path, frame, config)
    assert release.person_constant == ["edu"]
    # and the check judges the same way: the raw file singles the changer out
    check = check_frame(frame, ["service"], k=3, person="pid")
    assert not check.meets and any("person" in f for f in check.failures())


def test_columns_that_cannot_be_judged_per_person_are_refused(tmp_path: Path) -> None:
    frame = _regulars_and_changers(0).with_columns(
        pl.col("pid").map_elements(lambda v: [v], return_dtype=pl.List(pl.String)).alias("tags")
    )
    config = AnonymiseConfig(k=3, quasi_identifiers={"service": "categorical"}, person="pid")
    with pytest.raises(ColumnError, match="cannot be judged per person: tags"):
        _run(tmp_path, frame, config)
    shaped = AnonymiseConfig(k=3, quasi_identifiers={"edu": "categorical"}, person="pid",
                             shape="person", kind="service")  # fmt: skip
    with pytest.raises(ColumnError, match="cannot be judged per person: tags"):
        _run(tmp_path, frame, shaped)


def test_rows_without_a_person_are_refused_naming_the_row(tmp_path: Path) -> None:
    frame = _regulars_and_changers(0).with_columns(
        pl.when(pl.int_range(pl.len()) == 6).then(None).otherwise(pl.col("pid")).alias("pid")
    )
    config = AnonymiseConfig(k=3, quasi_identifiers={"service": "categorical"}, person="pid")
    with pytest.raises(ColumnError, match="1 rows have no person; the first is row 7") as caught:
        _run(tmp_path, frame, config)
    assert "r3" not in str(caught.value)


def test_the_release_is_ordered_by_value_not_by_person(tmp_path: Path) -> None:
    # persons numbered so that their order is their birth day: the release must not keep it
    frame = pl.DataFrame({
        "fnr": [f"{d:02d}" for d in range(1, 31) for _ in range(2)],
        "service": ["A", "B"] * 30,
        "score": [(d * 7) % 5 for d in range(1, 31) for _ in range(2)],
    })  # fmt: skip
    config = AnonymiseConfig(k=3, quasi_identifiers={"service": "categorical"}, person="fnr",
                             model="row")  # fmt: skip
    _run(tmp_path, frame, config)
    released = pl.read_parquet(tmp_path / "out.parquet")
    assert released.equals(released.sort(released.columns))
    shaped = AnonymiseConfig(k=3, quasi_identifiers={"score": "categorical"}, person="fnr",
                             shape="person", kind="service")  # fmt: skip
    _run(tmp_path, frame, shaped)
    released = pl.read_parquet(tmp_path / "out.parquet")
    assert released.height == 30 and released.equals(released.sort(released.columns))


def test_m_is_bounded_everywhere(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"requirements\.m must be a whole number from 1 to 8"):
        AnonymiseConfig(k=3, quasi_identifiers={"a": "categorical"}, person="p",
                        model="person-km", m=1_000_000_000)  # fmt: skip
    with pytest.raises(UsageError, match="m must be a whole number from 1 to 8"):
        check_frame(_regulars_and_changers(0), ["service"], k=3, person="pid",
                    model="person-km", m=9)  # fmt: skip
