"""``koble keys``: keyset life cycle (create, rotate, list, enable, disable, destroy)."""

from __future__ import annotations

import json
import os
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import click

from koble.errors import UsageError
from koble.files import write_bytes
from koble.pseudonym.auditing import AuditSink
from koble.pseudonym.keychange import change_keyset, create_keyset
from koble.pseudonym.keys import Keyset
from koble.pseudonym.signing import Ed25519Signer

from ._secrets import (
    AUDIT_PASSPHRASE,
    audit_options,
    kek_options,
    open_audit,
    open_keyset,
    randbytes,
    resolve_kek,
    utc_now,
)

KEYSET = click.argument("keyset", type=click.Path(dir_okay=False, path_type=Path))
VERSION = click.argument("version", type=int)


@click.group()
def keys() -> None:
    """Manage pseudonym keysets (encrypted at rest; keys never shown)."""


def _show(keyset: Keyset, as_json: bool) -> None:
    rows = [
        {"version": k.version, "key_id": k.key_id, "status": k.status.value,
         "created": k.created, "primary": k.version == keyset.primary.version}
        for k in keyset.keys
    ]  # fmt: skip
    if as_json:
        click.echo(json.dumps({"primary": keyset.primary.key_id, "keys": rows}, indent=2))
        return
    for row in rows:
        mark = "*" if row["primary"] else " "
        click.echo(f"{mark} {row['key_id']:<22} {row['status']:<9} created {row['created']}")


def _audited(audit_log: Path | None, audit_key: Path | None,
             passphrase_env: str) -> AbstractContextManager[AuditSink | None]:  # fmt: skip
    log = open_audit(audit_log, audit_key, passphrase_env)
    return nullcontext(None) if log is None else log


@keys.command()
@KEYSET
@kek_options
@audit_options(required=False)
@click.option("--json", "as_json", is_flag=True)
def create(keyset: Path, passphrase_env: str, kek_file: Path | None, kek_env: str | None,
           actor: str, audit_log: Path | None, audit_key: Path | None,
           audit_passphrase_env: str, as_json: bool) -> None:  # fmt: skip
    """Create KEYSET with one primary key."""
    if keyset.exists():
        raise UsageError(f"{keyset} exists already; koble never overwrites a keyset")
    kek = resolve_kek(passphrase_env, kek_file, kek_env)
    created = create_keyset(
        keyset, kek, actor=actor, randbytes=randbytes, now=utc_now,
        open_audit=lambda: _audited(audit_log, audit_key, audit_passphrase_env),
    )  # fmt: skip
    _show(created, as_json)


def _change(keyset: Path, passphrase_env: str, kek_file: Path | None, kek_env: str | None,
            actor: str, audit_log: Path | None, audit_key: Path | None,
            audit_passphrase_env: str, operation: str, version: int | None) -> Keyset:  # fmt: skip
    kek = resolve_kek(passphrase_env, kek_file, kek_env)
    return change_keyset(
        keyset, kek, operation, version, actor=actor, randbytes=randbytes,  # type: ignore[arg-type]
        now=utc_now, open_audit=lambda: _audited(audit_log, audit_key, audit_passphrase_env),
    )  # fmt: skip


@keys.command()
@KEYSET
@kek_options
@audit_options(required=False)
@click.option("--json", "as_json", is_flag=True)
def rotate(keyset: Path, as_json: bool, **options: str) -> None:
    """Add a new key to KEYSET and make it primary; older keys stay usable for reversing."""
    _show(_change(keyset, operation="rotate", version=None, **options), as_json)  # type: ignore[arg-type]


def _versioned(operation: str, doc: str) -> None:
    @keys.command(operation, help=doc)
    @KEYSET
    @VERSION
    @kek_options
    @audit_options(required=False)
    @click.option("--yes", is_flag=True, help="Confirm (required for destroy).")
    @click.option("--json", "as_json", is_flag=True)
    def command(keyset: Path, version: int, yes: bool, as_json: bool, **options: str) -> None:
        if operation == "destroy" and not yes:
            raise UsageError("destroying a key cannot be undone: pass --yes")
        _show(_change(keyset, operation=operation, version=version, **options), as_json)  # type: ignore[arg-type]


_versioned("disable", "Disable key VERSION of KEYSET (refused for every use until enabled).")
_versioned("enable", "Enable key VERSION of KEYSET again.")
_versioned("destroy", "Erase key VERSION for good: its pseudonyms can never be reversed.")
_versioned("set-primary", "Make enabled key VERSION the primary.")


@keys.command("list")
@KEYSET
@kek_options
@click.option("--json", "as_json", is_flag=True)
def list_keys(keyset: Path, passphrase_env: str, kek_file: Path | None, kek_env: str | None,
              as_json: bool) -> None:  # fmt: skip
    """List the keys of KEYSET (ids, status, primary; never key material)."""
    _show(open_keyset(keyset, passphrase_env, kek_file, kek_env), as_json)


@keys.command("create-signer")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--passphrase-env", default=AUDIT_PASSPHRASE, show_default=True,
              help="Environment variable holding the passphrase for the new key.")  # fmt: skip
def create_signer(path: Path, passphrase_env: str) -> None:
    """Create the Ed25519 key that signs audit checkpoints: PATH (encrypted) and PATH.pub."""
    if path.exists():
        raise UsageError(f"{path} exists already")
    passphrase = os.environ.get(passphrase_env)
    if not passphrase:
        raise UsageError(f"set {passphrase_env} to the passphrase for the new key")
    signer = Ed25519Signer.generate()
    path.parent.mkdir(parents=True, exist_ok=True)  # as every command that writes a file
    write_bytes(path, signer.to_pem(passphrase.encode()), mode=0o600, exclusive=True)
    public = path.with_name(path.name + ".pub")
    write_bytes(public, signer.public_pem())
    click.echo(f"signer {signer.key_id}: {path} (private, encrypted), {public} (public)")
