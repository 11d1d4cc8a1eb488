"""``koble serve``: the pseudonym service over HTTPS; ``serve pki`` and ``serve token``."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import click

from koble.cli._secrets import (
    AUDIT_PASSPHRASE,
    kek_options,
    print_audit_head,
    randbytes,
    resolve_kek,
    utc_now,
)
from koble.errors import UsageError
from koble.pseudonym.audit import AuditLog
from koble.pseudonym.opening import opening
from koble.pseudonym.service.auth import hash_token, new_token
from koble.pseudonym.service.config import NEVER, load_config
from koble.pseudonym.signing import Ed25519Signer

__all__ = ["serve"]

PARTY_PASSPHRASE = "KOBLE_PARTY_PASSPHRASE"


@click.group("serve", invoke_without_command=True)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The service's TOML file (see koble/pseudonym/service/config.py).",
)
@kek_options
@click.option("--audit-passphrase-env", default=AUDIT_PASSPHRASE, show_default=True)
@click.pass_context
def serve(
    ctx: click.Context,
    config_path: Path | None,
    passphrase_env: str,
    kek_file: Path | None,
    kek_env: str | None,
    audit_passphrase_env: str,
) -> None:
    """Serve pseudonymisation, sealed ingest, blind mode and re-identification over HTTPS.

    Binds to loopback unless the config says otherwise; TLS is on unless the config sets
    insecure_http on loopback. SIGTERM or Ctrl-C stops taking new requests, lets in-flight
    ones finish, then closes the audit log with a signed checkpoint and prints its head and
    entry count to stderr (to record for `koble audit verify-log --expect-head/--expect-entries`).
    """
    if ctx.invoked_subcommand is not None:
        return
    if config_path is None:
        raise UsageError("give --config service.toml (or a subcommand: pki, token)")
    from koble.pseudonym.service.server import make_server, open_state

    config = load_config(config_path)
    if config.audit_log is None or config.audit_key is None:
        raise UsageError("the service audits every request: set [audit] log and key")
    passphrase = os.environ.get(audit_passphrase_env)
    if not passphrase:
        raise UsageError(f"set {audit_passphrase_env} to the audit key's passphrase")
    if not config.audit_key.is_file():
        raise UsageError(f"no such audit key file: {config.audit_key}")
    with opening("audit key", config.audit_key, f"the passphrase from {audit_passphrase_env}"):
        signer = Ed25519Signer.from_pem(config.audit_key.read_bytes(), passphrase.encode())
    party = os.environ.get(PARTY_PASSPHRASE)
    with AuditLog(config.audit_log, signer, utc_now, on_close=print_audit_head) as audit:
        state = open_state(
            config,
            kek=resolve_kek(passphrase_env, kek_file, kek_env),
            audit=audit,
            now=utc_now,
            randbytes=randbytes,
            party_key_passphrase=party.encode() if party else None,
        )
        scheme = "http" if config.insecure_http else "https"
        click.echo(
            f"koble serve: {scheme}://{config.host}:{config.port} "
            f"({len(config.parties)} parties; OpenAPI at /openapi.json)",
            err=True,
        )
        make_server(state).run()


@serve.command("pki")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--party", "parties", multiple=True, help="A party to issue a client certificate.")
@click.option("--days", type=int, default=30, show_default=True)
def pki(out: Path, parties: tuple[str, ...], days: int) -> None:
    """Create a TEST certificate authority, a server certificate and party certificates."""
    from koble.pseudonym.service.pki import check_party_id, create_test_pki

    for party in parties:
        check_party_id(party, "--party")
    # valid from a minute ago, so a client whose clock lags a little still accepts them
    made = create_test_pki(out, parties, now=utc_now() - datetime.timedelta(minutes=1), days=days)
    click.echo(
        f"test PKI in {out}: CA {made.ca_cert.name}, server and "
        f"{len(parties)} party certificate(s); for local use only"
    )


@serve.command("token")
@click.option("--party", required=True)
@click.option("--days", type=int, default=90, show_default=True, help="Days until it expires.")
@click.option(
    "--never-expires",
    is_flag=True,
    help='A token without expiry (written as expires = "never"; the config requires one or '
    "the other).",
)
def token(party: str, days: int, never_expires: bool) -> None:
    """Make a bearer token: printed once; put only its hash in the config."""
    from koble.pseudonym.service.pki import check_party_id

    check_party_id(party, "--party")
    if days < 1 and not never_expires:
        raise UsageError("--days must be at least 1 (or give --never-expires)")
    value = new_token(randbytes)
    if never_expires:
        expires = f'"{NEVER}"'
    else:
        expires = (utc_now() + datetime.timedelta(days=days)).replace(microsecond=0).isoformat()
    click.echo(f"token for {party} (shown once; give it to the party over a safe channel):")
    click.echo(value)
    click.echo("\n# in service.toml, under the party:")
    click.echo(f'tokens = [{{ sha256 = "{hash_token(value)}", expires = {expires} }}]')
