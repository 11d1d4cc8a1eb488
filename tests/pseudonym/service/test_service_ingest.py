"""Sealed ingest through real HTTPS: the forwarded batch and the rejects come back together
(an ingest result), strict batches are refused whole, and ``koble ingest submit`` writes the
forwarded batch and a rejects file as the TTP's own step would."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result

from koble.cli.main import cli
from koble.errors import FileFormatError
from koble.pseudonym.client import Ingested, RejectedError
from koble.pseudonym.ingest import registry_open, seal, ttp_pseudonymise
from koble.pseudonym.ingest_feed import feed_domains
from koble.pseudonym.pseudonymise import pseudonymise_values
from koble.pseudonym.sealed import ForwardedBatch, SealedBatch
from koble.pseudonym.service.arrowio import arrow_bytes
from koble.pseudonym.service.ingest_result import INGEST_RESULT, MAGIC, pack, unpack
from tests.pseudonym.service._helpers import service_client
from tests.pseudonym.service.conftest import (
    REGISTRY,
    Service,
    read_arrow,
    synthetic_fnr,
    valid_fnr_in_bytes,
)

BROKEN_ROWS = [4, 11, 42]  # 1-based rows with invalid identifiers in ``dirty_feed``
OCTET = {"Content-Type": "application/octet-stream"}


def feed(population: list[str], rows: int) -> pl.DataFrame:
    rng = random.Random(5)
    return pl.DataFrame(
        {
            "fnr": population[:rows],
            "atc": [rng.choice(["N02BE01", "C09AA05", "A10BA02"]) for _ in range(rows)],
            "ddd": [rng.randint(1, 90) for _ in range(rows)],
        }
    )


def dirty_feed(population: list[str]) -> pl.DataFrame:
    frame = feed(population, 60)
    values: list[str | None] = frame["fnr"].to_list()
    wrong = values[3] or ""
    values[3], values[10], values[41] = wrong[:-1] + str((int(wrong[-1]) + 1) % 10), None, "0101"
    return frame.with_columns(pl.Series("fnr", values, dtype=pl.String))


def sealed(service: Service, frame: pl.DataFrame) -> SealedBatch:
    return seal(
        frame,
        {"fnr": "fnr"},
        ttp_public=service.ttp_key.public,
        registry_public=service.registry_key.public,
        randbytes=os.urandom,
    )


@pytest.fixture(scope="module")
def population() -> list[str]:
    return synthetic_fnr(600, seed=11)


def test_sealed_ingest_pseudonyms_are_the_registry_domains(
    service: Service, population: list[str]
) -> None:
    frame = feed(population, 500)
    with service_client(service, "pharmacy") as client:
        answer = client.ingest(sealed(service, frame).to_bytes(), registry=REGISTRY)
    assert isinstance(answer, Ingested) and answer.rejects.height == 0
    assert "bytes" in repr(answer) and str(len(answer.forwarded)) in repr(answer)
    assert valid_fnr_in_bytes(answer.forwarded) == []  # nothing readable travels back
    opened = registry_open(ForwardedBatch.from_bytes(answer.forwarded), service.registry_key)
    assert opened.report.rows == opened.report.stored == 500
    expected = pseudonymise_values(
        service.keyset, f"registry:{REGISTRY}", pl.Series(population[:500])
    )
    assert opened.table["fnr_pseudonym"].to_list() == expected.to_list()
    assert opened.table.select("atc", "ddd").equals(frame.select("atc", "ddd"))
    assert opened.report.domains["fnr"]["domain"] == f"registry:{REGISTRY}"


def test_sealed_ingest_returns_the_rejects_with_the_forwarded_batch(
    service: Service, population: list[str]
) -> None:
    frame = dirty_feed(population)
    body = sealed(service, frame).to_bytes()
    before = service.audit_seq()
    with service.client(token=service.tokens["pharmacy"]) as http:
        strict = http.post("/v1/ingest", params={"registry": REGISTRY}, content=body, headers=OCTET)
        partial = http.post(
            "/v1/ingest",
            params={"registry": REGISTRY, "partial": "true"},
            content=body,
            headers=OCTET,
        )
        garbage = http.post("/v1/ingest", params={"registry": REGISTRY}, content=b"x" * 100)
    assert strict.status_code == 422
    rejects = read_arrow(strict.content)
    assert rejects["row"].to_list() == BROKEN_ROWS
    assert rejects.columns == ["batch_id", "row", "column", "reason", "message"]
    assert valid_fnr_in_bytes(strict.content) == []
    # partial: the forwarded batch AND the same rejects, in one ingest result
    assert partial.status_code == 200 and partial.headers["X-Koble-Rejected"] == "3"
    assert partial.headers["content-type"] == INGEST_RESULT
    assert valid_fnr_in_bytes(partial.content) == []
    forwarded, returned = unpack(partial.content)
    assert returned.equals(rejects)
    opened = registry_open(ForwardedBatch.from_bytes(forwarded), service.registry_key)
    assert (opened.report.rows, opened.report.stored, opened.report.rejected) == (60, 57, 3)
    good = [v for i, v in enumerate(frame["fnr"].to_list(), 1) if i not in BROKEN_ROWS]
    assert (
        opened.table["fnr_pseudonym"].to_list()
        == pseudonymise_values(service.keyset, f"registry:{REGISTRY}", pl.Series(good)).to_list()
    )
    assert garbage.status_code == 400
    counts = [(e["rows_in"], e["rows_out"], e["rejected"]) for e in service.audit_events(before)]
    assert counts == [(60, 3, 3), (60, 57, 3), (None, None, None)]  # rejects; forwarded; 400
    with service_client(service, "pharmacy") as client, pytest.raises(RejectedError) as caught:
        client.ingest(body, registry=REGISTRY)
    assert caught.value.rejects["row"].to_list() == BROKEN_ROWS


def test_the_ingest_result_container() -> None:
    rejects = pl.DataFrame({"row": [2], "reason": ["check_digit"]})
    packed = pack(b"forwarded-bytes", arrow_bytes(rejects))
    assert packed.startswith(MAGIC)
    forwarded, back = unpack(packed)
    assert forwarded == b"forwarded-bytes" and back.equals(rejects)
    for broken in (b"", b"KOBLEIR0" + packed[8:], packed[:20], packed[:-5]):
        with pytest.raises(FileFormatError):
            unpack(broken)


# --- koble ingest submit -------------------------------------------------------------------------


def submit(service: Service, batch: Path, out: Path, *extra: str | Path) -> Result:
    # No KOBLE_ACTOR: the service knows the party from its token.
    env = {"KOBLE_SERVICE_TOKEN": service.tokens["pharmacy"], "KOBLE_ACTOR": ""}
    args = ["ingest", "submit", batch, out, "--registry", REGISTRY, "--remote", service.url,
            "--ca", service.pki.ca_cert, "--json", *extra]  # fmt: skip
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def test_ingest_submit_writes_the_rejects_file(
    service: Service, population: list[str], tmp_path: Path
) -> None:
    batch = sealed(service, dirty_feed(population))
    batch.write(tmp_path / "feed.sealed")
    # What the TTP's own step rejects, for comparison (less the identifiers it holds).
    local = ttp_pseudonymise(
        batch, ttp_key=service.ttp_key, keyset=service.keyset,
        domains=feed_domains(REGISTRY, batch.identifiers.columns),
        registry_public=service.registry_key.public, randbytes=os.urandom,
    ).rejects.drop("identifier")  # fmt: skip

    strict = submit(service, tmp_path / "feed.sealed", tmp_path / "strict.forwarded")
    assert strict.exit_code == 1, strict.output
    summary = json.loads(strict.stdout)
    assert summary["forwarded"] is False and summary["rejected"] == 3
    assert summary["rejects"] == str(tmp_path / "strict.rejects.parquet")  # the default name
    assert not (tmp_path / "strict.forwarded").exists()
    assert pl.read_parquet(summary["rejects"]).equals(local)

    partial = submit(
        service, tmp_path / "feed.sealed", tmp_path / "partial.forwarded", "--partial",
        "--rejects", tmp_path / "sender" / "rejects.csv",
    )  # fmt: skip
    assert partial.exit_code == 1, partial.output
    summary = json.loads(partial.stdout)
    assert summary["forwarded"] is True and summary["rejected"] == 3
    written = pl.read_csv(tmp_path / "sender" / "rejects.csv", separator=";")
    assert written["row"].to_list() == BROKEN_ROWS
    assert written["reason"].to_list() == local["reason"].to_list()
    opened = registry_open(
        ForwardedBatch.read(tmp_path / "partial.forwarded"), service.registry_key
    )
    assert (opened.report.stored, opened.report.rejected) == (57, 3)
    for result in (strict, partial):
        assert valid_fnr_in_bytes(result.output.encode()) == []
    for path in (tmp_path / "strict.rejects.parquet", tmp_path / "sender" / "rejects.csv"):
        assert valid_fnr_in_bytes(path.read_bytes()) == []


def test_ingest_submit_of_a_clean_batch_exits_0(
    service: Service, population: list[str], tmp_path: Path
) -> None:
    sealed(service, feed(population, 40)).write(tmp_path / "feed.sealed")
    result = submit(service, tmp_path / "feed.sealed", tmp_path / "feed.forwarded")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["forwarded"] is True and summary["rejected"] == 0
    assert pl.read_parquet(tmp_path / "feed.rejects.parquet").height == 0
    opened = registry_open(ForwardedBatch.read(tmp_path / "feed.forwarded"), service.registry_key)
    assert opened.report.stored == 40


def test_ingest_submit_refused_for_the_wrong_party(
    service: Service, population: list[str], tmp_path: Path
) -> None:
    sealed(service, feed(population, 5)).write(tmp_path / "feed.sealed")
    env = {"KOBLE_SERVICE_TOKEN": service.tokens["operator"]}
    args = ["ingest", "submit", tmp_path / "feed.sealed", tmp_path / "out.forwarded",
            "--registry", REGISTRY, "--remote", service.url,
            "--ca", service.pki.ca_cert]  # fmt: skip
    refused = CliRunner().invoke(cli, [str(a) for a in args], env=env)
    assert refused.exit_code == 4 and "operator may not ingest" in refused.output
    assert not (tmp_path / "out.forwarded").exists()
