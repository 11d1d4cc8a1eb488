"""``koble keys``: keyset life cycle (create, rotate, list, enable, disable, destroy)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from koble.errors import UsageError
from koble.files import write_bytes
from koble.pseudonym.keychange import change_keyset, create_keyset
from koble.pseudonym.keys import Keyset
from koble.pseudonym.signing import Ed25519Signer

from ._secrets import (
    AUDIT_PASSPHRASE,
    ClosingAudit,
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


_SAVED = "the keyset change was saved and recorded in the audit log"


def _audited(audit_log: Path | None, audit_key: Path | None, passphrase_env: str) -> ClosingAudit:
    """The command's audit log, opened when the keyset is locked; a closing checkpoint that
    fails after the change is saved is reported after the result (:class:`ClosingAudit`)."""
    return ClosingAudit(lambda: open_audit(audit_log, audit_key, passphrase_env), _SAVED)


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
    closing = _audited(audit_log, audit_key, audit_passphrase_env)
    created = create_keyset(
        keyset, kek, actor=actor, randbytes=randbytes, now=utc_now, open_audit=lambda: closing
    )  # fmt: skip
    _show(created, as_json)
    closing.finish()


def _change(keyset: Path, passphrase_env: str, kek_file: Path | None, kek_env: str | None,
            actor: str, audit_log: Path | None, audit_key: Path | None,
            audit_passphrase_env: str, operation: str, version: int | None,
            as_json: bool) -> None:  # fmt: skip
    """Make the change and show the keyset as saved."""
    kek = resolve_kek(passphrase_env, kek_file, kek_env)
    closing = _audited(audit_log, audit_key, audit_passphrase_env)
    changed = change_keyset(
        keyset, kek, operation, version, actor=actor, randbytes=randbytes,  # type: ignore[arg-type]
        now=utc_now, open_audit=lambda: closing,
    )  # fmt: skip
    _show(changed, as_json)
    closing.finish()


@keys.command()
@KEYSET
@kek_options
@audit_options(required=False)
@click.option("--json", "as_json", is_flag=True)
def rotate(keyset: Path, as_json: bool, **options: str) -> None:
    """Add a new key to KEYSET and make it primary; older keys stay usable for reversing."""
    _change(keyset, operation="rotate", version=None, as_json=as_json, **options)  # type: ignore[arg-type]


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
        _change(keyset, operation=operation, version=version, as_json=as_json, **options)  # type: ignore[arg-type]


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
