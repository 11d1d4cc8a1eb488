"""Delivery files (design.md §1.5): every format round-trips values, dates, nulls and
leading zeros under upper-case names with labels; output is byte-identical for the same
timestamp; bad names and files give koble errors. Also the codebook and the label tables."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pyreadstat
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.errors import FileFormatError, UsageError
from koble.linkage import labels as lab
from koble.linkage.codebook import codebook, render_codebook_markdown, sorted_duplicates
from koble.linkage.formats import (
    FORMATS,
    SUFFIX,
    count_rows,
    delivery_name,
    read_delivery,
    write_delivery,
)
from koble.linkage.sources import synthetic_schemas

STAMP = dt.datetime(2024, 3, 5, 13, 7, 9)
READSTAT = ("stata", "spss", "sas")


def frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "lopenr": ["00012345678", "01234567890", None, "00000000001"],
            "start_date": [dt.date(2020, 1, 2), None, dt.date(1899, 12, 31), dt.date(2024, 2, 29)],
            "care_level": ["inpatient", "day", None, "outpatient"],
            "asa_class": pl.Series([1, None, 3, 5], dtype=pl.Int8),
            "ddd": [1.5, None, 2.25, 100.0],
            "consent": [True, False, None, True],
            "income": pl.Series([0, 3_000_000_000, None, -12], dtype=pl.Int64),
        }
    )


def write(df: pl.DataFrame, folder: Path, fmt: str, when: dt.datetime = STAMP) -> Path:
    path = folder / f"npr.{SUFFIX[fmt]}"
    labels, value_labels = lab.labels_for(df.columns)
    assert write_delivery(df, path, fmt, labels=labels, value_labels=value_labels,
                          timestamp=when) == df.height  # fmt: skip
    return path


def readstat_meta(path: Path) -> Any:
    reader = {".dta": pyreadstat.read_dta, ".sav": pyreadstat.read_sav}
    return reader.get(path.suffix, pyreadstat.read_xport)(
        path, metadataonly=True, output_format="polars"
    )[1]


# --- round trips ---------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(tmp_path: Path, fmt: str) -> None:
    df = frame()
    path = write(df, tmp_path, fmt)
    back = read_delivery(path)
    assert back.columns == [c.upper() for c in df.columns]
    assert count_rows(path) == back.height == df.height
    assert back["LOPENR"].to_list() == df["lopenr"].to_list()  # leading zeros, null kept
    assert back["CARE_LEVEL"].to_list() == df["care_level"].to_list()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    if fmt == "parquet":
        assert back.equals(df.rename(str.upper))
    elif fmt == "csv":
        assert back.schema == pl.Schema({c: pl.String for c in back.columns})
        expected = ["2020-01-02", None, "1899-12-31", "2024-02-29"]
        assert back["START_DATE"].to_list() == expected
        assert back["CONSENT"].to_list() == ["true", "false", None, "true"]
        assert back["INCOME"].to_list() == ["0", "3000000000", None, "-12"]
    else:
        assert back["START_DATE"].dtype == pl.Date
        assert back["START_DATE"].to_list() == df["start_date"].to_list()
        for name in ("asa_class", "ddd", "consent", "income"):
            want = df[name].cast(pl.Float64).to_list()
            assert back[name.upper()].cast(pl.Float64).to_list() == want, name


def test_parquet_labels_in_field_metadata(tmp_path: Path) -> None:
    schema = pq.read_schema(write(frame(), tmp_path, "parquet"))
    assert schema.field("START_DATE").metadata[b"label"] == b"Startdato"
    assert schema.field("LOPENR").metadata[b"label"] == "Løpenummer (prosjektspesifikt)".encode()
    assert b"Poliklinisk" in schema.field("CARE_LEVEL").metadata[b"value_labels"]


@pytest.mark.parametrize("fmt", READSTAT)
def test_readstat_labels(tmp_path: Path, fmt: str) -> None:
    meta = readstat_meta(write(frame(), tmp_path, fmt))
    assert meta.column_names_to_labels["START_DATE"] == "Startdato"
    assert meta.column_names_to_labels["ASA_CLASS"] == "ASA-klasse"
    codes = meta.variable_value_labels
    if fmt == "sas":
        assert codes == {}
        return
    assert codes["ASA_CLASS"][3] == "Alvorlig systemsykdom"
    assert codes["CONSENT"] == {0: "Ikke samtykket", 1: "Samtykket"}
    # Stata labels integers only: the string codes stay in the codebook; SPSS keeps both.
    assert ("CARE_LEVEL" in codes) == (fmt == "spss")
    assert "INCOME" not in codes


def test_empty_and_all_null_columns(tmp_path: Path) -> None:
    df = pl.DataFrame({"a": pl.Series([], dtype=pl.String), "b": pl.Series([], dtype=pl.Date)})
    nulls = pl.DataFrame({"a": pl.Series([None, None], dtype=pl.String), "b": [None, None]})
    for fmt in FORMATS:
        assert count_rows(write(df, tmp_path, fmt)) == 0
        back = read_delivery(write(nulls, tmp_path, fmt))
        assert back.height == 2 and back["A"].null_count() == 2, fmt


NO_PANDAS = """
import sys
sys.modules["pandas"] = None  # importing pandas now fails
import datetime as dt, pathlib, polars as pl
from koble.linkage.formats import count_rows, read_delivery, write_delivery
df = pl.DataFrame({"a": ["01", None], "b": [dt.date(2020, 1, 1), None]})
for name in ("x.dta", "x.sav", "x.xpt"):
    path = pathlib.Path(sys.argv[1]) / name
    fmt = {"dta": "stata", "sav": "spss", "xpt": "sas"}[name[2:]]
    write_delivery(df, path, fmt, labels={"a": "A"}, timestamp=dt.datetime(2024, 1, 1))
    assert count_rows(path) == 2 and read_delivery(path)["A"].to_list() == ["01", None]
"""


def test_readstat_formats_need_no_pandas(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-c", NO_PANDAS, str(tmp_path)], capture_output=True)
    assert run.returncode == 0, run.stderr.decode()


# --- determinism and time stamps -----------------------------------------------------------
def test_same_timestamp_same_bytes(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    paths = [write(frame(), first, fmt) for fmt in FORMATS]
    time.sleep(1.1)  # the writers' own clocks have moved on
    again = [write(frame(), second, fmt) for fmt in FORMATS]
    for one, two in zip(paths, again, strict=True):
        assert one.read_bytes() == two.read_bytes(), one.suffix


@pytest.mark.parametrize(
    ("fmt", "stamps"),
    [("stata", [b"\x1105 Mar 2024 13:07"]), ("spss", [b"05 Mar 2413:07:09"]),
     ("sas", [b"05MAR24:13:07:09"] * 4)],
)  # fmt: skip
def test_timestamp_is_stamped(tmp_path: Path, fmt: str, stamps: list[bytes]) -> None:
    data = write(frame(), tmp_path, fmt).read_bytes()
    head = data[:512]
    at = {"stata": [head.find(b"<timestamp>") + 11], "spss": [92], "sas": [144, 160, 464, 480]}
    assert [head[i : i + len(s)] for i, s in zip(at[fmt], stamps, strict=True)] == stamps
    meta = readstat_meta(tmp_path / f"npr.{SUFFIX[fmt]}")
    expected = STAMP.replace(second=0) if fmt == "stata" else STAMP
    assert meta.creation_time == expected
    other = write(frame(), tmp_path, fmt, dt.datetime(2031, 12, 24, 23, 59, 58)).read_bytes()
    assert other != data and len(other) == len(data)


def test_aware_timestamp_is_utc(tmp_path: Path) -> None:
    oslo = dt.timezone(dt.timedelta(hours=1))
    aware = write(frame(), tmp_path, "spss", STAMP.replace(hour=14, tzinfo=oslo))
    assert aware.read_bytes()[92:109] == b"05 Mar 2413:07:09"


# --- errors --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["", "1abc", "a-b", "Tromsø", "x y", "a" * 33])
def test_invalid_names(name: str) -> None:
    with pytest.raises(UsageError):
        delivery_name(name)


def test_names_uppercased() -> None:
    assert delivery_name("start_date") == "START_DATE"
    assert delivery_name("_x" + "a" * 30) == "_X" + "A" * 30


@pytest.mark.parametrize(
    ("fmt", "df"),
    [("spss", pl.DataFrame({"by": [1]})), ("spss", pl.DataFrame({"_x": [1]})),
     ("stata", pl.DataFrame({"_n": [1]})), ("csv", pl.DataFrame({"a": [1], "A": [2]})),
     ("parquet", pl.DataFrame({"9a": [1]})),
     ("stata", pl.DataFrame({"big": pl.Series([2**60], dtype=pl.Int64)})),
     ("csv", pl.DataFrame({"nested": [[1, 2]]}))],
)  # fmt: skip
def test_unwritable_frames(tmp_path: Path, fmt: str, df: pl.DataFrame) -> None:
    with pytest.raises(UsageError):
        write(df, tmp_path, fmt)
    assert list(tmp_path.iterdir()) == []


def test_bad_requests(tmp_path: Path) -> None:
    df = frame()
    with pytest.raises(UsageError, match="unknown delivery format"):
        write_delivery(df, tmp_path / "x.xlsx", "excel", labels={}, timestamp=STAMP)
    with pytest.raises(UsageError, match=r"must end in \.dta"):
        write_delivery(df, tmp_path / "x.csv", "stata", labels={}, timestamp=STAMP)
    with pytest.raises(UsageError, match="too long"):
        write_delivery(df, tmp_path / "x.dta", "stata", labels={"ddd": "x" * 81}, timestamp=STAMP)
    # a missing directory is created, as for every file koble writes (koble.files.atomic_write)
    assert write_delivery(df, tmp_path / "no" / "x.csv", "csv", labels={}, timestamp=STAMP)
    (tmp_path / "file").write_text("")
    with pytest.raises(FileFormatError):  # OutputError: cannot write under a regular file
        write_delivery(df, tmp_path / "file" / "x.csv", "csv", labels={}, timestamp=STAMP)
    with pytest.raises(UsageError):
        read_delivery(tmp_path / "x.txt")


@pytest.mark.parametrize("fmt", FORMATS)
def test_unreadable_files(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"bad.{SUFFIX[fmt]}"
    with pytest.raises(FileFormatError, match="not found"):
        read_delivery(path)
    path.write_bytes(b"\x00\x01 not a file 12345678901 \xff" * 3)
    for read in (read_delivery, count_rows):
        if fmt == "csv":
            continue  # any bytes are some CSV
        with pytest.raises(FileFormatError) as info:
            read(path)
        assert "12345678901" not in str(info.value)


# --- property: parquet and csv keep rows and values ----------------------------------------
ROWS = st.lists(
    st.tuples(
        st.none() | st.text("0123456789", min_size=11, max_size=11),
        st.none() | st.integers(-(2**40), 2**40),
        st.none() | st.dates(dt.date(1900, 1, 1), dt.date(2100, 12, 31)),
        st.none() | st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=8),
    ),
    max_size=30,
)


@settings(max_examples=40, deadline=None)
@given(ROWS)
def test_property_parquet_and_csv(rows: list[tuple[Any, ...]]) -> None:
    schema = {"id": pl.String, "n": pl.Int64, "day": pl.Date, "text": pl.String}
    df = pl.DataFrame(rows, schema=schema, orient="row")
    with tempfile.TemporaryDirectory() as folder:
        parquet = read_delivery(write(df, Path(folder), "parquet"))
        assert parquet.equals(df.rename(str.upper))
        path = write(df, Path(folder), "csv")
        assert count_rows(path) == df.height
        assert read_delivery(path).equals(df.cast(pl.String).rename(str.upper))


# --- codebook ------------------------------------------------------------------------------
def test_codebook_counts() -> None:
    df = pl.DataFrame(
        {
            "lopenr": ["0001", "0001", "0002", None, "0001"],
            "birth_date": [dt.date(2000, 1, 1)] * 5,
            "care_level": ["day", "day", "inpatient", None, "outpatient"],
        }
    )
    labels, value_labels = lab.labels_for(df.columns)
    book = codebook({"npr.parquet": df, "anon.csv": df.drop("lopenr")}, labels=labels,
                    value_labels=value_labels, identifying=set(lab.IDENTIFYING))  # fmt: skip
    anon, npr = book.files
    assert [anon.file, npr.file] == ["anon.csv", "npr.parquet"]
    assert (npr.rows, npr.persons, npr.duplicate_rows) == (5, 2, 1)
    assert (anon.persons, anon.duplicate_rows) == (None, 1)
    flags = {v.name: v.identifying for v in npr.variables}
    assert flags == {"LOPENR": True, "BIRTH_DATE": True, "CARE_LEVEL": False}
    care = npr.variables[2]
    assert (care.original, care.type, care.nulls) == ("care_level", "string", 1)
    assert care.label == "Omsorgsnivå"
    assert [c.code for c in care.codes or []] == ["day", "inpatient", "outpatient"]
    text = render_codebook_markdown(book)
    assert "| CARE_LEVEL | care_level | string | Omsorgsnivå | 1 | nei |" in text
    assert "- Dupliserte rader: 1" in text and "| outpatient | Poliklinisk kontakt |" in text
    again = codebook({"anon.csv": df.drop("lopenr"), "npr.parquet": df}, labels=labels,
                     value_labels=value_labels, identifying=set(lab.IDENTIFYING))  # fmt: skip
    assert render_codebook_markdown(again) == text


# --- labels --------------------------------------------------------------------------------
def test_labels_cover_every_synthetic_variable() -> None:
    linkage = {"link_method", "match_probability"}  # identity recovery's, every registry's
    variables = {v for names in synthetic_schemas().values() for v in names} | {"lopenr"} | linkage
    assert variables - set(lab.LABELS) == set()
    assert set(lab.VALUE_LABELS) | set(lab.CLASSIFICATIONS) <= variables
    for name in variables:
        delivery_name(name)
    labels, value_labels = lab.labels_for(["stage", "unknown_col"])
    assert labels == {"stage": "Stadium", "unknown_col": "unknown_col"}
    assert list(value_labels) == ["stage"]


def test_code_lists_match_the_synthetic_world() -> None:
    from koble.synth import abort, feeds, health, mfr, npr

    codes = lab.VALUE_LABELS
    assert set(codes["care_level"]) == set(npr.CARE_LEVELS)
    assert set(codes["delivery"]) == set(mfr.DELIVERY)
    assert set(codes["stage"]) == set(health.STAGES)
    assert set(codes["fracture_type"]) == set(health.FRACTURES)
    assert set(codes["operation"]) == set(health.OPERATIONS)
    assert set(codes["service_type"]) == set(feeds.SERVICES)
    assert all(set(codes[s]) == {1, 2, 3, 4, 5} for s in feeds.SCORES)
    assert set(codes["age_group"]) == set(abort.AGE_GROUPS)
    assert set(codes["method"]) == set(abort.METHODS)


@given(
    st.lists(
        st.tuples(
            st.integers(1, 4),
            st.one_of(st.none(), st.sampled_from(["A01", "B02", "æøå"])),
            st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=False, width=32)),
        ),
        max_size=40,
    )
)
@settings(max_examples=200, deadline=None)
def test_sorted_duplicates_counts_rows_minus_distinct_rows(rows: list[Any]) -> None:
    """The extract's duplicate count, taken from adjacent rows of the sorted frame, is the
    codebook's definition (rows minus distinct rows), nulls and NaN included."""
    frame = pl.DataFrame(
        rows, schema={"lopenr": pl.Int64, "icd": pl.String, "ddd": pl.Float64}, orient="row"
    ).sort(["lopenr", "icd", "ddd"], nulls_last=True)
    expected = frame.height - frame.n_unique() if frame.height else 0
    assert sorted_duplicates(frame) == expected
    book = codebook({"f": frame}, labels={}, value_labels={}, identifying=set())
    assert book.files[0].duplicate_rows == expected


@settings(max_examples=5, deadline=None)
@given(st.lists(st.integers(min_value=60_000, max_value=130_000), min_size=1, max_size=2))
def test_parquet_bytes_do_not_depend_on_chunks(sizes: list[int]) -> None:
    """The same rows in other chunks (DuckDB hands over 122,880-row batches, Spark one per
    partition) give the same file: the writer's row groups do not follow the chunks."""
    whole = pl.concat([frame()] * 70_000).rechunk()
    cuts, at = [], 0
    for size in sizes:
        cuts.append(whole.slice(at, size))
        at += size
    chunked = pl.concat([*cuts, whole.slice(at)], rechunk=False)
    assert chunked.n_chunks() > 1 and chunked.equals(whole)
    with tempfile.TemporaryDirectory() as made:
        one, two = Path(made) / "one", Path(made) / "two"
        one.mkdir()
        two.mkdir()
        assert write(whole, one, "parquet").read_bytes() == (
            write(chunked, two, "parquet").read_bytes()
        )
