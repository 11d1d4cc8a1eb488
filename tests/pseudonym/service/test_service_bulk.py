"""The bulk operations through real HTTPS: pseudonymise (strict and partial), bad bodies,
limits, concurrency, blind mode, sealed ingest and re-identification with two officers."""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import polars as pl
import pyarrow as pa
import pytest

from koble.errors import AuthorisationError
from koble.pseudonym.blind import BLIND_PSEUDONYM_LENGTH, BlindKey, blind
from koble.pseudonym.client import RejectedError, ServiceClient, ServiceError
from koble.pseudonym.ingest import registry_open, seal
from koble.pseudonym.pseudonymise import pseudonymise_values
from koble.pseudonym.sealed import ForwardedBatch
from koble.pseudonym.service.arrowio import ARROW
from tests.pseudonym.service.conftest import (
    ARROW_HEADERS,
    REGISTRY,
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
REASON = "adverse reaction follow-up, case 7"
BASIS = "helseregisterloven paragraf 19 e"


@pytest.fixture(scope="module")
def population() -> list[str]:
    return synthetic_fnr(10_000, seed=7)


def operator(service: Service) -> ServiceClient:
    return ServiceClient(service.url, token=service.tokens["operator"], ca=service.pki.ca_cert)


def officer(service: Service, party: str) -> ServiceClient:
    issued = service.pki.parties[party]
    return ServiceClient(service.url, cert=(issued.cert, issued.key), ca=service.pki.ca_cert)


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
    assert "'person_id'" in missing.json()["message"] and "fnr" in missing.json()["message"]
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

    def record(request: httpx.Request) -> None:
        if request.url.path == "/v1/oprf/evaluate":
            sent.append(request.read())

    with operator(service) as client:
        client._http.event_hooks["request"].append(record)
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


# --- sealed ingest -----------------------------------------------------------------------------


def feed(population: list[str], rows: int) -> pl.DataFrame:
    rng = random.Random(5)
    return pl.DataFrame(
        {
            "fnr": population[:rows],
            "atc": [rng.choice(["N02BE01", "C09AA05", "A10BA02"]) for _ in range(rows)],
            "ddd": [rng.randint(1, 90) for _ in range(rows)],
        }
    )


def sealed(service: Service, frame: pl.DataFrame) -> bytes:
    batch = seal(
        frame,
        {"fnr": "fnr"},
        ttp_public=service.ttp_key.public,
        registry_public=service.registry_key.public,
        randbytes=os.urandom,
    )
    return batch.to_bytes()


def test_sealed_ingest_pseudonyms_are_the_registry_domains(
    service: Service, population: list[str]
) -> None:
    frame = feed(population, 500)
    with ServiceClient(
        service.url, token=service.tokens["pharmacy"], ca=service.pki.ca_cert
    ) as client:
        forwarded = client.ingest(sealed(service, frame), registry=REGISTRY)
    assert valid_fnr_in_bytes(forwarded) == []  # nothing readable travels back
    opened = registry_open(ForwardedBatch.from_bytes(forwarded), service.registry_key)
    assert opened.report.rows == opened.report.stored == 500
    expected = pseudonymise_values(
        service.keyset, f"registry:{REGISTRY}", pl.Series(population[:500])
    )
    assert opened.table["fnr_pseudonym"].to_list() == expected.to_list()
    assert opened.table.select("atc", "ddd").equals(frame.select("atc", "ddd"))
    assert opened.report.domains["fnr"]["domain"] == f"registry:{REGISTRY}"


def test_sealed_ingest_with_invalid_identifiers(service: Service, population: list[str]) -> None:
    frame = feed(population, 60)
    values: list[str | None] = frame["fnr"].to_list()
    values[3], values[10], values[41] = last_digit_wrong(values[3] or ""), None, "0101"
    frame = frame.with_columns(pl.Series("fnr", values, dtype=pl.String))
    body = sealed(service, frame)
    with service.client(token=service.tokens["pharmacy"]) as http:
        strict = http.post(
            "/v1/ingest",
            params={"registry": REGISTRY},
            content=body,
            headers={"Content-Type": "application/octet-stream"},
        )
        partial = http.post(
            "/v1/ingest",
            params={"registry": REGISTRY, "partial": "true"},
            content=body,
            headers={"Content-Type": "application/octet-stream"},
        )
        garbage = http.post("/v1/ingest", params={"registry": REGISTRY}, content=b"x" * 100)
    assert strict.status_code == 422
    rejects = read_arrow(strict.content)
    assert rejects["row"].to_list() == [4, 11, 42]
    assert set(rejects.columns) <= {"row", "column", "reason", "message"}
    assert valid_fnr_in_bytes(strict.content) == []
    assert partial.status_code == 200 and partial.headers["X-Koble-Rejected"] == "3"
    opened = registry_open(ForwardedBatch.from_bytes(partial.content), service.registry_key)
    assert (opened.report.rows, opened.report.stored, opened.report.rejected) == (60, 57, 3)
    good = [v for i, v in enumerate(values) if i not in (3, 10, 41)]
    assert (
        opened.table["fnr_pseudonym"].to_list()
        == pseudonymise_values(service.keyset, f"registry:{REGISTRY}", pl.Series(good)).to_list()
    )
    assert garbage.status_code == 400


# --- re-identification -------------------------------------------------------------------------


def test_reidentification_needs_a_second_officer_and_runs_once(
    service: Service, population: list[str]
) -> None:
    wanted = population[:25]
    with operator(service) as client:
        pseudonyms = client.pseudonymise(wanted, domain=DOMAIN)["pseudonym"].to_list()
    pseudonyms.append("not-a-pseudonym")
    with officer(service, "officer-a") as a, officer(service, "officer-b") as b:
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
        result = a.reidentification_result(request_id)
        assert result["identifier"].to_list()[:25] == wanted
        assert result["identifier"][25] is None and result["reason"][25] is not None
        assert result["reason"].null_count() == 25
        with pytest.raises(ServiceError) as again:
            a.reidentification_result(request_id)  # released once only
        assert again.value.status in (400, 404, 410)
    with service.client(token=service.tokens["operator"]) as http:
        refused = http.post(
            "/v1/reidentify",
            params={"domain": DOMAIN, "reason": REASON, "legal_basis": BASIS},
            content=arrow_stream(pl.DataFrame({"pseudonym": pseudonyms})),
            headers=ARROW_HEADERS,
        )
    assert refused.status_code == 403


def test_reidentification_needs_a_reason_and_a_legal_basis(service: Service) -> None:
    body = arrow_stream(pl.DataFrame({"pseudonym": ["x"]}))
    with service.client(party="officer-a") as http:
        for reason, basis in (("short", BASIS), (REASON, "short"), ("          ", BASIS)):
            response = http.post(
                "/v1/reidentify",
                params={"domain": DOMAIN, "reason": reason, "legal_basis": basis},
                content=body,
                headers=ARROW_HEADERS,
            )
            assert response.status_code == 400, response.text
        missing = http.post(
            "/v1/reidentify",
            params={"domain": DOMAIN, "reason": REASON, "legal_basis": BASIS},
            content=arrow_stream(pl.DataFrame({"fnr": ["x"]})),
            headers=ARROW_HEADERS,
        )
        assert missing.status_code == 400 and "'pseudonym'" in missing.json()["message"]


@pytest.mark.parametrize(
    "column",
    [
        pl.Series("pseudonym", [b"\xff" * 36], dtype=pl.Binary),
        pl.Series("pseudonym", [[1, 2]]),
    ],
    ids=["binary", "list"],
)
def test_reidentify_with_a_pseudonym_column_that_is_not_text_is_400(
    service: Service, column: pl.Series
) -> None:
    with service.client(party="officer-a") as http:
        response = http.post(
            "/v1/reidentify",
            params={"domain": DOMAIN, "reason": REASON, "legal_basis": BASIS},
            content=arrow_stream(pl.DataFrame([column])),
            headers=ARROW_HEADERS,
        )
    assert response.status_code == 400, response.text
    assert "'pseudonym'" in response.json()["message"]


# --- one bulk slot -----------------------------------------------------------------------------


def one_slot_service(directory: Path, queue_timeout: float) -> Iterator[Service]:
    built = build_service(
        directory,
        server={
            "max_concurrent": 1,
            "queue_timeout_seconds": queue_timeout,
            "max_request_bytes": 8 << 20,
        },
    )
    with running(built) as live:
        yield live


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A service with a single bulk slot (and the default 30 s queue timeout)."""
    yield from one_slot_service(tmp_path_factory.mktemp("one-slot"), 30.0)


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A service with a single bulk slot and a 1 s queue timeout."""
    yield from one_slot_service(tmp_path_factory.mktemp("impatient"), 1.0)


def slow_oprf_body(elements: int) -> bytes:
    """``elements`` copies of one valid blinded element: seconds of work for the service."""
    element = blind(synthetic_fnr(1, seed=1), os.urandom).blinded[0]
    return arrow_stream(pl.DataFrame({"blinded": pl.Series([element] * elements)}))


class Slow(threading.Thread):
    """A bulk request that keeps the service's only slot busy for a while."""

    def __init__(self, service: Service, elements: int) -> None:
        super().__init__(daemon=True)
        self.service, self.body = service, slow_oprf_body(elements)
        self.status: int | None = None

    def run(self) -> None:
        with self.service.client(token=self.service.tokens["operator"]) as http:
            response = http.post(
                "/v1/oprf/evaluate",
                params={"domain": DOMAIN},
                content=self.body,
                headers=ARROW_HEADERS,
            )
        self.status = response.status_code


def test_a_busy_service_answers_503_with_retry_after(impatient: Service) -> None:
    slow = Slow(impatient, 40_000)  # seconds of point multiplications
    slow.start()
    time.sleep(0.3)
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
    slow.join(timeout=60)
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "5"
    assert 0.9 < waited < 5
    assert slow.status == 200
    statuses = [e["details"]["status"] for e in impatient.audit_events(before)]
    assert statuses[:2] == [503, 200]  # the refused request, /health; then the slow one


def test_a_reidentification_is_released_once_even_to_concurrent_collections(
    one_slot: Service, population: list[str]
) -> None:
    pseudonyms = pseudonymise_values(one_slot.keyset, DOMAIN, pl.Series(population[:5]))
    with officer(one_slot, "officer-a") as a, officer(one_slot, "officer-b") as b:
        request_id = a.request_reidentification(
            pseudonyms.to_list(), domain=DOMAIN, reason=REASON, legal_basis=BASIS
        )
        assert isinstance(request_id, str)
        b.approve_reidentification(request_id)
    slow = Slow(one_slot, 30_000)  # seconds: the two collections wait behind it
    slow.start()
    time.sleep(0.3)

    def collect(_: int) -> int:
        with one_slot.client(party="officer-a") as http:
            return http.get(f"/v1/reidentify/{request_id}").status_code

    with ThreadPoolExecutor(max_workers=2) as executor:
        statuses = sorted(executor.map(collect, range(2)))
    slow.join(timeout=60)
    assert slow.status == 200
    assert statuses[0] == 200 and statuses[1] != 200, statuses


def test_unknown_reidentification_requests_are_refused(one_slot: Service) -> None:
    with one_slot.client(party="officer-a") as http:
        assert http.get("/v1/reidentify/0123456789abcdef").status_code == 400
        assert http.post("/v1/reidentify/0123456789abcdef/approve").status_code == 400
