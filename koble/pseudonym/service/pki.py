"""A small local *test* PKI: one CA, a server certificate and a client certificate per party,
so the pseudonym service can run with TLS and mutual TLS on a developer machine or in tests.
The layout is what the service's configuration expects::

    <directory>/ca.pem  ca.key  server.pem  server.key  parties/<party>.pem  parties/<party>.key

Keys are ECDSA P-256. A client certificate names its party as the URI SAN
``urn:koble:party:<id>`` and as the subject CN. Key files are mode 0600; nothing is overwritten.

**This is a test CA.** Its key lies next to the certificates, by default unencrypted: whoever
reads ``ca.key`` can mint a certificate for any party. Production uses the organisation's PKI.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from koble.errors import CryptoError, FileFormatError, UsageError, redact
from koble.files import write_bytes
from koble.registries.identifiers.scan import check_name

__all__ = [
    "PARTY_PATTERN",
    "PARTY_URI_PREFIX",
    "PartyCredentials",
    "TestPki",
    "check_party_id",
    "create_test_pki",
    "issue_party_certificate",
    "party_of_certificate",
]

PARTY_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
PARTY_URI_PREFIX = "urn:koble:party:"
RandBytes = Callable[[int], bytes]
_Public = ec.EllipticCurvePublicKey
_Exts = list[tuple[x509.ExtensionType, bool]]
_PEM, _PKCS8 = ser.Encoding.PEM, ser.PrivateFormat.PKCS8
_CLIENT_AUTH, _SERVER_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH
_KEY_USAGES = "digital_signature content_commitment key_encipherment data_encipherment"
_KEY_USAGES += " key_agreement key_cert_sign crl_sign encipher_only decipher_only"


@dataclass(frozen=True)
class PartyCredentials:
    """A party's client certificate and its unencrypted (mode 0600) private key."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class TestPki:
    """Where :func:`create_test_pki` wrote everything."""

    __test__: ClassVar[bool] = False  # not a pytest test class, despite the name

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    parties: Mapping[str, PartyCredentials]


def check_party_id(party: str, parameter: str = "party id") -> str:
    """Return ``party`` if it is a valid party id (``[a-z0-9][a-z0-9._-]{0,62}``) without a
    person number in it (:func:`~koble.registries.identifiers.scan.check_name`: the id is
    written into certificates, configs and the audit log). Errors name ``parameter``, never
    the value."""
    if not isinstance(party, str) or not PARTY_PATTERN.fullmatch(party):
        raise UsageError(f"{parameter}: invalid party id: use 1-63 of a-z 0-9 . _ - (start a-z0-9)")
    return check_name(party, parameter, what="a party id")


def create_test_pki(
    directory: Path,
    parties: Sequence[str],
    *,
    host_names: Sequence[str] = ("localhost",),
    ip_addresses: Sequence[str] = ("127.0.0.1",),
    now: datetime.datetime,
    days: int = 30,
    passphrase: bytes | None = None,
    randbytes: RandBytes = os.urandom,
) -> TestPki:
    """Make a test CA, a server certificate and one client certificate per party.

    Certificates are valid from ``now`` (timezone-aware; pass a minute or so earlier to allow
    for clock skew) for ``days`` days. ``ca.key`` is encrypted under ``passphrase`` if given,
    else written unencrypted, mode 0600 - acceptable only because this is a test CA. Server
    and party keys are unencrypted (mode 0600) since uvicorn and clients read them unattended.
    ``randbytes`` supplies the serial numbers. Nothing is written if any target file exists.
    """
    directory = Path(directory)
    if len({check_party_id(party) for party in parties}) != len(parties):
        raise UsageError("a party is listed twice")
    try:
        sans: list[x509.GeneralName] = [x509.DNSName(h) for h in host_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    except ValueError as exc:
        raise UsageError(f"invalid IP address: {exc}") from None
    if not sans:
        raise UsageError("the server certificate needs a host name or an IP address")
    leaves = [f"parties/{p}.{ext}" for p in parties for ext in ("pem", "key")]
    ca_pem, ca_key_file, server_pem, server_key, *_ = _fresh(
        directory, "ca.pem", "ca.key", "server.pem", "server.key", *leaves
    )
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _Issuer(_name("koble test CA"), ca_key, now, days, randbytes)
    ca_cert = ca.issue(ca.name, ca.key.public_key(), [
        (x509.BasicConstraints(ca=True, path_length=0), True),
        (_key_usage("digital_signature", "key_cert_sign", "crl_sign"), True),
    ])  # fmt: skip
    encryption = ser.BestAvailableEncryption(passphrase) if passphrase else ser.NoEncryption()
    _write(ca_pem, ca_cert.public_bytes(_PEM))
    _write(ca_key_file, ca.key.private_bytes(_PEM, _PKCS8, encryption), private=True)
    ca.leaf(directory / "server", [*host_names, "koble server"][0], _SERVER_AUTH, sans)
    issued = {p: ca.party(directory, p) for p in parties}
    return TestPki(directory, ca_pem, ca_key_file, server_pem, server_key, issued)


def issue_party_certificate(
    directory: Path,
    party: str,
    *,
    now: datetime.datetime,
    days: int = 30,
    passphrase: bytes | None = None,
    randbytes: RandBytes = os.urandom,
) -> PartyCredentials:
    """Add a client certificate for ``party`` to an existing test PKI in ``directory``.

    Opens ``ca.key`` with ``passphrase`` (a wrong one is a :class:`~koble.errors.CryptoError`).
    Also how tests make a certificate with an unusual validity, an expired one say.
    """
    directory = Path(directory)
    check_party_id(party)
    _fresh(directory, f"parties/{party}.pem", f"parties/{party}.key")
    try:
        ca_cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
        ca_key = (directory / "ca.key").read_bytes()
    except (OSError, ValueError) as exc:
        raise FileFormatError(f"not a test PKI: {redact(str(exc))}", path=directory) from None
    try:
        key = ser.load_pem_private_key(ca_key, passphrase)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError("not a P-256 CA key")
    except (ValueError, TypeError):
        where = directory / "ca.key"
        raise CryptoError(
            f"cannot open CA key {where} with the passphrase given: {CryptoError()}"
        ) from None
    return _Issuer(ca_cert.subject, key, now, days, randbytes).party(directory, party)


def party_of_certificate(der: bytes) -> str | None:
    """The party id a (DER) client certificate names, or None: never raises.

    The ``urn:koble:party:`` URI SAN wins; without one, the subject CN. The id must match
    :data:`PARTY_PATTERN`; two different party URIs make it None. This only *reads* the
    certificate: call it on certificates the TLS handshake has already verified.
    """
    try:
        cert = x509.load_der_x509_certificate(der)
        sans = [
            e.value for e in cert.extensions if isinstance(e.value, x509.SubjectAlternativeName)
        ]
        uris = [u for s in sans for u in s.get_values_for_type(x509.UniformResourceIdentifier)]
        found = {u[len(PARTY_URI_PREFIX) :] for u in uris if u.startswith(PARTY_URI_PREFIX)}
        if not found:
            found = {str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
        party = found.pop() if len(found) == 1 else None
    except Exception:  # noqa: BLE001 - garbage of any kind means "no party", by contract
        return None
    return party if party is not None and PARTY_PATTERN.fullmatch(party) else None


@dataclass(frozen=True)
class _Issuer:
    """The CA's name and key, and the validity and serial source for what it signs."""

    name: x509.Name
    key: ec.EllipticCurvePrivateKey
    now: datetime.datetime
    days: int
    randbytes: RandBytes

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise UsageError("now must be timezone-aware")
        if self.days < 1:
            raise UsageError("days must be at least 1")

    def issue(self, subject: x509.Name, public_key: _Public, extensions: _Exts) -> x509.Certificate:
        serial = int.from_bytes(self.randbytes(16), "big") >> 1 or 1  # positive, <= 127 bits
        end = self.now + datetime.timedelta(days=self.days)
        builder = x509.CertificateBuilder(self.name, subject, public_key, serial, self.now, end)
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key())
        ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
        for extension, critical in [(ski, False), (aki, False), *extensions]:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(self.key, hashes.SHA256())

    def leaf(
        self, stem: Path, cn: str, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]
    ) -> PartyCredentials:
        """Write ``<stem>.pem`` and ``<stem>.key``: an end-entity certificate for one EKU."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self.issue(_name(cn), key.public_key(), [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (_key_usage("digital_signature"), True),
            (x509.ExtendedKeyUsage([usage]), False),
            (x509.SubjectAlternativeName(sans), False),
        ])  # fmt: skip
        paths = PartyCredentials(stem.parent / f"{stem.name}.pem", stem.parent / f"{stem.name}.key")
        _write(paths.cert, cert.public_bytes(_PEM))
        _write(paths.key, key.private_bytes(_PEM, _PKCS8, ser.NoEncryption()), private=True)
        return paths

    def party(self, directory: Path, party: str) -> PartyCredentials:
        """``parties/<party>.pem`` and ``.key``: clientAuth, CN and URI SAN naming the party."""
        uri = x509.UniformResourceIdentifier(PARTY_URI_PREFIX + party)
        return self.leaf(directory / "parties" / party, party, _CLIENT_AUTH, [uri])


def _name(common_name: str) -> x509.Name:
    org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "koble test PKI")
    return x509.Name([org, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(*allowed: str) -> x509.KeyUsage:
    return x509.KeyUsage(**{usage: usage in allowed for usage in _KEY_USAGES.split()})


def _fresh(directory: Path, *names: str) -> list[Path]:
    """``directory / name`` for each name; refuses, before anything is written, if one exists."""
    paths = [directory / name for name in names]
    for path in paths:
        if path.exists():
            raise UsageError("refusing to overwrite an existing file", path=path)
    return paths


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    """Create ``path`` whole and exclusively (mode 0600 if ``private``, else 0644); an
    existing file is refused (:func:`koble.files.write_bytes`)."""
    write_bytes(path, data, mode=0o600 if private else 0o644, exclusive=True)
