"""The bulk operations through real HTTPS: pseudonymise (strict and partial), bad bodies,
limits and back-pressure, concurrency and blind mode. Sealed ingest is in
``test_service_ingest.py``, re-identification in ``test_service_reid.py``."""

from __future__ import annotations

import os
import random
import re
import socket
import ssl
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import polars as pl
import pyarrow as pa
import pytest

from koble.errors import ColumnError, CryptoError, InvalidIdentifier
from koble.pseudonym.blind import BLIND_PSEUDONYM_LENGTH, BlindKey, blind
from koble.pseudonym.client import RejectedError, ServiceClient
from koble.pseudonym.pseudonymise import pseudonymise_values
from koble.pseudonym.service.arrowio import ARROW
from koble.pseudonym.service.operations import Outcome
from tests.pseudonym.service._helpers import HeldSlot, gate_of, slow_oprf_body, wait_until
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
PSEUDONYM = re.compile(r"^[0-9a-f]{36}$")


@pytest.fixture(scope="module")
def population() -> list[str]:
    return synthetic_fnr(10_000, seed=7)


def operator(service: Service) -> ServiceClient:
    return ServiceClient(service.url, token=service.tokens["operator"], ca=service.pki.ca_cert)


def post_pseudonymise(http: httpx.Client, body: bytes, **params: str | bool) -> httpx.Response:
    query = {"domain": DOMAIN, **{k: str(v).lower() for k, v in params.items()}}
    return http.post("/v1/pseudonymise", params=query, content=body, headers=ARROW_HEADERS)


def last_digit_wrong(value: str) -> str:
    return value[:-1] + str((int(value[-1]) + 1) % 10)


# --- pseudonymise ------------------------------------------------------------------------------


def test_round_trip_equals_the_library_for_10k(service: Service, population: list[str]) -> None:
    expected = pseudonymise_values(service.keyset, DOMAIN, pl.Series(population)).to_list()
    before = service.audit_seq()
    with service.client(token=service.tokens["operator"]) as http:
        response = post_pseudonymise(http, arrow_stream(pl.DataFrame({"fnr": population})))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == ARROW
    assert response.headers["X-Koble-Rows"] == "10000"
    assert response.headers["X-Koble-Rejected"] == "0"
    result = read_arrow(response.content)
    assert result.columns == ["row", "pseudonym", "reason"]
    assert result["row"].to_list() == list(range(1, 10_001))
    assert result["reason"].null_count() == 10_000
    assert result["pseudonym"].to_list() == expected
    assert all(PSEUDONYM.match(p) for p in expected[:100])
    (event,) = service.audit_events(before)
    assert (event["operation"], event["rows_in"], event["rows_out"], event["rejected"]) == (
        "http.pseudonymise",
        10_000,
        10_000,
        0,
    )
    assert event["key_id"] == service.keyset.primary.key_id
    with operator(service) as client:  # and the Python client agrees
        again = client.pseudonymise(population[:500], domain=DOMAIN)
    assert again["pseudonym"].to_list() == expected[:500]


def dirty(population: list[str]) -> tuple[list[str | None], dict[int, str]]:
    """Twenty valid numbers with invalid ones at known 1-based rows."""
    values: list[str | None] = list(population[:20])
    broken: dict[int, str | None] = {
        2: last_digit_wrong(population[1]),
        5: "12345",
        9: None,
        13: "abcdefghijk",
        17: "",
    }
    for row, value in broken.items():
        values[row - 1] = value
    return values, {row: "" for row in broken}


def test_invalid_identifiers_are_422_with_rejects_and_nothing_pseudonymised(
    service: Service, population: list[str]
) -> None:
    values, broken = dirty(population)
    with service.client(token=service.tokens["operator"]) as http:
        response = post_pseudonymise(http, arrow_stream(pl.DataFrame({"fnr": values})))
    assert response.status_code == 422
    assert response.headers["content-type"] == ARROW
    assert response.headers["X-Koble-Rejected"] == str(len(broken))
    rejects = read_arrow(response.content)
    assert rejects.columns == ["row", "reason", "message"]
    assert rejects["row"].to_list() == sorted(broken)
    assert rejects["reason"].null_count() == 0 and rejects["message"].null_count() == 0
    assert all(message for message in rejects["message"].to_list())
    # Nothing pseudonymised: no pseudonym anywhere in the body, and no identifier either.
    assert re.search(rb"[0-9a-f]{36}", response.content) is None
    assert valid_fnr_in_bytes(response.content) == []
    with operator(service) as client, pytest.raises(RejectedError) as caught:
        client.pseudonymise(pl.Series(values, dtype=pl.String), domain=DOMAIN)
    assert caught.value.rejects["row"].to_list() == sorted(broken)


def test_partial_accounts_for_every_row(service: Service, population: list[str]) -> None:
    values, broken = dirty(population)
    with service.client(token=service.tokens["operator"]) as http:
        strict = read_arrow(
            post_pseudonymise(http, arrow_stream(pl.DataFrame({"fnr": values}))).content
        )
        response = post_pseudonymise(
            http, arrow_stream(pl.DataFrame({"fnr": values})), partial=True
        )
    assert response.status_code == 200
    assert response.headers["X-Koble-Rows"] == "20"
    assert response.headers["X-Koble-Rejected"] == str(len(broken))
    result = read_arrow(response.content)
    assert result["row"].to_list() == list(range(1, 21))
    has_pseudonym = result["pseudonym"].is_not_null()
    has_reason = result["reason"].is_not_null()
    assert (has_pseudonym ^ has_reason).all()  # every row: a pseudonym xor a reason
    assert result.filter(has_reason)["row"].to_list() == sorted(broken)
    assert result.filter(has_reason)["reason"].to_list() == strict["reason"].to_list()
    good = [v for i, v in enumerate(values, 1) if i not in broken]
    assert (
        result.filter(has_pseudonym)["pseudonym"].to_list()
        == pseudonymise_values(service.keyset, DOMAIN, pl.Series(good)).to_list()
    )


def _truncated(population: list[str]) -> bytes:
    body = arrow_stream(pl.DataFrame({"fnr": population[:100]}))
    return body[: len(body) // 2]


@pytest.mark.parametrize(
    "body",
    [
        b"not an arrow stream",
        b"\xff\xff\xff\xff" + os.urandom(200),
        b"PAR1" + os.urandom(64),  # a Parquet magic, not a stream
        "truncated",
        "garbage-after-schema",
    ],
    ids=["text", "continuation-then-noise", "parquet-magic", "truncated", "bad-batch"],
)
def test_malformed_arrow_is_400_with_a_clear_message(
    service: Service, population: list[str], body: bytes | str
) -> None:
    if body == "truncated":
        body = _truncated(population)
    elif body == "garbage-after-schema":
        full = arrow_stream(pl.DataFrame({"fnr": population[:100]}))
        body = full[:300] + os.urandom(len(full) - 300)
    assert isinstance(body, bytes)
    with service.client(token=service.tokens["operator"]) as http:
        response = post_pseudonymise(http, body)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["error"] == "FileFormatError"
    assert "not an Arrow IPC stream" in answer["message"]
    assert ARROW in answer["message"]


def test_empty_body_is_400(service: Service) -> None:
    with service.client(token=service.tokens["operator"]) as http:
        response = post_pseudonymise(http, b"")
    assert response.status_code == 400
    assert "empty" in response.json()["message"]


def test_wrong_column_is_400_naming_the_column(service: Service, population: list[str]) -> None:
    with service.client(token=service.tokens["operator"]) as http:
        missing = post_pseudonymise(
            http, arrow_stream(pl.DataFrame({"fnr": population[:5]})), column="person_id"
        )
        as_int = post_pseudonymise(
            http, arrow_stream(pl.DataFrame({"fnr": [int(v) for v in population[:5]]}))
        )
    assert missing.status_code == 400
    assert missing.json()["error"] == "ColumnError"
    message = missing.json()["message"]  # names the parameter, never its value (issue 12)
    assert "parameter 'column'" in message and "person_id" not in message and "fnr" in message
    assert as_int.status_code == 400
    assert "'fnr'" in as_int.json()["message"] and "text" in as_int.json()["message"]


@pytest.mark.parametrize(
    "column_type",
    [
        pa.dense_union([pa.field("a", pa.int64()), pa.field("b", pa.string())]),
        pa.month_day_nano_interval(),
        pa.decimal256(76, 0),
    ],
    ids=["union", "month-day-nano", "decimal256"],
)
def test_arrow_types_polars_cannot_import_are_400(
    service: Service, column_type: pa.DataType
) -> None:
    if pa.types.is_union(column_type):
        array: pa.Array = pa.UnionArray.from_dense(
            pa.array([0, 1], pa.int8()),
            pa.array([0, 0], pa.int32()),
            [pa.array([1]), pa.array(["x"])],
            ["a", "b"],
        )
    elif pa.types.is_interval(column_type):
        array = pa.array([pa.MonthDayNano([1, 2, 3])] * 2, column_type)
    else:
        array = pa.array([1, 2], column_type)
    body = arrow_stream(pa.table({"other": array, "fnr": pa.array(["x", "y"])}))
    with service.client(token=service.tokens["operator"]) as http:
        response = post_pseudonymise(http, body)
        assert http.get("/health").status_code == 200
    assert response.status_code == 400, response.text


def test_oversized_body_is_413(service: Service) -> None:
    limit = service.state.config.max_request_bytes
    before = service.audit_seq()
    with service.client(token=service.tokens["operator"]) as http:
        response = post_pseudonymise(http, b"\x00" * (limit + 1))
        just_under = post_pseudonymise(http, b"\x00" * limit)
    assert response.status_code == 413
    assert response.json()["error"] == "TooLargeError"
    assert str(limit) in response.json()["message"]
    assert just_under.status_code == 400  # within the limit, then not Arrow
    statuses = [e["details"]["status"] for e in service.audit_events(before)]
    assert statuses == [413, 400]


def test_concurrent_clients_get_consistent_pseudonyms(
    service: Service, population: list[str]
) -> None:
    pool = population[:2_000]
    reference = dict(
        zip(pool, pseudonymise_values(service.keyset, DOMAIN, pl.Series(pool)), strict=True)
    )

    def worker(seed: int) -> list[tuple[list[str], list[str]]]:
        rng = random.Random(seed)
        done = []
        with operator(service) as client:
            for _ in range(4):
                sample = rng.sample(pool, 600)  # overlapping between requests and threads
                result = client.pseudonymise(sample, domain=DOMAIN)
                done.append((sample, result["pseudonym"].to_list()))
        return done

    with ThreadPoolExecutor(max_workers=8) as executor:
        results = list(executor.map(worker, range(8)))
    assert sum(len(r) for r in results) == 32
    for per_thread in results:
        for sample, pseudonyms in per_thread:
            assert pseudonyms == [reference[v] for v in sample]


# --- blind mode --------------------------------------------------------------------------------


def test_blind_mode_round_trip(service: Service, population: list[str]) -> None:
    identifiers = population[:300] + population[:50]  # duplicates are blinded once
    sent: list[bytes] = []
    key_ids: list[str | None] = []

    def record(request: httpx.Request) -> None:
        if request.url.path == "/v1/oprf/evaluate":
            sent.append(request.read())

    def answered(response: httpx.Response) -> None:
        if response.request.url.path == "/v1/oprf/evaluate":
            key_ids.append(response.headers.get("X-Koble-Key-Id"))

    with operator(service) as client:
        client._http.event_hooks["request"].append(record)
        client._http.event_hooks["response"].append(answered)
        first = client.blind_pseudonymise(identifiers, domain=DOMAIN, randbytes=os.urandom)
        second = client.blind_pseudonymise(identifiers, domain=DOMAIN, randbytes=os.urandom)
        other = client.blind_pseudonymise(identifiers, domain="project:other", randbytes=os.urandom)
    assert first == second  # deterministic, although every request was blinded afresh
    assert len(first) == len(identifiers)
    assert first[300:] == first[:50]
    assert len(set(first)) == 300
    assert all(len(p) == BLIND_PSEUDONYM_LENGTH for p in first)
    assert not set(first) & set(other)  # another domain, other pseudonyms
    # The same pseudonyms as the key holder computes, blinding in process.
    batch = blind(identifiers, os.urandom)
    key = BlindKey.from_keyset(service.keyset, DOMAIN)
    assert batch.finalize(key.evaluate(batch.blinded)) == first
    # What the service received: 32-byte random elements only, never an identifier.
    assert len(sent) == 3
    for body in sent:
        assert valid_fnr_in_bytes(body) == []
        assert not any(v.encode() in body for v in identifiers)
        frame = read_arrow(body)
        assert frame.columns == ["blinded"] and frame["blinded"].dtype == pl.Binary
        assert frame.height == 300
        assert {len(e) for e in frame["blinded"].to_list()} == {32}
    assert len({b for body in sent for b in read_arrow(body)["blinded"].to_list()}) == 900
    # Every evaluation names the key it used: the keyset's primary, as /v1/oprf/key says.
    assert key_ids == [service.keyset.primary.key_id] * 3


def test_blind_mode_checks_the_key_id_and_passes_the_scheme(
    service: Service, population: list[str]
) -> None:
    with operator(service) as client:
        key = client.oprf_key(DOMAIN)
        assert key["key_id"] == service.keyset.primary.key_id
        assert key["suite"] == "ristretto255-SHA512"
        pinned = client.blind_pseudonymise(
            population[:5], domain=DOMAIN, randbytes=os.urandom, key_id=key["key_id"]
        )
        assert pinned == client.blind_pseudonymise(
            population[:5], domain=DOMAIN, randbytes=os.urandom
        )
        with pytest.raises(CryptoError, match="another key"):
            client.blind_pseudonymise(
                population[:5], domain=DOMAIN, randbytes=os.urandom, key_id="v9-0000"
            )
        # The scheme and test numbers reach blind(): an HPR number is not a fødselsnummer.
        hpr = ["9144900", "9144901"]  # a valid HPR number, and one with a wrong check digit
        with pytest.raises(InvalidIdentifier, match="not valid hpr"):
            client.blind_pseudonymise(hpr, domain=DOMAIN, randbytes=os.urandom, id_scheme="hpr")
        as_hpr = client.blind_pseudonymise(
            hpr[:1], domain=DOMAIN, randbytes=os.urandom, id_scheme="hpr"
        )
        assert len(as_hpr[0]) == BLIND_PSEUDONYM_LENGTH
        with pytest.raises(InvalidIdentifier):
            client.blind_pseudonymise(hpr[:1], domain=DOMAIN, randbytes=os.urandom)


def test_the_client_refuses_identifiers_that_are_not_text(service: Service) -> None:
    with operator(service) as client, pytest.raises(ColumnError, match="must be text"):
        client.pseudonymise(pl.Series([1234567890, 2345678901]), domain=DOMAIN)


def test_outcome_repr_shows_counts_not_the_table(population: list[str]) -> None:
    frame = pl.DataFrame({"row": [1], "pseudonym": ["a" * 36], "fnr": [population[0]]})
    outcome = Outcome(frame, 1, 0, True, "v1-abc", body=b"secret-body")
    text = repr(outcome)
    assert population[0] not in text and "a" * 36 not in text and "secret-body" not in text
    assert "rows=1" in text and "v1-abc" in text
    assert population[0] not in str(outcome)


# --- back-pressure -----------------------------------------------------------------------------


def raw_exchange(service: Service, head: str, body: bytes = b"", timeout: float = 10) -> str:
    """Send ``head`` (request line and headers) and ``body`` over TLS, then read the answer's
    status line and headers, without sending anything more."""
    url = httpx.URL(service.url)
    context: ssl.SSLContext = service.ssl_context()
    with (
        socket.create_connection((url.host, url.port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=url.host) as tls,
    ):
        tls.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = tls.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.decode("latin-1")


def _head(service: Service, length: int) -> str:
    return (
        f"POST /v1/pseudonymise?domain={DOMAIN} HTTP/1.1\nHost: 127.0.0.1\n"
        f"Authorization: Bearer {service.tokens['operator']}\nContent-Type: {ARROW}\n"
        f"Content-Length: {length}\n"
    )


def test_an_oversized_content_length_is_413_before_the_body_is_sent(service: Service) -> None:
    limit = service.state.config.max_request_bytes
    before = service.audit_seq()
    started = time.monotonic()
    answer = raw_exchange(service, _head(service, limit + 1), timeout=5)
    assert answer.startswith("HTTP/1.1 413"), answer[:80]
    assert time.monotonic() - started < 4  # not waiting for a body that never comes
    (event,) = service.audit_events(before)
    assert event["actor"] == "operator" and event["details"]["status"] == 413


def test_blind_mode_rejects_bad_elements(service: Service) -> None:
    with service.client(token=service.tokens["operator"]) as http:
        for frame in (
            pl.DataFrame({"blinded": pl.Series([b"\x00" * 32], dtype=pl.Binary)}),  # identity
            pl.DataFrame({"blinded": pl.Series([b"\x01" * 31], dtype=pl.Binary)}),
            pl.DataFrame({"blinded": pl.Series([None], dtype=pl.Binary)}),
            pl.DataFrame({"blinded": ["text"]}),
            pl.DataFrame({"other": pl.Series([b"\x01" * 32], dtype=pl.Binary)}),
        ):
            response = http.post(
                "/v1/oprf/evaluate",
                params={"domain": DOMAIN},
                content=arrow_stream(frame),
                headers=ARROW_HEADERS,
            )
            assert response.status_code == 400, (frame, response.text)


# --- one bulk slot -----------------------------------------------------------------------------

QUEUE_TIMEOUT = 0.5


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A service with a single bulk slot and a short queue timeout."""
    built = build_service(
        tmp_path_factory.mktemp("impatient"),
        server={"max_concurrent": 1, "queue_timeout_seconds": QUEUE_TIMEOUT},
    )
    with running(built) as live:
        yield live


def test_a_busy_service_answers_503_with_retry_after(impatient: Service) -> None:
    with HeldSlot(impatient):
        before = impatient.audit_seq()
        with impatient.client(token=impatient.tokens["operator"]) as http:
            started = time.monotonic()
            response = http.post(
                "/v1/oprf/evaluate",
                params={"domain": DOMAIN},
                content=slow_oprf_body(1),
                headers=ARROW_HEADERS,
            )
            waited = time.monotonic() - started
            assert http.get("/health").status_code == 200  # not bulk: never queued
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "5"
    assert QUEUE_TIMEOUT - 0.1 < waited < QUEUE_TIMEOUT + 4
    statuses = [e["details"]["status"] for e in impatient.audit_events(before)]
    # the refused request; then the held one (/health is counted, not an event: .tally)
    assert statuses[:1] == [503]


# A request whose body has not arrived holds no work slot (issue 12): see
# test_hardening_service.py for stalled and trickling uploads, the body deadline and the
# per-party places.


def test_queued_requests_run_when_the_slot_is_free(impatient: Service) -> None:
    gate = gate_of(impatient)
    body = arrow_stream(pl.DataFrame({"fnr": synthetic_fnr(5, seed=5)}))
    with (
        ThreadPoolExecutor(max_workers=1) as executor,
        impatient.client(token=impatient.tokens["operator"]) as http,
    ):
        with HeldSlot(impatient):
            future = executor.submit(
                http.post,
                "/v1/pseudonymise",
                params={"domain": DOMAIN},
                content=body,
                headers=ARROW_HEADERS,
            )
            wait_until(lambda: gate.waiting == 1, "the second request queues")
        # the held slot is free now, well within the queue timeout
        assert future.result().status_code == 200
