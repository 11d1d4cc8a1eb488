"""The auditor's identifier scan finds person numbers however they are written, counts rows,
ignores look-alikes, never repeats a number, and reads every delivery format."""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path

import polars as pl
import pyreadstat
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.errors import FileFormatError
from koble.linkage.scan import Finding, scan_file, scan_frame, scan_pseudonyms
from koble.registries.identifiers._rules import Kind, Rule
from tests.identifiers.strategies import Made, finish, person_numbers


def _number(body: str) -> str:
    """The first valid number whose nine leading digits start with ``body``."""
    for n in range(10 ** (9 - len(body))):
        made = finish([int(c) for c in f"{body}{n:0{9 - len(body)}d}"], 0)
        if made is not None:
            return made
    raise AssertionError(body)


FNR = _number("010190")  # born 1 January 1990 (leading zero: lost in integer columns)
FNR2 = _number("150385")
DNR = _number("410190")
HNR = _number("154385")
FHNR = _number("8")
BAD = FNR[:-1] + str((int(FNR[-1]) + 1) % 10)  # second check digit wrong
NUMBERS = (FNR, FNR2, DNR, HNR, FHNR)


def _by_column(findings: list[Finding]) -> dict[str, Finding]:
    return {f.column: f for f in findings}


def test_finds_every_kind_in_plain_separated_and_embedded_text() -> None:
    frame = pl.DataFrame(
        {
            "plain": [None, FNR, "x", DNR],
            "separated": [f"{FNR[:6]} {FNR[6:]}", f"{HNR[:6]}-{HNR[6:]}", "", "a"],
            "text": ["ok", "ok", f"pasient {FHNR} (ref.{FNR2}).", f"fnr:{FNR}, d:{DNR}"],
            "dotted": [f"{FNR[:2]}.{FNR[2:4]}.{FNR[4:6]} {FNR[6:]}", None, None, None],
        }
    )
    found = _by_column(scan_frame(frame))
    assert found == {
        "plain": Finding("plain", 2, 2, {"dnr": 1, "fnr": 1}),
        "separated": Finding("separated", 2, 1, {"fnr": 1, "hnr": 1}),
        "text": Finding("text", 2, 3, {"dnr": 1, "fhnr": 1, "fnr": 2}),
        "dotted": Finding("dotted", 1, 1, {"fnr": 1}),
    }


def test_row_with_several_numbers_counts_once() -> None:
    frame = pl.DataFrame({"notes": [f"{FNR} {FNR2} {FNR}", "none"]})
    assert scan_frame(frame) == [Finding("notes", 1, 1, {"fnr": 1})]


def test_integer_and_float_columns_with_lost_leading_zero() -> None:
    assert int(FNR) < 10**10  # the leading zero is gone
    frame = pl.DataFrame(
        {
            "int": [5, int(FNR), None, int(DNR)],
            "float": [float(FNR), 2.5, 1e10 + 0.5, None],
            "small": [1, 2, 3, 4],
        }
    )
    found = _by_column(scan_frame(frame))
    assert found["int"] == Finding("int", 2, 2, {"dnr": 1, "fnr": 1})
    assert found["float"] == Finding("float", 1, 1, {"fnr": 1})
    assert "small" not in found


def test_ignores_look_alikes() -> None:
    pseudonyms = [hashlib.sha256(str(i).encode()).hexdigest()[:36] for i in range(2000)]
    frame = pl.DataFrame(
        {
            "bad_check_digit": [BAD, f"{BAD[:6]} {BAD[6:]}"] * 1000,
            "pseudonym": pseudonyms,
            "longer": [f"1{FNR}", f"{FNR}0"] * 1000,
            "date": [datetime.date(1990, 1, 1)] * 2000,
            "small_int": list(range(2000)),
            "flag": [True, False] * 1000,
            "amount": [1234.5] * 2000,
        }
    )
    assert scan_frame(frame) == []
    assert scan_pseudonyms(frame) == ["pseudonym"]


def test_test_numbers_reported_unless_excluded() -> None:
    test = _number("018190")  # month + 80: synthetic (Tenor) test number
    frame = pl.DataFrame({"id": [test]})
    assert scan_frame(frame) == [Finding("id", 1, 1, {"test_fnr": 1})]
    assert scan_frame(frame, test_numbers=False) == []


def test_nested_binary_and_categorical_columns() -> None:
    frame = pl.DataFrame(
        {
            "list": [["a"], [FNR, "b"]],
            "struct": [{"id": DNR, "n": 1}, {"id": "x", "n": 2}],
            "binary": [b"\xff\xfe" + FNR.encode(), b""],
            "category": pl.Series([FNR, "a"], dtype=pl.Categorical),
        }
    )
    found = _by_column(scan_frame(frame))
    assert {c: (f.rows, f.first_row) for c, f in found.items()} == {
        "list": (1, 2),
        "struct": (1, 1),
        "binary": (1, 1),
        "category": (1, 1),
    }


def test_column_name_holding_a_number_is_withheld() -> None:
    frame = pl.DataFrame({"ok": ["a"], f"id_{FNR}": [FNR]})
    findings = scan_frame(frame)
    assert findings == [
        Finding("#2 (name withheld)", 1, 0, {"fnr": 1}),
        Finding("#2 (name withheld)", 1, 1, {"fnr": 1}),
    ]


def test_findings_never_contain_a_number() -> None:
    frame = pl.DataFrame({"a": list(NUMBERS), "b": [int(n) for n in NUMBERS]})
    findings = scan_frame(frame)
    assert len(findings) == 2
    text = repr(findings) + str(findings)
    for number in NUMBERS:
        assert number not in text
        assert str(int(number)) not in text


def test_scan_pseudonyms_needs_a_value_and_all_matching() -> None:
    good = "0" * 4 + "ab" * 16
    frame = pl.DataFrame(
        {
            "pseudonym": [good, None],
            "mixed": [good, "x"],
            "upper": [good.upper(), good.upper()],
            "empty": pl.Series([None, None], dtype=pl.String),
            "number": [1, 2],
        }
    )
    assert scan_pseudonyms(frame) == ["pseudonym"]
    assert scan_pseudonyms(frame, pattern="^[0-9A-F]{36}$") == ["upper"]


_NO_DIGITS = st.text(alphabet="abcæøå XYZ-.:;/,()\n", max_size=20)


@settings(max_examples=150, deadline=None)
@given(
    made=person_numbers(),
    cells=st.lists(st.lists(_NO_DIGITS, min_size=3, max_size=3), min_size=1, max_size=30),
    where=st.tuples(st.integers(0, 29), st.integers(0, 2)),
    shape=st.sampled_from(["{}", "{} {}", "{}-{}", "{}  {}"]),
    around=st.tuples(_NO_DIGITS, _NO_DIGITS),
)
def test_injected_number_is_found_in_its_column_and_row(
    made: Made,
    cells: list[list[str]],
    where: tuple[int, int],
    shape: str,
    around: tuple[str, str],
) -> None:
    row, column = where[0] % len(cells), where[1]
    number = made.number
    written = shape.format(number) if shape == "{}" else shape.format(number[:6], number[6:])
    cells[row][column] = f"{around[0]};{written};{around[1]}"
    frame = pl.DataFrame(cells, schema=["a", "b", "c"], orient="row")
    findings = scan_frame(frame)
    assert len(findings) == 1
    assert findings[0].column == "abc"[column]
    assert (findings[0].rows, findings[0].first_row) == (1, row + 1)
    assert findings[0].kinds == {made.kind.value: 1}


@settings(max_examples=50, deadline=None)
@given(made=person_numbers(kinds=(Kind.FNR, Kind.DNR, Kind.HNR), rules=(Rule.CLASSIC,)))
def test_integer_column_with_injected_number(made: Made) -> None:
    frame = pl.DataFrame({"x": [7, 10**9 - 1, int(made.number), 10**11]})
    assert scan_frame(frame) == [Finding("x", 1, 3, {made.kind.value: 1})]


def _delivery() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [FNR, "none", DNR],
            "numeric": [float(FNR2), 1.0, 2.0],
            "age": [30.0, 40.0, 50.0],
        }
    )


@pytest.mark.parametrize(
    ("suffix", "write"),
    [(".dta", pyreadstat.write_dta), (".sav", pyreadstat.write_sav),
     (".xpt", pyreadstat.write_xport)],
)  # fmt: skip
def test_stata_spss_and_sas_files(tmp_path: Path, suffix: str, write: object) -> None:
    path = tmp_path / f"delivery{suffix}"
    write(_delivery(), str(path))  # type: ignore[operator]
    found = _by_column(scan_file(path))
    assert found == {
        "id": Finding("id", 2, 1, {"dnr": 1, "fnr": 1}),
        "numeric": Finding("numeric", 1, 1, {"fnr": 1}),
    }


@pytest.mark.parametrize("separator", [";", ","])
def test_csv_and_parquet_files(tmp_path: Path, separator: str) -> None:
    frame = pl.DataFrame({"id": ["none", FNR], "n": ["1", "2"]})
    csv = tmp_path / "delivery.csv"
    frame.write_csv(csv, separator=separator)
    assert scan_file(csv) == [Finding("id", 1, 2, {"fnr": 1})]
    parquet = tmp_path / "delivery.parquet"
    frame.with_columns(pl.col("id").cast(pl.Binary)).write_parquet(parquet)
    assert scan_file(parquet) == [Finding("id", 1, 2, {"fnr": 1})]


def test_csv_in_another_encoding(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(f"navn;id\nBjørn;{FNR}\n".encode("cp1252"))
    assert scan_file(path) == [Finding("id", 1, 1, {"fnr": 1})]


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="no such file"):
        scan_file(tmp_path / "missing.dta")
    with pytest.raises(FileFormatError, match="cannot scan"):
        scan_file(tmp_path / "delivery.xlsx")
    broken = tmp_path / "broken.sav"
    broken.write_bytes(f"not spss {FNR}".encode())
    with pytest.raises(FileFormatError) as info:
        scan_file(broken)
    assert info.value.path == str(broken)
    assert FNR not in str(info.value)


def test_digits_touching_letters_are_not_a_person_number() -> None:
    """Hex pseudonyms hold long digit runs; one touching a letter is not a number on its own."""
    frame = pl.DataFrame({"pseudonym": [f"00a1{FNR}b2c3", f"x{FNR}", f"{FNR}y"]})
    assert scan_frame(frame) == []
    assert scan_frame(pl.DataFrame({"note": [f"fnr:{FNR}", f"({FNR})"]}))[0].rows == 2
