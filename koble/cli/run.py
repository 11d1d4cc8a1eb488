"""``koble run``: carry out a linkage job, every party in its own workspace directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import koble.cli
from koble.cli._secrets import kek_options, print_audit_head, randbytes, resolve_kek, utc_now
from koble.cli._values import memory_limit_option
from koble.errors import UsageError
from koble.linkage.executor import RunResult, StepEvent, run_job
from koble.linkage.job import JobError
from koble.linkage.plan import Step
from koble.linkage.sources import Sources, load_sources, synthetic_sources
from koble.path_checks import ensure_apart
from koble.registries.catalogue import Catalogue

__all__ = [
    "MEMORY_LIMIT_ENV",
    "common_run_options",
    "resolve_run",
    "run",
]

#: The environment variable ``koble run --memory-limit`` falls back to.
MEMORY_LIMIT_ENV = "KOBLE_DUCKDB_MEMORY_LIMIT"


def common_run_options(function: Any) -> Any:
    options = [
        click.option(
            "--keys",
            "keys_dir",
            type=click.Path(file_okay=False, path_type=Path),
            help="Directory of the run's long-lived keys (created if absent) "
            "[default: WORKSPACE/keys].",
        ),
        click.option(
            "--sources",
            type=click.Path(dir_okay=False, path_type=Path),
            help="TOML file saying where each party's data live.",
        ),
        click.option(
            "--world",
            type=click.Path(file_okay=False, path_type=Path),
            help="A `koble synth` world holding every party's data "
            "[default: the job's directory if it is one].",
        ),
        click.option(
            "--catalogue",
            "extra",
            type=click.Path(dir_okay=False, path_type=Path),
            help="A TOML file of registries added to (or completing) the catalogue.",
        ),
        click.option("--test-numbers", is_flag=True, help="Accept synthetic test numbers."),
        click.option(
            "--engine",
            type=click.Choice(["duckdb", "spark"]),
            default="duckdb",
            show_default=True,
            help="Where the registries' SQL runs: embedded DuckDB, or Spark (the `spark` "
            "extra and Java 17+; local mode unless --spark-master or --spark-remote).",
        ),
        click.option(
            "--spark-master", metavar="URL", help="A Spark master (e.g. spark://host:7077)."
        ),
        click.option("--spark-remote", metavar="URL", help="A Spark Connect server (sc://host)."),
    ]
    for option in reversed(options):
        function = option(function)
    return kek_options(function)


def resolve_run(
    job_file: Path,
    workspace: Path,
    keys_dir: Path | None,
    sources: Path | None,
    world: Path | None,
    extra: Path | None,
    passphrase_env: str,
    kek_file: Path | None,
    kek_env: str | None,
    *,
    against: Path | None = None,
    engine: str = "duckdb",
    spark_master: str | None = None,
    spark_remote: str | None = None,
    memory_limit: str | None = None,
) -> dict[str, Any]:
    """The keyword arguments of :func:`run_job` the options name. The workspace must keep
    apart from every directory the command reads (``against``: a reproduction's delivery);
    only ``koble run``'s own keys may lie inside it."""
    if sources is not None and world is not None:
        raise UsageError("give --sources or --world, not both")
    reads: dict[str, Path | None] = {
        "--against": against, "--keys": keys_dir, "--world": world, "--sources": sources,
        "--catalogue": extra,
    }  # fmt: skip
    if sources is None and world is None and (job_file.parent / "manifest.json").is_file():
        reads["the world in JOB.toml's directory"] = world = job_file.parent
    ensure_apart({"--workspace": workspace}, reads,
                 may_hold=("--keys",) if against is None else ())  # fmt: skip
    found: Sources
    if sources is not None:
        found = load_sources(sources)
    elif world is not None:
        found = synthetic_sources(world)
    else:
        raise UsageError("say where the parties' data are: --sources FILE or --world DIR")
    catalogue = Catalogue.load()
    if extra is not None:
        catalogue = catalogue.extended(Catalogue.from_file(extra))
    return {
        "keys_dir": keys_dir or workspace / "keys",
        "kek": resolve_kek(passphrase_env, kek_file, kek_env),
        "sources": found,
        "catalogue": catalogue,
        "now": utc_now,
        "randbytes": randbytes,
        "on_audit_close": print_audit_head,
        "engine": engine,
        "spark_master": spark_master,
        "spark_remote": spark_remote,
        "memory_limit": memory_limit,
    }


def progress_display(console: Console, enabled: bool) -> tuple[Progress, StepEvent]:
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not enabled,
    )
    task = bar.add_task("planning", total=None)

    def event(step: Step, what: str, index: int, total: int) -> None:
        if what == "rows":  # within a long step: rows done of all
            bar.update(
                task, description=f"{step.party}: {step.action} ({index:,} of {total:,} rows)"
            )
        elif what == "start":
            bar.update(
                task, description=f"{step.party}: {step.action}", total=total, completed=index - 1
            )
        else:
            bar.update(task, completed=index, total=total)

    return bar, event


@click.command("run")
@click.argument("job_file", metavar="JOB.toml", type=click.Path(path_type=Path))
@click.option(
    "--workspace",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Run directory: one sub-directory per party; re-run to resume.",
)
@common_run_options
@click.option(
    "--memory-limit",
    envvar=MEMORY_LIMIT_ENV,
    callback=memory_limit_option,
    metavar="SIZE",
    help="Cap DuckDB's memory (e.g. 4GB); beyond it DuckDB spills to .tmp/ in the current "
    "directory, so data larger than memory still run. With --engine spark: the driver's "
    f"memory (local mode runs every task in it) [env {MEMORY_LIMIT_ENV}, DuckDB's only].",
)
@click.option(
    "--restart",
    is_flag=True,
    help="Set the run already in the workspace aside (kept under WORKSPACE/restarted/, "
    "the audit log continues) and start the job afresh.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the run's summary as JSON.")
def run(
    job_file: Path,
    workspace: Path,
    keys_dir: Path | None,
    sources: Path | None,
    world: Path | None,
    extra: Path | None,
    test_numbers: bool,
    engine: str,
    spark_master: str | None,
    spark_remote: str | None,
    passphrase_env: str,
    kek_file: Path | None,
    kek_env: str | None,
    memory_limit: str | None,
    restart: bool,
    as_json: bool,
) -> None:
    """Run linkage job JOB.toml: plan it, run every party's steps, deliver and verify.

    Transfers between parties are encrypted to the recipient and signed by the sender. A run
    that stops (crash, kill) resumes from its last completed step when started again with
    the same workspace; a run that failed before doing anything leaves nothing behind.
    After a changed job (or data), --restart starts afresh in the same workspace, keeping
    the stopped run's records and audit trail. Exit 0 when the delivery is complete and
    verified.
    """
    kwargs = resolve_run(
        job_file, workspace, keys_dir, sources, world, extra, passphrase_env, kek_file, kek_env,
        engine=engine, spark_master=spark_master, spark_remote=spark_remote,
        memory_limit=memory_limit,
    )  # fmt: skip
    console = Console(stderr=True, highlight=False)
    bar, event = progress_display(console, not as_json)
    if koble.cli.COMMAND_PROCESS:  # the job's own process: what is imported stays (0.2 s)
        koble.cli.freeze_imports()
    try:
        with bar:
            result = run_job(
                job_file,
                workspace,
                on_step=event,
                test_numbers=test_numbers,
                restart=restart,
                **kwargs,
            )
    except JobError as exc:
        for line in exc.lines():
            click.echo(f"koble: error: {line}", err=True)
        raise SystemExit(exc.exit_code) from None
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    else:
        click.echo(summary_text(result))


def summary_text(result: RunResult) -> str:
    lines = [
        f"{result.plan.project_id}: {result.plan.route} route, {len(result.plan.steps)} steps"
        + (f" (resumed after step {result.resumed})" if result.resumed else "")
    ]
    for step in result.plan.steps:
        seconds = result.seconds.get(step.id)
        took = "done earlier" if seconds is None else f"{seconds:7.2f} s"
        lines.append(f"  {took:>12}  {step.party:<32} {step.action}")
    for refusal in result.plan.refusals:
        lines.append(f"  refused {refusal.registry}: {refusal.reason}")
    lines.append(f"delivery: {result.delivery}  ({result.total_seconds:.1f} s in all)")
    return "\n".join(lines)
