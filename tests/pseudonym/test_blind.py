"""The blind pseudonym API (koble.pseudonym.blind) on top of the RFC 9497 OPRF: the blind
key per keyset version and domain, pseudonyms whatever the blind, deduplicated batches,
refused identifiers named by row, and keys and batches that never leave.
"""

from __future__ import annotations

import copy
import pickle
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.errors import CryptoError, InvalidIdentifier, UsageError
from koble.pseudonym import blind as blind_mode
from koble.pseudonym.blind import BLIND_PSEUDONYM_LENGTH, BlindKey, blind
from koble.pseudonym.hazmat import oprf
from koble.pseudonym.insecure_cleartext import keyset_from_key
from koble.pseudonym.keys import Keyset
from koble.registries.identifiers._rules import Kind
from tests.identifiers.strategies import person_numbers, with_separators
from tests.pseudonym._oprf_vectors import bare
from tests.pseudonym.conftest import clock, seeded

persons = person_numbers(kinds=(Kind.FNR, Kind.DNR)).map(lambda made: made.number)


def keyset() -> Keyset:
    return Keyset.create(randbytes=seeded(1), now=clock)


def pseudonyms(identifiers: list[str], key: BlindKey, seed: int = 7) -> list[str]:
    batch = blind(identifiers, seeded(seed))
    return batch.finalize(key.evaluate(batch.blinded))


def test_blind_key_is_deterministic_per_keyset_version_and_domain() -> None:
    ks = keyset()
    key = BlindKey.from_keyset(ks, "npr")
    assert key.public_key == BlindKey.from_keyset(ks, "npr").public_key
    assert key.key_id == ks.primary.key_id
    assert key.domain == "npr"
    assert key.public_key != BlindKey.from_keyset(ks, "kreftregisteret").public_key
    ks.rotate(randbytes=seeded(2), now=clock)
    assert BlindKey.from_keyset(ks, "npr").public_key != key.public_key
    assert BlindKey.from_keyset(ks, "npr", version=1).public_key == key.public_key


def test_blind_key_derivation_is_frozen() -> None:
    """The documented derivation, step by step, for a known keyset key."""
    ks = keyset_from_key(bytes(range(32)))
    key = BlindKey.from_keyset(ks, "npr")
    seed = oprf_seed(ks, "npr")
    assert (key._secret, key.public_key) == oprf.derive_key_pair(seed, b"npr")


def oprf_seed(ks: Keyset, domain: str) -> bytes:
    from koble.pseudonym.hazmat.primitives import hkdf_sha256

    return hkdf_sha256(ks._domain_key(1, domain), info=b"koble/oprf/v1", salt=b"")


def test_blind_key_never_shows_or_leaves() -> None:
    key = BlindKey.from_keyset(keyset(), "npr")
    assert repr(key) == f"BlindKey(domain='npr', key_id='{key.key_id}')"
    assert key._secret.hex() not in repr(key)
    for leak in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError):
            leak(key)
    with pytest.raises(TypeError):
        BlindKey()


def test_pseudonym_is_the_truncated_rfc_output_in_hex() -> None:
    key = BlindKey.from_keyset(keyset(), "npr")
    [pseudonym] = pseudonyms(["151086 95088"], key)
    assert len(pseudonym) == BLIND_PSEUDONYM_LENGTH == 64
    assert pseudonym == oprf.evaluate(key._secret, b"fnr:15108695088")[:32].hex()


@settings(max_examples=15, deadline=None)
@given(persons, st.integers(0, 2**32), st.integers(0, 2**32))
def test_same_identifier_and_key_give_the_same_pseudonym_whatever_the_blind(
    number: str, first: int, second: int
) -> None:
    key = BlindKey.from_keyset(keyset(), "npr")
    a, b = blind([number], seeded(first)), blind([number], seeded(second))
    if first != second:
        assert a.blinded != b.blinded
    assert a.finalize(key.evaluate(a.blinded)) == b.finalize(key.evaluate(b.blinded))


@settings(max_examples=15, deadline=None)
@given(persons)
def test_domains_are_separated(number: str) -> None:
    ks = keyset()
    [npr] = pseudonyms([number], BlindKey.from_keyset(ks, "npr"))
    [krg] = pseudonyms([number], BlindKey.from_keyset(ks, "kreftregisteret"))
    assert npr != krg


@st.composite
def typed(draw: st.DrawFn, number: str) -> str:
    """``number`` with separators here and there, as people type it."""
    return with_separators(draw, number)


@settings(max_examples=20, deadline=None)
@given(st.data())
def test_dedupe_maps_every_row_back(data: st.DataObject) -> None:
    pool = data.draw(st.lists(persons, min_size=1, max_size=6, unique=True))
    picks = data.draw(st.lists(st.sampled_from(pool), max_size=25))
    rows = [data.draw(typed(number)) for number in picks]
    key = BlindKey.from_keyset(keyset(), "npr")
    batch = blind(rows, seeded(3))
    assert len(batch.blinded) == len(set(picks))
    assert batch.rows == len(rows)
    result = batch.finalize(key.evaluate(batch.blinded))
    alone = {number: pseudonyms([number], key)[0] for number in pool}
    assert result == [alone[number] for number in picks]


def test_the_service_sees_only_distinct_random_elements() -> None:
    number = "15108695088"
    batch = blind([number, number, "151086-95088"], seeded(1))
    assert len(batch.blinded) == 1
    assert number.encode() not in b"".join(batch.blinded)
    assert all(len(element) == 32 for element in batch.blinded)


def test_invalid_identifiers_are_refused_naming_rows_never_values() -> None:
    bad = ["15108695088", "15108695089", None, "1234"]
    with pytest.raises(InvalidIdentifier) as error:
        blind(bad, seeded(1))  # type: ignore[arg-type]
    message = str(error.value)
    assert error.value.row == 2
    assert "rows 2 (check_digit_2), 3 (missing), 4 (wrong_length)" in message
    assert "1510869508" not in message and "1234" not in message
    many = ["01010112345"] * 13
    with pytest.raises(InvalidIdentifier, match=r"13 of 13 .* and 3 more; nothing was blinded"):
        blind(many, seeded(1))


def test_other_schemes_are_prefixed_apart() -> None:
    key = BlindKey.from_keyset(keyset(), "npr")
    hpr = blind(["974760673"], seeded(1), id_scheme="hpr")
    org = blind(["974760673"], seeded(1), id_scheme="orgnr")
    assert hpr.finalize(key.evaluate(hpr.blinded)) != org.finalize(key.evaluate(org.blinded))
    with pytest.raises(UsageError):
        blind(["974760673"], seeded(1), id_scheme="ssn")  # type: ignore[arg-type]


def test_finalize_checks_the_answer_and_runs_once() -> None:
    key = BlindKey.from_keyset(keyset(), "npr")
    batch = blind(["15108695088", "01010010183"], seeded(1))
    evaluated = key.evaluate(batch.blinded)
    with pytest.raises(UsageError, match="returned 1 evaluated elements for 2 blinded"):
        batch.finalize(evaluated[:1])
    with pytest.raises(CryptoError) as error:
        batch.finalize([evaluated[0], bytes(32)])
    assert bare(error)
    with pytest.raises(CryptoError):
        key.evaluate([batch.blinded[0], b"\xff" * 32])
    assert len(batch.finalize(evaluated)) == 2
    with pytest.raises(UsageError, match="already finalised"):
        batch.finalize(evaluated)


def test_evaluated_elements_from_another_key_give_other_pseudonyms() -> None:
    ks = keyset()
    batch = blind(["15108695088"], seeded(1))
    wrong = BlindKey.from_keyset(ks, "kreftregisteret").evaluate(batch.blinded)
    right = pseudonyms(["15108695088"], BlindKey.from_keyset(ks, "npr"))
    assert batch.finalize(wrong) != right


def test_blinded_batch_keeps_its_blinds() -> None:
    batch = blind(["15108695088"], seeded(1))
    assert repr(batch) == "BlindedBatch(rows=1, distinct=1)"
    assert len(batch) == 1
    for leak in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError):
            leak(batch)
    assert blind([], seeded(1)).finalize([]) == []


def test_module_documents_costs() -> None:
    doc = blind_mode.__doc__ or ""
    for topic in ("elements/s", "bytes an element", "oracle", "rate"):
        assert topic in doc


def test_seeded_randomness_is_reproducible() -> None:
    a, b = blind(["15108695088"], seeded(9)), blind(["15108695088"], seeded(9))
    assert a.blinded == b.blinded
    assert blind(["15108695088"], random.Random(10).randbytes).blinded != a.blinded
