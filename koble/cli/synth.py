"""``koble synth``: write a synthetic registry world (see :mod:`koble.synth`).

Parses options, runs :func:`koble.synth.generate_world` under a rich progress bar and prints
a summary of the files written. All validation lives in :class:`koble.synth.SynthConfig`,
which raises :class:`koble.errors.UsageError` for bad parameters.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from koble.errors import UsageError
from koble.synth import SynthConfig, generate_world

__all__ = ["synth"]


def _date(value: str | None, option: str) -> datetime.date | None:
    if value is None:
        return None
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{option} must be a date like 2025-12-31") from None


@click.command()
@click.option("--persons", type=int, default=10_000, show_default=True, help="Persons.")
@click.option("--seed", type=int, default=2025, show_default=True, help="Random seed.")
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
    help="Output directory (created if missing).",
)  # fmt: skip
@click.option("--cohort-size", type=int, default=None, help="Survey rows [default: 9% of persons].")
@click.option("--reference-date", default=None, help="Last day of the world [default: 2025-12-31].")
@click.option("--chunk-size", type=int, default=None, help="Persons per chunk (changes output).")
@click.option("--event-scale", type=float, default=None, help="Multiply all event rates.")
@click.option(
    "--journals", type=int, default=None,
    help="Helsearkivregisteret journals [default: two per deceased person].",
)  # fmt: skip
@click.option("--quiet", is_flag=True, help="No progress bar or summary.")
def synth(
    persons: int,
    seed: int,
    out_dir: Path,
    cohort_size: int | None,
    reference_date: str | None,
    chunk_size: int | None,
    event_scale: float | None,
    journals: int | None,
    quiet: bool,
) -> None:
    """Generate a deterministic synthetic registry world (Parquet + manifest.json)."""
    options: dict[str, object] = {"persons": persons, "seed": seed, "cohort_size": cohort_size}
    ref = _date(reference_date, "--reference-date")
    if ref is not None:
        options["reference_date"] = ref
    if chunk_size is not None:
        options["chunk_size"] = chunk_size
    if event_scale is not None:
        options["event_scale"] = event_scale
    if journals is not None:
        options["helsearkiv_journals"] = journals
    config = SynthConfig(**options)  # type: ignore[arg-type]
    console = Console(quiet=quiet)
    started = time.perf_counter()
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), console=console, transient=True, disable=quiet,
    ) as bar:  # fmt: skip
        tasks: dict[str, TaskID] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        manifest = generate_world(out_dir, config, report)
    elapsed = time.perf_counter() - started
    table = Table(title=f"synthetic world in {out_dir}")
    table.add_column("file")
    table.add_column("rows", justify="right")
    for entry in manifest["files"]:
        table.add_row(entry["path"], f"{entry['rows']:,}")
    total = sum(entry["rows"] for entry in manifest["files"])
    table.add_row("total", f"{total:,}", end_section=True)
    console.print(table)
    console.print(f"{config.persons:,} persons, seed {config.seed}, {elapsed:.1f} s")
