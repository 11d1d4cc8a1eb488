"""Property tests: the vectorised number builders only ever produce valid, distinct numbers."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.registries.identifiers import fodselsnummer, hpr, orgnr
from koble.synth.numbers import (
    KIND_DNR,
    KIND_FNR,
    KIND_HNR,
    format_ids,
    mod11_numbers,
    person_numbers,
)
from koble.synth.rng import stream


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 3000), days=st.integers(1, 40000))
def test_person_numbers_always_valid_and_distinct(seed: int, n: int, days: int) -> None:
    rng = stream(seed, "hypothesis")
    # Few distinct birth days for small ``days``: stresses the per-day number ranges.
    birth = rng.integers(-25000, -25000 + min(days, 50000), size=n).astype(np.int32)
    male = rng.random(n) < 0.5
    kind = rng.choice([KIND_FNR, KIND_DNR, KIND_HNR], size=n, p=[0.8, 0.15, 0.05]).astype(np.int8)
    rule = (rng.random(n) < 0.2) & (kind != KIND_HNR)
    if days < 10:
        birth = birth[:200]
        male, kind, rule = male[:200], kind[:200], rule[:200]
    ids = person_numbers(rng, birth, male, kind, rule)
    assert len(np.unique(ids)) == len(ids)
    for value, is_2032, is_male in zip(format_ids(ids).to_pylist(), rule, male, strict=True):
        found = fodselsnummer.analyse(value)
        assert found.valid, value
        assert (found.rule == "2032") == is_2032
        if not is_2032:
            assert fodselsnummer.sex(value) == ("M" if is_male else "F")


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 500))
def test_mod11_numbers_valid_and_distinct(seed: int, n: int) -> None:
    rng = stream(seed, "mod11")
    org = format_ids(mod11_numbers(rng, n, 9, 80_000_000, 100_000_000), 9).to_pylist()
    assert len(set(org)) == n and all(orgnr.is_valid(v) for v in org)
    hprs = format_ids(mod11_numbers(rng, n, 7, 100_000, 1_000_000), 7).to_pylist()
    assert len(set(hprs)) == n and all(hpr.is_valid(v) for v in hprs)


def test_leading_zeros_kept() -> None:
    assert format_ids(np.array([1019012345], dtype=np.int64)).to_pylist() == ["01019012345"]
