"""``koble ids check`` end to end: summaries, rejects, exit codes, reconciliation, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.cli.main import cli
from koble.registries.identifiers.check import check_frame
from tests.identifiers.strategies import person_numbers

GOOD = "15108695088"
ROWS = [GOOD, "151086 95088", "15108695077", "", "41108695088", "7125186"]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "cohort.csv"
    path.write_text("id;name\n" + "".join(f"{v};n{i}\n" for i, v in enumerate(ROWS)))
    return path


def test_summary_rejects_and_exit_code(csv_file: Path, tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.csv"
    code, out, _ = run(
        "ids", "check", str(csv_file), "--column", "id", "--rejects", str(rejects), "--json"
    )
    assert code == 1
    summary = json.loads(out)
    assert summary["rows"] == 6
    assert summary["valid"] == 2
    assert summary["rejected"] == 4
    assert summary["reconciled"] is True
    assert summary["duplicate_rows"] == 1
    assert summary["by_reason"] == {
        "check_digit_1": 1,
        "check_digit_2": 1,
        "missing": 1,
        "wrong_length": 1,
    }
    table = pl.read_csv(rejects, separator=";", infer_schema=False)
    assert table["row"].to_list() == ["3", "4", "5", "6"]
    assert table["reason"].to_list() == [
        "check_digit_1",
        "missing",
        "check_digit_2",
        "wrong_length",
    ]
    assert table["name"].to_list() == ["n2", "n3", "n4", "n5"]


def test_all_valid_parquet_exits_zero(tmp_path: Path) -> None:
    path = tmp_path / "ok.parquet"
    pl.DataFrame({"fnr": [GOOD, "151086-95088"]}).write_parquet(path)
    rejects = tmp_path / "rejects.parquet"
    code, out, _ = run("ids", "check", str(path), "-c", "fnr", "--rejects", str(rejects))
    assert code == 0
    assert "counts reconcile" in out
    assert pl.read_parquet(rejects).height == 0


def test_integer_column_is_padded_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "ints.parquet"
    pl.DataFrame({"fnr": [int("01010010183"), int(GOOD)]}).write_parquet(path)
    code, out, _ = run("ids", "check", str(path), "-c", "fnr", "--json")
    summary = json.loads(out)
    assert code == 0 and summary["valid"] == 2
    assert summary["warnings"] and "leading zeros" in summary["warnings"][0]
    assert summary["rows"] == 2


def test_test_numbers_flag(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("fnr\n15908610064\n")  # month + 80: a synthetic test number
    code, out, _ = run("ids", "check", str(path), "-c", "fnr", "--json")
    assert code == 1 and json.loads(out)["by_reason"] == {"test_number_not_allowed": 1}
    code, out, _ = run("ids", "check", str(path), "-c", "fnr", "--json", "--test-numbers")
    assert code == 0 and json.loads(out)["by_kind"] == {"test_fnr": 1}


@pytest.mark.parametrize(
    ("content", "suffix", "args", "message"),
    [
        (None, ".csv", ["-c", "id"], "no such file"),
        ("id;x\n1;2\n", ".csv", ["-c", "fnr"], "column 'fnr': no such column; the file has: id, x"),
        ("id;x\n1;2\n3;4;5\n", ".csv", ["-c", "id"], "row 2: malformed CSV: 3 fields"),
        ("", ".csv", ["-c", "id"], "the file is empty"),
        ("id\n1\n", ".xlsx", ["-c", "id"], "unknown file type '.xlsx'"),
        ("not parquet", ".parquet", ["-c", "id"], "cannot read parquet file"),
    ],
)
def test_unusable_input_exits_two_with_one_line(
    tmp_path: Path, content: str | None, suffix: str, args: list[str], message: str
) -> None:
    path = tmp_path / f"input{suffix}"
    if content is not None:
        path.write_text(content)
    code, out, err = run("ids", "check", str(path), *args)
    assert code == 2
    assert message in err
    assert str(path) in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err + out


def test_non_utf8_needs_encoding(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("fnr;navn\n15108695088;Bjørn\n".encode("cp1252"))
    code, _, err = run("ids", "check", str(path), "-c", "fnr")
    assert code == 2 and "--encoding" in err
    code, _, _ = run("ids", "check", str(path), "-c", "fnr", "--encoding", "cp1252")
    assert code == 0


def test_messages_never_contain_identifiers(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(f"id;x\n{GOOD};1\n{GOOD};2;3\n")
    _, out, err = run("ids", "check", str(path), "-c", "id")
    assert GOOD not in err + out


@settings(max_examples=50, deadline=None)
@given(st.lists(person_numbers().map(lambda m: m.number) | st.text(max_size=13), max_size=60))
def test_rows_are_conserved(values: list[str]) -> None:
    frame = pl.DataFrame({"id": values}, schema={"id": pl.String})
    report, rejects = check_frame(frame, "id")
    assert report.reconciled
    assert report.valid + rejects.height == len(values)
    assert sum(report.by_reason.values()) == report.rejected
    assert sorted(rejects["row"].to_list()) == rejects["row"].to_list()
    assert all(1 <= r <= len(values) for r in rejects["row"].to_list())
