"""Norwegian name keys: spellings of one name agree, different names do not."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from koble.recovery.normalise import name_key, name_tokens, phonetic_key


def _apply(fn: object, names: Sequence[str | None]) -> list[object]:
    assert callable(fn)
    return (
        pl.DataFrame({"n": names}, schema={"n": pl.String}).select(fn(pl.col("n")))["n"].to_list()
    )


def key(name: str | None) -> object:
    return _apply(name_key, [name])[0]


@pytest.mark.parametrize(
    "spellings",
    [
        ["Sæther", "Saether", "SÆTHER", "sæther"],
        ["Bjørnstad", "Bjornstad", "Bjoernstad", "BJØRNSTAD"],
        ["Åsheim", "Aasheim", "ÅSHEIM"],
        ["Hansen", "Hanssen", "Hansson", "Hanson"],
        ["Nilsen", "Nilssen", "Nilsson"],
        ["Kari-Anne", "Kari Anne", "kari  anne ", "Kari–Anne"],
        ["Hansen-Bakke", "Hansen Bakke", "Hanssen-Bakke"],
        ["José", "Jose"],
        ["Müller", "Muller"],
        ["Sørensen", "Sorensen", "Soerensen", "Sørenssen"],
    ],
)
def test_spellings_of_one_name_share_a_key(spellings: list[str]) -> None:
    keys = _apply(name_key, spellings)
    assert len(set(keys)) == 1, keys


@pytest.mark.parametrize(
    ("left", "right"),
    [("Hansen", "Jensen"), ("Olsen", "Nilsen"), ("Berg", "Berge"), ("Åsheim", "Asheim")],
)
def test_different_names_keep_different_keys(left: str, right: str) -> None:
    assert key(left) != key(right)


def test_keys_read_as_expected() -> None:
    assert _apply(name_key, ["Sæther", "Bjørnstad", "Åsheim", "Hanssen", "O'Brien"]) == [
        "saether", "bjornstad", "aasheim", "hansen", "obrien",
    ]  # fmt: skip


def test_sæther_and_sether_agree_only_phonetically() -> None:
    assert key("Sæther") != key("Sether")
    assert len(set(_apply(phonetic_key, ["Sæther", "Saether", "Sether", "Seter"]))) == 1
    assert len(set(_apply(phonetic_key, ["Thor", "Tor"]))) == 1
    assert _apply(phonetic_key, ["Hansen"]) != _apply(phonetic_key, ["Jensen"])


def test_tokens_split_double_and_hyphenated_names() -> None:
    got = _apply(name_tokens, ["Hansen-Bakke", "Kari Anne", "Ødegård", None])
    assert got == [["hansen", "bakke"], ["kari", "anne"], ["odegaard"], None]


def test_missing_and_empty_names_are_null() -> None:
    assert _apply(name_key, [None, "", "  ", "-", "'"]) == [None] * 5
    assert _apply(phonetic_key, [None, ""]) == [None, None]


_LETTERS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzæøåéü -'", max_size=20)
_WRITTEN = str.maketrans({"æ": "ae", "ø": "oe", "å": "aa"})


@given(_LETTERS)
def test_key_is_idempotent_and_plain(name: str) -> None:
    k = key(name)
    if k is None:
        return
    assert isinstance(k, str)
    assert set(k) <= set("abcdefghijklmnopqrstuvwxyz ")
    assert k == k.strip() and "  " not in k
    assert key(k) == k


@given(_LETTERS)
def test_written_forms_and_case_do_not_change_the_key(name: str) -> None:
    assert key(name) == key(name.translate(_WRITTEN)) == key(name.upper())
    assert _apply(phonetic_key, [name]) == _apply(phonetic_key, [name.translate(_WRITTEN)])
