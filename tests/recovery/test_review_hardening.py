"""Review findings on ``koble resolve``'s input and review handling (issue 16): a reviewer
that is a name or a birth date, formula injection and control characters in the review
files, register sex codes, a records file with no record field, and ``--encoding``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st

from koble.cli.main import cli
from koble.errors import ColumnError
from koble.recovery.contract import ADDRESS_SCHEMA
from koble.recovery.decisions import _unprefixed, read_decisions
from koble.recovery.register import Register
from koble.recovery.review import csv_safe, review_html, review_table, safe_text
from koble.tables import write_table
from tests.recovery.conftest import from_persons, make_persons, make_register

P1, P2 = "01017000027", "02027000034"
SHIFTED = "Hegreerud 1978-11-23"  # a spreadsheet column shift: name and birth date


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env={"KOBLE_ACTOR": "tove.ttp"})


def _decisions(tmp_path: Path, reviewers: list[str], **extra: list[str | None]) -> Path:
    path = tmp_path / "d.csv"
    n = len(reviewers)
    frame = pl.DataFrame({"record_id": [f"r{i}" for i in range(n)], "person_id": [P1] * n,
                          "decision": ["match"] * n, "reviewer": reviewers, **extra})  # fmt: skip
    frame.write_csv(path, separator=";")
    return path


# 1. the reviewer is audited: a user id, never a name or a date


@pytest.mark.parametrize(
    "reviewer",
    [SHIFTED, "1978-11-23", "23.11.1978", "x" * 65, "kari nordmann", "ola;x", "'=cmd"],
)
def test_a_reviewer_that_is_not_a_user_id_is_refused_without_its_value(
    tmp_path: Path, reviewer: str
) -> None:
    path = _decisions(tmp_path, ["kari.r", reviewer])
    with pytest.raises(ColumnError) as caught:
        read_decisions(path)
    error = caught.value
    assert (error.path, error.column, error.row) == (str(path), "reviewer", 2)
    assert "user id" in error.message
    assert reviewer not in str(error) and "Hegreerud" not in str(error)


@pytest.mark.parametrize("reviewer", ["HEGREERUD", "bakke", "Hegreerud-Bakke", "kari", "19781123"])
def test_a_reviewer_equal_to_a_name_part_or_date_of_the_file_is_refused(
    tmp_path: Path, reviewer: str
) -> None:
    path = _decisions(
        tmp_path, ["ola.r", reviewer],
        record_last_name=["Hegreerud-Bakke", None], person_first_name=["Kari Anne", "Per"],
        record_birth_date=[None, "19781123"],
    )  # fmt: skip
    with pytest.raises(ColumnError) as caught:
        read_decisions(path)
    assert (caught.value.column, caught.value.row) == ("reviewer", 2)
    assert "name part or date" in caught.value.message
    assert reviewer not in str(caught.value)


def test_a_reviewer_equal_to_a_known_name_is_refused(tmp_path: Path) -> None:
    path = _decisions(tmp_path, ["solveig"])
    assert read_decisions(path).for_resolve()["reviewer"].to_list() == ["solveig"]
    known = [pl.Series(["Ødegård", "Solveig"]), pl.Series([dt.date(1950, 1, 2), None])]
    with pytest.raises(ColumnError, match="name part or date"):
        read_decisions(path, known=known)


def test_user_ids_are_accepted(tmp_path: Path) -> None:
    ids = ["kari.nordmann@ttp.no", "ola_r-2", "x" * 64, "åse.b"]
    path = _decisions(tmp_path, ids, record_last_name=["Nordmann", "Hansen", None, "Åsheim"])
    assert read_decisions(path).for_resolve()["reviewer"].to_list() == ids


# 2. the review files: formula injection and control characters

PERSONS = pl.DataFrame({
    "person_id": [P1, P2], "first_name": ["=HYPERLINK(\"http://x\",\"y\")", "Kari\x1b[31m"],
    "last_name": ["Løkken\u202eneklø", "@SUM(1+1)"], "birth_date": [dt.date(1950, 3, 4)] * 2,
    "sex": ["F", "F"],
})  # fmt: skip
RECORDS = pl.DataFrame({
    "record_id": ["-1", "+2"], "fnr": [None, None], "first_name": ["+cmd", "Kari\x07\x00"],
    "middle_name": [None, None], "last_name": ["\tLokken", "Bakke\u2066"],
    "birth_date": [dt.date(1950, 3, 4)] * 2, "sex": ["F", "F"], "death_date": [None, None],
    "kommune": [None, None],
})  # fmt: skip
REVIEW = pl.DataFrame({
    "record_id": ["-1", "+2"], "person_id": [P1, P2], "match_probability": [0.6, 0.7],
    "match_weight": [-1.5, 2.0], "gamma_fn": [0, 0],
})  # fmt: skip
BAD = ("\x1b", "\x07", "\x00", "\u202e", "\u2066", "\t")


def _review() -> pl.DataFrame:
    return review_table(REVIEW, RECORDS, Register.from_frames(PERSONS))


def test_the_review_csv_never_starts_a_text_cell_with_a_formula(tmp_path: Path) -> None:
    table = _review()
    path = write_table(table, tmp_path / "review.csv")
    cells = pl.read_csv(path, separator=";", infer_schema=False)
    texts = [c for c, dtype in table.schema.items() if dtype == pl.String]
    text = [v for col in texts for v in cells[col].to_list() if v is not None]
    assert not [v for v in text if v[0] in "=+-@\t\r"]
    first = cells.filter(pl.col("person_id") == P1).row(0, named=True)
    assert first["person_first_name"] == '\'=HYPERLINK("http://x","y")'
    assert first["record_first_name"] == "'+cmd" and first["record_id"] == "'-1"
    raw = path.read_text(encoding="utf-8")
    assert not [c for c in BAD if c in raw] and "\ufffd" in raw
    assert "Løkken\ufffdneklø" in raw and "Kari\ufffd[31m" in raw


def test_the_review_html_replaces_control_characters() -> None:
    page = review_html(_review())
    assert not [c for c in BAD if c in page] and "\ufffd" in page
    assert "Løkken\ufffdneklø" in page


def test_the_prefixed_ids_round_trip_through_the_decisions_file(tmp_path: Path) -> None:
    path = write_table(_review(), tmp_path / "review.csv")
    filled = pl.read_csv(path, separator=";", infer_schema=False).with_columns(
        decision=pl.lit("match"), reviewer=pl.lit("kari.r")
    )
    filled.write_csv(path, separator=";")
    decisions = read_decisions(path)
    assert sorted(decisions.for_resolve().select("record_id", "person_id").rows()) == [
        ("+2", P2), ("-1", P1),
    ]  # fmt: skip
    decisions.check_pairs(REVIEW)  # the pairs are the review's own


@given(st.text(max_size=12))
def test_csv_safe_cells_are_inert_and_the_prefix_comes_off_exactly(value: str) -> None:
    safe = csv_safe(pl.DataFrame({"x": [value]}))["x"][0]
    assert not safe or safe[0] not in "=+-@\t\r"
    assert not [c for c in safe if ord(c) < 32 or 0x7F <= ord(c) <= 0x9F or c in "\u202e\u2066"]
    back = pl.select(_unprefixed(pl.lit(safe, pl.String))).item()
    assert back == pl.select(safe_text(pl.lit(value, pl.String))).item()


# 3.-5. the command's input: register sex codes, records without a field, --encoding


@pytest.fixture(scope="module")
def persons() -> pl.DataFrame:
    return make_persons(40, seed=7)


def _register(where: Path, persons: pl.DataFrame) -> Path:
    register = make_register(persons)
    where.mkdir()
    register.persons.write_parquet(where / "persons.parquet")
    register.names.write_parquet(where / "names.parquet")
    pl.DataFrame(schema=ADDRESS_SCHEMA).write_parquet(where / "addresses.parquet")
    return where


def _resolve(tmp_path: Path, records: Path, *extra: str | Path) -> Result:
    return run("resolve", records, "--population", tmp_path / "register",
               "--out", tmp_path / "out" / "resolved.csv", "--json", *extra)  # fmt: skip


def test_a_register_coding_women_k_links_like_one_coding_them_f(
    tmp_path: Path, persons: pl.DataFrame
) -> None:
    coded = persons.with_columns(
        sex=pl.col("sex").replace({"F": "K"}).str.to_lowercase().str.pad_end(2)
    )  # "k ", "m ": another register's codes
    _register(tmp_path / "register", coded)
    assert Register.open(tmp_path / "register").persons["sex"].to_list() == persons["sex"].to_list()
    from_persons(persons).write_csv(tmp_path / "records.csv")
    result = _resolve(tmp_path, tmp_path / "records.csv", "--deterministic-only")
    assert result.exit_code == 0, result.output
    assert '"exact": 40' in result.stdout


def test_an_unknown_register_sex_code_names_file_column_and_row(
    tmp_path: Path, persons: pl.DataFrame
) -> None:
    where = _register(tmp_path / "register", persons) / "persons.parquet"
    coded = pl.read_parquet(where).with_columns(
        sex=pl.when(pl.int_range(pl.len()) == 4).then(pl.lit("X")).otherwise("sex")
    )
    coded.write_parquet(where)
    from_persons(persons).write_csv(tmp_path / "records.csv")
    result = _resolve(tmp_path, tmp_path / "records.csv", "--deterministic-only")
    assert result.exit_code == 2, result.output
    assert "persons.parquet: column 'sex': row 5: sex must be M or F" in result.stderr
    with pytest.raises(ColumnError) as caught:
        _ = Register.from_frames(coded).persons
    assert (caught.value.column, caught.value.row) == ("sex", 5)


def test_a_records_file_with_no_record_field_is_refused(
    tmp_path: Path, persons: pl.DataFrame
) -> None:
    _register(tmp_path / "register", persons)
    frame = from_persons(persons).select(
        pl.int_range(pl.len()).alias("id"), pl.col("fnr").alias("fodselsnummer"),
        pl.col("first_name").alias("fornavn"), pl.col("last_name").alias("etternavn"),
    )  # fmt: skip
    frame.write_csv(tmp_path / "records.csv")
    result = _resolve(tmp_path, tmp_path / "records.csv")
    assert result.exit_code == 2, result.output
    assert "records.csv" in result.stderr and "--column FIELD=COLUMN" in result.stderr
    assert "first_name" in result.stderr and "fodselsnummer" not in result.stderr.split("e.g.")[0]
    mapped = _resolve(tmp_path, tmp_path / "records.csv", "--deterministic-only",
                      "--column", "fnr=fodselsnummer", "--column", "record_id=id")  # fmt: skip
    assert mapped.exit_code == 0, mapped.output


def test_encoding_reads_a_cp1252_records_file(tmp_path: Path, persons: pl.DataFrame) -> None:
    _register(tmp_path / "register", persons)
    path = tmp_path / "records.csv"
    path.write_bytes(from_persons(persons).write_csv().encode("cp1252"))
    assert "ø" in from_persons(persons).write_csv() or "å" in from_persons(persons).write_csv()
    refused = _resolve(tmp_path, path, "--deterministic-only")
    assert refused.exit_code == 2 and "--encoding cp1252" in refused.stderr
    result = _resolve(tmp_path, path, "--deterministic-only", "--encoding", "cp1252")
    assert result.exit_code == 0, result.output


def test_the_cli_refuses_a_reviewer_that_is_a_records_name(
    tmp_path: Path, persons: pl.DataFrame
) -> None:
    _register(tmp_path / "register", persons)
    from_persons(persons).write_csv(tmp_path / "records.csv")
    name = str(persons["last_name"][0])
    for reviewer, words in ((name.lower(), "name part or date"), (SHIFTED, "user id")):
        pl.DataFrame({"record_id": ["1"], "person_id": [P1], "decision": ["match"],
                      "reviewer": [reviewer]}).write_csv(tmp_path / "d.csv")  # fmt: skip
        result = _resolve(tmp_path, tmp_path / "records.csv", "--decisions", tmp_path / "d.csv")
        assert result.exit_code == 2, result.output
        assert "d.csv: column 'reviewer': row 1" in result.stderr and words in result.stderr
        assert reviewer not in result.output and name not in result.output
