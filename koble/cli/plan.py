"""``koble plan``: read a job file and print the linkage plan (text, JSON or Mermaid)."""

from __future__ import annotations

from pathlib import Path

import click

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
def plan(job_file: Path, fmt: str, extra: Path | None) -> None:
    """Plan a linkage job: for each party, what it receives, does and sends.

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
    result = plan_job(job, catalogue)
    if fmt == "json":
        click.echo(result.to_json())
    elif fmt == "mermaid":
        click.echo(result.to_mermaid(), nl=False)
    else:
        click.echo(result.to_text(), nl=False)
