"""ARX CSV hierarchies (CsvHierarchy): ARX's adult hierarchies over the adult data, and the
errors of a value missing from a hierarchy or a malformed or inconsistent file.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from koble.anonymity.hierarchies import MISSING, CsvHierarchy, hierarchy_for
from koble.errors import ColumnError, FileFormatError
from tests.anonymity._hierarchy_checks import assert_valid, labels_of

ADULT = Path("/work/shared/data/adult")


ADULT_ATTRIBUTES = (
    "sex",
    "age",
    "race",
    "marital-status",
    "education",
    "native-country",
    "workclass",
    "occupation",
    "salary-class",
)


@pytest.fixture(scope="module")
def adult() -> pl.DataFrame:
    if not (ADULT / "adult.csv").is_file():
        pytest.skip("shared adult data not present")
    return pl.read_csv(ADULT / "adult.csv", separator=";")


@pytest.mark.parametrize("attribute", ADULT_ATTRIBUTES)
def test_adult_hierarchies_cover_adult(adult: pl.DataFrame, attribute: str) -> None:
    path = ADULT / f"adult_hierarchy_{attribute}.csv"
    hierarchy = hierarchy_for(f"csv:{path}")
    column = adult.get_column(attribute)
    g = hierarchy.apply(column)
    assert_valid(g, adult.height)
    rows = {
        line.split(";")[0]: line.split(";")
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    }
    sample = column.cast(pl.String).head(50).to_list()
    for level in range(g.height + 1):
        assert g.column(level).head(50).to_list() == [rows[value][level] for value in sample]


def test_adult_age_labels(adult: pl.DataFrame) -> None:
    g = CsvHierarchy(ADULT / "adult_hierarchy_age.csv").apply(pl.Series("age", [39]))
    assert g.level_names == ("value", "level 1", "level 2", "level 3", "level 4")
    assert labels_of(g) == ["39", "35-39", "30-39", "20-39", "*"]


def test_csv_value_missing_from_hierarchy(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("Male;*\nFemale;*\n", encoding="utf-8")
    with pytest.raises(ColumnError, match="the value is not in the hierarchy") as info:
        CsvHierarchy(path).apply(pl.Series("sex", ["Male", "Other"]))
    assert (info.value.column, info.value.row) == ("sex", 2)
    assert "Other" not in str(info.value)


def test_csv_inconsistent_hierarchy_names_the_label(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("1;0-4;young;*\n2;0-4;old;*\n", encoding="utf-8")
    with pytest.raises(FileFormatError, match="'0-4' at level 1 has two parents") as info:
        CsvHierarchy(path)
    assert info.value.row == 2
    assert info.value.path == str(path)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a;x;*\nb;*\n", "2 levels where the first row has 3"),
        ("a\nb\n", "at least two levels"),
        ("a;x;*\na;y;*\n", "listed twice"),
        ("a;;*\n", "empty label"),
        ("\n\n", "empty"),
    ],
)
def test_csv_malformed(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "h.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FileFormatError, match=problem):
        CsvHierarchy(path)


def test_csv_comma_separated_and_multi_label_top(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("a,x\nb,y\n", encoding="utf-8")
    g = CsvHierarchy(path).apply(pl.Series("v", ["b", None, "a"]))
    assert g.column(1).to_list() == ["y", MISSING, "x"]
    assert g.labels[1] == ("x", "y", MISSING)
