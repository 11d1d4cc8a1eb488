"""``koble pseudonymise --remote`` against the running service: the same output and
rejects as the local command, refusals without good credentials, a client certificate, and
clear errors without the CA.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import Result

from tests.pseudonym.service._cli import DOMAIN, run
from tests.pseudonym.service.conftest import Service, b64, synthetic_fnr, valid_fnr_in_bytes


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    numbers = synthetic_fnr(2_000, seed=13)
    values: list[str | None] = list(numbers)
    values[7] = numbers[7][:-1] + str((int(numbers[7][-1]) + 1) % 10)  # wrong check digit
    values[99] = None
    values[1500] = "not-a-number"
    frame = pl.DataFrame(
        {
            "fnr": pl.Series(values, dtype=pl.String),
            "visit": list(range(2_000)),
            "diagnosis": ["J45", "E11", "I10", "F32"] * 500,
        }
    )
    frame.write_parquet(tmp_path / "cohort.parquet")
    return tmp_path / "cohort.parquet"


def local_and_remote(service: Service, cohort: Path, out: Path) -> tuple[Result, Result]:
    actor = {"KOBLE_ACTOR": "ola.operator"}
    local = run(
        "pseudonymise", cohort, out / "local.parquet", "-c", "fnr", "--domain", DOMAIN,
        "--keyset", service.keyset_path, "--kek-env", "KOBLE_TEST_KEK", "--json",
        env={**actor, "KOBLE_TEST_KEK": b64(service.kek)},
    )  # fmt: skip
    remote = run(  # no actor: the service knows the party from its token
        "pseudonymise", cohort, out / "remote.parquet", "-c", "fnr", "--domain", DOMAIN,
        "--remote", service.url, "--ca", service.pki.ca_cert, "--json",
        env={"KOBLE_ACTOR": None, "KOBLE_SERVICE_TOKEN": service.tokens["operator"]},
    )  # fmt: skip
    return local, remote


def test_pseudonymise_remote_equals_local(service: Service, cohort: Path, tmp_path: Path) -> None:
    local, remote = local_and_remote(service, cohort, tmp_path)
    assert local.exit_code == 1, local.output  # 1: some rows rejected
    assert remote.exit_code == 1, remote.output
    here, there = json.loads(local.stdout), json.loads(remote.stdout)
    for key in ("rows", "pseudonymised", "rejected", "domain", "reconciled"):
        assert here[key] == there[key], key
    assert (there["rows"], there["pseudonymised"], there["rejected"]) == (2_000, 1_997, 3)
    local_out = pl.read_parquet(tmp_path / "local.parquet")
    remote_out = pl.read_parquet(tmp_path / "remote.parquet")
    assert remote_out.equals(local_out)
    assert remote_out.columns == ["fnr", "visit", "diagnosis"]
    local_rejects = pl.read_parquet(here["rejects_path"])
    remote_rejects = pl.read_parquet(there["rejects_path"])
    assert remote_rejects["row"].to_list() == [8, 100, 1501]
    assert remote_rejects.drop("message").equals(local_rejects.drop("message"))
    for result in (local, remote):
        assert valid_fnr_in_bytes(result.output.encode()) == []
        assert service.tokens["operator"] not in result.output


def test_pseudonymise_remote_rejects_file_equals_local(
    service: Service, cohort: Path, tmp_path: Path
) -> None:
    local, remote = local_and_remote(service, cohort, tmp_path)
    local_rejects = pl.read_parquet(json.loads(local.stdout)["rejects_path"])
    remote_rejects = pl.read_parquet(json.loads(remote.stdout)["rejects_path"])
    assert remote_rejects.equals(local_rejects)


def test_pseudonymise_remote_refuses_without_good_credentials(
    service: Service, cohort: Path, tmp_path: Path
) -> None:
    common: list[str | Path] = [
        "pseudonymise", cohort, tmp_path / "out.parquet", "-c", "fnr", "--domain", DOMAIN,
        "--remote", service.url, "--ca", service.pki.ca_cert,
    ]  # fmt: skip
    actor = {"KOBLE_ACTOR": "ola.operator"}
    missing = run(*common, env={**actor, "KOBLE_SERVICE_TOKEN": ""})
    assert missing.exit_code == 2 and "KOBLE_SERVICE_TOKEN" in missing.output
    wrong = run(*common, env={**actor, "KOBLE_SERVICE_TOKEN": "wrong-token"})
    assert wrong.exit_code == 4 and "authentication required" in wrong.output
    refused = run(*common, env={**actor, "KOBLE_SERVICE_TOKEN": service.tokens["pharmacy"]})
    assert refused.exit_code == 4 and "pharmacy may not pseudonymise" in refused.output
    assert not (tmp_path / "out.parquet").exists()


def test_pseudonymise_local_still_needs_an_actor(
    service: Service, cohort: Path, tmp_path: Path
) -> None:
    local = run(
        "pseudonymise", cohort, tmp_path / "out.parquet", "-c", "fnr", "--domain", DOMAIN,
        "--keyset", service.keyset_path, "--kek-env", "KOBLE_TEST_KEK",
        env={"KOBLE_ACTOR": None, "KOBLE_TEST_KEK": b64(service.kek)},
    )  # fmt: skip
    assert local.exit_code == 2 and "--actor" in local.output
    assert not (tmp_path / "out.parquet").exists()


def test_pseudonymise_remote_refuses_number_identifiers_like_local(
    service: Service, tmp_path: Path
) -> None:
    numbers = synthetic_fnr(20, seed=19)
    numbers[0] = "0" + numbers[0][1:]  # a leading zero a number column would lose
    pl.DataFrame({"fnr": [int(v) for v in numbers]}).write_parquet(tmp_path / "ints.parquet")
    before = service.audit_seq()
    common: list[str | Path] = [
        "pseudonymise", tmp_path / "ints.parquet", tmp_path / "out.parquet", "-c", "fnr",
        "--domain", DOMAIN,
    ]  # fmt: skip
    local = run(*common, "--keyset", service.keyset_path, "--kek-env", "KOBLE_TEST_KEK",
                env={"KOBLE_ACTOR": "ola", "KOBLE_TEST_KEK": b64(service.kek)})  # fmt: skip
    remote = run(*common, "--remote", service.url, "--ca", service.pki.ca_cert,
                 env={"KOBLE_SERVICE_TOKEN": service.tokens["operator"]})  # fmt: skip
    assert local.exit_code == remote.exit_code == 2, (local.output, remote.output)
    assert "identifiers must be text, the column is Int64" in local.output
    assert remote.output == local.output
    assert not (tmp_path / "out.parquet").exists()
    assert service.audit_events(before) == []  # refused before anything was sent


def test_pseudonymise_remote_with_a_client_certificate(
    service: Service, cohort: Path, tmp_path: Path
) -> None:
    lab = service.pki.parties["lab"]
    before = service.audit_seq()
    result = run(
        "pseudonymise", cohort, tmp_path / "out.parquet", "-c", "fnr", "--domain", DOMAIN,
        "--remote", service.url, "--ca", service.pki.ca_cert, "--json",
        "--client-cert", lab.cert, "--client-key", lab.key,
        env={"KOBLE_SERVICE_TOKEN": None, "KOBLE_ACTOR": None},
    )  # fmt: skip
    assert result.exit_code == 1, result.output  # three rows rejected
    assert json.loads(result.stdout)["pseudonymised"] == 1_997
    (event,) = service.audit_events(before)
    assert (event["actor"], event["details"]["via"]) == ("lab", "certificate")
    half = run(
        "pseudonymise", cohort, tmp_path / "half.parquet", "-c", "fnr", "--domain", DOMAIN,
        "--remote", service.url, "--ca", service.pki.ca_cert, "--client-cert", lab.cert,
        env={"KOBLE_SERVICE_TOKEN": None},
    )  # fmt: skip
    assert half.exit_code == 2 and "--client-cert and --client-key go together" in half.output


def test_pseudonymise_remote_without_the_ca_is_a_clear_error(
    service: Service, cohort: Path, tmp_path: Path
) -> None:
    common: list[str | Path] = [
        "pseudonymise", cohort, tmp_path / "out.parquet", "-c", "fnr", "--domain", DOMAIN,
    ]  # fmt: skip
    env = {"KOBLE_SERVICE_TOKEN": service.tokens["operator"]}
    no_ca = run(*common, "--remote", service.url, env=env)
    assert no_ca.exit_code == 2, no_ca.output
    (line,) = no_ca.output.strip().splitlines()
    assert "cannot verify the TLS certificate" in line and "--ca" in line
    assert "internal error" not in line
    closed = run(*common, "--remote", "https://127.0.0.1:9", "--ca", service.pki.ca_cert, env=env)
    assert closed.exit_code == 2 and "cannot connect to https://127.0.0.1:9" in closed.output
    missing = run(*common, "--remote", service.url, "--ca", tmp_path / "nope.pem", env=env)
    assert missing.exit_code == 2 and "no such CA certificate file" in missing.output
    assert not (tmp_path / "out.parquet").exists()


def test_pseudonymise_remote_rejects_name_a_dropped_leading_zero_like_local(
    service: Service, tmp_path: Path
) -> None:
    numbers = synthetic_fnr(5, seed=23)
    numbers[0] = "0" + numbers[0][1:]
    source = tmp_path / "ids.csv"
    source.write_text("fnr\n" + "\n".join([numbers[0][1:], "123", *numbers[1:]]) + "\n")
    common: list[str | Path] = ["pseudonymise", source, "-c", "fnr", "--domain", DOMAIN]
    local = run(*common, tmp_path / "local.csv", "--keyset", service.keyset_path,
                "--kek-env", "KOBLE_TEST_KEK",
                env={"KOBLE_ACTOR": "ola", "KOBLE_TEST_KEK": b64(service.kek)})  # fmt: skip
    remote = run(*common, tmp_path / "remote.csv", "--remote", service.url,
                 "--ca", service.pki.ca_cert,
                 env={"KOBLE_SERVICE_TOKEN": service.tokens["operator"]})  # fmt: skip
    assert local.exit_code == remote.exit_code == 1, (local.output, remote.output)  # rejects
    for name in ("local", "remote"):
        rejects = pl.read_csv(tmp_path / f"{name}.rejects.csv", separator=";", infer_schema=False)
        assert rejects["message"][0].endswith(
            "(10 digits: a leading zero may have been dropped by a spreadsheet)"
        ), name
        assert "spreadsheet" not in rejects["message"][1]
