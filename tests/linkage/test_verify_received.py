"""The researcher's column-by-column read of a received Parquet file
(:mod:`koble.linkage.received`) finds what a read of the whole file finds.

Each file is scanned both ways: by :func:`scan_parquet` from its bytes (text columns by
their dictionary entries, numeric ones after a range probe, dates not read) and by the whole
read the check used before (:func:`read_delivery`, :func:`scan_frame`, :func:`scan_pseudonyms`).
The two must agree on every finding (column, rows, first row, kinds) and every pseudonym
column, and the expected findings are asserted outright too, so that both cannot be wrong
together: a person number hidden in a numeric column among in-range values, in text, in a
Categorical, in a late row group, in a file written without dictionaries, in bytes and in
nested values; pseudonym columns whose one odd value sits in a late row group.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from koble.linkage.formats import read_delivery
from koble.linkage.received import read_bytes, scan_parquet
from koble.linkage.scan import scan_pseudonyms
from koble.linkage.verify import _distinct_text, verify_delivery
from koble.pseudonym.scheme import PSEUDONYM_LENGTH
from koble.registries.identifiers.scan import STORED_ONLY, Finding, scan_columns, scan_frame
from tests.linkage.test_hardening_verify import FNR, OPERATOR
from tests.linkage.test_verify_scans import _deliver, sign_delivery

ZERO_FNR = "01038510009"  # a valid fødselsnummer with a leading zero: 1038510009 as a number
PSEUDONYM = ("0123456789abcdef" * 4)[:PSEUDONYM_LENGTH]
OTHER = PSEUDONYM[::-1]
ROWS = 5_000


def _write(path: Path, frame: pl.DataFrame, **options: Any) -> bytes:
    """``frame`` as Parquet by pyarrow in row groups of 1,000 rows (so row 4,000 on is in
    the fifth), with ``options`` for the writer; the file's bytes."""
    pq.write_table(frame.to_arrow(), path, row_group_size=1_000, **options)
    return path.read_bytes()


def _whole(path: Path) -> tuple[list[Finding], list[str]]:
    """Both scans as the check made them before: the file read whole."""
    frame = read_delivery(path)
    distinct = _distinct_text(frame)
    columns = [c for c, values in distinct.items() if scan_pseudonyms(values.to_frame())]
    return scan_frame(frame, distinct=distinct), columns


def _both(path: Path, frame: pl.DataFrame, **options: Any) -> tuple[list[Finding], list[str]]:
    scanned = scan_parquet(_write(path, frame, **options))
    assert scanned is not None
    assert scanned == _whole(path)
    return scanned


def _late(values: list[Any], hidden: Any, row: int = 4_321) -> list[Any]:
    return [hidden if i == row else v for i, v in enumerate(values)]


@pytest.mark.parametrize("dictionary", [True, False])
def test_a_number_in_a_late_row_group_of_text_is_found(tmp_path: Path, dictionary: bool) -> None:
    codes = _late(["I21", "E11", None, "J45"] * (ROWS // 4), f"see {FNR}")
    frame = pl.DataFrame({"lopenr": range(ROWS), "icd10": codes})
    found, pseudonyms = _both(tmp_path / "f.parquet", frame, use_dictionary=dictionary)
    assert [(f.column, f.rows, f.first_row) for f in found] == [("icd10", 1, 4_322)]
    assert pseudonyms == []


def test_a_number_in_a_categorical_is_found(tmp_path: Path) -> None:
    codes = _late(["A10", "B20"] * (ROWS // 2), ZERO_FNR[1:])  # a spreadsheet's lost zero
    frame = pl.DataFrame({"atc": pl.Series(codes, dtype=pl.Categorical)})
    path = tmp_path / "c.parquet"
    frame.write_parquet(path, row_group_size=1_000)
    scanned = scan_parquet(path.read_bytes())
    assert scanned == _whole(path)
    assert scanned is not None
    assert [(f.column, f.rows, f.first_row) for f in scanned[0]] == [("atc", 1, 4_322)]


@pytest.mark.parametrize("dtype", [pl.Int64, pl.UInt64, pl.Float64])
def test_a_number_among_in_range_numbers_is_found(tmp_path: Path, dtype: pl.DataType) -> None:
    """Many 10- and 11-digit values that are no person number pass the range probe; the
    one that is, late in the file, is found by its row."""
    values = _late([10**10 + 7 * i for i in range(ROWS)], int(ZERO_FNR))
    frame = pl.DataFrame({"amount": pl.Series(values, dtype=dtype), "small": range(ROWS)})
    found, _ = _both(tmp_path / "n.parquet", frame)
    assert [(f.column, f.rows, f.first_row) for f in found] == [("amount", 1, 4_322)]


def test_numbers_out_of_range_are_not_read_by_row(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {
            "lopenr": range(ROWS),
            "ddd": [float("nan"), 1.5, float("inf"), -(10**12)] * (ROWS // 4),
            "big": [10**11 + i for i in range(ROWS)],
            "when": [datetime.date(2020, 1, 1)] * ROWS,
        }
    )
    assert _both(tmp_path / "o.parquet", frame) == ([], [])


def test_a_column_name_a_binary_and_a_nested_column_are_scanned(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {
            f"id {FNR}": range(ROWS),
            "raw": _late([b"code"] * ROWS, f"id:{FNR}".encode()),
            "nested": _late([[1, 2]] * ROWS, [int(FNR)]),
        }
    )
    found, _ = _both(tmp_path / "b.parquet", frame)
    assert [(f.column, f.rows, f.first_row) for f in found] == [
        ("#1 (name withheld)", 1, 0),
        ("raw", 1, 4_322),
        ("nested", 1, 4_322),
    ]


@pytest.mark.parametrize("dtype", [pl.String, pl.Categorical])
def test_pseudonym_columns_are_judged_by_the_values_rows_hold(
    tmp_path: Path, dtype: pl.DataType
) -> None:
    keys = [PSEUDONYM, None, OTHER] * (ROWS // 3 + 1)
    frame = pl.DataFrame(
        {
            "key": pl.Series(keys[:ROWS], dtype=dtype),
            "odd_late": pl.Series(_late(keys[:ROWS], "not a key"), dtype=dtype),
            "odd_first": pl.Series(["not a key", *keys[1:ROWS]], dtype=dtype),
            "empty": pl.Series([None] * ROWS, dtype=dtype),
        }
    )
    assert _both(tmp_path / "p.parquet", frame) == ([], ["key"])


def _unused_entries(path: Path) -> None:
    """A file whose one column's dictionary stores a non-key and a person number that no row
    holds (a writer may keep unused entries; a forged file may hide one there)."""
    indices = pa.array([0, 1] * 500, pa.int32())
    dictionary = pa.array([PSEUDONYM, OTHER, "not a key", FNR])
    table = pa.table({"key": pa.DictionaryArray.from_arrays(indices, dictionary)})
    pq.write_table(table, path)


def test_an_unused_dictionary_entry_is_no_value_but_its_number_is_in_the_file(
    tmp_path: Path,
) -> None:
    """An entry no row holds is no value: it hides no pseudonym column. But a person number
    stored there is in the bytes the researcher received, so it is found, as stored in the
    file and in no row (which the read of the whole file, values only, never saw)."""
    path = tmp_path / "u.parquet"
    _unused_entries(path)
    scanned = scan_parquet(path.read_bytes())
    assert _whole(path) == ([], ["key"])
    assert scanned == ([Finding("key", 0, STORED_ONLY, {"fnr": 1})], ["key"])


def test_the_check_fails_a_number_stored_in_no_row(tmp_path: Path) -> None:
    """End to end: the researcher's check fails such a file, naming the column and where the
    number is, never the number."""
    _unused_entries(tmp_path / "extract.parquet")
    frame = pl.read_parquet(tmp_path / "extract.parquet")
    assert FNR not in frame["key"].cast(pl.String).to_list()
    sign_delivery(tmp_path / "extract.parquet", frame.height)
    report = verify_delivery(tmp_path, key_id=OPERATOR.key_id)
    failed = {c.name: c.detail for c in report.checks if not c.ok}
    assert failed["identifier scan extract.parquet"] == (
        "fødselsnummer-like values in key (stored in the file's dictionary, in no row)"
    )
    assert FNR not in report.to_text()


def test_an_empty_file_and_bytes_that_are_not_parquet(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {"icd10": pl.Series([], dtype=pl.String), "n": pl.Series([], dtype=pl.Int64)}
    )
    assert _both(tmp_path / "e.parquet", frame) == ([], [])
    assert scan_parquet(b"PAR1 not parquet") is None  # the whole read then says why


def test_read_bytes_hashes_what_it_read(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc")
    assert read_bytes(path) == (
        b"abc",
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    )


def test_the_check_names_a_number_in_a_late_row_group(tmp_path: Path) -> None:
    """End to end: the delivery check reports the numeric column and its row, never the
    number, and still fails a file changed after signing."""
    values = _late(list(range(ROWS)), int(ZERO_FNR))
    _deliver(tmp_path, pl.DataFrame({"lopenr": values, "icd10": ["I21"] * ROWS}))
    report = verify_delivery(tmp_path, key_id=OPERATOR.key_id)
    checks = {c.name: (c.ok, c.detail) for c in report.checks}
    assert checks["identifier scan extract.parquet"] == (
        False,
        "fødselsnummer-like values in lopenr (1 rows, first row 4322)",
    )
    assert ZERO_FNR not in report.to_text() and ZERO_FNR[1:] not in report.to_text()
    data = tmp_path / "extract.parquet"
    data.write_bytes(data.read_bytes() + b"\0")
    checks = {c.name: c for c in verify_delivery(tmp_path, key_id=OPERATOR.key_id).checks}
    assert checks["file extract.parquet"].detail == "SHA-256 differs from the manifest"


def test_narrow_integer_columns_are_probed_without_overflow(tmp_path: Path) -> None:
    """A 16-bit column cannot reach ten digits, a 32-bit one can (a person number that lost
    its leading zero fits in an unsigned one)."""
    frame = pl.DataFrame(
        {
            "quantity": pl.Series([1, 3, -2] * 1_000, dtype=pl.Int16),
            "id32": pl.Series(_late(list(range(3_000)), int(ZERO_FNR), 2_500), dtype=pl.UInt32),
        }
    )
    found, _ = _both(tmp_path / "w.parquet", frame)
    assert [(f.column, f.rows, f.first_row) for f in found] == [("id32", 1, 2_501)]


def test_scan_columns_reads_only_the_columns_it_must() -> None:
    """A date column, and a text column whose distinct values hold no number, are never
    asked for; a text column whose distinct values hold one is, and its rows are counted."""
    frame = pl.DataFrame(
        {
            "when": [datetime.date(2020, 1, 1)] * 4,
            "clean": ["I21", "E11", "I21", None],
            "dirty": ["I21", FNR, FNR, "E11"],
        }
    )
    asked: list[str] = []

    def column(name: str) -> pl.Series:
        asked.append(name)
        return frame[name]

    distinct = {n: frame[n].unique() for n in ("clean", "dirty")}
    found = scan_columns(frame.schema, column, distinct=distinct)
    assert asked == ["dirty"]
    assert [(f.column, f.rows, f.first_row) for f in found] == [("dirty", 2, 2)]
