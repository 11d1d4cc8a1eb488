"""The re-identification desk as a library (:mod:`koble.pseudonym.service.reid`), no HTTP:
expiry on the state's clock, the bound on pending requests, request ids the audit log
accepts, a failed release that keeps the request, and reprs without the request's text."""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from koble.errors import AuthorisationError, UsageError
from koble.pseudonym.audit_guard import refuse_sensitive
from koble.pseudonym.auditing import MemoryAudit
from koble.pseudonym.pseudonymise import pseudonymise_values
from koble.pseudonym.service import reid
from koble.pseudonym.service.operations import Outcome
from tests.pseudonym.service.conftest import Service, build_service, synthetic_fnr

DOMAIN = "project:desk"
REASON = "adverse reaction follow-up, case 7"
BASIS = "helseregisterloven paragraf 19 e"
IDS = synthetic_fnr(6, seed=31)
START = datetime.datetime(2026, 3, 1, 8, 0, tzinfo=datetime.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += datetime.timedelta(**delta)


def desk(tmp_path: Path, clock: Clock, **settings: object) -> tuple[Service, MemoryAudit]:
    audit = MemoryAudit()
    built = build_service(tmp_path / "svc", audit=audit, now=clock, reidentification=settings)
    return built, audit


def frame(service: Service, ids: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"pseudonym": pseudonymise_values(service.keyset, DOMAIN, pl.Series(ids))})


def ask(service: Service, ids: list[str] = IDS, officer: str = "officer-a") -> reid.ReidRequest:
    made = reid.submit(service.state, officer, DOMAIN, REASON, BASIS, frame(service, ids))
    assert isinstance(made, reid.ReidRequest)
    return made


def operations(audit: MemoryAudit) -> list[str]:
    return [e["operation"] for e in audit.entries]


def test_pending_requests_expire_on_the_state_clock(tmp_path: Path) -> None:
    clock = Clock()
    service, audit = desk(tmp_path, clock, pending_expiry_hours=2)
    made = ask(service)
    assert made.expires == START + datetime.timedelta(hours=2)
    reid.approve(service.state, made.id, "officer-b")
    clock.advance(hours=1, minutes=59)
    assert reid.lookup(service.state, made.id) is made
    clock.advance(minutes=1)
    with pytest.raises(reid.NotFoundError):
        reid.lookup(service.state, made.id)
    with pytest.raises(reid.NotFoundError):
        reid.collect(service.state, made.id, "officer-a")
    assert service.state.requests == {}
    (expired,) = [e for e in audit.entries if e["operation"] == "reidentify-expired"]
    assert expired["details"] == {"request": made.id, "approved": True}
    assert "reidentify" not in operations(audit)  # never released


def test_the_default_expiry_is_a_day(tmp_path: Path) -> None:
    clock = Clock()
    service, _ = desk(tmp_path, clock)
    assert service.state.config.pending_expiry_hours == 24
    made = ask(service)
    assert made.expires - made.created == datetime.timedelta(hours=24)


def test_pending_requests_are_bounded_until_some_leave(tmp_path: Path) -> None:
    clock = Clock()
    service, _ = desk(tmp_path, clock, max_pending=2, pending_expiry_hours=1)
    first, _second = ask(service), ask(service)
    with pytest.raises(reid.DeskFullError, match="2 re-identification requests are pending"):
        ask(service)
    with pytest.raises(reid.DeskFullError):
        reid.has_room(service.state, "officer-b")  # the early check the route makes
    reid.approve(service.state, first.id, "officer-b")
    reid.collect(service.state, first.id, "officer-a")
    ask(service)  # room again after a collection
    clock.advance(hours=1)
    ask(service)  # and after expiry
    assert len(service.state.requests) == 1


def test_request_ids_are_short_hex_the_audit_log_accepts(tmp_path: Path) -> None:
    # the real AuditLog, with its guard; room for 21 requests by one officer
    service = build_service(tmp_path / "svc", reidentification={"max_pending_per_officer": 25})
    person = IDS[0] + "00000"  # 16 hex digits holding a valid fødselsnummer
    drawn = iter([bytes.fromhex(person), b"\xab" * 8])
    service.state.randbytes = lambda n: next(drawn) if n == 8 else os.urandom(n)
    made = ask(service)
    assert made.id == "ab" * 8  # the draw that spelled a person number was thrown away
    service.state.randbytes = os.urandom
    ids = {ask(service).id for _ in range(20)}
    assert len(ids) == 20
    for request_id in ids:
        assert len(request_id) == 16 and int(request_id, 16) >= 0
        refuse_sensitive("request", request_id)
    assert service.audit_path is not None
    assert person not in service.audit_path.read_text()


def test_a_failed_release_keeps_the_request(tmp_path: Path) -> None:
    clock = Clock()
    service, audit = desk(tmp_path, clock)
    made = ask(service)
    reid.approve(service.state, made.id, "officer-b")
    failing: dict[str, Any] = {"left": 1}
    append: Callable[..., Any] = audit.append

    def flaky(**fields: Any) -> Any:
        if fields["operation"] == "reidentify" and failing["left"]:
            failing["left"] -= 1
            raise UsageError("the audit log is unavailable")
        return append(**fields)

    service.state.audit = type("Flaky", (), {"append": staticmethod(flaky)})()
    with pytest.raises(UsageError):
        reid.collect(service.state, made.id, "officer-a")
    assert made.id in service.state.requests
    outcome = reid.collect(service.state, made.id, "officer-a")
    assert outcome.frame["identifier"].to_list() == IDS
    assert made.id not in service.state.requests


def test_collection_checks_happen_with_the_removal(tmp_path: Path) -> None:
    service, _ = desk(tmp_path, Clock())
    made = ask(service)
    with pytest.raises(reid.NotApprovedError):
        reid.collect(service.state, made.id, "officer-a")
    reid.approve(service.state, made.id, "officer-b")
    with pytest.raises(reid.NotApprovedError, match="already approved by officer-b"):
        reid.approve(service.state, made.id, "officer-b")
    with pytest.raises(AuthorisationError, match="only the officer who asked"):
        reid.collect(service.state, made.id, "officer-b")
    assert made.id in service.state.requests


def test_without_second_approval_nothing_is_stored(tmp_path: Path) -> None:
    service, audit = desk(tmp_path, Clock(), second_approval=False)
    result = reid.submit(service.state, "officer-a", DOMAIN, REASON, BASIS, frame(service, IDS))
    assert isinstance(result, Outcome)
    assert result.frame["identifier"].to_list() == IDS
    assert service.state.requests == {}
    assert operations(audit) == ["reidentify-request", "reidentify"]


def test_reprs_hold_no_pseudonyms_reasons_or_identifiers(tmp_path: Path) -> None:
    service, _ = desk(tmp_path, Clock())
    made = ask(service)
    text = repr(made) + str(made) + repr(service.state.requests)
    for secret in (REASON, BASIS, *made.pseudonyms.to_list(), *IDS):
        assert secret not in text
    assert made.id in text and "rows=6" in text
    reid.approve(service.state, made.id, "officer-b")
    released = reid.collect(service.state, made.id, "officer-a")
    assert released.frame["identifier"].to_list() == IDS
    assert all(i not in repr(released) for i in IDS) and "rows=6" in repr(released)


@pytest.mark.parametrize(
    ("reason", "basis", "message"),
    [
        (f"case of {IDS[1]}", BASIS, "the reason contains a person number"),
        (REASON, f"vedtak {IDS[2][:6]} {IDS[2][6:]}", "the legal basis contains a person number"),
        ("key " + "ab12" * 8, BASIS, "the reason contains a run of 32 or more hex digits"),
        (REASON, "x" * 45, "the legal basis contains a run"),
        ("short", BASIS, "a reason of at least 10 characters"),
    ],
)
def test_check_request_says_what_is_wrong_without_the_value(
    reason: str, basis: str, message: str
) -> None:
    with pytest.raises(UsageError) as caught:
        reid.check_request("officer-a", reason, basis)
    assert message in str(caught.value)
    assert reason not in str(caught.value) and basis not in str(caught.value)
