"""``koble anonymity``: check, anonymise, and publish safe tables."""

from __future__ import annotations

import json
from pathlib import Path

import click
import polars as pl
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from koble.anonymity.config import AnonymiseConfig
from koble.anonymity.release import check_frame
from koble.anonymity.report import REPORT_FILES, anonymise_with_report, why_not
from koble.anonymity.tables import safe_table
from koble.cli._progress import stage_progress
from koble.cli._values import ColumnList, Share, WholeNumber, memory_limit_option
from koble.errors import UsageError
from koble.path_checks import ensure_distinct
from koble.tables import read_table, write_table

EXIT_MEETS = 0
EXIT_FAILS = 1
PATH = click.Path(dir_okay=False, path_type=Path)


@click.group()
def anonymity() -> None:
    """k-anonymity checks, optimal coarsening with reports, and safe frequency tables."""


@anonymity.command()
@click.argument("file", type=PATH)
@click.option("--qi", type=ColumnList(), required=True,
              help="Quasi-identifier columns, comma-separated.")  # fmt: skip
@click.option("--k", "k", type=WholeNumber(1), required=True, help="Smallest class size required.")
@click.option("--sensitive", help="Sensitive attribute column (for --l).")
@click.option("--l", "l_", type=WholeNumber(1),
              help="Distinct values of the sensitive attribute per class.")  # fmt: skip
@click.option("--risk-threshold", type=Share(open_low=True), default=0.2, show_default=True,
              help="Risk above which a record is at risk (0 < r <= 1).")  # fmt: skip
@click.option("--population", type=PATH, help="Population table for the journalist model.")
@click.option("--person", help="Column naming the person, for files with several rows per person "
              "(k counts persons; person-level risk is measured).")  # fmt: skip
@click.option("--model", metavar="[row|person-set|person-km]",
              help="Person-level requirement with --person (default person-set).")  # fmt: skip
@click.option("--m", "m", type=WholeNumber(1), default=2, show_default=True,
              help="Rows an attacker knows, for k^m (person-km).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True)
def check(file: Path, qi: list[str], k: int, sensitive: str | None, l_: int | None,
          risk_threshold: float, population: Path | None, person: str | None,
          model: str | None, m: int, as_json: bool) -> None:  # fmt: skip
    """Is FILE k-anonymous (and l-diverse) as it stands, and how risky is it?

    With --person, also per person: persons unique or under k by their set (and multiset)
    of QI tuples, with the person-constant columns, and k^m. Exit code 0 when it meets the
    requirements, 1 when not, 2 for unusable input.
    """
    result = check_frame(
        read_table(file), qi, k=k, path=str(file), sensitive=sensitive, l=l_,
        risk_threshold=risk_threshold,
        population=None if population is None else read_table(population),
        person=person, model=model, m=m,
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    else:
        p = result.risk.prosecutor
        console = Console(highlight=False)
        console.print(f"{result.rows:,} records in {result.classes:,} classes; smallest class "
                      f"{result.smallest_class:,} (k = {k}); {result.records_in_small_classes:,} "
                      f"records in classes under k")  # fmt: skip
        console.print(f"prosecutor risk: highest {p.highest:.3f}, average {p.average:.4f}, "
                      f"{p.records_at_risk:,} records above {risk_threshold}, "
                      f"{p.uniques:,} sample uniques")  # fmt: skip
        if result.risk.journalist is not None:
            j = result.risk.journalist
            console.print(f"journalist risk: highest {j.highest:.3f}, average {j.average:.4f}, "
                          f"{j.uniques:,} population uniques")  # fmt: skip
        if result.direct_identifiers is not None:
            console.print(f"[red]direct identifiers[/]: valid fødselsnummer-family numbers in "
                          f"{escape(result.direct_identifiers)}; not anonymous")  # fmt: skip
        if result.person_level is not None:
            console.print(f"person level (model {result.model}):")
            for line in result.person_level.lines():
                console.print(f"  {line}", markup=False, emoji=False, soft_wrap=True)
        if result.meets:
            console.print("meets the requirements")
        else:
            console.print("does NOT meet them: " + "; ".join(result.failures()), markup=False,
                          emoji=False, soft_wrap=True)  # fmt: skip
    raise SystemExit(EXIT_MEETS if result.meets else EXIT_FAILS)


@anonymity.command()
@click.argument("file", type=PATH)
@click.option("--config", type=PATH, required=True, help="ANON.toml (see the README).")
@click.option("--out", type=PATH, required=True, help="The released file (.parquet or .csv).")
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory for the report, certificate and withheld rows.",
)
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--engine",
    type=click.Choice(["duckdb", "spark"]),
    help="Read and write the rows on an engine, for files larger than memory: DuckDB, or "
    "Spark (the `spark` extra and Java 17+; local mode unless --spark-master or "
    "--spark-remote). Parquet in and out, k-anonymity of rows only.",
)
@click.option("--spark-master", metavar="URL", help="A Spark master (e.g. spark://host:7077).")
@click.option("--spark-remote", metavar="URL", help="A Spark Connect server (sc://host).")
@click.option(
    "--memory-limit",
    callback=memory_limit_option,
    metavar="SIZE",
    help="With --engine: cap DuckDB's memory (e.g. 4GB; beyond it DuckDB spills to disk), "
    "or Spark's driver memory.",
)
def anonymise(file: Path, config: Path, out: Path, report_dir: Path, as_json: bool,
              engine: str | None, spark_master: str | None,
              spark_remote: str | None, memory_limit: str | None) -> None:  # fmt: skip
    """Coarsen FILE optimally until it meets the requirements of CONFIG.

    Withheld records go to REPORT/withheld.parquet (not for release). Exit code 0 when a
    release was made, 1 when no generalisation meets the requirements, 2 for bad input.
    """
    settings = AnonymiseConfig.read(config)
    ensure_distinct(
        {"--out": out, **{f"--report ({n})": report_dir / n for n in REPORT_FILES}},
        {"FILE": file, "--config": config, **settings.input_files()},
    )
    if engine is None:
        if spark_master or spark_remote or memory_limit:
            raise UsageError(
                "--spark-master, --spark-remote and --memory-limit need --engine (without it "
                "the file is read into memory)"
            )
        release, files = anonymise_with_report(file, settings, out, report_dir)
    else:  # the engines (DuckDB, pyspark) only when asked for
        from koble.anonymity.engine_release import anonymise_with_report_on_engine
        from koble.linkage.engine import engine_named

        on = engine_named(
            engine, master=spark_master, remote=spark_remote, memory_limit=memory_limit
        )
        try:
            release, files = anonymise_with_report_on_engine(file, settings, out, report_dir, on)
        finally:
            on.close()
    certificate = release.certificate()
    if as_json:
        click.echo(json.dumps(certificate, indent=2, sort_keys=True, allow_nan=False))
    else:
        console = Console(highlight=False)
        r = release.result
        if r.feasible:
            levels = ", ".join(f"{n}={release.level_names[n]}" for n in r.names)
            console.print(f"released {r.rows - r.suppressed:,} of {r.rows:,} records to {out}; "
                          f"{r.suppressed:,} withheld; levels: {levels}", markup=False)  # fmt: skip
            console.print(f"loss ({r.metric}) {r.loss:.6g}; {r.evaluated:,} of "
                          f"{r.lattice_size:,} nodes evaluated in {r.seconds:.3f} s")  # fmt: skip
            if release.unchanged:
                console.print("released as they are (not quasi-identifiers: make any that an "
                              f"attacker may know one): {', '.join(release.unchanged)}",
                              markup=False)  # fmt: skip
        else:
            console.print("[red]no generalisation meets the requirements[/]: nothing released")
            for why in why_not(release):
                console.print(f"  {why}", markup=False)
        console.print(f"report: {files['html']} (also .md, .json); certificate: "
                      f"{files['certificate']}", markup=False)  # fmt: skip
    raise SystemExit(EXIT_MEETS if release.result.feasible else EXIT_FAILS)


@anonymity.command()
@click.argument("file", type=PATH)
@click.option("--rows", "rows", required=True, help="Column for the table's rows.")
@click.option("--cols", "cols", required=True, help="Column for the table's columns.")
@click.option("--threshold", type=int, default=5, show_default=True,
              help="Cells with fewer persons than this are hidden.")  # fmt: skip
@click.option("--zeros", is_flag=True, help="Hide zero cells too.")
@click.option("--out", type=PATH, help="Write the publishable table (.csv or .parquet).")
@click.option("--json", "as_json", is_flag=True)
def table(file: Path, rows: str, cols: str, threshold: int, zeros: bool, out: Path | None,
          as_json: bool) -> None:  # fmt: skip
    """Counts of ROWS × COLS with primary and secondary cell suppression (hidden as ':')."""
    ensure_distinct({"--out": out}, {"FILE": file})
    frame = read_table(file)
    with stage_progress() as progress:
        safe = safe_table(frame, rows, cols, threshold=threshold, zeros=zeros, path=str(file),
                          progress=progress)  # fmt: skip
    published = safe.to_frame(rows)
    if out is not None:
        write_table(published, out)
    if as_json:
        click.echo(json.dumps(safe.to_dict(), indent=2))
    else:
        Console(highlight=False).print(_rich_table(published))
        hidden, more = int(safe.primary.sum()), int(safe.secondary.sum())
        click.echo(f"{hidden} cells hidden under {threshold}, {more} more so that none can be "
                   "recomputed from the totals")  # fmt: skip


def _rich_table(frame: pl.DataFrame) -> Table:
    """The published counts as a terminal table: every row, counts with thousands
    separators, hidden cells as ``:``."""
    table = Table(show_edge=False)
    for i, name in enumerate(frame.columns):
        table.add_column(str(name), justify="left" if i == 0 else "right", no_wrap=True)
    for row in frame.iter_rows():
        table.add_row(escape(str(row[0])), *(_cell(v) for v in row[1:]))  # labels as they are
    return table


def _cell(value: object) -> str:
    """A count with thousands separators (counts arrive as text beside the hidden ``:``)."""
    text = str(value)
    return f"{int(text):,}" if text.isdigit() else escape(text)
