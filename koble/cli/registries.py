"""``koble registries``: the registry catalogue (list, show)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from koble.registries.catalogue import Catalogue
from koble.registries.catalogue_model import IDENTITY_MODELS, Evidence, Registry, Source

_CATALOGUE_OPTION = click.option(
    "--catalogue",
    "extra",
    type=click.Path(path_type=Path),
    help="A TOML file of your own registries, added to the bundled catalogue.",
)


def _catalogue(extra: Path | None) -> Catalogue:
    bundled = Catalogue.load()
    return bundled if extra is None else bundled.extended(Catalogue.from_file(extra))


def _flag(value: bool | str) -> str:
    return "yes" if value is True else "no" if value is False else str(value)


@click.group()
def registries() -> None:
    """The registry catalogue: who controls each registry and how it may be linked."""


@registries.command("list")
@click.option(
    "--model",
    type=click.Choice(IDENTITY_MODELS),
    help="Only registries with this identity model (a registry's parts count too).",
)
@click.option(
    "--year",
    type=click.IntRange(1800, 2100),
    help="Only registries holding data of this year; with --model, the model in force then.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
@_CATALOGUE_OPTION
def list_(model: str | None, year: int | None, as_json: bool, extra: Path | None) -> None:
    """List the registries in the catalogue."""
    catalogue = _catalogue(extra)
    entries = catalogue.list(model=model, year=year)
    if as_json:
        payload = {"version": catalogue.version, "registries": [e.to_dict() for e in entries]}
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    table = Table(title=f"{len(entries)} registries · catalogue {catalogue.version[:19]}")
    for column in ("id", "name", "model", "identifier", "anonymous output", "consent"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        regime = entry.regime_for(year) if year is not None else None
        model_text: str = regime.identity_model if regime else entry.identity_model
        if year is not None and regime != entry.all_regimes[-1]:
            model_text += f" (in {year}; now {entry.identity_model})"
        elif year is not None and entry.period.start == "unknown":
            model_text += f" (data start unknown: {year} may not be covered)"
        elif entry.parts:
            model_text += (
                " (" + ", ".join(f"{p.name}: {p.identity_model}" for p in entry.parts) + ")"
            )
        table.add_row(
            entry.id,
            escape(entry.name if not entry.short else f"{entry.name} ({entry.short})"),
            escape(model_text),
            regime.identifier if regime else entry.identifier,
            _flag(regime.anonymous_output if regime else entry.anonymous_output),
            _flag(entry.consent_required),
        )
    Console(highlight=False).print(table)


@registries.command("show")
@click.argument("ident", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the entry as JSON.")
@_CATALOGUE_OPTION
def show(ident: str, as_json: bool, extra: Path | None) -> None:
    """Show one registry, each fact with its source (seed passage or legal source with URL)."""
    entry = _catalogue(extra).get(ident)
    if as_json:
        click.echo(json.dumps(entry.to_dict(), indent=2, ensure_ascii=False))
        return
    _print(entry)


def _print(entry: Registry) -> None:
    console = Console(highlight=False)
    table = Table(title=f"{entry.id}: {entry.name}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    rows = {
        "short": entry.short or "",
        "kind": entry.kind,
        "owner": entry.owner,
        "legal_basis": entry.legal_basis,
        "identity_model": entry.identity_model,
        "consent_required": _flag(entry.consent_required),
        "anonymous_output": _flag(entry.anonymous_output),
        "identifier": entry.identifier,
        "linkage_by": entry.linkage_by,
        "period": str(entry.period),
    }
    for name, value in rows.items():
        text = escape(value)
        evidence = entry.evidence.get(name)
        if evidence is not None:
            text += "\n" + _source(evidence, entry)
        elif name in entry.unknown_reasons:
            text += f"\n[dim]unknown: {escape(entry.unknown_reasons[name])}[/]"
        table.add_row(name, text)
    for part in entry.parts:
        table.add_row(
            f"part {escape(part.name)}", f"{part.identity_model}\n{_source(part.evidence, entry)}"
        )
    for number, regime in enumerate(entry.regimes, start=1):
        text = (
            f"{regime.start}–{regime.end}: {regime.identity_model}, identifier "
            f"{regime.identifier}, linkage by {regime.linkage_by}, anonymous output "
            f"{_flag(regime.anonymous_output)}\n{_source(regime.evidence, entry)}"
        )
        table.add_row(f"regime {number}", text)
    if entry.continued_by is not None:
        succ = entry.continued_by
        text = (
            f"{succ.registry} from data year {succ.start}"
            f"{'' if succ.confirmed else ' (year not confirmed)'}\n{_source(succ.evidence, entry)}"
        )
        table.add_row("continued by", text)
    for number, res in enumerate(entry.reservations, start=1):
        what = "whole records" if res.scope == "persons" else ", ".join(res.variables)
        text = f"{escape(what)} for {', '.join(res.purposes)}\n{_source(res.evidence, entry)}"
        table.add_row(f"reservation {number}", text)
    for key, reason in sorted(entry.unknown_reasons.items()):
        if key not in rows:
            table.add_row(f"unconfirmed: {escape(key)}", escape(reason))
    if entry.see_also:
        table.add_row("see also", ", ".join(entry.see_also))
    if entry.notes:
        table.add_row("notes", escape(entry.notes))
    table.add_row("source", escape(f"{entry.source.seed}: «{entry.source.quote}»"))
    console.print(table)


def _source(source: Source, entry: Registry) -> str:
    """A seed passage as «quote» (with its seed when not the entry's own), a legal source as
    its citation with URL and the date it was checked (rich markup, escaped)."""
    if isinstance(source, Evidence):
        seed = "" if source.seed == entry.source.seed else f" ({source.seed})"
        return f"[dim]«{escape(source.quote)}»{escape(seed)}[/]"
    text = str(source)
    if source.note:
        text += f" — {source.note}"
    return f"[dim]{escape(text)}[/]"
