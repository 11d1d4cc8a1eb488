"""Health, readiness, graceful shutdown with a closed audit log, and the CLI around the
service: ``koble serve pki``, ``koble serve token``, ``koble serve`` refusals and
``koble pseudonymise --remote`` against the running service."""

from __future__ import annotations

import datetime
import json
import os
import re
import threading
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path

import httpx
import polars as pl
import pytest
from click.testing import CliRunner, Result
from cryptography import x509

from koble.cli.main import cli
from koble.errors import FileFormatError
from koble.pseudonym.audit import verify_log
from koble.pseudonym.blind import blind
from koble.pseudonym.service.auth import AuthenticationError, authenticate, hash_token
from koble.pseudonym.service.config import load_config
from tests.pseudonym.service.conftest import (
    ARROW_HEADERS,
    Service,
    arrow_stream,
    b64,
    build_service,
    flush_tally,
    running,
    synthetic_fnr,
    utc_now,
    valid_fnr_in_bytes,
)

DOMAIN = "project:cli-test"


def run(*args: str | Path, env: Mapping[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


# --- health and readiness ----------------------------------------------------------------------


def test_health_and_ready_need_no_credentials(service: Service) -> None:
    flush_tally(service)
    before = service.audit_seq()
    with service.client() as http:
        health = http.get("/health")
        ready = http.get("/ready")
        schema = http.get("/openapi.json")
        docs = http.get("/docs")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()["ready"]) == (200, True)
    assert schema.status_code == 200
    assert {"/v1/pseudonymise", "/v1/ingest", "/v1/oprf/evaluate"} <= set(schema.json()["paths"])
    assert docs.status_code == 404  # no interactive docs on the TTP
    flush_tally(service)  # unauthenticated requests: counted per address (.tally)
    (event,) = service.audit_events(before)
    assert event["actor"] == "unauthenticated" and event["rows_in"] == 4
    assert event["details"]["by_status"] == "200: 3, 404: 1"
    paths = event["details"]["by_path"]
    assert {"/health: 1", "/ready: 1", "/openapi.json: 1"} <= set(paths.split(", "))


# --- graceful shutdown -------------------------------------------------------------------------


def test_graceful_shutdown_finishes_the_request_and_closes_the_audit_log(
    tmp_path: Path,
) -> None:
    built = build_service(tmp_path / "svc")
    assert built.audit_path is not None and built.signer is not None
    element = blind(synthetic_fnr(1, seed=2), os.urandom).blinded[0]
    body = arrow_stream(pl.DataFrame({"blinded": pl.Series([element] * 30_000)}))
    outcome: dict[str, object] = {}

    with running(built) as live:
        server = live.server
        assert server is not None

        def big_request() -> None:
            with live.client(token=live.tokens["operator"]) as http:
                response = http.post(
                    "/v1/oprf/evaluate",
                    params={"domain": DOMAIN},
                    content=body,
                    headers=ARROW_HEADERS,
                )
            outcome["status"] = response.status_code
            outcome["rows"] = len(response.content)

        client = threading.Thread(target=big_request, daemon=True)
        client.start()
        deadline = time.monotonic() + 10
        while not server.server_state.tasks:  # the request is in the server
            assert time.monotonic() < deadline, "the request never reached the server"
            time.sleep(0.005)
        time.sleep(0.2)
        server.should_exit = True  # what SIGTERM does
        time.sleep(0.3)
        with pytest.raises(httpx.TransportError), live.client() as late:
            late.get("/health")  # no new connections while shutting down
        client.join(timeout=30)
        assert not client.is_alive()
    assert outcome["status"] == 200
    report = verify_log(built.audit_path, built.signer.public_key_bytes(), require_closed=True)
    assert report.ok, report
    lines = built.audit_lines()
    assert lines[-1]["type"] == "checkpoint" and lines[-1]["final"] is True
    events = [e for e in lines if e["type"] == "event"]
    assert events[-1]["operation"] == "http.oprf"
    assert events[-1]["details"]["status"] == 200
    assert events[-1]["rows_in"] == 30_000


# --- koble serve pki / token / serve -----------------------------------------------------------


def test_serve_pki_makes_a_usable_test_pki(tmp_path: Path) -> None:
    out = tmp_path / "pki"
    made = run("serve", "pki", "--out", out, "--party", "ssb", "--party", "fhi", "--days", "3")
    assert made.exit_code == 0, made.output
    assert "test PKI" in made.output and "local use only" in made.output
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert names == [
        "ca.key",
        "ca.pem",
        "parties/fhi.key",
        "parties/fhi.pem",
        "parties/ssb.key",
        "parties/ssb.pem",
        "server.key",
        "server.pem",
    ]
    ca = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    leaf = x509.load_pem_x509_certificate((out / "parties" / "ssb.pem").read_bytes())
    leaf.verify_directly_issued_by(ca)
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime == datetime.timedelta(days=3)
    again = run("serve", "pki", "--out", out, "--party", "ssb")
    assert again.exit_code == 2 and "overwrite" in again.output
    bad = run("serve", "pki", "--out", tmp_path / "bad", "--party", "Not Valid")
    assert bad.exit_code == 2 and "invalid party id" in bad.output


def test_serve_token_prints_a_token_and_its_config_line(tmp_path: Path) -> None:
    made = run("serve", "token", "--party", "ssb", "--days", "10")
    assert made.exit_code == 0, made.output
    lines = made.output.splitlines()
    token = lines[1]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    (config_line,) = [line for line in lines if line.startswith("tokens = ")]
    parsed = tomllib.loads(config_line)["tokens"]
    assert parsed[0]["sha256"] == hash_token(token)
    expires = parsed[0]["expires"]
    assert abs(expires - (utc_now() + datetime.timedelta(days=10))) < datetime.timedelta(minutes=1)
    assert token not in config_line
    # The printed line is the config's own syntax: the token then authenticates.
    (tmp_path / "service.toml").write_text(
        '[server]\ninsecure_http = true\n[keys]\nkeyset = "ks"\n'
        f'[[party]]\nid = "ssb"\n{config_line}\n',
        encoding="utf-8",
    )
    config = load_config(tmp_path / "service.toml")
    who = authenticate(
        config, authorization=f"Bearer {token}", certificate_party=None, now=utc_now()
    )
    assert who.party == "ssb" and who.method == "token"
    with pytest.raises(AuthenticationError):
        authenticate(
            config,
            authorization=f"Bearer {token}",
            certificate_party=None,
            now=utc_now() + datetime.timedelta(days=11),
        )
    other = run("serve", "token", "--party", "ssb")
    assert other.output.splitlines()[1] != token


def test_serve_refuses_without_config_or_audit(tmp_path: Path) -> None:
    bare = run("serve")
    assert bare.exit_code == 2 and "--config" in bare.output
    (tmp_path / "service.toml").write_text(
        '[server]\ninsecure_http = true\n[keys]\nkeyset = "ks"\n', encoding="utf-8"
    )
    unaudited = run("serve", "--config", tmp_path / "service.toml")
    assert unaudited.exit_code == 2 and "audit" in unaudited.output
    (tmp_path / "broken.toml").write_text("[server]\nbogus = 1\n[[party]]\nid = 'x'\n")
    broken = run("serve", "--config", tmp_path / "broken.toml")
    assert broken.exit_code == 2
    for key in ("server.bogus", "keys.keyset", "party 'x'", "server.certificate"):
        assert key in broken.output


def _config(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "service.toml"
    path.write_text(
        f'[server]\ninsecure_http = true\n{server}\n[keys]\nkeyset = "ks"\n', encoding="utf-8"
    )
    return path


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ('port = "9443"', "server.port"),
        ('max_request_bytes = "1048576"', "server.max_request_bytes"),
        ("max_concurrent = 1.5", "server.max_concurrent"),
        ('queue_timeout_seconds = "5"', "server.queue_timeout_seconds"),
    ],
)
def test_config_refuses_wrongly_typed_server_values(tmp_path: Path, setting: str, key: str) -> None:
    with pytest.raises(FileFormatError, match=re.escape(key)):
        load_config(_config(tmp_path, setting))


@pytest.mark.parametrize("setting", ["max_concurrent = 0", "max_request_bytes = 0"])
def test_config_refuses_limits_that_stop_all_bulk_work(tmp_path: Path, setting: str) -> None:
    with pytest.raises(FileFormatError):
        load_config(_config(tmp_path, setting))


# --- koble pseudonymise --remote ---------------------------------------------------------------


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


# --- the config ---------------------------------------------------------------------------------


def _parties(tmp_path: Path, parties: str) -> Path:
    path = tmp_path / "service.toml"
    path.write_text(
        f'[server]\ninsecure_http = true\n[keys]\nkeyset = "ks"\n{parties}', encoding="utf-8"
    )
    return path


HASH_A, HASH_B = hash_token("token-a"), hash_token("token-b")


def test_config_requires_token_expiry_or_an_explicit_never(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="party 'ssb': token 1 needs expires"):
        load_config(
            _parties(tmp_path, f'[[party]]\nid = "ssb"\ntokens = [{{ sha256 = "{HASH_A}" }}]\n')
        )
    with pytest.raises(
        FileFormatError, match='token 1 expires must be a date-time with a zone, or "never"'
    ):
        load_config(
            _parties(
                tmp_path,
                f'[[party]]\nid = "ssb"\ntokens = [{{ sha256 = "{HASH_A}", expires = "soon" }}]\n',
            )
        )
    config = load_config(
        _parties(
            tmp_path,
            f'[[party]]\nid = "ssb"\ntokens = [{{ sha256 = "{HASH_A}", expires = "never" }}]\n',
        )
    )
    (token,) = config.parties[0].tokens
    assert token.expires is None
    far = utc_now() + datetime.timedelta(days=36500)
    who = authenticate(config, authorization="Bearer token-a", certificate_party=None, now=far)
    assert who.party == "ssb"


def test_config_refuses_one_token_for_two_parties(tmp_path: Path) -> None:
    expires = "2030-01-01T00:00:00Z"
    text = "".join(
        f'[[party]]\nid = "{party}"\ntokens = [{tokens}]\n'
        for party, tokens in (
            ("ssb", f'{{ sha256 = "{HASH_A}", expires = {expires} }}'),
            ("fhi", f'{{ sha256 = "{HASH_B}", expires = {expires} }}, '
                    f'{{ sha256 = "{HASH_A}", expires = {expires} }}'),
        )
    )  # fmt: skip
    with pytest.raises(FileFormatError) as caught:
        load_config(_parties(tmp_path, text))
    message = str(caught.value)
    assert (
        "the same token hash is configured for party 'ssb' (token 1) and party 'fhi' (token 2)"
        in message
    )
    assert HASH_A not in message


def test_config_refuses_party_ids_the_audit_log_would_refuse(tmp_path: Path) -> None:
    party = "officer-" + "a" * 40
    text = f'[[party]]\nid = "{party}"\ntokens = [{{ sha256 = "{HASH_A}", expires = "never" }}]\n'
    with pytest.raises(FileFormatError, match="the audit log would refuse this id"):
        load_config(_parties(tmp_path, text))


@pytest.mark.parametrize(
    "setting", ["max_pending = 0", "pending_expiry_hours = 0", "max_pending = 1.5"]
)
def test_config_refuses_bad_reidentification_limits(tmp_path: Path, setting: str) -> None:
    path = tmp_path / "service.toml"
    path.write_text(
        f'[server]\ninsecure_http = true\n[keys]\nkeyset = "ks"\n[reidentification]\n{setting}\n',
        encoding="utf-8",
    )
    with pytest.raises(FileFormatError, match="reidentification"):
        load_config(path)


def test_the_example_config_loads() -> None:
    path = Path(__file__).parents[3] / "examples" / "service.toml"
    config = load_config(path)
    assert config.host == "127.0.0.1" and not config.insecure_http
    assert config.second_approval and config.pending_expiry_hours == 24
    assert config.max_pending == 100 and config.max_concurrent == 2
    parties = {p.id: p for p in config.parties}
    assert set(parties) == {"ssb", "fhi-lab", "apotek-1", "officer-a", "officer-b", "monitor"}
    assert parties["officer-a"].certificate and "officer" in parties["officer-a"].roles
    assert parties["monitor"].tokens[0].expires is None  # expires = "never", explicitly
    assert all(t.expires is not None for p in ("ssb", "apotek-1") for t in parties[p].tokens)
    assert config.registry_keys["reseptregisteret"] == path.parent / "reseptregisteret.pub.pem"


def test_serve_token_never_expires_only_when_asked(tmp_path: Path) -> None:
    made = run("serve", "token", "--party", "ssb", "--never-expires")
    assert made.exit_code == 0, made.output
    (line,) = [x for x in made.output.splitlines() if x.startswith("tokens = ")]
    assert line.endswith('expires = "never" }]')
    config = load_config(_parties(tmp_path, f'[[party]]\nid = "ssb"\n{line}\n'))
    assert config.parties[0].tokens[0].expires is None
    assert run("serve", "token", "--party", "ssb", "--days", "0").exit_code == 2


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
