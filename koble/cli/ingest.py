"""``koble ingest``: sealed ingest of feeds through the TTP (see :mod:`koble.pseudonym.ingest`).

``keygen`` makes a party key pair; ``seal`` is the sender's step, ``pseudonymise`` the
TTP's and ``open`` the registry's. Commands only parse options, call the library and print;
errors are koble errors, which the main group turns into one-line messages and exit codes.
Passphrases come from environment variables, never from the command line (where they would
end up in shell history and process lists).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, get_args

import click

from koble.errors import FileFormatError, UsageError
from koble.files import OutputSet, write_bytes
from koble.path_checks import ensure_distinct
from koble.pseudonym.client import RejectedError
from koble.pseudonym.identity import IdentityHistory
from koble.pseudonym.ingest import (
    registry_open_files,
    seal,
    ttp_pseudonymise,
)
from koble.pseudonym.keys import Keyset
from koble.pseudonym.keystore import PassphraseKek, load_keyset
from koble.pseudonym.opening import opening
from koble.pseudonym.public_keys import read_party_public_key
from koble.pseudonym.scheme import IdScheme
from koble.pseudonym.sealed import (
    PartyKey,
    PartyPublicKey,
    SealedBatch,
)
from koble.registries.identifiers.scan import check_column_name, check_name
from koble.tables import read_table, write_table

from ._remote import remote_options, service_client

__all__ = ["ingest"]

EXIT_ALL_PSEUDONYMISED = 0
EXIT_SOME_REJECTED = 1
_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PATH = click.Path(path_type=Path)
F = TypeVar("F", bound=Callable[..., Any])


def _passphrase(
    variable: str, what: str = "the party key", option: str = "--passphrase-env"
) -> bytes:
    """The passphrase in the environment variable ``variable``; when it is unset or empty, a
    :class:`UsageError` saying which variable to set, and which option names another."""
    value = os.environ.get(variable)
    if not value:
        raise UsageError(
            f"the passphrase of {what} is read from the environment variable {variable}, "
            f"which is not set: set it (export {variable}=...), or name another variable "
            f"with {option}"
        )
    return value.encode()


def _read_bytes(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise FileFormatError(f"no such {what} file", path=path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FileFormatError(f"cannot read the {what} file ({exc.strerror})", path=path) from None


def _public(path: Path, option: str) -> PartyPublicKey:
    return read_party_public_key(path, option)


def _keyset(path: Path, variable: str) -> Keyset:
    passphrase = _passphrase(variable, "the keyset", "--keyset-passphrase-env")
    kek = PassphraseKek(passphrase, source=f"the passphrase from {variable}")
    return load_keyset(path, kek)


def _private(path: Path, variable: str) -> PartyKey:
    data, passphrase = _read_bytes(path, "private key"), _passphrase(variable)
    with opening("party key", path, f"the passphrase from {variable}"):
        return PartyKey.from_pem(data, passphrase)


def _echo_json(document: object) -> None:
    click.echo(json.dumps(document, indent=2, sort_keys=True))


def _passphrase_option(default: str = "KOBLE_PARTY_PASSPHRASE") -> Callable[[F], F]:
    return click.option(
        "--passphrase-env",
        default=default,
        show_default=True,
        help="Environment variable holding the party key's passphrase.",
    )


@click.group()
def ingest() -> None:
    """Sealed ingest: sender seals, the TTP pseudonymises, the registry opens."""


@ingest.command("keygen")
@click.argument("name")
@click.option("--out", "out_dir", type=_PATH, required=True, help="Directory for the key files.")
@_passphrase_option()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def keygen(name: str, out_dir: Path, passphrase_env: str, as_json: bool) -> None:
    """Make a party key pair: NAME.key.pem (encrypted) and NAME.pub.pem in DIR."""
    check_name(name, "NAME", what="a key name")
    if not _KEY_NAME.match(name):
        raise UsageError("NAME: invalid key name: use letters, digits and _.-")
    passphrase = _passphrase(passphrase_env)
    private, public = out_dir / f"{name}.key.pem", out_dir / f"{name}.pub.pem"
    for path in (private, public):
        if path.exists():
            raise UsageError(f"{path} exists already; refusing to overwrite a key")
    key = PartyKey.generate(os.urandom)
    write_bytes(private, key.to_pem(passphrase), mode=0o600, exclusive=True)
    write_bytes(public, key.public_pem(), exclusive=True)
    result = {"fingerprint": key.fingerprint, "private": str(private), "public": str(public)}
    if as_json:
        _echo_json(result)
    else:
        click.echo(f"key {key.fingerprint}: private {private} (encrypted), public {public}")


def _id_columns(specs: tuple[str, ...]) -> dict[str, IdScheme]:
    columns: dict[str, IdScheme] = {}
    schemes = get_args(IdScheme)
    for spec in specs:
        column, _, scheme = spec.partition(":")
        scheme = scheme or "fnr"
        if not column or scheme not in schemes:
            raise UsageError(f"--id-column: use COLUMN or COLUMN:SCHEME with {schemes}")
        if column in columns:
            raise UsageError("--id-column: a column is given twice")
        check_column_name(column, "--id-column")  # e.g. a header-less file's first number
        columns[column] = scheme  # type: ignore[assignment]
    return columns


@ingest.command("seal")
@click.argument("infile", metavar="IN", type=_PATH)
@click.argument("outfile", metavar="OUT", type=_PATH)
@click.option("--ttp-public", type=_PATH, required=True, help="The TTP's public key (PEM).")
@click.option("--registry-public", type=_PATH, required=True, help="The registry's public key.")
@click.option(
    "--id-column",
    "id_specs",
    multiple=True,
    required=True,
    help="Identifier column, as COLUMN or COLUMN:SCHEME (fnr, hpr, orgnr); repeatable.",
)
@click.option("--encoding", default="utf-8", show_default=True, help="Encoding of a CSV file.")
@click.option(
    "--allow-identifiers",
    "allow_identifiers",
    multiple=True,
    metavar="COLUMN",
    help="A payload column that may hold person numbers; repeatable. Without it such a "
    "column is refused and nothing is sealed.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def seal_command(
    infile: Path,
    outfile: Path,
    ttp_public: Path,
    registry_public: Path,
    id_specs: tuple[str, ...],
    encoding: str,
    allow_identifiers: tuple[str, ...],
    as_json: bool,
) -> None:
    """Sender: seal the table IN as one batch OUT (identifiers to the TTP, rest to registry).

    A payload column holding a person number is refused, and nothing sealed, unless
    --allow-identifiers names it."""
    ensure_distinct({"OUT": outfile}, {"IN": infile, "--ttp-public": ttp_public,
                                       "--registry-public": registry_public})  # fmt: skip
    table = read_table(infile, encoding=encoding)
    batch = seal(
        table,
        _id_columns(id_specs),
        ttp_public=_public(ttp_public, "--ttp-public"),
        registry_public=_public(registry_public, "--registry-public"),
        randbytes=os.urandom,
        path=str(infile),
        allow_identifiers=allow_identifiers,
    )
    batch.write(outfile)
    result = {
        "batch_id": batch.batch_hex,
        "rows": batch.rows,
        "identifiers": list(batch.identifiers.columns),
        "payload": list(batch.payload.columns),
        "out": str(outfile),
    }
    if as_json:
        _echo_json(result)
    else:
        click.echo(
            f"sealed {batch.rows:,} rows as batch {batch.batch_hex} to {outfile}: "
            f"{', '.join(batch.identifiers.columns)} to the TTP, "
            f"{len(batch.payload.columns)} payload columns to the registry"
        )


def _domains(specs: tuple[str, ...]) -> dict[str, str]:
    domains: dict[str, str] = {}
    for spec in specs:
        column, sep, domain = spec.partition("=")
        if not (column and sep and domain):
            raise UsageError("--domain: use COLUMN=DOMAIN")
        if column in domains:
            raise UsageError("--domain: a column is given twice")
        check_column_name(column, "--domain")
        domains[column] = domain
    return domains


@ingest.command("pseudonymise")
@click.argument("infile", metavar="IN", type=_PATH)
@click.argument("outfile", metavar="OUT", type=_PATH)
@click.option("--ttp-key", type=_PATH, required=True, help="The TTP's private key (PEM).")
@click.option("--keyset", type=_PATH, required=True, help="The TTP's pseudonym keyset file.")
@click.option(
    "--domain",
    "domain_specs",
    multiple=True,
    required=True,
    help="COLUMN=DOMAIN for every identifier column; repeatable.",
)
@click.option("--registry-public", type=_PATH, required=True, help="The registry's public key.")
@click.option("--history", type=_PATH, help="Identity history table (old_id, current_id, ...).")
@click.option("--rejects", type=_PATH, help="Write rejected identifiers here (for the sender).")
@click.option("--test-numbers", is_flag=True, help="Accept synthetic (Tenor) test numbers.")
@_passphrase_option()
@click.option(
    "--keyset-passphrase-env",
    default="KOBLE_KEYSET_PASSPHRASE",
    show_default=True,
    help="Environment variable holding the keyset's passphrase.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def pseudonymise_command(
    infile: Path,
    outfile: Path,
    ttp_key: Path,
    keyset: Path,
    domain_specs: tuple[str, ...],
    registry_public: Path,
    history: Path | None,
    rejects: Path | None,
    test_numbers: bool,
    passphrase_env: str,
    keyset_passphrase_env: str,
    as_json: bool,
) -> None:
    """TTP: replace the identifiers of sealed batch IN by pseudonyms; forward as OUT.

    The payload is forwarded as it came, still sealed to the registry. Exit code 0 when every
    row was pseudonymised, 1 when some were rejected, 2 for unusable input.
    """
    ensure_distinct(
        {"OUT": outfile, "--rejects": rejects},
        {"IN": infile, "--ttp-key": ttp_key, "--keyset": keyset,
         "--registry-public": registry_public, "--history": history},
    )  # fmt: skip
    batch = SealedBatch.read(infile)
    result = ttp_pseudonymise(
        batch,
        ttp_key=_private(ttp_key, passphrase_env),
        keyset=_keyset(keyset, keyset_passphrase_env),
        domains=_domains(domain_specs),
        registry_public=_public(registry_public, "--registry-public"),
        history=None if history is None else IdentityHistory.read(history),
        randbytes=os.urandom,
        test_numbers=test_numbers,
        path=str(infile),
    )
    with OutputSet() as outputs:  # both or neither
        if rejects is not None:
            write_table(result.rejects, rejects, outputs=outputs)
        with outputs.file(outfile, last=True) as temp:
            temp.write_bytes(result.forwarded.to_bytes())
    report = result.report
    if as_json:
        _echo_json({**report.to_dict(), "out": str(outfile), "rejects": _str(rejects)})
    else:
        click.echo(
            f"batch {report.batch_id}: {report.rows:,} rows, {report.pseudonymised:,} "
            f"pseudonymised, {report.rejected:,} rejected; forwarded to {outfile}"
        )
        for column in report.columns:
            reasons = ", ".join(f"{k} {v:,}" for k, v in column.by_reason.items()) or "none"
            click.echo(
                f"  {column.column} ({column.scheme}) → domain {column.domain}, key "
                f"{column.key_id}: {column.valid:,} valid; rejected: {reasons}"
            )
        click.echo(f"counts reconcile (rows = pseudonymised + rejected): {_yes(report.reconciled)}")
        for warning in report.warnings:
            click.echo(f"warning: {warning}", err=True)
    if report.rejected and rejects is None:
        click.echo(
            f"warning: {report.rejected:,} rows rejected; give --rejects to list them", err=True
        )
    raise SystemExit(EXIT_SOME_REJECTED if report.rejected else EXIT_ALL_PSEUDONYMISED)


def _submit_rejects_path(output: Path) -> Path:
    """``OUT.rejects.parquet`` next to the forwarded batch, as the TTP's own step names it."""
    return output.with_name(f"{output.stem}.rejects.parquet")


@ingest.command("submit")
@click.argument("batch", type=_PATH)
@click.argument("output", type=_PATH)
@click.option("--registry", required=True, help="The registry the batch is for.")
@remote_options
@click.option("--partial", is_flag=True, help="Forward the good rows even if some are rejected.")
@click.option(
    "--rejects",
    type=_PATH,
    help="Write the rejected rows here [default: OUTPUT's name with .rejects.parquet].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def submit_command(batch: Path, output: Path, registry: str, remote: str | None, token_env: str,
                   ca: Path | None, client_cert: Path | None, client_key: Path | None,
                   partial: bool, rejects: Path | None, as_json: bool) -> None:  # fmt: skip
    """Send a sealed BATCH to the remote pseudonym service; write the forwarded batch to
    OUTPUT (for the registry). The service opens only the identifiers, never the payload.

    The rejected rows (batch_id, row, column, reason, message; the identifiers are yours)
    are written to the rejects file, always, empty when none. Without --partial a batch with
    any invalid identifier is refused whole and OUTPUT is not written; with it the registry
    gets the good rows. Exit code 0 when every row was forwarded, 1 when some were rejected,
    2 for unusable input.
    """
    if remote is None:
        raise UsageError("give --remote URL (the pseudonym service)")
    rejects_path = rejects or _submit_rejects_path(output)
    ensure_distinct(
        {"OUTPUT": output, "--rejects": rejects_path},
        {"BATCH": batch, "--ca": ca, "--client-cert": client_cert, "--client-key": client_key},
    )  # fmt: skip
    data = _read_bytes(batch, "sealed batch")
    forwarded: bytes | None = None
    with service_client(remote, token_env, ca, client_cert, client_key) as client:
        try:
            answer = client.ingest(data, registry=registry, partial=partial)
            forwarded, rejected = answer.forwarded, answer.rejects
        except RejectedError as exc:
            rejected = exc.rejects
    with OutputSet() as outputs:  # both or neither
        write_table(rejected, rejects_path, outputs=outputs)
        if forwarded is not None:
            with outputs.file(output, last=True) as temp:
                temp.write_bytes(forwarded)
    summary = {
        "forwarded": forwarded is not None,
        "output": None if forwarded is None else str(output),
        "bytes": 0 if forwarded is None else len(forwarded),
        "rejected": rejected.height,
        "rejects": str(rejects_path),
    }
    if as_json:
        _echo_json(summary)
    elif forwarded is None:
        click.echo(
            f"{rejected.height:,} rows rejected; nothing forwarded (give --partial to forward "
            f"the good rows); rejects in {rejects_path}"
        )
    else:
        click.echo(
            f"forwarded batch for {registry}: {output} ({len(forwarded):,} bytes); "
            f"{rejected.height:,} rows rejected into {rejects_path}"
        )
    raise SystemExit(EXIT_SOME_REJECTED if rejected.height else EXIT_ALL_PSEUDONYMISED)


@ingest.command("open")
@click.argument("infiles", metavar="IN...", nargs=-1, required=True, type=_PATH)
@click.argument("outfile", metavar="OUT", type=_PATH)
@click.option("--registry-key", type=_PATH, required=True, help="The registry's private key.")
@_passphrase_option()
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON.")
def open_command(
    infiles: tuple[Path, ...], outfile: Path, registry_key: Path, passphrase_env: str, as_json: bool
) -> None:
    """Registry: open forwarded batches IN... and write their good rows, keyed by pseudonym."""
    ensure_distinct({"OUT": outfile}, {**{f"IN ({p})": p for p in infiles},
                                       "--registry-key": registry_key})  # fmt: skip
    key = _private(registry_key, passphrase_env)
    table, reports = registry_open_files(infiles, key)
    write_table(table, outfile)
    rows = sum(r.rows for r in reports)
    stored = sum(r.stored for r in reports)
    rejected = sum(r.rejected for r in reports)
    summary = {
        "batches": [r.to_dict() for r in reports],
        "rows": rows,
        "stored": stored,
        "rejected": rejected,
        "reconciled": rows == stored + rejected and table.height == stored,
        "out": str(outfile),
    }
    if as_json:
        _echo_json(summary)
    else:
        click.echo(
            f"{len(reports)} batches, {rows:,} rows: {stored:,} stored in {outfile}, "
            f"{rejected:,} rejected by the TTP"
        )
        click.echo(f"counts reconcile (rows = stored + rejected): {_yes(summary['reconciled'])}")


def _yes(flag: object) -> str:
    return "yes" if flag else "NO"


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)
