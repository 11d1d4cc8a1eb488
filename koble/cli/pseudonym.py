"""``koble pseudonymise``, ``koble reidentify``, ``koble rekey``, ``koble serials``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from koble.errors import UsageError
from koble.path_checks import ensure_distinct
from koble.pseudonym.client import pseudonymise_file_remote
from koble.pseudonym.operations import (
    default_rejects_path,
    pseudonymise_file,
    reidentify_file,
    rekey_file,
)
from koble.pseudonym.reverse import REIDENTIFICATION_ROLE, Authorisation
from koble.pseudonym.serials import SERIAL, assign_serials
from koble.tables import read_table, require_text_column, write_table

from ._remote import actor_only_for_local, remote_options, require_actor, service_client
from ._secrets import ClosingAudit, audit_options, kek_options, open_audit, open_keyset

EXIT_ALL = 0
EXIT_SOME_REJECTED = 1
PATH = click.Path(dir_okay=False, path_type=Path)


def _finish(summary: dict[str, Any], as_json: bool, lines: list[str], rejected: int,
            closing: ClosingAudit | None = None) -> None:  # fmt: skip
    """Print the result, then fail (exit 2) if only the audit log's closing checkpoint failed."""
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
    else:
        console = Console(highlight=False)
        for line in lines:
            console.print(line)
    if closing is not None:
        closing.finish()
    raise SystemExit(EXIT_ALL if rejected == 0 else EXIT_SOME_REJECTED)


def _distinct(source: Path, output: Path, rejects: Path | None, audit_log: Path | None,
              keyset: Path, kek_file: Path | None, audit_key: Path | None) -> None:  # fmt: skip
    """Refuse (exit 2) a command whose outputs would overwrite each other or an input."""
    ensure_distinct(
        {"OUTPUT": output, "--rejects": rejects or default_rejects_path(output),
         "--audit-log": audit_log},
        {"SOURCE": source, "--keyset": keyset, "--kek-file": kek_file, "--audit-key": audit_key},
    )  # fmt: skip


@click.command()
@click.argument("source", type=PATH)
@click.argument("output", type=PATH)
@click.option("--column", "-c", required=True, help="Column holding the identifiers.")
@click.option("--domain", required=True, help="Pseudonym domain: a registry or project.")
@click.option("--keyset", type=PATH, help="Local keyset (or use --remote).")
@kek_options
@remote_options
@actor_only_for_local
@audit_options(required=False)
@click.option("--history", type=PATH, help="Identity history (old_id, current_id, version).")
@click.option("--population", type=PATH, help="Population register: reject persons not in it.")
@click.option("--population-column", default="person_id", show_default=True)
@click.option("--rejects", type=PATH, help="Rejects file [default: OUTPUT.rejects.SUFFIX].")
@click.option("--id-scheme", type=click.Choice(["fnr", "hpr"]), default="fnr", show_default=True)
@click.option("--test-numbers", is_flag=True, help="Accept synthetic test numbers.")
@click.option("--output-column", help="Name of the pseudonym column [default: same as input].")
@click.option(
    "--allow-identifiers", "allow_identifiers", multiple=True, metavar="COLUMN",
    help="A pass-through column that may hold person numbers; repeatable. Without it such a "
    "column is refused and nothing is written.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True)
def pseudonymise(source: Path, output: Path, column: str, domain: str, keyset: Path | None,
                 passphrase_env: str, kek_file: Path | None, kek_env: str | None,
                 actor: str | None, audit_log: Path | None, audit_key: Path | None,
                 audit_passphrase_env: str, history: Path | None, population: Path | None,
                 population_column: str, rejects: Path | None, id_scheme: str, test_numbers: bool,
                 output_column: str | None, as_json: bool, remote: str | None,
                 token_env: str, ca: Path | None, client_cert: Path | None,
                 client_key: Path | None, allow_identifiers: tuple[str, ...]) -> None:  # fmt: skip
    """Replace the identifiers in COLUMN of SOURCE by domain pseudonyms, into OUTPUT.

    Other columns pass through untouched, unless one holds a person number: then nothing is
    written, unless --allow-identifiers names that column. Every row ends up in OUTPUT or in
    the rejects file with its row number and reason. With --remote the keys stay at the
    pseudonym service (``koble serve``) and only the identifier column travels, as an Arrow
    stream over TLS; the service knows the caller from its token or certificate, so --actor
    is not needed.
    Exit code 0 when every row was pseudonymised, 1 when some were rejected, 2 for unusable
    input.
    """
    if (keyset is None) == (remote is None):
        raise UsageError("give either --keyset (local keys) or --remote URL (the service)")
    ensure_distinct(
        {"OUTPUT": output, "--rejects": rejects or default_rejects_path(output),
         "--audit-log": audit_log},
        {"SOURCE": source, "--keyset": keyset, "--kek-file": kek_file, "--audit-key": audit_key,
         "--history": history, "--population": population, "--ca": ca,
         "--client-cert": client_cert, "--client-key": client_key},
    )  # fmt: skip
    if remote is not None:
        if history is not None or population is not None:
            raise UsageError("--history and --population are the service's, not the client's")
        with service_client(remote, token_env, ca, client_cert, client_key) as client:
            summary = pseudonymise_file_remote(
                client, source, output, column=column, domain=domain, rejects=rejects,
                id_scheme=id_scheme, test_numbers=test_numbers, output_column=output_column,
                allow_identifiers=allow_identifiers,
            )  # fmt: skip
        lines = [
            f"{summary['rows']:,} rows in: {summary['pseudonymised']:,} pseudonymised by "
            f"{remote} into {output} (domain {domain}), {summary['rejected']:,} rejected into "
            f"{summary['rejects_path']}",
            f"counts reconcile: {'yes' if summary['reconciled'] else 'NO'}",
            *(f"[yellow]warning:[/] {warning}" for warning in summary["warnings"]),
        ]
        _finish(summary, as_json, lines, summary["rejected"])
    assert keyset is not None
    actor = require_actor(actor)
    opened = open_keyset(keyset, passphrase_env, kek_file, kek_env)
    log = open_audit(audit_log, audit_key, audit_passphrase_env)
    closing = ClosingAudit(lambda: log, f"{output} was written and recorded in the audit log")
    with closing:
        report, rejects_path = pseudonymise_file(
            source, output, column=column, keyset=opened, domain=domain, actor=actor, audit=log,
            history=history, population=population, population_column=population_column,
            rejects=rejects, id_scheme=id_scheme, test_numbers=test_numbers,  # type: ignore[arg-type]
            output_column=output_column, allow_identifiers=allow_identifiers,
        )  # fmt: skip
    summary = {**report.to_dict(), "output": str(output), "rejects_path": str(rejects_path)}
    lines = [
        f"{report.rows:,} rows in: {report.pseudonymised:,} pseudonymised into {output} "
        f"(domain {domain}, key {report.key_id}), {report.rejected:,} rejected into {rejects_path}",
        f"resolved through identity history: {report.resolved_through_history:,}; "
        f"distinct pseudonyms: {report.distinct_pseudonyms:,}",
        *(f"  {reason}: {count:,}" for reason, count in report.by_reason.items()),
        f"counts reconcile: {'yes' if report.reconciled else 'NO'}",
        *(f"[yellow]warning:[/] {warning}" for warning in report.warnings),
    ]
    _finish(summary, as_json, lines, report.rejected, closing)


@click.command()
@click.argument("source", type=PATH)
@click.argument("output", type=PATH)
@click.option("--column", "-c", required=True, help="Column holding the pseudonyms.")
@click.option("--domain", required=True)
@click.option("--keyset", type=PATH, required=True)
@kek_options
@audit_options(required=True)
@click.option("--role", required=True, help=f"Must be {REIDENTIFICATION_ROLE!r}.")
@click.option("--reason", required=True, help="Why re-identification is needed.")
@click.option("--legal-basis", required=True, help="The legal basis (law, section, decision).")
@click.option("--rejects", type=PATH)
@click.option("--id-scheme", type=click.Choice(["fnr", "hpr"]), default="fnr", show_default=True)
@click.option("--output-column", default="fnr", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def reidentify(source: Path, output: Path, column: str, domain: str, keyset: Path,
               passphrase_env: str, kek_file: Path | None, kek_env: str | None, actor: str,
               audit_log: Path, audit_key: Path, audit_passphrase_env: str, role: str,
               reason: str, legal_basis: str, rejects: Path | None, id_scheme: str,
               output_column: str, as_json: bool) -> None:  # fmt: skip
    """Turn the pseudonyms in COLUMN of SOURCE back into identifiers (authorised, audited)."""
    _distinct(source, output, rejects, audit_log, keyset, kek_file, audit_key)
    opened = open_keyset(keyset, passphrase_env, kek_file, kek_env)
    log = open_audit(audit_log, audit_key, audit_passphrase_env)
    assert log is not None
    closing = ClosingAudit(lambda: log, f"{output} was written and recorded in the audit log")
    with closing:
        report = reidentify_file(
            source, output, column=column, keyset=opened, domain=domain,
            authorisation=Authorisation(actor, role, reason, legal_basis), audit=log,
            rejects=rejects, id_scheme=id_scheme, output_column=output_column,  # type: ignore[arg-type]
        )  # fmt: skip
    lines = [
        f"{report.rows:,} rows in: {report.converted:,} re-identified into {output}, "
        f"{report.rejected:,} rejected into {report.rejects_path}; recorded in {audit_log}",
    ]
    _finish(report.to_dict(), as_json, lines, report.rejected, closing)


@click.command()
@click.argument("source", type=PATH)
@click.argument("output", type=PATH)
@click.option("--column", "-c", required=True, help="Column holding the pseudonyms.")
@click.option("--domain", required=True)
@click.option("--keyset", type=PATH, required=True)
@kek_options
@audit_options(required=False)
@click.option("--rejects", type=PATH)
@click.option("--id-scheme", type=click.Choice(["fnr", "hpr"]), default="fnr", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def rekey(source: Path, output: Path, column: str, domain: str, keyset: Path,
          passphrase_env: str, kek_file: Path | None, kek_env: str | None, actor: str,
          audit_log: Path | None, audit_key: Path | None, audit_passphrase_env: str,
          rejects: Path | None, id_scheme: str, as_json: bool) -> None:  # fmt: skip
    """Convert the pseudonyms in COLUMN of SOURCE to the keyset's primary key."""
    _distinct(source, output, rejects, audit_log, keyset, kek_file, audit_key)
    opened = open_keyset(keyset, passphrase_env, kek_file, kek_env)
    log = open_audit(audit_log, audit_key, audit_passphrase_env)
    closing = ClosingAudit(lambda: log, f"{output} was written and recorded in the audit log")
    with closing:
        report = rekey_file(source, output, column=column, keyset=opened, domain=domain,
                            actor=actor, audit=log, rejects=rejects,
                            id_scheme=id_scheme)  # type: ignore[arg-type]  # fmt: skip
    lines = [
        f"{report.rows:,} rows in: {report.converted:,} re-keyed to {opened.primary.key_id} "
        f"into {output}, {report.rejected:,} rejected into {report.rejects_path}",
    ]
    _finish(report.to_dict(), as_json, lines, report.rejected, closing)


@click.command()
@click.argument("population", type=PATH)
@click.argument("key_list", type=PATH)
@click.option("--column", "-c", default="person_id", show_default=True)
@click.option("--project", required=True, help="Project id; serials are per project.")
@click.option("--keyset", type=PATH, required=True)
@kek_options
def serials(population: Path, key_list: Path, column: str, project: str, keyset: Path,
            passphrase_env: str, kek_file: Path | None, kek_env: str | None) -> None:  # fmt: skip
    """Write the key list (identifier, løpenummer) of POPULATION for PROJECT to KEY_LIST.

    The key list belongs in the operator's private store only.
    """
    ensure_distinct(
        {"KEY_LIST": key_list},
        {"POPULATION": population, "--keyset": keyset, "--kek-file": kek_file},
    )
    opened = open_keyset(keyset, passphrase_env, kek_file, kek_env)
    frame = read_table(population)
    table = assign_serials(opened, project,
                           require_text_column(frame, column, population, "identifiers",
                                               integers=True),
                           path=str(population))  # fmt: skip
    write_table(table, key_list)
    click.echo(f"{table.height:,} persons numbered 1..{table.height:,} ({SERIAL}) in {key_list}")
