"""Who may do what, through real HTTPS: tokens, client certificates, grants and roles, 401
and 403, the audit of every refusal, and error bodies that never echo an identifier."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import polars as pl
import pytest

from koble.pseudonym.ingest import seal
from koble.pseudonym.pseudonymise import pseudonymise_values
from tests.pseudonym.service._helpers import flush_tally
from tests.pseudonym.service.conftest import (
    ARROW_HEADERS,
    REGISTRY,
    Service,
    arrow_stream,
    identifiers_in_audit_entry,
    identifiers_in_audit_log,
    synthetic_fnr,
    valid_fnr_in_bytes,
)

IDS = synthetic_fnr(40, seed=3)
REASON = "adverse reaction follow-up, case 7"
BASIS = "helseregisterloven paragraf 19 e"


@dataclass(frozen=True)
class Who:
    """Credentials: a party's token, or a party's client certificate (or nothing)."""

    token: str | None = None  # party whose token to use
    cert: str | None = None  # party whose certificate to use

    def client(self, service: Service) -> httpx.Client:
        token = None if self.token is None else service.tokens[self.token]
        return service.client(token=token, party=self.cert)

    @property
    def party(self) -> str:
        party = self.token or self.cert
        assert party is not None
        return party


Probe = Callable[[httpx.Client, Service, str], httpx.Response]


def pseudonymise(http: httpx.Client, service: Service, domain: str) -> httpx.Response:
    body = arrow_stream(pl.DataFrame({"fnr": IDS[:3]}))
    return http.post(
        "/v1/pseudonymise", params={"domain": domain}, content=body, headers=ARROW_HEADERS
    )


def oprf(http: httpx.Client, service: Service, domain: str) -> httpx.Response:
    return http.get("/v1/oprf/key", params={"domain": domain})


def ingest(http: httpx.Client, service: Service, registry: str) -> httpx.Response:
    frame = pl.DataFrame({"fnr": IDS[:4], "atc": ["N02BE01"] * 4})
    batch = seal(
        frame,
        {"fnr": "fnr"},
        ttp_public=service.ttp_key.public,
        registry_public=service.registry_key.public,
        randbytes=os.urandom,
    )
    return http.post(
        "/v1/ingest",
        params={"registry": registry},
        content=batch.to_bytes(),
        headers={"Content-Type": "application/octet-stream"},
    )


def reidentify(http: httpx.Client, service: Service, domain: str) -> httpx.Response:
    pseudonyms = pseudonymise_values(service.keyset, "project:p1", pl.Series(IDS[:2]))
    body = arrow_stream(pl.DataFrame({"pseudonym": pseudonyms}))
    params = {"domain": domain, "reason": REASON, "legal_basis": BASIS}
    return http.post("/v1/reidentify", params=params, content=body, headers=ARROW_HEADERS)


PROBES: dict[str, Probe] = {
    "pseudonymise": pseudonymise,
    "oprf": oprf,
    "ingest": ingest,
    "reidentify": reidentify,
}
OPERATOR = Who(token="operator")
PHARMACY = Who(token="pharmacy")
ANALYST = Who(token="analyst")
OFFICER_A = Who(cert="officer-a")
OFFICER_B = Who(cert="officer-b")
NOGRANTS = Who(cert="nogrants")

# (who, operation, domain or registry, expected status)
MATRIX: list[tuple[Who, str, str, int]] = [
    (OPERATOR, "pseudonymise", "project:p1", 200),
    (OPERATOR, "pseudonymise", "project:other-study", 200),
    (OPERATOR, "oprf", "project:p1", 200),
    (OPERATOR, "pseudonymise", "registry:npr", 403),
    (OPERATOR, "pseudonymise", "projectx", 403),
    (OPERATOR, "oprf", "registry:npr", 403),
    (OPERATOR, "ingest", REGISTRY, 403),
    (OPERATOR, "reidentify", "project:p1", 403),
    (PHARMACY, "ingest", REGISTRY, 200),
    (PHARMACY, "ingest", "npr", 403),
    (PHARMACY, "pseudonymise", "project:p1", 403),
    (PHARMACY, "oprf", "project:p1", 403),
    (PHARMACY, "reidentify", "project:p1", 403),
    (ANALYST, "reidentify", "project:p1", 403),  # the grant without the officer role
    (ANALYST, "pseudonymise", "project:p1", 403),
    (OFFICER_A, "reidentify", "project:p1", 202),
    (OFFICER_B, "reidentify", "project:p1", 202),
    (OFFICER_A, "reidentify", "registry:npr", 403),
    (OFFICER_A, "pseudonymise", "project:p1", 403),
    (OFFICER_A, "oprf", "project:p1", 403),
    (OFFICER_A, "ingest", REGISTRY, 403),
    (NOGRANTS, "pseudonymise", "project:p1", 403),
    (NOGRANTS, "oprf", "project:p1", 403),
    (NOGRANTS, "ingest", REGISTRY, 403),
    (NOGRANTS, "reidentify", "project:p1", 403),
]


def _id(case: tuple[Who, str, str, int]) -> str:
    who, operation, where, status = case
    return f"{who.party}-{operation}-{where}-{status}"


@pytest.mark.parametrize("case", MATRIX, ids=[_id(c) for c in MATRIX])
def test_every_role_allowed_and_refused_as_configured(
    service: Service, case: tuple[Who, str, str, int]
) -> None:
    who, operation, where, status = case
    before = service.audit_seq()
    with who.client(service) as http:
        response = PROBES[operation](http, service, where)
    assert response.status_code == status, response.text
    domain = f"registry:{where}" if operation == "ingest" else where
    events = [e for e in service.audit_events(before) if e["operation"] == f"http.{operation}"]
    assert len(events) == 1, events
    event = events[0]
    assert event["actor"] == who.party
    assert event["domain"] == domain
    assert event["details"]["status"] == status
    assert event["details"]["via"] == ("token" if who.token else "certificate")
    assert identifiers_in_audit_entry(event) == []
    if status == 403:
        body = response.json()
        assert body["error"] == "AuthorisationError"
        assert who.party in body["message"] and operation in body["message"]
        assert event["rows_in"] is None  # refused before anything was read


def test_the_audit_log_never_holds_identifiers_or_tokens(service: Service) -> None:
    with OPERATOR.client(service) as http:
        assert pseudonymise(http, service, "project:p1").status_code == 200
    with PHARMACY.client(service) as http:
        assert pseudonymise(http, service, "project:p1").status_code == 403
    assert service.audit_path is not None
    data = service.audit_path.read_bytes()
    assert data.count(b"\n") >= 2
    assert identifiers_in_audit_log(service.audit_path) == []
    assert not any(identifier.encode() in data for identifier in IDS)
    for token in service.tokens.values():
        assert token.encode() not in data


def _assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json() == {
        "error": "AuthenticationError",
        "message": "authentication required",
    }


@pytest.mark.parametrize("operation", sorted(PROBES))
def test_missing_token_is_401_with_www_authenticate(service: Service, operation: str) -> None:
    where = REGISTRY if operation == "ingest" else "project:p1"
    flush_tally(service)
    before = service.audit_seq()
    with service.client() as http:
        _assert_401(PROBES[operation](http, service, where))
    flush_tally(service)  # unauthenticated requests are counted per address (.tally)
    (event,) = service.audit_events(before)
    assert event["actor"] == "unauthenticated"
    assert event["operation"] == "http.unauthenticated-requests"
    assert event["details"]["by_status"] == "401: 1" and event["rows_in"] == 1


def test_wrong_token_is_401(service: Service) -> None:
    with service.client(token=base64.urlsafe_b64encode(os.urandom(32)).decode()) as http:
        _assert_401(pseudonymise(http, service, "project:p1"))
    token = service.tokens["operator"]
    for almost in (token[:-1], token + "A", token.upper(), token[::-1]):
        with service.client(token=almost) as http:
            _assert_401(pseudonymise(http, service, "project:p1"))


def test_expired_token_is_401_like_an_unknown_one(service: Service) -> None:
    flush_tally(service)
    before = service.audit_seq()
    with service.client(token=service.tokens["expired"]) as http:
        _assert_401(pseudonymise(http, service, "project:p1"))
        _assert_401(oprf(http, service, "project:p1"))
    flush_tally(service)
    (event,) = service.audit_events(before)
    assert event["actor"] == "unauthenticated" and event["details"]["by_status"] == "401: 2"


def _malformed(service: Service) -> list[str | bytes]:
    token = service.tokens["operator"]
    basic = base64.b64encode(f"operator:{token}".encode()).decode()
    return [
        "",
        "Bearer",  # (h11 will not send a value with trailing spaces)
        token,  # no scheme
        f"Basic {basic}",
        f"Token {token}",
        f"Bearer{token}",
        f"Bearer\t{token}",
        f"Bearer {token} {token}",
        f"Bearer {token},",
        f'Bearer "{token}"',
        b"Bearer \xff\xfe\x80abc",
        "Bearer " + "A" * 4000,
    ]


def test_malformed_authorization_headers_are_401(service: Service) -> None:
    for header in _malformed(service):
        with service.client(authorization=header) as http:
            response = pseudonymise(http, service, "project:p1")
        assert response.status_code == 401, (header, response.text)
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_client_certificate_of_an_unknown_party_is_401(service: Service) -> None:
    with service.client(party="stranger") as http:
        _assert_401(pseudonymise(http, service, "project:p1"))
        _assert_401(reidentify(http, service, "project:p1"))


@pytest.mark.parametrize("party", ["officer-a", "nogrants"])
def test_certificate_from_another_ca_is_refused_in_the_handshake(
    service: Service, party: str
) -> None:
    before = service.audit_seq()
    with (
        service.client(party=party, pki=service.other_pki) as http,
        pytest.raises(httpx.TransportError),
    ):
        http.get("/health")
    # The app never saw the request; the server carries on for everyone else.
    assert service.audit_events(before) == []
    with service.client(party=party) as http:
        assert http.get("/health").status_code == 200


def test_token_of_one_party_cannot_act_as_another(service: Service) -> None:
    # The operator's token is the operator, whatever else the request says.
    before = service.audit_seq()
    with service.client(token=service.tokens["operator"]) as http:
        http.headers["X-Koble-Party"] = "pharmacy"
        http.headers["X-Forwarded-Client-Cert"] = "CN=officer-a"
        assert ingest(http, service, REGISTRY).status_code == 403
        assert reidentify(http, service, "project:p1").status_code == 403
    assert {e["actor"] for e in service.audit_events(before)} == {"operator"}

    # A certificate party holding someone else's token does not get their rights.
    before = service.audit_seq()
    with service.client(token=service.tokens["operator"], party="nogrants") as http:
        response = pseudonymise(http, service, "project:p1")
    assert response.status_code in (401, 403)
    assert {e["actor"] for e in service.audit_events(before)} <= {"nogrants", "unauthenticated"}
    with service.client(token=service.tokens["pharmacy"], party="officer-a") as http:
        assert ingest(http, service, REGISTRY).status_code in (401, 403)

    # An officer cannot collect another officer's re-identification.
    with OFFICER_A.client(service) as http:
        request_id = reidentify(http, service, "project:p1").json()["request"]
    with OFFICER_B.client(service) as http:
        assert http.post(f"/v1/reidentify/{request_id}/approve").status_code == 200
        collected = http.get(f"/v1/reidentify/{request_id}")
        assert collected.status_code == 403
        assert "only the officer who asked" in collected.json()["message"]
    with service.client(token=service.tokens["operator"]) as http:
        assert http.get(f"/v1/reidentify/{request_id}").status_code == 403


def test_error_bodies_never_echo_an_identifier(service: Service) -> None:
    sent = IDS[:10]
    invalid = [sent[0][:-1] + str((int(sent[0][-1]) + 1) % 10), sent[1][:10]]  # near misses
    body = arrow_stream(pl.DataFrame({"fnr": [*sent, *invalid]}))
    params = {"domain": "project:p1"}
    responses: list[httpx.Response] = []
    with service.client() as http:  # 401
        responses.append(
            http.post("/v1/pseudonymise", params=params, content=body, headers=ARROW_HEADERS)
        )
    with service.client(token=service.tokens["pharmacy"]) as http:  # 403
        responses.append(
            http.post("/v1/pseudonymise", params=params, content=body, headers=ARROW_HEADERS)
        )
    with service.client(token=service.tokens["operator"]) as http:
        for extra in ({}, {"column": "pid"}, {"scheme": "hpr"}, {"domain": "project:P1"}):
            responses.append(
                http.post(
                    "/v1/pseudonymise",
                    params={**params, **extra},
                    content=body,
                    headers=ARROW_HEADERS,
                )
            )
        as_ints = arrow_stream(pl.DataFrame({"fnr": [int(v) for v in sent]}))
        responses.append(
            http.post("/v1/pseudonymise", params=params, content=as_ints, headers=ARROW_HEADERS)
        )
        responses.append(  # not Arrow: the identifiers as text
            http.post(
                "/v1/pseudonymise",
                params=params,
                content="\n".join(sent).encode(),
                headers=ARROW_HEADERS,
            )
        )
        responses.append(
            http.post(
                "/v1/pseudonymise",
                params=params,
                content=body + b"\x00" * (5 << 20),
                headers=ARROW_HEADERS,
            )
        )
    assert [r.status_code for r in responses] == [401, 403, 422, 400, 422, 400, 400, 400, 413]
    for response in responses:
        assert not any(v.encode() in response.content for v in [*sent, *invalid])
        assert valid_fnr_in_bytes(response.content) == []


def test_missing_column_error_does_not_echo_header_row_identifiers(service: Service) -> None:
    # A header-less CSV read as Arrow: the first data row became the column names.
    first, second = IDS[20], IDS[21]
    frame = pl.DataFrame({first: [IDS[22], IDS[23]], second: ["x", "y"]})
    with service.client(token=service.tokens["operator"]) as http:
        response = http.post(
            "/v1/pseudonymise",
            params={"domain": "project:p1", "column": "fnr"},
            content=arrow_stream(frame),
            headers=ARROW_HEADERS,
        )
    assert response.status_code == 400
    assert "parameter 'column'" in response.json()["message"]  # named, not echoed
    assert valid_fnr_in_bytes(response.content) == []


LONG_DOMAIN = "project:p2026-014-adverse-drug-reactions-cohort-b"  # valid: 1-64 [a-z0-9_.:-]


def test_a_valid_long_domain_is_served_and_audited(service: Service) -> None:
    before = service.audit_seq()
    with service.client(token=service.tokens["operator"]) as http:
        response = oprf(http, service, LONG_DOMAIN)
    assert response.status_code == 200, response.text
    assert [e["domain"] for e in service.audit_events(before)] == [LONG_DOMAIN]


@pytest.mark.parametrize("domain", ["project:" + IDS[30], "project:" + "A" * 40])
def test_unauthenticated_requests_are_audited_whatever_their_domain(
    service: Service, domain: str
) -> None:
    flush_tally(service)
    before = service.audit_seq()
    with service.client(token="not-a-token") as http:
        response = oprf(http, service, domain)
    flush_tally(service)  # counted per address, without the domain (.tally)
    events = service.audit_events(before)
    assert response.status_code == 401
    assert [e["actor"] for e in events] == ["unauthenticated"]


def test_reidentification_routes_authenticate_before_looking_up_the_request(
    service: Service,
) -> None:
    with OFFICER_A.client(service) as http:
        real = reidentify(http, service, "project:p1").json()["request"]
    with service.client() as http:
        for request_id in (real, "0123456789abcdef"):
            _assert_401(http.post(f"/v1/reidentify/{request_id}/approve"))
            _assert_401(http.get(f"/v1/reidentify/{request_id}"))


# --- parameter errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"domain": "project:p1", "scheme": IDS[5]}, "scheme"),
        ({"domain": "project:p1", "partial": IDS[6]}, "partial"),
        ({"domain": "x" * 200}, "domain"),
        ({}, "domain"),
    ],
    ids=["scheme", "partial", "long-domain", "missing"],
)
def test_parameter_errors_name_the_parameter_never_the_value(
    service: Service, params: dict[str, str], name: str
) -> None:
    body = arrow_stream(pl.DataFrame({"fnr": IDS[:2]}))
    before = service.audit_seq()
    with service.client(token=service.tokens["operator"]) as http:
        response = http.post("/v1/pseudonymise", params=params, content=body, headers=ARROW_HEADERS)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["error"] == "ParameterError" and set(answer) == {"error", "message"}
    assert f"'{name}'" in answer["message"]
    for value in params.values():
        assert value not in response.text
    assert valid_fnr_in_bytes(response.content) == []
    (event,) = service.audit_events(before)
    assert (event["actor"], event["operation"]) == ("operator", "http.pseudonymise")
    assert event["details"]["status"] == 422 and event["domain"] is None


def test_parameter_errors_are_for_authenticated_callers_only(service: Service) -> None:
    params = {"domain": "project:p1", "scheme": IDS[7]}
    body = arrow_stream(pl.DataFrame({"fnr": IDS[:2]}))
    with service.client() as http:
        _assert_401(
            http.post("/v1/pseudonymise", params=params, content=body, headers=ARROW_HEADERS)
        )
        _assert_401(http.get("/v1/oprf/key"))  # a missing parameter too
    with service.client(token=service.tokens["pharmacy"]) as http:  # may not pseudonymise
        refused = http.post("/v1/pseudonymise", params=params, content=body, headers=ARROW_HEADERS)
    assert refused.status_code == 403 and IDS[7] not in refused.text


def test_refusals_do_not_repeat_the_domain_asked_for(service: Service) -> None:
    domain = "project:" + IDS[8]
    with service.client(token=service.tokens["pharmacy"]) as http:
        refused = pseudonymise(http, service, domain)
    assert refused.status_code == 403
    assert refused.json()["message"] == "pharmacy may not pseudonymise in the requested domain"
    with service.client(token=service.tokens["operator"]) as http:  # allowed by project:*
        invalid = pseudonymise(http, service, domain)
        upper = pseudonymise(http, service, "project:P1")
    assert invalid.status_code == 400 and "person number" in invalid.json()["message"]
    assert upper.status_code == 400 and "invalid domain name" in upper.json()["message"]
    for response in (refused, invalid, upper):
        assert IDS[8] not in response.text and "P1" not in response.text
