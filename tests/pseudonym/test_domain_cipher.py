"""koble.pseudonym.domain_cipher: the one picklable key holder, for an engine's workers
(issue 17). It gives koble's pseudonyms bit for bit (the frozen known answers, and
pseudonymise_values on whole columns), survives pickling (an engine ships it), and shows
no key in its repr or its errors."""

from __future__ import annotations

import pickle

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from koble.errors import UsageError
from koble.pseudonym.domain_cipher import domain_cipher
from koble.pseudonym.insecure_cleartext import keyset_from_key
from koble.pseudonym.pseudonymise import pseudonymise_values
from tests.pseudonym.test_scheme import KEY, KNOWN_ANSWERS


def test_known_answers_and_nulls() -> None:
    keyset = keyset_from_key(KEY)
    for (domain, id_scheme, identifier), expected in KNOWN_ANSWERS.items():
        cipher = domain_cipher(keyset, domain, id_scheme)  # type: ignore[arg-type]
        made = cipher.pseudonymise(pa.array([identifier, None, identifier]))
        assert made.to_pylist() == [expected, None, expected]


def test_a_whole_column_is_pseudonymise_values_and_survives_pickling() -> None:
    keyset = keyset_from_key(KEY)
    numbers = pl.Series(np.random.default_rng(3).integers(10**9, 10**11, 3_000))
    ids = numbers.cast(pl.String).str.zfill(11)
    cipher = pickle.loads(pickle.dumps(domain_cipher(keyset, "npr")))
    assert cipher.pseudonymise(ids.to_arrow()).to_pylist() == (
        pseudonymise_values(keyset, "npr", ids).to_list()
    )


def test_no_key_in_its_repr_or_errors() -> None:
    cipher = domain_cipher(keyset_from_key(KEY), "npr")
    assert repr(cipher) == "DomainCipher(domain='npr', version=1, key=<hidden>)"
    assert KEY.hex() not in repr(cipher)
    with pytest.raises(UsageError) as info:
        cipher.pseudonymise(pa.array(["01017012345", "Kari Nordmann"]))
    assert "Kari" not in str(info.value) and "01017012345" not in str(info.value)
