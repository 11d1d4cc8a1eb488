"""``ServiceClient.blind_pseudonymise`` as the README shows it: no ``randbytes`` (issue 14)."""

from __future__ import annotations

import os

import pytest

from koble.pseudonym.blind import BLIND_PSEUDONYM_LENGTH
from koble.pseudonym.client import ServiceClient
from tests.pseudonym.service.conftest import Service, synthetic_fnr

DOMAIN = "project:p2026-014"


def test_blind_pseudonymise_draws_from_the_operating_system_by_default(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[int] = []
    real = os.urandom

    def counting(n: int) -> bytes:
        drawn.append(n)
        return real(n)

    monkeypatch.setattr(os, "urandom", counting)  # what the client reads at call time
    identifiers = synthetic_fnr(20, seed=3)
    with ServiceClient(service.url, token=service.tokens["operator"], ca=service.pki.ca_cert) as c:
        default = c.blind_pseudonymise(identifiers, domain=DOMAIN)
        given = c.blind_pseudonymise(identifiers, domain=DOMAIN, randbytes=real)
    assert default == given  # the same pseudonyms, whatever blinded them
    assert all(len(p) == BLIND_PSEUDONYM_LENGTH for p in default)
    assert drawn  # blinded with the operating system's randomness, not a fixed source
