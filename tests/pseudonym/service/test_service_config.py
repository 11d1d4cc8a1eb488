"""The CLI that sets the service up and its config: ``koble serve pki``, ``koble serve
token``, ``koble serve`` refusals, and the config's checks of server values, tokens and
their expiry, party ids and re-identification limits; the example config loads.
"""

from __future__ import annotations

import datetime
import re
import tomllib
from pathlib import Path

import pytest
from cryptography import x509

from koble.errors import FileFormatError
from koble.pseudonym.service.auth import AuthenticationError, authenticate, hash_token
from koble.pseudonym.service.config import load_config
from tests.pseudonym.service._cli import run
from tests.pseudonym.service.conftest import utc_now

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
