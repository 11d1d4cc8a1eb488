"""The column API agrees with the scalar API on anything, and takes every column type."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.errors import UsageError
from koble.registries.identifiers import _mod11, fodselsnummer, hpr, orgnr, validate_column
from tests.identifiers.strategies import Made, mod11_numbers, person_numbers, with_separators

ALPHABET = "0123456789012345678901234567890123456789 -.:\u00a0xé٣"


def _scalar_rows(values: list[str | None], test_numbers: bool) -> list[tuple[object, ...]]:
    rows = []
    for value in values:
        a = fodselsnummer.analyse(value, test_numbers=test_numbers)
        rows.append(
            (
                a.compact,
                None if a.kind is None else a.kind.value,
                None if a.rule is None else a.rule.value,
                a.valid,
                None if a.reason is None else a.reason.value,
            )
        )
    return rows


@st.composite
def messy_values(draw: st.DrawFn) -> str | None:
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return None
    if choice == 1:
        return draw(st.text(alphabet=ALPHABET, max_size=14))
    made: Made = draw(person_numbers())
    return with_separators(draw, made.number) if choice == 2 else made.number


@settings(max_examples=300)
@given(st.lists(messy_values(), max_size=40), st.booleans())
def test_column_agrees_with_scalar(values: list[str | None], test_numbers: bool) -> None:
    result = validate_column(values, test_numbers=test_numbers)
    assert result.columns == ["compact", "kind", "rule", "valid", "reason"]
    assert result.rows() == _scalar_rows(values, test_numbers)


@settings(max_examples=100)
@given(st.lists(st.text(alphabet=ALPHABET, max_size=12) | mod11_numbers(orgnr.LENGTHS)))
def test_orgnr_column_agrees_with_scalar(values: list[str]) -> None:
    result = validate_column(values, scheme="orgnr")
    expected = [(_mod11.compact(v), orgnr.is_valid(v), _reason(v, orgnr.LENGTHS)) for v in values]
    assert result.rows() == expected


@settings(max_examples=100)
@given(st.lists(st.text(alphabet=ALPHABET, max_size=12) | mod11_numbers(hpr.LENGTHS)))
def test_hpr_column_agrees_with_scalar(values: list[str]) -> None:
    result = validate_column(values, scheme="hpr")
    expected = [(_mod11.compact(v), hpr.is_valid(v), _reason(v, hpr.LENGTHS)) for v in values]
    assert result.rows() == expected


def _reason(value: str, lengths: range) -> str | None:
    found = _mod11.reason(value, lengths)
    return None if found is None else found.value


def test_real_organisation_and_hpr_numbers() -> None:
    assert orgnr.is_valid("974760673")  # Brønnøysundregistrene
    assert orgnr.is_valid("983 544 622")  # Folkehelseinstituttet
    assert not orgnr.is_valid("974760674")
    for number in ("7125186", "9383840", "9144889"):  # HPR numbers from public test material
        assert hpr.is_valid(number)
    assert not hpr.is_valid("7125187")


def test_arrow_and_chunked_inputs_give_the_same_result() -> None:
    values = ["15108695088", None, "151086-95088", "15108695077", "x"] * 50
    expected = validate_column(values)
    assert validate_column(pa.array(values)).equals(expected)
    chunked = pa.chunked_array([values[:77], values[77:]])
    assert validate_column(chunked).equals(expected)
    sliced = pl.Series(values * 2).slice(len(values), len(values))
    assert validate_column(sliced).equals(expected)
    assert validate_column(pa.array(values, type=pa.large_string())).equals(expected)


def test_large_clean_column_uses_blocks_and_keeps_order() -> None:
    made = ["15108695088", "41108695088", "15108695077"] * 50_000
    result = validate_column(pl.Series(made))
    assert result.height == len(made)
    assert result["valid"].to_list()[:3] == [True, False, False]
    assert result["valid"].sum() == 50_000


def test_empty_and_non_string_columns() -> None:
    assert validate_column([]).height == 0
    with pytest.raises(UsageError, match="must be strings"):
        validate_column(pl.Series([1, 2, 3]))
    with pytest.raises(UsageError, match="unknown identifier scheme"):
        validate_column(["1"], scheme="ssn")  # type: ignore[arg-type]
