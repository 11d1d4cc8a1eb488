"""``koble demo``: the main job on a generated synthetic world (see :mod:`koble.demo`)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from koble.demo import DemoResult, run_demo


@click.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default="demo-out",
    show_default=True,
    help="Directory for the world and the check results.",
)
@click.option("--persons", type=int, default=50_000, show_default=True)
@click.option("--seed", type=int, default=2025, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def demo(out: Path, persons: int, seed: int, as_json: bool) -> None:
    """Generate a synthetic registry world and check every identifier in it.

    Exit code 0 when every check reconciles and matches what the generator put there.
    """
    console = Console(highlight=False, quiet=as_json)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=as_json,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(f"generating {stage}", total=total)
            bar.update(tasks[stage], completed=done, total=total)

        result = run_demo(out, persons=persons, seed=seed, progress=report)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    else:
        _print(console, result)
    raise SystemExit(0 if result.ok else 1)


def _print(console: Console, result: DemoResult) -> None:
    table = Table(title=f"identifier checks on a synthetic world of {result.persons:,} persons")
    table.add_column("file · column (scheme)")
    for name in ("rows", "valid", "rejected", "expected", "dupl.", "ok"):
        table.add_column(name, justify="right")
    for expected, report in result.checks:
        scheme = "" if expected.scheme == "fnr" else f" ({expected.scheme})"
        table.add_row(
            f"{expected.table.removesuffix('.parquet')} · {expected.column}{scheme}",
            f"{report.rows:,}",
            f"{report.valid:,}",
            f"{report.rejected:,}",
            "-" if expected.rejected is None else f"{expected.rejected:,}",
            f"{report.duplicate_rows:,}",
            "yes" if report.reconciled else "[red]NO[/]",
        )
    console.print(table)
    for name, found in result.leaks.items():
        console.print(f"de-identified {name}: {found} valid fødselsnummer in any column")
    seconds = result.seconds
    rate = result.identifiers_checked / seconds["check"] if seconds["check"] else 0.0
    console.print(
        f"generated in {seconds['generate']:.1f} s; checked {result.identifiers_checked:,} "
        f"identifiers in {seconds['check']:.2f} s ({rate:,.0f}/s, reading Parquet included)"
    )
    console.print(f"world: {result.world}; rejects and summary.json: {result.world.parent}/checks")
    failures = result.failures()
    if failures:
        for failure in failures:
            console.print(f"[red]FAILED[/] {failure}")
    else:
        console.print("[green]all checks reconcile and match the generator's truth[/]")
