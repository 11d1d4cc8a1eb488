"""Re-identification (authorised, audited) and re-keying; project serial numbers."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.errors import AuthorisationError, ColumnError
from koble.pseudonym.auditing import MemoryAudit
from koble.pseudonym.insecure_cleartext import keyset_from_key
from koble.pseudonym.keys import Keyset
from koble.pseudonym.pseudonymise import pseudonymise_values
from koble.pseudonym.reverse import (
    MALFORMED,
    NOT_REVERSIBLE,
    REIDENTIFICATION_ROLE,
    UNKNOWN_KEY,
    Authorisation,
    reidentify,
    rekey,
)
from koble.pseudonym.serials import assign_serials
from tests.identifiers.strategies import person_numbers
from tests.pseudonym.conftest import clock, seeded

OFFICER = Authorisation("kari", REIDENTIFICATION_ROLE, "suspected adverse reaction 2026-41",
                        "helseregisterloven § 19 e, vedtak 26/1234")  # fmt: skip
numbers = st.lists(person_numbers().map(lambda m: m.number), min_size=1, max_size=40, unique=True)


@settings(max_examples=40, deadline=None)
@given(numbers, st.sampled_from(["npr", "reseptregisteret"]))
def test_round_trip(ids: list[str], domain: str) -> None:
    keyset = keyset_from_key(bytes(range(32)))
    audit = MemoryAudit()
    back = reidentify(keyset, domain, pseudonymise_values(keyset, domain, pl.Series(ids)),
                      OFFICER, audit)  # fmt: skip
    assert back.values.to_list() == ids
    assert back.reason.null_count() == len(ids)
    assert audit.entries[-1]["operation"] == "reidentify"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"role": "researcher"}, "role must be"),
        ({"reason": "because"}, "a reason of at least"),
        ({"legal_basis": ""}, "a legal basis"),
        ({"actor": " "}, "no actor"),
    ],
)
def test_refused_without_authorisation_and_audited(keyset: Keyset, change: dict[str, str],
                                                   problem: str) -> None:  # fmt: skip
    pseudonyms = pseudonymise_values(keyset, "npr", pl.Series(["15108695088"]))
    audit = MemoryAudit()
    fields = {**OFFICER.__dict__, **change}
    with pytest.raises(AuthorisationError, match=problem) as refused:
        reidentify(keyset, "npr", pseudonyms, Authorisation(**fields), audit)
    assert "15108695088" not in str(refused.value)
    assert audit.entries[-1]["operation"] == "reidentify-refused"


def test_wrong_domain_disabled_destroyed_and_malformed(keyset: Keyset) -> None:
    made = pseudonymise_values(keyset, "npr", pl.Series(["15108695088"]))
    keyset.rotate(randbytes=seeded(9), now=clock)
    newer = pseudonymise_values(keyset, "npr", pl.Series(["01010010183"]))
    column = pl.concat([made, newer, pl.Series(["nonsense", None])])
    wrong = reidentify(keyset, "kreftregisteret", column, OFFICER, MemoryAudit())
    assert wrong.reason.to_list() == [NOT_REVERSIBLE, NOT_REVERSIBLE, MALFORMED, MALFORMED]
    keyset.disable(1)
    disabled = reidentify(keyset, "npr", column, OFFICER, MemoryAudit())
    assert disabled.reason.to_list()[:2] == [UNKNOWN_KEY, None]
    assert disabled.values.to_list()[:2] == [None, "01010010183"]
    keyset.destroy(1)
    assert reidentify(keyset, "npr", column, OFFICER, MemoryAudit()).reason[0] == UNKNOWN_KEY


def test_rekey_keeps_identifiers_inside(keyset: Keyset) -> None:
    ids = pl.Series(["15108695088", "01010010183"])
    old = pseudonymise_values(keyset, "npr", ids)
    keyset.rotate(randbytes=seeded(8), now=clock)
    audit = MemoryAudit()
    moved = rekey(keyset, "npr", old, audit, actor="ola")
    assert moved.values.to_list() == pseudonymise_values(keyset, "npr", ids).to_list()
    assert audit.entries == [{"actor": "ola", "operation": "rekey", "domain": "npr",
                              "key_id": keyset.primary.key_id, "rows_in": 2, "rows_out": 2,
                              "rejected": 0}]  # fmt: skip


@settings(max_examples=30, deadline=None)
@given(numbers, st.sampled_from(["p1", "p2"]))
def test_serials_unique_reproducible_and_keyed(ids: list[str], project: str) -> None:
    keyset = keyset_from_key(bytes(range(32)))
    first = assign_serials(keyset, project, pl.Series("fnr", ids))
    assert sorted(first["lopenummer"].to_list()) == list(range(1, len(ids) + 1))
    again = assign_serials(keyset_from_key(bytes(range(32))), project, pl.Series("fnr", ids))
    assert again.equals(first)
    shuffled = assign_serials(keyset, project, pl.Series("fnr", list(reversed(ids))))
    assert dict(shuffled.iter_rows()) == dict(first.iter_rows())


def test_serials_depend_on_the_key_and_project() -> None:
    ids = pl.Series("fnr", [f"0101001{n:04d}" for n in range(0, 3000)])
    from koble.registries.identifiers import validate_column

    ids = ids.filter(validate_column(ids)["valid"])
    a = assign_serials(keyset_from_key(bytes(32)), "p1", ids)["lopenummer"]
    b = assign_serials(keyset_from_key(bytes(range(32))), "p1", ids)["lopenummer"]
    c = assign_serials(keyset_from_key(bytes(32)), "p2", ids)["lopenummer"]
    assert (a != b).mean() > 0.9 and (a != c).mean() > 0.9  # type: ignore[operator]


def test_serials_refuse_bad_populations(keyset: Keyset) -> None:
    with pytest.raises(ColumnError, match="row 3: 1 duplicate persons"):
        assign_serials(
            keyset, "p", pl.Series("fnr", ["15108695088", "01010010183", "151086 95088"])
        )
    with pytest.raises(ColumnError, match="row 2: 1 invalid identifiers"):
        assign_serials(keyset, "p", pl.Series("fnr", ["15108695088", "15108695077"]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2**64 - 1)), min_size=0, max_size=60))
def test_block_order_is_the_128_bit_order_even_with_tied_high_halves(
    pairs: list[tuple[int, int]],
) -> None:
    import numpy as np

    from koble.pseudonym.serials import block_order

    raw = b"".join(hi.to_bytes(8, "big") + lo.to_bytes(8, "big") for hi, lo in pairs)
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 16)
    order = block_order(blocks)
    as_numbers = [hi << 64 | lo for hi, lo in pairs]
    assert [as_numbers[i] for i in order] == sorted(as_numbers)
