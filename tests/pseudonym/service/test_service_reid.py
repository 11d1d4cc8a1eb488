"""Re-identification through real HTTPS: two officers, one release, early refusals of what
the audit log would refuse, 403 before 404, a busy service that keeps an approved request,
the audit trail, and the service without a second approval."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import polars as pl
import pytest

from koble.errors import AuthorisationError
from koble.pseudonym.client import ServiceError
from koble.pseudonym.pseudonymise import pseudonymise_values
from tests.pseudonym.service._helpers import HeldSlot, gate_of, service_client, wait_until
from tests.pseudonym.service.conftest import (
    ARROW_HEADERS,
    Service,
    arrow_stream,
    build_service,
    read_arrow,
    running,
    synthetic_fnr,
    valid_fnr_in_bytes,
)

DOMAIN = "project:p2026-014"
REASON = "adverse reaction follow-up, case 7"
BASIS = "helseregisterloven paragraf 19 e"
IDS = synthetic_fnr(30, seed=23)
QUEUE_TIMEOUT = 0.5


def pseudonyms_of(service: Service, ids: list[str]) -> list[str]:
    return pseudonymise_values(service.keyset, DOMAIN, pl.Series(ids)).to_list()


def ask(
    http: httpx.Client, pseudonyms: list[str], *, reason: str = REASON, basis: str = BASIS
) -> httpx.Response:
    return http.post(
        "/v1/reidentify",
        params={"domain": DOMAIN, "reason": reason, "legal_basis": basis},
        content=arrow_stream(pl.DataFrame({"pseudonym": pseudonyms})),
        headers=ARROW_HEADERS,
    )


def approved_request(service: Service, ids: list[str]) -> str:
    with service_client(service, "officer-a") as a, service_client(service, "officer-b") as b:
        request_id = a.request_reidentification(
            pseudonyms_of(service, ids), domain=DOMAIN, reason=REASON, legal_basis=BASIS
        )
        assert isinstance(request_id, str)
        b.approve_reidentification(request_id)
    return request_id


def test_reidentification_needs_a_second_officer_and_runs_once(service: Service) -> None:
    pseudonyms = [*pseudonyms_of(service, IDS[:25]), "not-a-pseudonym"]
    before = service.audit_seq()
    with service_client(service, "officer-a") as a, service_client(service, "officer-b") as b:
        request_id = a.request_reidentification(
            pseudonyms, domain=DOMAIN, reason=REASON, legal_basis=BASIS
        )
        assert isinstance(request_id, str)
        with pytest.raises(AuthorisationError, match="another officer"):
            a.approve_reidentification(request_id)
        with pytest.raises(ServiceError) as early:
            a.reidentification_result(request_id)
        assert early.value.status == 409
        with pytest.raises(AuthorisationError):
            b.reidentification_result(request_id)  # only the officer who asked
        b.approve_reidentification(request_id)
        with pytest.raises(ServiceError) as twice:
            b.approve_reidentification(request_id)
        assert twice.value.status == 409
        result = a.reidentification_result(request_id)
        assert result["identifier"].to_list()[:25] == IDS[:25]
        assert result["identifier"][25] is None and result["reason"][25] is not None
        assert result["reason"].null_count() == 25
        with pytest.raises(ServiceError) as again:
            a.reidentification_result(request_id)  # released once only
        assert again.value.status == 404
    with service.client(token=service.tokens["operator"]) as http:
        assert ask(http, pseudonyms).status_code == 403
    # The audit trail: every step names the request; reason and legal basis at request time.
    trail = {e["operation"]: e for e in service.audit_events(before)}
    made, approval, release = (
        trail["reidentify-request"], trail["reidentify-approve"], trail["reidentify"]
    )  # fmt: skip
    assert made["details"]["request"] == request_id == approval["details"]["request"]
    assert (made["details"]["reason"], made["details"]["legal_basis"]) == (REASON, BASIS)
    assert (made["actor"], approval["actor"], release["actor"]) == (
        "officer-a", "officer-b", "officer-a"
    )  # fmt: skip
    assert request_id in release["details"]["reason"]
    assert "approved by officer-b" in release["details"]["reason"]
    found = [
        e for e in service.audit_events(before)
        if e["operation"] == "http.reidentify" and e["details"]["status"] in (200, 202, 409)
    ]  # fmt: skip
    assert len(found) == 5  # asked, too early, approved, approved twice, collected
    assert {e["details"].get("request") for e in found} == {request_id}


@pytest.mark.parametrize(
    ("reason", "basis", "words"),
    [
        ("short", BASIS, "at least 10"),
        (REASON, "short", "at least 10"),
        ("          ", BASIS, "at least 10"),
        (f"patient {IDS[0]} complaint review", BASIS, "reason contains a person number"),
        ("follow-up of case 9f8e7d6c5b4a39281706f5e4d3c2b1a0", BASIS, "reason contains a run"),
        (REASON, "helseregisterloven-paragraf-19e-og-forskriften", "legal basis contains a run"),
    ],
    ids=["short-reason", "short-basis", "blank", "fnr", "hex", "base64-like"],
)
def test_a_reason_the_audit_log_would_refuse_is_400_at_submission(
    service: Service, reason: str, basis: str, words: str
) -> None:
    pending = len(service.state.requests)
    before = service.audit_seq()
    with service.client(party="officer-a") as http:
        response = ask(http, pseudonyms_of(service, IDS[:2]), reason=reason, basis=basis)
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert words in message
    assert reason not in message and basis not in message and IDS[0] not in message
    assert valid_fnr_in_bytes(response.content) == []
    assert len(service.state.requests) == pending  # nothing stored, nothing to lose later
    (event,) = service.audit_events(before)
    assert (event["actor"], event["details"]["status"]) == ("officer-a", 400)


def test_the_request_must_be_text_pseudonyms(service: Service) -> None:
    with service.client(party="officer-a") as http:
        for frame in (
            pl.DataFrame({"fnr": ["x"]}),
            pl.DataFrame({"pseudonym": pl.Series([b"\xff" * 36], dtype=pl.Binary)}),
            pl.DataFrame({"pseudonym": [[1, 2]]}),
        ):
            response = http.post(
                "/v1/reidentify",
                params={"domain": DOMAIN, "reason": REASON, "legal_basis": BASIS},
                content=arrow_stream(frame),
                headers=ARROW_HEADERS,
            )
            assert response.status_code == 400, response.text
            assert "'pseudonym'" in response.json()["message"]


@pytest.mark.parametrize("party", ["analyst", "operator", "nogrants"])
def test_only_officers_may_approve_or_collect(service: Service, party: str) -> None:
    """403 for a non-officer, whether or not the id exists: only officers learn that."""
    with service.client(party="officer-a") as http:
        request_id = ask(http, pseudonyms_of(service, IDS[:2])).json()["request"]
    token = service.tokens.get(party)
    with service.client(token=token, party=None if token else party) as http:
        for target in (request_id, "0123456789abcdef"):
            approve = http.post(f"/v1/reidentify/{target}/approve")
            collect = http.get(f"/v1/reidentify/{target}")
            assert (approve.status_code, collect.status_code) == (403, 403), approve.text
            assert "may not reidentify" in approve.json()["message"]
    assert service.state.requests[request_id].approved_by is None


def test_unknown_requests_are_404_for_officers(service: Service) -> None:
    with service.client(party="officer-b") as http:
        for request_id in ("0123456789abcdef", "not-an-id", "x" * 64):
            approve = http.post(f"/v1/reidentify/{request_id}/approve")
            collect = http.get(f"/v1/reidentify/{request_id}")
            assert (approve.status_code, collect.status_code) == (404, 404)
            assert "no such re-identification request" in collect.json()["message"]


# --- one work slot -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One work slot, a short queue timeout, and room for three pending requests."""
    built = build_service(
        tmp_path_factory.mktemp("reid-one-slot"),
        server={"max_concurrent": 1, "queue_timeout_seconds": QUEUE_TIMEOUT},
        reidentification={"max_pending": 3},
    )
    with running(built) as live:
        yield live


def test_a_busy_service_keeps_an_approved_request_collectable(one_slot: Service) -> None:
    request_id = approved_request(one_slot, IDS[:5])
    with HeldSlot(one_slot), one_slot.client(party="officer-a") as http:
        busy = http.get(f"/v1/reidentify/{request_id}")
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "5"
    assert request_id in one_slot.state.requests  # still there, still approved
    with one_slot.client(party="officer-a") as http:
        collected = http.get(f"/v1/reidentify/{request_id}")
        assert collected.status_code == 200, collected.text
        assert read_arrow(collected.content)["identifier"].to_list() == IDS[:5]
        assert http.get(f"/v1/reidentify/{request_id}").status_code == 404


def test_a_request_is_released_once_even_to_concurrent_collections(one_slot: Service) -> None:
    request_id = approved_request(one_slot, IDS[5:10])
    gate = gate_of(one_slot)

    def collect(_: int) -> int:
        with one_slot.client(party="officer-a") as http:
            return http.get(f"/v1/reidentify/{request_id}").status_code

    with ThreadPoolExecutor(max_workers=2) as executor:
        with HeldSlot(one_slot):
            futures = [executor.submit(collect, i) for i in range(2)]
            wait_until(lambda: gate.waiting == 2, "both collections wait for the slot")
        statuses = sorted(f.result() for f in futures)
    assert statuses == [200, 404], statuses


def test_pending_requests_are_bounded(one_slot: Service) -> None:
    limit = one_slot.state.config.max_pending
    with one_slot.client(party="officer-a") as http:
        made = [
            ask(http, pseudonyms_of(one_slot, IDS[:1]))
            for _ in range(limit - len(one_slot.state.requests))
        ]
        assert {r.status_code for r in made} == {202}
        full = ask(http, pseudonyms_of(one_slot, IDS[:1]))
    assert full.status_code == 503, full.text
    assert f"{limit} re-identification requests are pending" in full.json()["message"]
    assert full.headers["Retry-After"] == "60"
    assert len(one_slot.state.requests) == limit


# --- without a second approval -----------------------------------------------------------------


@pytest.fixture(scope="module")
def no_approval(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    built = build_service(
        tmp_path_factory.mktemp("reid-no-approval"),
        server={"max_concurrent": 1, "queue_timeout_seconds": QUEUE_TIMEOUT},
        reidentification={"second_approval": False},
    )
    with running(built) as live:
        yield live


def test_without_second_approval_the_result_comes_at_once(no_approval: Service) -> None:
    before = no_approval.audit_seq()
    with service_client(no_approval, "officer-a") as a:
        result = a.request_reidentification(
            pseudonyms_of(no_approval, IDS[:4]), domain=DOMAIN, reason=REASON, legal_basis=BASIS
        )
    assert isinstance(result, pl.DataFrame)
    assert result["identifier"].to_list() == IDS[:4]
    assert no_approval.state.requests == {}
    trail = {e["operation"]: e for e in no_approval.audit_events(before)}
    request_id = trail["reidentify-request"]["details"]["request"]
    assert trail["reidentify-request"]["details"]["second_approval"] is False
    assert f"request {request_id}" in trail["reidentify"]["details"]["reason"]
    assert "approved by" not in trail["reidentify"]["details"]["reason"]


def test_without_second_approval_a_busy_service_leaves_nothing_behind(
    no_approval: Service,
) -> None:
    before = no_approval.audit_seq()
    with HeldSlot(no_approval), no_approval.client(party="officer-a") as http:
        busy = ask(http, pseudonyms_of(no_approval, IDS[:3]))
    assert busy.status_code == 503
    assert no_approval.state.requests == {}
    operations = [e["operation"] for e in no_approval.audit_events(before)]
    assert "reidentify-request" not in operations and "reidentify" not in operations
