"""``koble ids``: identifier checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import click
from rich.console import Console
from rich.table import Table

from koble.errors import redact
from koble.path_checks import ensure_distinct
from koble.registries.identifiers.check import CheckReport, check_file
from koble.registries.identifiers.column import Scheme

EXIT_ALL_VALID = 0
EXIT_SOME_REJECTED = 1


@click.group()
def ids() -> None:
    """Validate Norwegian identifiers (fødselsnummer family, HPR, organisasjonsnummer)."""


@ids.command("check")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--column", "-c", required=True, help="Column holding the identifiers.")
@click.option(
    "--scheme",
    type=click.Choice(get_args(Scheme)),
    default="fnr",
    show_default=True,
    help="fnr covers fødselsnummer, D-, H-, FH- and test numbers.",
)
@click.option("--test-numbers", is_flag=True, help="Accept synthetic (Tenor) test numbers.")
@click.option(
    "--rejects",
    type=click.Path(path_type=Path),
    help="Write every invalid row with its row number and reason (.csv or .parquet).",
)
@click.option("--encoding", default="utf-8", show_default=True, help="Encoding of a CSV file.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def check(
    file: Path,
    column: str,
    scheme: Scheme,
    test_numbers: bool,
    rejects: Path | None,
    encoding: str,
    as_json: bool,
) -> None:
    """Check every identifier in COLUMN of FILE (CSV or Parquet).

    Exit code 0 when every row is valid, 1 when some are rejected, 2 for unusable input.
    Row numbers count data rows from 1 (row 1 is line 2 of a CSV with a header).
    """
    ensure_distinct({"--rejects": rejects}, {"FILE": file})
    report = check_file(
        file,
        column,
        scheme=scheme,
        test_numbers=test_numbers,
        rejects_path=rejects,
        encoding=encoding,
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        _print(report)
    raise SystemExit(EXIT_ALL_VALID if report.rejected == 0 else EXIT_SOME_REJECTED)


def _print(report: CheckReport) -> None:
    console = Console(highlight=False)
    table = Table(
        title=f"{report.path} · column {redact(report.column)!r} · scheme {report.scheme}"
    )
    table.add_column("", style="bold")
    table.add_column("rows", justify="right")
    table.add_row("rows in", f"{report.rows:,}")
    table.add_row("valid", f"{report.valid:,}")
    for kind, count in report.by_kind.items():
        table.add_row(f"  kind {kind}", f"{count:,}")
    for rule, count in report.by_rule.items():
        table.add_row(f"  rule {rule}", f"{count:,}")
    table.add_row("rejected", f"{report.rejected:,}")
    for reason, count in report.by_reason.items():
        table.add_row(f"  {reason}", f"{count:,}")
    table.add_row("duplicate rows (valid)", f"{report.duplicate_rows:,}")
    table.add_row("values occurring twice or more", f"{report.duplicated_values:,}")
    console.print(table)
    verdict = "[green]yes[/]" if report.reconciled else "[red]NO[/]"
    console.print(f"counts reconcile (rows in = valid + rejected): {verdict}")
    if report.rejects_path:
        console.print(f"rejects written to {report.rejects_path}")
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
