"""``koble demo``: the main job on a generated synthetic world (see :mod:`koble.demo`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from koble.cli._secrets import randbytes, utc_now
from koble.demo import DemoResult, run_demo
from koble.linkage.plan import Step
from koble.pseudonym.keystore import RawKek


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
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["parquet", "csv", "stata", "spss", "sas"]),
    default="stata",
    show_default=True,
    help="Delivery format of the demo jobs.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def demo(out: Path, persons: int, seed: int, fmt: str, as_json: bool) -> None:
    """Generate a synthetic registry world, check every identifier in it, then run the
    demo linkage jobs (every route) and verify and reproduce their deliveries.

    Exit code 0 when every check reconciles, matches what the generator put there, and
    every delivery verifies. The demo's key-encryption key is random and used only once.
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

        def step(item: Step, what: str, index: int, total: int) -> None:
            key = "linkage"
            if key not in tasks:
                tasks[key] = bar.add_task("linkage", total=total)
            description = f"linkage: {item.party} {item.action}"
            bar.update(tasks[key], description=description, completed=index, total=total)

        result = run_demo(
            out, persons=persons, seed=seed, progress=report, kek=RawKek(randbytes(32)),
            now=utc_now, randbytes=randbytes, fmt=fmt, on_step=step,
        )  # fmt: skip
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
    _print_linkage(console, result)
    failures = result.failures()
    if failures:
        for failure in failures:
            console.print(f"[red]FAILED[/] {failure}")
    else:
        console.print("[green]all checks reconcile and match the generator's truth[/]")


def _print_linkage(console: Console, result: DemoResult) -> None:
    for outcome in result.linkage:
        run = outcome.run
        plan = run.plan
        table = Table(title=f"{plan.project_id} ({outcome.name}: {plan.route} route)")
        table.add_column("registry", no_wrap=True)
        table.add_column("route")
        for name in ("sent", "found", "rows", "outside"):
            table.add_column(name, justify="right", no_wrap=True)
        for registry in _registries(run.stats):
            table.add_row(
                registry["registry"],
                ("TTP" if registry["route"] == "ttp-pseudonym" else registry["route"])
                + (" + consent" if registry["consent_filter"] else ""),
                f"{registry['persons_sent']:,}",
                f"{registry['persons_found']:,}",
                f"{registry['rows_delivered']:,}",
                f"{registry['rows_outside_period']:,}",
            )
        for refusal in plan.refusals:
            table.add_row(refusal.registry, "refused", "-", "-", "-", "-")
        console.print(table)
        for refusal in plan.refusals:
            console.print(f"  refused {refusal.registry}: {refusal.reason}")
        gate = run.stats.get("operator-anonymity-gate")
        if gate:
            levels = ", ".join(f"{q} → {level}" for q, level in gate["levels"].items())
            console.print(
                f"  anonymity gate ({gate['model']}): k = {gate['k']} persons met (smallest "
                f"class {gate['min_class_persons']} persons, {gate['min_class_size']} rows; "
                f"{gate['suppressed']:,} of {gate['rows']:,} rows withheld); {levels}"
            )
            if (person := gate.get("person_level") or {}).get("after"):
                after, row = person["after"], outcome.row_model
                alone = (
                    "" if row is None else
                    f"under the row model alone {row['unique']:,} of {row['persons']:,} "
                    f"({row['under_k']:,} in sets shared by fewer than {gate['k']}); "
                )  # fmt: skip
                console.print(
                    f"  persons singled out by their set of rows: {alone}released: "
                    f"{after['unique']:,} of {after['persons']:,} ({after['under_k']:,} "
                    f"under {gate['k']})"
                )
        for text in outcome.recovery_lines():  # identity recovery at the TTP
            console.print(f"  {text}", soft_wrap=True)
        verdict = "[green]verified[/]" if outcome.verify.ok else "[red]NOT verified[/]"
        passed = sum(c.ok for c in outcome.verify.checks)
        line = f"  auditor: {verdict} ({passed}/{len(outcome.verify.checks)} checks)"
        if outcome.reproduce is not None:
            same = sum(c.identical for c in outcome.reproduce.files)
            state = "[green]byte-identical[/]" if outcome.reproduce.identical else "[red]differs[/]"
            line += f"; reproduction {state} ({same}/{len(outcome.reproduce.files)} files)"
        console.print(line)
        timings = ", ".join(f"{k} {v:.1f} s" for k, v in outcome.seconds.items())
        console.print(f"  delivery: {run.delivery}; {timings}")
        for head in outcome.audit_logs:  # to record, for verify-log --expect-head/-entries
            console.print(f"  {head.describe()}", soft_wrap=True)


def _registries(stats: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for k, v in stats.items() if k.endswith("-extract") and isinstance(v, dict)]
