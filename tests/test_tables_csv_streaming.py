"""``read_table`` reads CSV with Polars' own reader: never the whole file decoded in Python.

Before: the file was read into bytes, decoded into one string, and copied into ``StringIO``
(peak 3.8 GB on a 5 M-row file, against 1.1 GB for Polars alone). Every check of the old
reader still holds, and the result is the same as decoding the whole text first.
"""

from __future__ import annotations

import codecs
import csv
import io
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.errors import ColumnError, FileFormatError
from koble.tables import read_table

ALPHABET = "abcxyzÆØÅæøåé019 -"


def big_csv(path: Path, rows: int, encoding: str = "utf-8") -> int:
    """A CSV of ``rows`` rows; its size in bytes."""
    line = "Bjørn;Ærø;0123456789;{}\n"
    with path.open("w", encoding=encoding, newline="") as out:
        out.write("navn;sted;nummer;rad\n")
        for start in range(0, rows, 10_000):
            out.write("".join(line.format(n) for n in range(start, min(rows, start + 10_000))))
    return path.stat().st_size


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252"])
def test_python_never_holds_the_file(tmp_path: Path, encoding: str) -> None:
    """Before: Python allocated the whole file three times over (bytes, str, StringIO)."""
    path = tmp_path / "big.csv"
    size = big_csv(path, 600_000, encoding)
    tracemalloc.start()
    try:
        frame = read_table(path, encoding=encoding)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert frame.height == 600_000 and frame.row(-1) == ("Bjørn", "Ærø", "0123456789", "599999")
    assert peak < size / 4, (peak, size)


def test_an_undecodable_byte_is_named_with_its_row_and_byte(tmp_path: Path) -> None:
    """Before: 'not valid utf-8 at byte 24', with no row."""
    path = tmp_path / "latin.csv"
    path.write_bytes("a;b\n1;2\n3;4\nBj\xf8rn;5\n".encode("latin-1"))
    with pytest.raises(FileFormatError) as caught:
        read_table(path)
    message = str(caught.value)
    assert "not valid utf-8 at byte 14" in message and "row 3" in message, message
    assert "--encoding cp1252" in message


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 4096])
def test_the_byte_is_exact_wherever_the_chunks_fall(tmp_path: Path, chunk: int) -> None:
    path = tmp_path / "split.csv"
    data = "navn;x\nå;1\nø;2\n".encode() + b"\xe6\xb8;3\n"  # a cut-off 3-byte sequence
    path.write_bytes(data)
    with mock.patch("koble.tables._CHUNK", chunk), pytest.raises(FileFormatError) as caught:
        read_table(path)
    cut = data.index(b"\xe6\xb8")
    assert f"at byte {cut}" in str(caught.value)
    assert "row 3" in str(caught.value)


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252", "utf-16"])
def test_every_old_check_holds_in_every_encoding(tmp_path: Path, encoding: str) -> None:
    def write(name: str, text: str) -> Path:
        (tmp_path / name).write_bytes(text.encode(encoding))
        return tmp_path / name

    assert read_table(write("mac.csv", "a;b\rø;1\ræ;2\r"), encoding=encoding).rows() == [
        ("ø", "1"), ("æ", "2")
    ]  # fmt: skip
    with pytest.raises(FileFormatError, match="line 1 holds a bare carriage return"):
        read_table(write("mixed.csv", "a;b\rø;1\næ;2\n"), encoding=encoding)
    with pytest.raises(ColumnError, match="duplicate column names 'a'"):
        read_table(write("dup.csv", "a;a;b\n1;2;3\n"), encoding=encoding)
    with pytest.raises(FileFormatError, match="the file is empty"):
        read_table(write("blank.csv", " \n\n \r\n"), encoding=encoding)
    with pytest.raises(FileFormatError, match="malformed CSV: 3 fields where the header has 2"):
        read_table(write("ragged.csv", "a;b\n1;2\n1;2;3\n"), encoding=encoding)
    with pytest.raises(FileFormatError) as caught:
        read_table(write("ragged2.csv", "a;b\n1;2\n1;2;3\n"), encoding=encoding)
    assert caught.value.row == 2
    bom = "\ufeff" if encoding == "utf-8" else ""  # utf-16 writes its own
    crlf = read_table(write("crlf.csv", f"{bom}a,b\r\nø,1\r\n"), encoding=encoding)
    assert crlf.columns == ["a", "b"] and crlf.rows() == [("ø", "1")]


def whole_text_reader(raw: bytes, encoding: str) -> pl.DataFrame:
    """The reader as it was: decode everything, normalise, parse from a string."""
    text = raw.decode(encoding).removeprefix("\ufeff")
    if "\r" in text and "\n" not in text:
        text = text.replace("\r", "\n")
    first = text.split("\n", 1)[0]
    delimiter = max(";,\t|", key=first.count) if any(d in first for d in ";,\t|") else ";"
    return pl.read_csv(io.StringIO(text), separator=delimiter, infer_schema=False)


@settings(max_examples=60, deadline=None)
@given(
    table=st.lists(
        st.lists(st.text(ALPHABET, min_size=1, max_size=6), min_size=2, max_size=2),
        min_size=1, max_size=8,
    ),
    delimiter=st.sampled_from(";,\t|"),
    line_end=st.sampled_from(["\n", "\r\n", "\r"]),
    bom=st.booleans(),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "latin-1", "utf-16"]),
    chunk=st.sampled_from([1, 3, 7, 1 << 20]),
)  # fmt: skip
def test_the_same_frame_as_decoding_the_whole_text(
    table: list[list[str]], delimiter: str, line_end: str, bom: bool, encoding: str, chunk: int
) -> None:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator=line_end).writerows(
        [["kol_a", "kol_b"], *table]
    )
    text = ("\ufeff" if bom and encoding.startswith("utf-8") else "") + out.getvalue()
    raw = text.encode(encoding)
    with mock.patch("koble.tables._CHUNK", chunk), tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.csv"
        path.write_bytes(raw)
        got = read_table(path, encoding=encoding)
    expected = whole_text_reader(raw, encoding)
    assert got.columns == expected.columns == ["kol_a", "kol_b"]
    assert got.rows() == expected.rows()


class _Counting:
    """An incremental decoder that counts the bytes it is given."""

    given = 0

    def __init__(self, decoder: codecs.IncrementalDecoder) -> None:
        self._decoder = decoder

    def decode(self, data: bytes, final: bool = False) -> str:
        _Counting.given += len(data)
        return self._decoder.decode(data, final)

    def getstate(self) -> tuple[bytes, int]:
        return self._decoder.getstate()


def test_valid_utf8_is_decoded_in_python_only_up_to_its_header(tmp_path: Path) -> None:
    """Before: every byte went through Python's decoder before Polars read the file (about
    0.4 s of one core on a 400 MB file); Polars checks the rows' UTF-8 itself."""
    path = tmp_path / "big.csv"
    size = big_csv(path, 200_000)
    real = codecs.getincrementaldecoder

    def counting(encoding: str) -> Callable[[], _Counting]:
        return lambda: _Counting(real(encoding)())

    _Counting.given = 0
    with mock.patch("koble.tables.codecs.getincrementaldecoder", side_effect=counting):
        frame = read_table(path)
    assert frame.height == 200_000
    assert 0 < _Counting.given <= 2 * (1 << 18) < size  # a chunk or two, not the file


@settings(max_examples=80, deadline=None)
@given(
    rows=st.lists(st.text(ALPHABET, min_size=0, max_size=5), min_size=1, max_size=30),
    bad=st.sampled_from([b"\xff", b"\xf8", b"\xc3", b"\xe6\xb8", b"\xed\xa0\x80", b"\xc0\xaf"]),
    where=st.integers(0, 10_000),
    quoted=st.booleans(),
    chunk=st.sampled_from([1, 5, 1 << 18]),
)  # fmt: skip
def test_a_bad_byte_in_the_rows_is_named_as_by_a_whole_pass(
    rows: list[str], bad: bytes, where: int, quoted: bool, chunk: int
) -> None:
    """Polars refuses the rows' invalid UTF-8 (also inside quotes, also in an overlong or
    surrogate form); the error then names the byte and its row as decoding the whole file
    first did."""
    lines = [f'"{r}";{n}' if quoted else f"{r};{n}" for n, r in enumerate(rows)]
    head = b"navn;nr\n"
    body = "\n".join(lines).encode() + b"\n"
    cut = where % len(body)
    while cut and (body[cut] & 0xC0) == 0x80:  # not inside a character
        cut -= 1
    raw = head + body[:cut] + bad + body[cut:]
    with pytest.raises(UnicodeDecodeError) as expected:
        raw.decode("utf-8")
    with mock.patch("koble.tables._CHUNK", chunk), tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bad.csv"
        path.write_bytes(raw)
        with pytest.raises(FileFormatError) as caught:
            read_table(path)
    message = str(caught.value)
    assert f"not valid utf-8 at byte {expected.value.start}" in message, message
    assert caught.value.row == raw[: expected.value.start].count(b"\n"), message


@pytest.mark.parametrize(
    "text",
    ["a;a\n1;2\n", "a;b\n1;2\n1;2;3\n", "a;b\r1;2\n"],
    ids=["duplicate names", "ragged row", "mixed line ends"],
)
def test_a_bad_byte_is_named_before_any_other_fault(tmp_path: Path, text: str) -> None:
    """As when the whole file was decoded first: a later undecodable byte is the error,
    not the fault Polars or the header check meets first."""
    path = tmp_path / "both.csv"
    path.write_bytes(text.encode() + b"3;4\n" * 70_000 + b"\xff;5\n")
    with pytest.raises(FileFormatError, match="not valid utf-8 at byte"):
        read_table(path)
