"""A CSV header without quotes is split from the line decoded already, not read by Polars.

Polars asked for the first row maps the whole file first (a tenth of a second at 400 MB);
the header line is at hand from the pass that sniffs the delimiter. The names must be the
ones Polars' reader gives (duplicate names are refused by them, and Categorical columns are
chosen by them), so the split is compared against Polars on arbitrary header lines.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from unittest import mock

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import koble.tables
from koble.errors import ColumnError
from koble.tables import _header, read_table

# delimiters, a space, letters (Norwegian too), digits and what may end a line
NAME_CHARS = "ab Zæøå_-.019;,|\t"


@settings(max_examples=300)
@given(
    names=st.lists(st.text(NAME_CHARS, max_size=6), min_size=1, max_size=6),
    delimiter=st.sampled_from([";", ",", "\t", "|"]),
    crlf=st.booleans(),
)
def test_the_split_header_is_the_one_polars_reads(
    names: list[str], delimiter: str, crlf: bool
) -> None:
    line = delimiter.join(names) + ("\r" if crlf else "")
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "t.csv"
        source.write_text(line + "\n" + delimiter.join("v" for _ in names) + "\n", "utf-8")
        if not line.removesuffix("\r").strip():
            return  # an empty header line goes to Polars (below)
        assert _header(source, delimiter, line) == _header(source, delimiter)


def test_a_quoted_or_empty_header_is_left_to_polars(tmp_path: Path) -> None:
    source = tmp_path / "q.csv"
    source.write_text('"a;b";c\n1;2\n', "utf-8")
    with mock.patch.object(koble.tables.pl, "read_csv", wraps=pl.read_csv) as reader:
        assert _header(source, ";", '"a;b";c') == ("a;b", "c")
        assert reader.call_count == 1
        assert _header(source, ";", "") == ("a;b", "c")  # no line given
        assert reader.call_count == 2


def test_read_table_reads_the_header_without_polars(tmp_path: Path) -> None:
    """One Polars read of the file in all: the rows; the header comes from the first line."""
    source = tmp_path / "t.csv"
    source.write_text("a;b;c\r\n1;2;3\r\n", "utf-8")
    with mock.patch.object(koble.tables.pl, "read_csv", wraps=pl.read_csv) as reader:
        frame = read_table(source, categorical=["b"])
    assert reader.call_count == 1
    assert frame.columns == ["a", "b", "c"]
    assert frame.schema["b"] == pl.Categorical
    assert frame.row(0) == ("1", "2", "3")


@pytest.mark.parametrize("header", ["fnr;x;fnr", "fnr;x;fnr\r"])
def test_duplicate_names_are_still_refused(tmp_path: Path, header: str) -> None:
    source = tmp_path / "d.csv"
    source.write_bytes((header + "\n1;2;3\n").encode())
    with pytest.raises(ColumnError, match="duplicate column names 'fnr'"):
        read_table(source)


def test_a_header_longer_than_the_first_chunk_is_read_whole(tmp_path: Path) -> None:
    """A first line past the 1 MiB kept of it is not split from the part kept."""
    names = [f"c{i:07d}" for i in range(200_000)]  # 1.8 MB of header
    source = tmp_path / "wide.csv"
    source.write_text(";".join(names) + "\n" + ";".join("v" for _ in names) + "\n", "utf-8")
    seen: list[tuple[str, ...]] = []

    def header(*args: object) -> tuple[str, ...]:
        seen.append(_header(*args))  # type: ignore[arg-type]
        return seen[-1]

    with mock.patch.object(koble.tables, "_header", header):
        assert read_table(source).columns == names
    assert seen == [tuple(names)]
