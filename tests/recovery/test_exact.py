"""The exact stage, and reading records and registers (koble.recovery.records/register)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from koble.errors import ColumnError, FileFormatError, UsageError
from koble.recovery.contract import RECORD_SCHEMA, REGISTER_FILES, REGISTER_SCHEMA
from koble.recovery.exact import exact
from koble.recovery.records import prepare_records, read_records
from koble.recovery.register import Register
from tests.recovery.conftest import from_persons, make_persons, make_register, records


def test_registered_numbers_link_exactly(persons: pl.DataFrame) -> None:
    result = exact(from_persons(persons), make_register(persons))
    assert result.linked["person_id"].to_list() == persons["person_id"].to_list()
    assert set(result.linked["method"]) == {"exact"}
    assert set(result.linked["match_probability"]) == {1.0}
    assert result.linked["match_weight"].null_count() == persons.height
    assert result.remaining.height == result.rejected.height == result.pending.height == 0


def test_separators_and_missing_fields_do_not_prevent_a_link(persons: pl.DataFrame) -> None:
    spaced = [f"{p[:6]} {p[6:]}" for p in persons["person_id"].head(3)]
    frame = prepare_records(pl.DataFrame({"fnr": spaced}))  # no names, dates or sex
    result = exact(frame, make_register(persons))
    assert result.linked["person_id"].to_list() == persons["person_id"].head(3).to_list()


def test_an_old_number_links_to_the_current_one(persons: pl.DataFrame) -> None:
    current, old = persons.row(0, named=True), persons.row(1, named=True)
    register = make_register(
        pl.concat([persons.head(1), persons.slice(2)]),
        history={old["person_id"]: current["person_id"]},
    )
    record = records(pl.DataFrame({"fnr": [old["person_id"]]}))
    assert exact(record, register).linked["person_id"].to_list() == [current["person_id"]]


def test_disagreeing_birth_date_or_sex_is_a_conflict_passed_on(persons: pl.DataFrame) -> None:
    frame = from_persons(persons.head(3)).with_columns(
        birth_date=pl.Series([dt.date(1900, 1, 1), None, None]),
        sex=pl.Series([None, "M" if persons["sex"][1] == "F" else "F", None]),
    )
    result = exact(frame, make_register(persons))
    assert result.linked["record_id"].to_list() == ["3"]
    assert result.remaining["record_id"].to_list() == ["1", "2"]
    assert result.pending["reason"].to_list() == ["conflict", "conflict"]
    assert "birth date" in result.pending["detail"][0] and "sex" in result.pending["detail"][1]
    assert result.remaining.schema == RECORD_SCHEMA


def test_unregistered_invalid_and_missing_numbers_pass_on_unmarked() -> None:
    everyone = make_persons(3, seed=5)
    register = make_register(everyone.head(2))
    bad = everyone["person_id"][0][:10] + str((int(everyone["person_id"][0][10]) + 1) % 10)
    frame = records(pl.DataFrame({"fnr": [everyone["person_id"][2], bad, None, "abc"]}))
    result = exact(frame, register)
    assert result.linked.height == 0 and result.pending.height == 0
    assert result.remaining["record_id"].to_list() == ["1", "2", "3", "4"]


def test_records_file_mapping_and_row_ids(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(
        "nr;fornavn;født;kjønn;kommune\n010203 12345;Kari;1950-02-03;k;301\n;Ole;;M;\n",
        encoding="utf-8",
    )
    frame = read_records(
        path, columns={"fnr": "nr", "first_name": "fornavn", "birth_date": "født", "sex": "kjønn"}
    )
    assert frame.schema == RECORD_SCHEMA
    assert frame.row(0, named=True) | {"birth_date": None} == {
        "record_id": "1",
        "fnr": "01020312345",
        "first_name": "Kari",
        "middle_name": None,
        "last_name": None,
        "birth_date": None,
        "sex": "F",
        "death_date": None,
        "kommune": "0301",
    }
    assert frame["birth_date"][0] == dt.date(1950, 2, 3)
    assert frame["record_id"][1] == "2" and frame["fnr"][1] is None


@pytest.mark.parametrize(
    ("frame", "column", "row", "words"),
    [
        (pl.DataFrame({"record_id": ["a", "b", "a"]}), "record_id", 1, "rows 1, 3"),
        (pl.DataFrame({"record_id": ["a", None]}), "record_id", 2, "missing"),
        (pl.DataFrame({"birth_date": ["1950-01-01", "01.01.1950"]}), "birth_date", 2, "YYYY"),
        (pl.DataFrame({"sex": ["M", "X"]}), "sex", 2, "M or F"),
        (pl.DataFrame({"kommune": ["0301", "31"]}), "kommune", 2, "four digits"),
        (pl.DataFrame({"first_name": [1.5]}), "first_name", None, "text"),
    ],
)
def test_bad_records_are_refused_naming_column_and_row(
    frame: pl.DataFrame, column: str, row: int | None, words: str
) -> None:
    with pytest.raises(ColumnError) as caught:
        prepare_records(frame, path="r.csv")
    assert (caught.value.column, caught.value.row) == (column, row)
    assert words in str(caught.value)


def test_a_duplicate_id_error_never_shows_the_id() -> None:
    with pytest.raises(ColumnError) as caught:
        prepare_records(pl.DataFrame({"record_id": ["12345678901"] * 2}))
    assert "12345678901" not in str(caught.value)


def test_unknown_mapping_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown record column"):
        prepare_records(pl.DataFrame({"a": [1]}), columns={"fødselsnummer": "a"})


def _write_register(root: Path, persons: pl.DataFrame) -> None:
    register = make_register(persons)
    root.mkdir()
    register.persons.write_parquet(root / REGISTER_FILES["persons"])
    register.names.write_parquet(root / REGISTER_FILES["names"])
    register.addresses.write_parquet(root / REGISTER_FILES["addresses"])


def test_register_directory_opens_lazily_and_links(tmp_path: Path, persons: pl.DataFrame) -> None:
    _write_register(tmp_path / "reg", persons)
    register = Register.open(tmp_path / "reg")
    assert register.history is None
    assert "persons" not in register.__dict__  # not read yet
    assert exact(from_persons(persons.head(5)), register).linked.height == 5
    assert register.persons.schema == REGISTER_SCHEMA
    assert "Hansen" not in repr(register)


def test_register_problems_name_file_and_column(tmp_path: Path, persons: pl.DataFrame) -> None:
    with pytest.raises(FileFormatError, match="must be a directory"):
        Register.open(tmp_path / "none")
    _write_register(tmp_path / "reg", persons)
    (tmp_path / "reg" / "names.parquet").unlink()
    with pytest.raises(FileFormatError, match=r"no names\.parquet"):
        Register.open(tmp_path / "reg")
    persons.drop("sex").write_parquet(tmp_path / "reg" / "names.parquet")
    with pytest.raises(ColumnError) as caught:
        Register.open(tmp_path / "reg")
    assert caught.value.column == "middle_name" and caught.value.path is not None
    assert caught.value.path.endswith("names.parquet")


def test_duplicate_person_ids_are_refused_with_the_row(persons: pl.DataFrame) -> None:
    twice = pl.concat([persons.head(3), persons.head(1)])
    with pytest.raises(ColumnError) as caught:
        _ = Register.from_frames(twice).persons
    assert caught.value.row == 1 and "not unique" in str(caught.value)
