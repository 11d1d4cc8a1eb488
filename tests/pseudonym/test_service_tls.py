"""The test PKI, and mutual TLS through a real uvicorn server on a free loopback port."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import ssl
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from koble.errors import CryptoError, FileFormatError, UsageError
from koble.pseudonym.service.pki import (
    TestPki,
    create_test_pki,
    issue_party_certificate,
    party_of_certificate,
)
from koble.pseudonym.service.tls import (
    CLIENT_CERT_DER,
    ServerTls,
    client_cert_der,
    server_ssl_context,
    uvicorn_config,
)

FIXED = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
NOW = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)  # real clock: TLS


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def san(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


# --- the PKI -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fixed_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return create_test_pki(tmp_path_factory.mktemp("pki"), ["ssb", "fhi.no"], now=FIXED, days=7)


def test_ca_is_a_ca_and_signed_everything(fixed_pki: TestPki) -> None:
    ca = load(fixed_pki.ca_cert)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert ca.not_valid_before_utc == FIXED
    for path in [fixed_pki.server_cert, *(p.cert for p in fixed_pki.parties.values())]:
        cert = load(path)
        cert.verify_directly_issued_by(ca)
        assert cert.not_valid_after_utc == FIXED + datetime.timedelta(days=7)
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_server_certificate_is_for_server_auth_with_sans(fixed_pki: TestPki) -> None:
    server = load(fixed_pki.server_cert)
    assert eku(server) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert san(server).get_values_for_type(x509.DNSName) == ["localhost"]
    assert san(server).get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]


def test_party_certificates_name_the_party(fixed_pki: TestPki) -> None:
    assert set(fixed_pki.parties) == {"ssb", "fhi.no"}
    for party, files in fixed_pki.parties.items():
        assert files.cert == fixed_pki.directory / "parties" / f"{party}.pem"
        assert files.key == fixed_pki.directory / "parties" / f"{party}.key"
        cert = load(files.cert)
        assert eku(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == party
        uris = san(cert).get_values_for_type(x509.UniformResourceIdentifier)
        assert uris == [f"urn:koble:party:{party}"]
        assert party_of_certificate(cert.public_bytes(serialization.Encoding.DER)) == party


def test_key_files_are_private(fixed_pki: TestPki) -> None:
    keys = [fixed_pki.ca_key, fixed_pki.server_key, *(p.key for p in fixed_pki.parties.values())]
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
        serialization.load_pem_private_key(key.read_bytes(), None)  # unencrypted


def test_serials_come_from_randbytes(tmp_path: Path) -> None:
    pki = create_test_pki(tmp_path, ["a"], now=FIXED, randbytes=lambda n: b"\x02" * n)
    assert load(pki.ca_cert).serial_number == int.from_bytes(b"\x02" * 16, "big") >> 1


def test_refuses_to_overwrite_and_writes_nothing(tmp_path: Path) -> None:
    create_test_pki(tmp_path / "one", ["a"], now=FIXED)
    with pytest.raises(UsageError, match=r"ca\.pem"):
        create_test_pki(tmp_path / "one", ["a"], now=FIXED)
    (tmp_path / "two" / "parties").mkdir(parents=True)
    (tmp_path / "two" / "parties" / "b.key").write_text("mine")
    with pytest.raises(UsageError, match=r"b\.key.*overwrite"):
        create_test_pki(tmp_path / "two", ["a", "b"], now=FIXED)
    assert sorted(p.name for p in (tmp_path / "two").rglob("*")) == ["b.key", "parties"]
    with pytest.raises(UsageError, match=r"a\.pem"):
        issue_party_certificate(tmp_path / "one", "a", now=FIXED)


@pytest.mark.parametrize("party", ["", "Ssb", "-ssb", ".ssb", "s b", "a/b", "../x", "æ", "x" * 64])
def test_invalid_party_ids_are_refused(tmp_path: Path, party: str) -> None:
    with pytest.raises(UsageError, match="invalid party id"):
        create_test_pki(tmp_path, ["ok", party], now=FIXED)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"parties": ["a", "a"]}, "twice"),
        ({"now": datetime.datetime(2026, 1, 1)}, "timezone"),
        ({"days": 0}, "days"),
        ({"ip_addresses": ["localhost"]}, "IP address"),
        ({"host_names": (), "ip_addresses": ()}, "host name"),
    ],
)
def test_bad_arguments_are_usage_errors(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {"parties": ["a"], "now": FIXED} | kwargs
    with pytest.raises(UsageError, match=message):
        create_test_pki(tmp_path, **arguments)  # type: ignore[arg-type]


def test_passphrase_encrypts_the_ca_key(tmp_path: Path) -> None:
    pki = create_test_pki(tmp_path, [], now=FIXED, passphrase=b"test only")
    assert stat.S_IMODE(pki.ca_key.stat().st_mode) == 0o600
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(pki.ca_key.read_bytes(), None)
    with pytest.raises(CryptoError):
        issue_party_certificate(tmp_path, "late", now=FIXED, passphrase=b"wrong")
    late = issue_party_certificate(tmp_path, "late", now=FIXED, passphrase=b"test only")
    load(late.cert).verify_directly_issued_by(load(pki.ca_cert))
    assert party_of_certificate(load(late.cert).public_bytes(serialization.Encoding.DER)) == "late"


def self_signed(common_name: str, uris: list[str]) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = x509.CertificateBuilder(name, name, key.public_key(), 1, FIXED, FIXED)
    if uris:
        alt = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris])
        builder = builder.add_extension(alt, critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    ("common_name", "uris", "party"),
    [
        ("ssb", [], "ssb"),  # CN only
        ("ssb", ["urn:koble:party:fhi"], "fhi"),  # the URI wins
        ("Not Valid", ["https://example.org", "urn:koble:party:fhi"], "fhi"),
        ("ssb", ["urn:koble:party:fhi", "urn:koble:party:nav"], None),  # ambiguous
        ("ssb", ["urn:koble:party:Bad Id"], None),  # invalid URI id: no fallback to CN
        ("koble test CA", [], None),  # invalid CN
    ],
)
def test_party_of_certificate(common_name: str, uris: list[str], party: str | None) -> None:
    assert party_of_certificate(self_signed(common_name, uris)) == party


@pytest.mark.parametrize("garbage", [b"garbage", b"", b"\x30\x03\x02\x01\x01", b"\x30" * 5000])
def test_party_of_garbage_is_none(garbage: bytes) -> None:
    assert party_of_certificate(garbage) is None


# --- TLS through uvicorn -------------------------------------------------------------------


async def whoami(request: Request) -> JSONResponse:
    der = client_cert_der(request.scope)
    tls = request.scope.get("extensions", {}).get("tls")
    return JSONResponse(
        {
            "party": None if der is None else party_of_certificate(der),
            "tls": tls is not None,
            "tls_version": None if tls is None else tls["tls_version"],
            "name": None if tls is None else tls["client_cert_name"],
            "chain": 0 if tls is None else len(tls["client_cert_chain"]),
        }
    )


APP = Starlette(routes=[Route("/whoami", whoami)])


@contextlib.contextmanager
def serving(tls: ServerTls | None) -> Iterator[str]:
    """Run uvicorn on a free loopback port in a thread; yield its base URL; always stop it."""
    config = uvicorn_config(
        APP, host="127.0.0.1", port=0, tls=tls, log_level="warning", log_config=None
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped during startup"
            assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"{'http' if tls is None else 'https'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        assert not thread.is_alive(), "uvicorn did not stop"


def client_ssl_context(
    ca: Path, cert: tuple[Path, Path] | None = None, maximum: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(*cert)
    if maximum is not None:
        context.maximum_version = maximum
    return context


def client(
    ca: Path, cert: tuple[Path, Path] | None = None, maximum: ssl.TLSVersion | None = None
) -> httpx.Client:
    return httpx.Client(verify=client_ssl_context(ca, cert, maximum), timeout=5)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return create_test_pki(tmp_path_factory.mktemp("live"), ["ssb", "fhi"], now=NOW, days=2)


def mtls(pki: TestPki, *, require: bool = True) -> ServerTls:
    return ServerTls(pki.server_cert, pki.server_key, pki.ca_cert, require_client_cert=require)


def creds(pki: TestPki, party: str) -> tuple[Path, Path]:
    return pki.parties[party].cert, pki.parties[party].key


def test_client_certificate_reaches_the_app(pki: TestPki) -> None:
    with serving(mtls(pki)) as url, client(pki.ca_cert, creds(pki, "ssb")) as http:
        for _ in range(3):  # keep-alive: every request on the connection gets the extension
            body = http.get(f"{url}/whoami").raise_for_status().json()
            assert body["party"] == "ssb"
            assert body["chain"] == 1 and "CN=ssb" in body["name"]
            assert body["tls_version"] in (0x0303, 0x0304)
    with serving(mtls(pki)) as url, client(pki.ca_cert, creds(pki, "fhi")) as http:
        assert http.get(f"{url}/whoami").json()["party"] == "fhi"


@pytest.fixture(scope="module")
def refused(pki: TestPki, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Refusal]:
    """Client certificates a server requiring ``pki``'s must refuse, and OpenSSL's reason."""
    base = tmp_path_factory.mktemp("refused")
    other = create_test_pki(base / "other", ["ssb"], now=NOW)
    past = NOW - datetime.timedelta(days=3)
    # A leaf from the live CA that expired two days ago, and a whole PKI that did.
    expired = issue_party_certificate(pki.directory, "expired", now=past, days=1)
    old = create_test_pki(base / "old", ["ssb"], now=past, days=1)
    old_ca = ServerTls(pki.server_cert, pki.server_key, old.ca_cert, require_client_cert=True)
    return {
        "none": Refusal(mtls(pki), None, "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
        "other-ca": Refusal(mtls(pki), creds(other, "ssb"), "unable to get local issuer"),
        # Optional means "no certificate is fine", never "a bad certificate is ignored".
        "other-ca-optional": Refusal(
            mtls(pki, require=False), creds(other, "ssb"), "unable to get local issuer"
        ),
        "expired-leaf": Refusal(mtls(pki), (expired.cert, expired.key), "certificate has expired"),
        "expired-pki": Refusal(old_ca, creds(old, "ssb"), "certificate has expired"),
        "server-cert": Refusal(mtls(pki), (pki.server_cert, pki.server_key), "purpose"),
    }


@dataclass(frozen=True)
class Refusal:
    server: ServerTls
    cert: tuple[Path, Path] | None
    reason: str


def server_verdict(server: ssl.SSLContext, client: ssl.SSLContext) -> str | None:
    """Handshake in memory; the server's error (OpenSSL's reason), or None if it accepted."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    server_side = server.wrap_bio(s_in, s_out, server_side=True)
    client_side = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    done: set[ssl.SSLObject] = set()
    for _ in range(10):
        for side in (client_side, server_side):
            try:
                side.do_handshake()
                done.add(side)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                if side is client_side:
                    raise
                return getattr(exc, "verify_message", None) or str(exc.reason)
            s_in.write(c_out.read())
            c_in.write(s_out.read())
        if len(done) == 2:
            return None
    raise AssertionError("handshake did not finish")


REFUSALS = [
    "none", "other-ca", "other-ca-optional", "expired-leaf", "expired-pki", "server-cert"
]  # fmt: skip


@pytest.mark.parametrize("case", REFUSALS)
def test_server_refuses_the_handshake_for_the_right_reason(
    refused: dict[str, Refusal], pki: TestPki, case: str
) -> None:
    refusal = refused[case]
    client_context = client_ssl_context(pki.ca_cert, refusal.cert)
    assert refusal.reason in (server_verdict(refusal.server.context(), client_context) or "")


@pytest.mark.parametrize("maximum", [ssl.TLSVersion.TLSv1_2, None], ids=["tls1.2", "tls1.3"])
@pytest.mark.parametrize("case", REFUSALS)
def test_uvicorn_refuses_the_connection(
    refused: dict[str, Refusal], pki: TestPki, case: str, maximum: ssl.TLSVersion | None
) -> None:
    refusal = refused[case]
    with serving(refusal.server) as url, client(pki.ca_cert, refusal.cert, maximum) as http:
        # TLS 1.2 fails in the handshake. In 1.3 the client finishes first and then finds the
        # connection closed, with no response: either way the app never sees the request.
        with pytest.raises(httpx.ConnectError if maximum else httpx.TransportError):
            http.get(f"{url}/whoami")
        with client(pki.ca_cert, creds(pki, "ssb")) as good:  # and the server carries on
            if refusal.server.client_ca == pki.ca_cert:
                assert good.get(f"{url}/whoami").json()["party"] == "ssb"


def test_verdict_helper_accepts_good_certificates(pki: TestPki) -> None:
    good = client_ssl_context(pki.ca_cert, creds(pki, "fhi"))
    assert server_verdict(mtls(pki).context(), good) is None


def test_optional_client_certificate(pki: TestPki) -> None:
    with serving(mtls(pki, require=False)) as url:
        with client(pki.ca_cert) as http:
            body = http.get(f"{url}/whoami").raise_for_status().json()
            assert (body["party"], body["tls"], body["chain"], body["name"]) == (
                None,
                True,
                0,
                None,
            )
        with client(pki.ca_cert, creds(pki, "fhi")) as http:
            assert http.get(f"{url}/whoami").json()["party"] == "fhi"


def test_without_client_ca_no_certificate_is_asked_for(pki: TestPki) -> None:
    tls = ServerTls(pki.server_cert, pki.server_key)
    with serving(tls) as url, client(pki.ca_cert, creds(pki, "ssb")) as http:
        body = http.get(f"{url}/whoami").raise_for_status().json()
        assert (body["party"], body["tls"], body["chain"], body["name"]) == (None, True, 0, None)


def test_plain_http_has_no_tls_extension() -> None:
    with serving(None) as url, httpx.Client(timeout=5) as http:
        assert http.get(f"{url}/whoami").json()["tls"] is False


def test_scope_helper_is_defensive() -> None:
    assert client_cert_der({}) is None
    assert client_cert_der({"extensions": None}) is None
    assert client_cert_der({"extensions": {"tls": {CLIENT_CERT_DER: None}}}) is None
    assert client_cert_der({"extensions": {"tls": {CLIENT_CERT_DER: "text"}}}) is None
    assert client_cert_der({"extensions": {"tls": {CLIENT_CERT_DER: b"\x30"}}}) == b"\x30"


def test_server_context_settings(pki: TestPki, tmp_path: Path) -> None:
    context = server_ssl_context(
        pki.server_cert, pki.server_key, client_ca=pki.ca_cert, require_client_cert=False
    )
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_OPTIONAL
    assert mtls(pki).context().verify_mode == ssl.CERT_REQUIRED
    assert ServerTls(pki.server_cert, pki.server_key).context().verify_mode == ssl.CERT_NONE
    with pytest.raises(UsageError, match="client_ca"):
        server_ssl_context(
            pki.server_cert, pki.server_key, client_ca=None, require_client_cert=True
        )
    with pytest.raises(FileFormatError, match="certificate and key"):
        ServerTls(pki.server_cert, pki.ca_cert).context()
    with pytest.raises(FileFormatError, match="CA certificates"):
        ServerTls(pki.server_cert, pki.server_key, tmp_path / "missing.pem").context()


def test_encrypted_server_key_needs_its_password(pki: TestPki, tmp_path: Path) -> None:
    key = serialization.load_pem_private_key(pki.server_key.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    encrypted = tmp_path / "server.key"
    encryption = serialization.BestAvailableEncryption(b"secret")
    pem = serialization.Encoding.PEM
    encrypted.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, encryption))
    with pytest.raises(FileFormatError):  # no interactive OpenSSL prompt, an error
        ServerTls(pki.server_cert, encrypted).context()
    assert ServerTls(pki.server_cert, encrypted, key_password=b"secret").context()
