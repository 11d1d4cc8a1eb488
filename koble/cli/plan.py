"""``koble plan``: read a job file and print the linkage plan (text, JSON or Mermaid)."""

from __future__ import annotations

from pathlib import Path

import click

from koble.errors import UsageError
from koble.linkage.job import JobError, load_job
from koble.linkage.planner import plan_job
from koble.registries.catalogue import Catalogue

__all__ = ["plan"]


@click.command("plan")
@click.argument("job_file", metavar="JOB.toml", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "mermaid"]),
    default="text",
    show_default=True,
    help="text for a person to check, json for tools, mermaid for a diagram.",
)
@click.option(
    "--catalogue",
    "extra",
    type=click.Path(path_type=Path),
    help="A TOML file of your own registries, added to the bundled catalogue.",
)
@click.option(
    "--sources",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The sources file the job will run with: a registry whose source is a sealed feed "
    "(ingest = true) is planned with its sealed ingest step.",
)
@click.option(
    "--world",
    type=click.Path(file_okay=False, path_type=Path),
    help="A `koble synth` world the job will run on, as --sources "
    "[default: the job's directory if it is one].",
)
def plan(
    job_file: Path, fmt: str, extra: Path | None, sources: Path | None, world: Path | None
) -> None:
    """Plan a linkage job: for each party, what it receives, does and sends.

    With the sources the job runs with (--sources, --world, or the world the job file lies
    in, as for `koble run`), a registry loaded from a sealed feed shows its ingest step.
    An invalid job prints one line per problem (file:line: message) and exits 2; other koble
    errors (a missing file, a bad --catalogue) are mapped by the koble group.
    """
    catalogue = Catalogue.load()
    if extra is not None:
        catalogue = catalogue.extended(Catalogue.from_file(extra))
    try:
        job = load_job(job_file, catalogue)
    except JobError as exc:
        for line in exc.lines():
            click.echo(f"koble: error: {line}", err=True)
        raise SystemExit(exc.exit_code) from None
    result = plan_job(job, catalogue, feeds=_feeds(job_file, sources, world))
    if fmt == "json":
        click.echo(result.to_json())
    elif fmt == "mermaid":
        click.echo(result.to_mermaid(), nl=False)
    else:
        click.echo(result.to_text(), nl=False)


def _feeds(job_file: Path, sources: Path | None, world: Path | None) -> dict[str, str] | None:
    """The sealed feeds of the sources named (as ``koble run`` finds them), or None."""
    from koble.linkage.sources import load_sources, synthetic_sources

    if sources is not None and world is not None:
        raise UsageError("give --sources or --world, not both")
    if sources is None and world is None and (job_file.parent / "manifest.json").is_file():
        world = job_file.parent  # a job in a synthetic world runs on it
    if sources is not None:
        return load_sources(sources).feeds()
    return None if world is None else synthetic_sources(world).feeds()
