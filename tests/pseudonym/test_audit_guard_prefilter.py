"""The audit guard's cheap pre-check for hashes and key ids (issue 17, part 5).

``check_pattern`` runs the standalone person-number rule only on a value the pre-check says
could hold one. The pre-check must never be the reason a number passes: wherever the full
rule finds a number standing alone, the pre-check says "maybe". These tests hold it to that
over text built from everything that decides the rule (digits, Unicode digits, ASCII and
Norwegian letters, every separator, underscores, line breaks, other punctuation) with valid
numbers planted in it, and check that hashes, the values an audit log holds most, skip it.
"""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.errors import UsageError
from koble.pseudonym import audit_guard
from koble.pseudonym.audit import KEY_ID, SHA256_HEX
from koble.pseudonym.audit_guard import check_pattern
from koble.registries.identifiers import fodselsnummer
from koble.registries.identifiers.scan import contains_person_number

#: Valid numbers (a fødselsnummer and a D-number) to plant in the text.
NUMBERS = [
    next(f"010190{n:05d}" for n in range(100000) if fodselsnummer.is_valid(f"010190{n:05d}")),
    next(f"410190{n:05d}" for n in range(100000) if fodselsnummer.is_valid(f"410190{n:05d}")),
]
#: Characters that decide the rule: digits (ASCII and fullwidth), letters (ASCII, Norwegian,
#: Greek), every separator of a number's shapes, and characters that are none of these.
PIECES = list("0123456789０５aZøÅλ _-.:/\u00a0\u2009\u202f#+,;()\n\r\t")


def _written(number: str, style: int) -> str:
    """``number`` in one of the shapes people write it."""
    if style == 0:
        return number
    if style == 1:
        return f"{number[:6]} {number[6:]}"
    if style == 2:
        return f"{number[:2]}.{number[2:4]}.{number[4:6]}_{number[6:]}"
    return f"{number[:6]}-\u00a0{number[6:]}"


@st.composite
def texts(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.sampled_from(PIECES), max_size=30))
    for _ in range(draw(st.integers(0, 2))):
        planted = _written(draw(st.sampled_from(NUMBERS)), draw(st.integers(0, 3)))
        parts.insert(draw(st.integers(0, len(parts))), planted)
    return "".join(parts)


@settings(max_examples=400, deadline=None)
@given(texts())
def test_the_pre_check_never_lets_a_standalone_number_pass(value: str) -> None:
    if contains_person_number(value, standalone=True):
        assert audit_guard._may_hold_standalone(value)


def test_every_character_beside_every_shape() -> None:
    """Each character that decides the rule, before and after each shape of each number: the
    pre-check says "maybe" wherever the full rule finds the number."""
    found = 0
    for number in NUMBERS:
        for style in range(4):
            written = _written(number, style)
            for piece in PIECES:
                for value in (piece + written, written + piece, piece + written + piece):
                    if contains_person_number(value, standalone=True):
                        found += 1
                        assert audit_guard._may_hold_standalone(value), (piece, style)
    assert found > len(NUMBERS) * 4 * len(PIECES)  # most of them stand alone


@pytest.mark.parametrize(
    "value",
    [
        NUMBERS[0],
        f"k:{NUMBERS[0]}",
        f"{NUMBERS[1][:6]} {NUMBERS[1][6:]}",
        f"x_{NUMBERS[0]}.y",
        f"ø {NUMBERS[0]}",
        f"{NUMBERS[0][:2]}.{NUMBERS[0][2:4]}.{NUMBERS[0][4:6]}:{NUMBERS[0][6:]}",
    ],
)
def test_a_number_standing_alone_is_still_refused(value: str) -> None:
    assert audit_guard._may_hold_standalone(value)
    with pytest.raises(UsageError, match="person number") as caught:
        check_pattern("key_id", value, re.compile(r"[^\n]*"), "a key id")
    assert NUMBERS[0] not in str(caught.value) and NUMBERS[1] not in str(caught.value)


def test_numbers_touching_letters_or_digits_need_no_scan() -> None:
    for value in (f"a{NUMBERS[0]}", f"{NUMBERS[0]}b", f"9{NUMBERS[0]}", f"{NUMBERS[0]}0"):
        assert not audit_guard._may_hold_standalone(value)
        assert not contains_person_number(value, standalone=True)


def test_hashes_and_key_ids_skip_the_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """A digest, even one holding a valid number's digits, passes without the column scan;
    an ordinary key id too."""

    def scanned(value: str, *, standalone: bool = False) -> bool:
        raise AssertionError("the full scan ran")

    monkeypatch.setattr(audit_guard, "contains_person_number", scanned)
    digest = ("ab" + NUMBERS[0] + "c" * 64)[:64]
    for value in (digest, *(hashlib.sha256(bytes([i])).hexdigest() for i in range(200))):
        assert check_pattern("output_sha256", value, SHA256_HEX, "sha") == value
    assert check_pattern("key_id", "ttp-2026.k1", KEY_ID, "a key id") == "ttp-2026.k1"
