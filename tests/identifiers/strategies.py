"""Hypothesis strategies that build valid numbers of every class, for the identifier tests."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from hypothesis import assume
from hypothesis import strategies as st

from koble.registries.identifiers._mod11 import check_digit
from koble.registries.identifiers._rules import K1_WEIGHTS, K2_WEIGHTS, KINDS_2032, Kind, Rule

DATE_SHIFT = {
    Kind.FNR: (0, 0),
    Kind.DNR: (40, 0),
    Kind.HNR: (0, 40),
    Kind.TEST_FNR: (0, 80),
    Kind.TEST_DNR: (40, 80),
}


@dataclass(frozen=True)
class Made:
    """A generated valid number and what it was made to be."""

    number: str
    kind: Kind
    rule: Rule
    date: datetime.date | None
    individual: int | None


def _digits(value: int, width: int) -> list[int]:
    return [int(c) for c in f"{value:0{width}d}"]


def finish(body: list[int], residue: int) -> str | None:
    """Append k1 (so that the first sum has ``residue``) and k2; None when either would be 10."""
    k1 = (residue - sum(w * d for w, d in zip(K1_WEIGHTS, body, strict=True))) % 11
    if k1 == 10:
        return None
    k2 = (-sum(w * d for w, d in zip(K2_WEIGHTS, [*body, k1], strict=True))) % 11
    if k2 == 10:
        return None
    return "".join(map(str, [*body, k1, k2]))


@st.composite
def person_numbers(
    draw: st.DrawFn,
    kinds: tuple[Kind, ...] = tuple(Kind),
    rules: tuple[Rule, ...] = tuple(Rule),
    dates: st.SearchStrategy[datetime.date] | None = None,
    individuals: st.SearchStrategy[int] | None = None,
) -> Made:
    """A valid number of one of ``kinds`` under one of ``rules`` (2032 only where allowed)."""
    kind = draw(st.sampled_from(kinds))
    allowed = [r for r in rules if r is Rule.CLASSIC or kind in KINDS_2032]
    assume(allowed)
    rule = draw(st.sampled_from(allowed))
    date: datetime.date | None = None
    individual: int | None = None
    if kind is Kind.FHNR:
        rest = draw(st.lists(st.integers(0, 9), min_size=8, max_size=8))
        body = [draw(st.sampled_from([8, 9])), *rest]
    else:
        if dates is None:
            dates = st.dates(datetime.date(1854, 1, 1), datetime.date(2039, 12, 31))
        date = draw(dates)
        individual = draw(st.integers(0, 999) if individuals is None else individuals)
        day_shift, month_shift = DATE_SHIFT[kind]
        body = (
            _digits(date.day + day_shift, 2)
            + _digits(date.month + month_shift, 2)
            + _digits(date.year % 100, 2)
            + _digits(individual, 3)
        )
    residue = 0 if rule is Rule.CLASSIC else draw(st.sampled_from([1, 2, 3]))
    number = finish(body, residue)
    assume(number is not None)
    assert number is not None
    return Made(number, kind, rule, date, individual)


@st.composite
def mod11_numbers(draw: st.DrawFn, lengths: range) -> str:
    """A valid modulus-11 number (orgnr, HPR) of one of ``lengths``."""
    length = draw(st.sampled_from(list(lengths)))
    payload = "".join(
        map(str, draw(st.lists(st.integers(0, 9), min_size=length - 1, max_size=length - 1)))
    )
    check = check_digit(payload)
    assume(check is not None)
    return f"{payload}{check}"


def with_separators(draw: st.DrawFn, number: str) -> str:
    """``number`` with spaces, hyphens or dots inserted as people type them."""
    out = []
    for i, c in enumerate(number):
        if i and draw(st.integers(0, 9)) == 0:
            out.append(draw(st.sampled_from([" ", "-", ".", "\u00a0", ":"])))
        out.append(c)
    return "".join(out)
