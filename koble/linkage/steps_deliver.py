"""Delivery: the operator's reports and signed manifest, and the researcher's checked receipt.

In the distributed route the operator never sees the extracts: it builds the quality report,
codebook and manifest from the registries' extract reports (counts, hashes, variable
metadata). In the central route it writes the anonymous file itself. The researcher keeps a
delivery only after checking the manifest's signature, hashes and counts; the delivery
directory appears at once (a rename) or not at all.
"""

from __future__ import annotations

import shutil
from importlib.metadata import version
from pathlib import Path
from typing import Any

import polars as pl

from koble.errors import KobleError
from koble.files import atomic_write, publish_directory, sha256_file, write_text
from koble.linkage import names
from koble.linkage.codebook import codebook, render_codebook_markdown
from koble.linkage.context import Context
from koble.linkage.formats import write_delivery
from koble.linkage.labels import IDENTIFYING, labels_for
from koble.linkage.manifest import FORMAT, sign_manifest
from koble.linkage.plan import OPERATOR, Plan, Step, registry_party
from koble.linkage.planner import LINK_METHODS
from koble.linkage.quality import write_quality_report
from koble.linkage.reports import (
    ExtractReport,
    GateReport,
    PopulationCounts,
    PopulationReport,
    ResolveReport,
    TtpReport,
    read_report,
)
from koble.linkage.verify import verify_delivery

__all__ = ["DELIVERY", "DeliveryRejectedError", "deliver_step", "receive_step", "refuse_step"]

DELIVERY = "delivery"
#: The distributed route's file of how each person was linked (identity recovery).
LINKAGE = "linkage"


class DeliveryRejectedError(KobleError):
    """The researcher's check of a delivery failed; nothing was kept."""

    exit_code = 1


def _checks(
    population: PopulationCounts, registries: list[ExtractReport], ttp: dict[str, TtpReport]
) -> list[dict[str, Any]]:
    p, rejected = population, population.rejected
    checks = [
        {
            "check": "population rows = persons keyed + rows rejected",
            "ok": p.rows == p.persons + rejected,
            "detail": f"{p.rows:,} = {p.persons:,} + {rejected:,}",
        }
    ]
    for r in registries:
        reg = r.registry
        expected = ttp[reg].persons_pseudonymised if reg in ttp else p.persons
        checks.append(
            {
                "check": f"{reg}: persons sent = persons keyed",
                "ok": r.persons_sent == expected,
                "detail": f"{r.persons_sent:,} = {expected:,}",
            }
        )
        if reg in ttp:
            t = ttp[reg]
            checks.append(
                {
                    "check": f"{reg}: TTP persons received = pseudonymised + unresolved",
                    "ok": t.persons_received == t.persons_pseudonymised + t.persons_unresolved,
                    "detail": f"{t.persons_received:,} = {t.persons_pseudonymised:,} + "
                    f"{t.persons_unresolved:,}",
                }
            )
        checks.append(
            {
                "check": f"{reg}: rows delivered = rows in file",
                "ok": r.rows_delivered == r.file_rows,
                "detail": f"{r.rows_delivered:,} = {r.file_rows:,}",
            }
        )
        if r.rows_found is not None:  # reports before koble counted reservations: no total
            withheld = [r.rows_outside_period, r.rows_without_consent, r.rows_withheld_reservation]
            checks.append(
                {
                    "check": f"{reg}: rows found = delivered + outside period + without "
                    "consent + withheld for reservation",
                    "ok": r.rows_found == r.rows_delivered + sum(withheld),
                    "detail": f"{r.rows_found:,} = {r.rows_delivered:,} + "
                    + " + ".join(f"{n:,}" for n in withheld),
                }
            )
        checks.append(
            {
                "check": f"{reg}: persons found ≤ persons sent",
                "ok": r.persons_found <= r.persons_sent,
                "detail": f"{r.persons_found:,} ≤ {r.persons_sent:,}",
            }
        )
        checks.append(non_empty_check(r))
    return checks


def _linkage(
    store: Path, population: PopulationReport, accepted: list[str], read: tuple[str, ...]
) -> list[dict[str, Any]]:
    """The linkage sections: the population's (from assign-serials) and each recovering
    registry's (the TTP's resolve report: counts, model figures, link rate by group)."""
    out = [dict(population.linkage)] if population.linkage else []
    for reg in accepted:
        if names.resolve_report(reg) in read:  # a registry that recovered identities
            report = read_report(store / names.resolve_report(reg), ResolveReport)
            out.append(report.linkage_section())
    return out


def linkage_check(section: dict[str, Any]) -> dict[str, Any]:
    """Every record of a linkage section ends in exactly one outcome."""
    parts = section["by_outcome"]
    return {
        "check": f"linkage ({section['scope']}): records = " + " + ".join(parts),
        "ok": section["rows"] == sum(parts.values()),
        "detail": f"{section['rows']:,} = " + " + ".join(f"{n:,}" for n in parts.values()),
    }


def non_empty_check(report: ExtractReport) -> dict[str, Any]:
    """A registry sent persons delivers rows: an empty file for a non-empty population is
    a mismatch (a raw feed for a pseudonymous registry, a wrong column), never a pass."""
    reg, sent, rows = report.registry, report.persons_sent, report.rows_delivered
    return {
        "check": f"{reg}: rows delivered > 0 when persons were sent",
        "ok": sent == 0 or rows > 0,
        "detail": f"{rows:,} rows for {sent:,} persons sent, {report.persons_found:,} found",
    }


def periods_delivered(plan: Plan, reports: list[ExtractReport]) -> list[dict[str, Any]]:
    """Every request's data years as planned (by regime and holder), each with the rows its
    registry delivered and the file they are in (none for a refused part)."""
    by_registry = {r.registry: r for r in reports}
    out = []
    for part in plan.parts:
        report = by_registry.get(part.registry) if part.route != "refused" else None
        out.append(
            {
                **part.to_dict(),
                "rows_delivered": None if report is None else report.rows_delivered,
                "file": None if report is None else report.file,
            }
        )
    return out


def _entry(file: Path, rows: int | None, party: str) -> dict[str, Any]:
    return {"file": file.name, "sha256": sha256_file(file), "rows": rows, "from": party}


def _coarsened_labels(
    columns: list[str], gate: GateReport
) -> tuple[dict[str, str], dict[str, Any]]:
    """Labels for the anonymous file: a coarsened quasi-identifier says to what level, and
    loses the code list of its original values (kommune names do not fit fylke codes)."""
    labels, value_labels = labels_for(columns)
    coarsened = gate.coarsened_columns or {
        qi: gate.levels[qi] for qi, index in gate.level_index.items() if index > 0
    }
    for column, level in coarsened.items():
        if column in columns:
            labels[column] = f"{labels.get(column, column)} (coarsened: {level})"
            value_labels.pop(column, None)
    return labels, value_labels


def deliver_step(ctx: Context, step: Step) -> dict[str, Any]:
    store = ctx.store(step.party)
    job, plan = ctx.job, ctx.plan
    read = step.inputs  # every report the plan sends the operator, and nothing else
    population = read_report(store / names.declared(names.POPULATION_REPORT, read),
                             PopulationReport)  # fmt: skip
    accepted = [p.registry for p in plan.accepted]  # a split request: one report per part
    reports = [read_report(store / names.declared(names.registry_report(reg), read),
                           ExtractReport) for reg in accepted]  # fmt: skip
    ttp = {
        reg: read_report(store / names.ttp_report(reg), TtpReport)
        for reg in accepted
        if names.ttp_report(reg) in read
    }
    outputs: list[dict[str, Any]] = []
    anonymity = None
    book: dict[str, Any] = {"files": []}
    if plan.route == "central-anonymous":
        frame = pl.read_parquet(store / names.declared(names.ANONYMOUS, read))
        target = store / step.outputs[0]
        gate = read_report(store / names.declared(names.ANONYMITY_JSON, read), GateReport)
        anonymity = gate.to_json()
        labels, value_labels = _coarsened_labels(frame.columns, gate)
        write_delivery(
            frame,
            target,
            job.delivery_format,
            labels=labels,
            value_labels=value_labels,
            timestamp=ctx.created,
        )
        outputs.append(_entry(target, frame.height, OPERATOR))
        book = codebook(
            {target.name: frame},
            labels=labels,
            value_labels=value_labels,
            identifying=set(IDENTIFYING),
        )
        with atomic_write(store / names.declared(names.ANONYMITY_MD, step.outputs)) as temp:
            shutil.copyfile(store / names.declared(names.GATE_REPORT[0], read), temp)
    else:
        if links := [o for o in step.outputs if o.startswith(f"{LINKAGE}.")]:
            # (lopenr, link_method, probability)
            frame = pl.read_parquet(store / names.declared(LINK_METHODS, read))
            labels, value_labels = labels_for(frame.columns)
            write_delivery(frame, store / links[0], job.delivery_format, labels=labels,
                           value_labels=value_labels, timestamp=ctx.created)  # fmt: skip
            outputs.append(_entry(store / links[0], frame.height, OPERATOR))
            book["files"] += codebook(
                {links[0]: frame}, labels=labels, value_labels=value_labels,
                identifying=set(IDENTIFYING),
            )["files"]  # fmt: skip
        for r in reports:
            book["files"] += r.codebook["files"]
            outputs.append(
                {
                    "file": r.file,
                    "sha256": r.file_sha256,
                    "rows": r.file_rows,
                    "from": registry_party(r.registry),
                    # which data years of which request the file holds (a split request:
                    # one file per registry and identity regime)
                    "requested": r.requested,
                    "period": r.period,
                }
            )
    registries = []  # the quality report's: each extract's figures, the TTP's unresolved
    for r in reports:
        summary = r.summary()
        if r.registry in ttp:
            summary["persons_unresolved"] = ttp[r.registry].persons_unresolved
        registries.append(summary)
    checks = _checks(population.population, reports, ttp)
    linkage = _linkage(store, population, accepted, read)
    checks += [linkage_check(section) for section in linkage]
    quality = {
        "project": {"id": job.project_id, "title": job.title},
        "route": plan.route,
        "population": population.population.to_json(),
        "registries": registries,
        "ttp": {reg: t.to_json() for reg, t in ttp.items()},
        "refusals": [x.to_dict() for x in plan.refusals],
        "periods": periods_delivered(plan, reports),
        "anonymity": anonymity,
        # what the researcher receives: in the central route the anonymous file, not the
        # registries' extracts, which only the operator ever holds
        "delivery": [{"file": o["file"], "rows": o["rows"], "from": o["from"]} for o in outputs],
        "reconciliation": checks,
    }
    if linkage:  # identity recovery: who was linked how, and who was not (design.md §1.5)
        quality["linkage"] = linkage
    write_quality_report(quality, store)
    write_text(store / names.declared("codebook.md", step.outputs), render_codebook_markdown(book))
    docs = [
        d for d in step.outputs if d != names.MANIFEST and d not in {o["file"] for o in outputs}
    ]
    outputs += [_entry(store / d, None, OPERATOR) for d in docs]
    body = _manifest_body(ctx, population, reports, outputs, checks)
    ctx.write_json(store / names.declared(names.MANIFEST, step.outputs),
                   sign_manifest(body, ctx.keys.signer))  # fmt: skip
    return {"files": len(outputs), "reconciled": all(c["ok"] for c in checks)}


def _manifest_body(
    ctx: Context,
    population: PopulationReport,
    reports: list[ExtractReport],
    outputs: list[dict[str, Any]],
    checks: list[dict[str, Any]],
) -> dict[str, Any]:
    job, plan = ctx.job, ctx.plan
    pop = population.population
    inputs = [{"party": OPERATOR, "file": pop.file, "sha256": pop.sha256, "rows": pop.rows}]
    if population.history_sha256:
        inputs.append(
            {
                "party": OPERATOR,
                "file": population.history_file or "identity history",
                "sha256": population.history_sha256,
                "rows": population.history_rows,
            }
        )
    for r in reports:
        if feed := r.feed:  # a pseudonymous registry's table came from a sealed feed
            inputs.append(
                {
                    "party": f"sender:{r.registry}",
                    "file": feed["feed_file"],
                    "sha256": feed["feed_sha256"],
                    "rows": feed["rows_sent"],
                }
            )
        inputs.append(
            {
                "party": registry_party(r.registry),
                "file": r.source_file,
                "sha256": r.source_sha256,
                "rows": r.source_rows,
            }
        )
    return {
        "format": FORMAT,
        "project": {"id": job.project_id, "title": job.title},
        "recipient": {"name": job.recipient, "organisation": job.organisation},
        "job": {"file": ctx.job_path.name, "sha256": ctx.job_sha256},
        "catalogue_version": plan.catalogue_version,
        "software": {name: version(name) for name in ("koble", "duckdb", "polars", "pyarrow")},
        "engine": ctx.engine.name,
        "created": ctx.created.isoformat(timespec="seconds"),
        "route": plan.route,
        "delivery_format": job.delivery_format,
        # Long-lived key ids only: transport keys are per workspace and protect transit.
        "keys": ctx.keys.fingerprints(),
        "inputs": inputs,
        "outputs": sorted(outputs, key=lambda o: str(o["file"])),
        "transfers": [t.to_dict() for t in plan.transfers],
        "refusals": [x.to_dict() for x in plan.refusals],
        "periods": periods_delivered(plan, reports),
        "reconciliation": checks,
    }


def receive_step(ctx: Context, step: Step) -> dict[str, Any]:
    """Check the delivery against its manifest, then make it the researcher's delivery."""
    root = ctx.workspace.party_root(step.party)
    staging, final = root / f"{DELIVERY}.partial", root / DELIVERY
    for path in (staging, final):
        if path.exists():
            shutil.rmtree(path)
    staging.mkdir()
    store = ctx.store(step.party)
    for file in step.inputs:
        shutil.copyfile(store / file, staging / file)
    report = verify_delivery(staging, key_id=ctx.keys.signer.key_id)
    if not report.ok:
        failed = "; ".join(c.detail for c in report.checks if not c.ok)
        raise DeliveryRejectedError(f"the researcher's check of the delivery failed: {failed}")
    publish_directory(staging, final)
    return {"files": len(step.inputs), "checks": len(report.checks)}


def refuse_step(ctx: Context, step: Step) -> dict[str, Any]:
    """Nothing is sent anywhere; the refusal and its reason go into the quality report."""
    refusal = next(r for r in ctx.plan.refusals if f"operator-refuse-{r.key}" == step.id)
    return refusal.to_dict()
