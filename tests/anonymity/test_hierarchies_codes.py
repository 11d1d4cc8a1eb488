"""The ICD-10 and ATC code hierarchies: levels and normalisation, ICD-10 blocks by range and
its reference tables, errors that name the row.
"""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.anonymity.hierarchies import AtcHierarchy, Icd10Hierarchy
from koble.anonymity.hierarchies.reference import reference_table
from koble.errors import ColumnError
from tests.anonymity._hierarchy_checks import assert_valid, labels_of


def test_icd10_levels_and_normalisation() -> None:
    g = Icd10Hierarchy().apply(pl.Series("dx", ["J18.9", "J189", " j18.9", "I21", "F32.10"]))
    assert g.level_names == ("code", "category", "block", "chapter", "*")
    assert labels_of(g, 0) == ["J18.9", "J18", "J09-J18", "J00-J99", "*"]
    assert g.codes[0] == g.codes[1] == g.codes[2]
    assert labels_of(g, 3) == ["I21", "I21", "I20-I25", "I00-I99", "*"]
    assert labels_of(g, 4) == ["F32.10", "F32", "F30-F39", "F00-F99", "*"]
    assert_valid(g, 5)


@pytest.mark.parametrize(
    ("code", "block", "chapter"),
    [
        ("A00.1", "A00-A09", "A00-B99"),
        ("B99", "B99-B99", "A00-B99"),
        ("D48.9", "D37-D48", "C00-D48"),
        ("D50.0", "D50-D53", "D50-D89"),
        ("H60.0", "H60-H62", "H60-H95"),
        ("K64.9", "K55-K64", "K00-K93"),
        ("T98.3", "T90-T98", "S00-T98"),
        ("X85", "X85-Y09", "V01-Y98"),
        ("Y05", "X85-Y09", "V01-Y98"),
        ("U07.1", "U00-U49", "U00-U85"),
        ("Z99.9", "Z80-Z99", "Z00-Z99"),
    ],
)
def test_icd10_blocks_by_range(code: str, block: str, chapter: str) -> None:
    g = Icd10Hierarchy().apply(pl.Series("dx", [code]))
    assert g.column(2).to_list() == [block]
    assert g.column(3).to_list() == [chapter]


def test_icd10_table_has_every_chapter_and_disjoint_blocks() -> None:
    blocks = reference_table("icd10_blocks.csv").sort("first")
    assert reference_table("icd10_chapters.csv").height == 22
    assert blocks.height > 250
    firsts, lasts = blocks.get_column("first").to_list(), blocks.get_column("last").to_list()
    assert all(first <= last for first, last in zip(firsts, lasts, strict=True))
    assert all(last < nxt for last, nxt in zip(lasts, firsts[1:], strict=False))


@pytest.mark.parametrize(
    ("value", "problem"), [("J18-9", "not an ICD-10 code"), ("A10", "not in any ICD-10 block")]
)
def test_icd10_errors(value: str, problem: str) -> None:
    with pytest.raises(ColumnError, match=problem) as info:
        Icd10Hierarchy().apply(pl.Series("dx", ["J18.9", value]))
    assert (info.value.column, info.value.row) == ("dx", 2)


def test_atc_levels() -> None:
    g = AtcHierarchy().apply(pl.Series("atc", ["N02BE01", "n02be01", "N02B", "C09AA05"]))
    assert labels_of(g, 0) == ["N02BE01", "N02BE", "N02B", "N02", "N", "*"]
    assert g.codes[0] == g.codes[1]
    assert labels_of(g, 2) == ["N02B", "N02B", "N02B", "N02", "N", "*"]
    assert labels_of(g, 3) == ["C09AA05", "C09AA", "C09A", "C09", "C", "*"]
    assert_valid(g, 4)


def test_atc_error() -> None:
    with pytest.raises(ColumnError, match="not an ATC code") as info:
        AtcHierarchy().apply(pl.Series("atc", ["N02BE01", "N02BE1"]))
    assert info.value.row == 2


@settings(max_examples=40, deadline=None)
@given(
    codes=st.lists(
        st.tuples(
            st.from_regex(r"[A-D][0-9]{2}[A-C][A-C][0-9]{2}", fullmatch=True),
            st.sampled_from([1, 3, 4, 5, 7, 7]),
        ).map(lambda drawn: drawn[0][: drawn[1]]),
        min_size=1,
        max_size=100,
    )
)
def test_atc_property(codes: list[str]) -> None:
    g = AtcHierarchy().apply(pl.Series("atc", codes))
    assert_valid(g, len(codes))
    for level, length in enumerate((7, 5, 4, 3, 1)):
        assert g.column(level).to_list() == [code[:length] for code in codes]
