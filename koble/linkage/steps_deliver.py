"""Delivery: the operator's reports and signed manifest, and the researcher's checked receipt.

In the distributed route the operator never sees the extracts: it builds the quality report,
codebook and manifest from the registries' extract reports (counts, hashes, variable
metadata). In the central route it writes the anonymous file itself, streamed from the
run's engine (:mod:`koble.linkage.delivery_engine`). The quality report and the manifest's
body are typed records (:mod:`koble.linkage.delivery_records`), each written once as JSON.
The researcher keeps a delivery only after checking the manifest's signature, hashes and
counts; the delivery directory appears at once (a rename) or not at all.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

import polars as pl

from koble.digests import sha256_file
from koble.errors import KobleError
from koble.files import atomic_write, publish_directory, write_text
from koble.linkage import names
from koble.linkage.codebook import Codebook, CodebookFile, render_codebook_markdown
from koble.linkage.context import Context
from koble.linkage.delivery_engine import deliver_file
from koble.linkage.delivery_records import (
    DeliveredFile,
    JobRef,
    LinkageSection,
    ManifestBody,
    ManifestInput,
    ManifestOutput,
    PeriodEntry,
    ProjectRef,
    QualityReport,
    Recipient,
    ReconciliationCheck,
    RefusalEntry,
    RegistrySummary,
    TransferEntry,
)
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
from koble.linkage.step_stats import StepStats
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
) -> list[ReconciliationCheck]:
    p, rejected = population, population.rejected
    check = ReconciliationCheck
    checks = [
        check(
            "population rows = persons keyed + rows rejected",
            p.rows == p.persons + rejected,
            f"{p.rows:,} = {p.persons:,} + {rejected:,}",
        )
    ]
    for r in registries:
        reg = r.registry
        expected = ttp[reg].persons_pseudonymised if reg in ttp else p.persons
        checks.append(
            check(
                f"{reg}: persons sent = persons keyed",
                r.persons_sent == expected,
                f"{r.persons_sent:,} = {expected:,}",
            )
        )
        if reg in ttp:
            t = ttp[reg]
            checks.append(
                check(
                    f"{reg}: TTP persons received = pseudonymised + unresolved",
                    t.persons_received == t.persons_pseudonymised + t.persons_unresolved,
                    f"{t.persons_received:,} = {t.persons_pseudonymised:,} + "
                    f"{t.persons_unresolved:,}",
                )
            )
        checks.append(
            check(
                f"{reg}: rows delivered = rows in file",
                r.rows_delivered == r.file_rows,
                f"{r.rows_delivered:,} = {r.file_rows:,}",
            )
        )
        if r.rows_found is not None:  # reports before koble counted reservations: no total
            withheld = [r.rows_outside_period, r.rows_without_consent, r.rows_withheld_reservation]
            checks.append(
                check(
                    f"{reg}: rows found = delivered + outside period + without "
                    "consent + withheld for reservation",
                    r.rows_found == r.rows_delivered + sum(withheld),
                    f"{r.rows_found:,} = {r.rows_delivered:,} + "
                    + " + ".join(f"{n:,}" for n in withheld),
                )
            )
        checks.append(
            check(
                f"{reg}: persons found ≤ persons sent",
                r.persons_found <= r.persons_sent,
                f"{r.persons_found:,} ≤ {r.persons_sent:,}",
            )
        )
        checks.append(non_empty_check(r))
    return checks


def _linkage(
    store: Path, population: PopulationReport, accepted: list[str], read: tuple[str, ...]
) -> list[LinkageSection]:
    """The linkage sections: the population's (from assign-serials) and each recovering
    registry's (the TTP's resolve report: counts, model figures, link rate by group)."""
    out = []
    if population.linkage:
        path = store / names.POPULATION_REPORT
        out.append(LinkageSection.from_json(population.linkage, path))
    for reg in accepted:
        if names.resolve_report(reg) in read:  # a registry that recovered identities
            path = store / names.resolve_report(reg)
            report = read_report(path, ResolveReport)
            out.append(LinkageSection.from_json(report.linkage_section(), path))
    return out


def linkage_check(section: LinkageSection) -> ReconciliationCheck:
    """Every record of a linkage section ends in exactly one outcome."""
    parts = section.by_outcome
    return ReconciliationCheck(
        f"linkage ({section.scope}): records = " + " + ".join(parts),
        section.rows == sum(parts.values()),
        f"{section.rows:,} = " + " + ".join(f"{n:,}" for n in parts.values()),
    )


def non_empty_check(report: ExtractReport) -> ReconciliationCheck:
    """A registry sent persons delivers rows: an empty file for a non-empty population is
    a mismatch (a raw feed for a pseudonymous registry, a wrong column), never a pass."""
    reg, sent, rows = report.registry, report.persons_sent, report.rows_delivered
    return ReconciliationCheck(
        f"{reg}: rows delivered > 0 when persons were sent",
        sent == 0 or rows > 0,
        f"{rows:,} rows for {sent:,} persons sent, {report.persons_found:,} found",
    )


def periods_delivered(plan: Plan, reports: list[ExtractReport]) -> list[PeriodEntry]:
    """Every request's data years as planned (by regime and holder), each with the rows its
    registry delivered and the file they are in (none for a refused part)."""
    by_registry = {r.registry: r for r in reports}
    return [
        PeriodEntry.of(part, by_registry.get(part.registry) if part.route != "refused" else None)
        for part in plan.parts
    ]


def _entry(file: Path, rows: int | None, party: str) -> ManifestOutput:
    return ManifestOutput(file=file.name, sha256=sha256_file(file), rows=rows, sender=party)


def _coarsened_labels(
    columns: list[str], gate: GateReport
) -> tuple[dict[str, str], dict[str, Mapping[Any, str]]]:
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


def deliver_step(ctx: Context, step: Step) -> StepStats:
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
    outputs: list[ManifestOutput] = []
    anonymity = None
    files: list[CodebookFile] = []  # the codebook's, in the order delivered
    if plan.route == "central-anonymous":
        source = store / names.declared(names.ANONYMOUS, read)
        target = store / step.outputs[0]
        gate = read_report(store / names.declared(names.ANONYMITY_JSON, read), GateReport)
        anonymity = gate
        labels, value_labels = _coarsened_labels(list(pl.read_parquet_schema(source)), gate)
        rows, entry = deliver_file(ctx.engine, source, target, job.delivery_format,
                                   labels=labels, value_labels=value_labels,
                                   timestamp=ctx.created, identifying=set(IDENTIFYING))  # fmt: skip
        outputs.append(_entry(target, rows, OPERATOR))
        files.append(entry)
        with atomic_write(store / names.declared(names.ANONYMITY_MD, step.outputs)) as temp:
            shutil.copyfile(store / names.declared(names.GATE_REPORT[0], read), temp)
    else:
        if links := [o for o in step.outputs if o.startswith(f"{LINKAGE}.")]:
            # (lopenr, link_method, probability)
            source = store / names.declared(LINK_METHODS, read)
            labels, value_labels = labels_for(list(pl.read_parquet_schema(source)))
            rows, entry = deliver_file(ctx.engine, source, store / links[0],
                                       job.delivery_format, labels=labels,
                                       value_labels=value_labels, timestamp=ctx.created,
                                       identifying=set(IDENTIFYING))  # fmt: skip
            outputs.append(_entry(store / links[0], rows, OPERATOR))
            files.append(entry)
        for r in reports:
            files += r.codebook.files
            # which data years of which request the file holds (a split request: one file
            # per registry and identity regime)
            outputs.append(
                ManifestOutput(file=r.file, sha256=r.file_sha256, rows=r.file_rows,
                               sender=registry_party(r.registry), requested=r.requested,
                               period=list(r.period))
            )  # fmt: skip
    checks = _checks(population.population, reports, ttp)
    linkage = _linkage(store, population, accepted, read)
    checks += [linkage_check(section) for section in linkage]
    quality = QualityReport(
        project=ProjectRef(job.project_id, job.title),
        route=plan.route,
        population=population.population,
        # each extract's figures, with the TTP's persons unresolved
        registries=[RegistrySummary.of(r, ttp.get(r.registry)) for r in reports],
        ttp=ttp,
        refusals=[RefusalEntry.of(x) for x in plan.refusals],
        periods=periods_delivered(plan, reports),
        anonymity=anonymity,
        # what the researcher receives: in the central route the anonymous file, not the
        # registries' extracts, which only the operator ever holds
        delivery=[DeliveredFile(file=o.file, rows=o.rows, sender=o.sender) for o in outputs],
        reconciliation=checks,
        # identity recovery: who was linked how, and who was not (design.md §1.5)
        linkage=linkage or None,
    )
    write_quality_report(quality, store)
    write_text(
        store / names.declared("codebook.md", step.outputs),
        render_codebook_markdown(Codebook(files)),
    )
    docs = [d for d in step.outputs if d != names.MANIFEST and d not in {o.file for o in outputs}]
    outputs += [_entry(store / d, None, OPERATOR) for d in docs]
    body = _manifest_body(ctx, population, reports, outputs, checks)
    ctx.write_json(store / names.declared(names.MANIFEST, step.outputs),
                   sign_manifest(body.to_json(), ctx.keys.signer))  # fmt: skip
    return StepStats.of({"files": len(outputs), "reconciled": all(c.ok for c in checks)})


def _inputs(population: PopulationReport, reports: list[ExtractReport]) -> list[ManifestInput]:
    """Every input by hash and rows: the population, its identity history, and each
    registry's source (a pseudonymous registry's sealed feed before it)."""
    pop = population.population
    inputs = [ManifestInput(party=OPERATOR, file=pop.file, sha256=pop.sha256, rows=pop.rows)]
    if population.history_sha256:
        inputs.append(
            ManifestInput(party=OPERATOR, file=population.history_file or "identity history",
                          sha256=population.history_sha256, rows=population.history_rows)
        )  # fmt: skip
    for r in reports:
        if feed := r.feed:  # a pseudonymous registry's table came from a sealed feed
            inputs.append(
                ManifestInput(party=f"sender:{r.registry}", file=feed["feed_file"],
                              sha256=feed["feed_sha256"], rows=feed["rows_sent"])
            )  # fmt: skip
        inputs.append(
            ManifestInput(party=registry_party(r.registry), file=r.source_file,
                          sha256=r.source_sha256, rows=r.source_rows)
        )  # fmt: skip
    return inputs


def _manifest_body(
    ctx: Context,
    population: PopulationReport,
    reports: list[ExtractReport],
    outputs: list[ManifestOutput],
    checks: list[ReconciliationCheck],
) -> ManifestBody:
    job, plan = ctx.job, ctx.plan
    return ManifestBody(
        format=FORMAT,
        project=ProjectRef(job.project_id, job.title),
        recipient=Recipient(job.recipient, job.organisation),
        job=JobRef(ctx.job_path.name, ctx.job_sha256),
        catalogue_version=plan.catalogue_version,
        software={name: version(name) for name in ("koble", "duckdb", "polars", "pyarrow")},
        engine=ctx.engine.name,
        created=ctx.created.isoformat(timespec="seconds"),
        route=plan.route,
        delivery_format=job.delivery_format,
        # Long-lived key ids only: transport keys are per workspace and protect transit.
        keys=ctx.keys.fingerprints(),
        inputs=_inputs(population, reports),
        outputs=sorted(outputs, key=lambda o: o.file),
        transfers=[TransferEntry.of(t) for t in plan.transfers],
        refusals=[RefusalEntry.of(x) for x in plan.refusals],
        periods=periods_delivered(plan, reports),
        reconciliation=checks,
    )


def receive_step(ctx: Context, step: Step) -> StepStats:
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
    return StepStats.of({"files": len(step.inputs), "checks": len(report.checks)})


def refuse_step(ctx: Context, step: Step) -> StepStats:
    """Nothing is sent anywhere; the refusal and its reason go into the quality report."""
    refusal = next(r for r in ctx.plan.refusals if f"operator-refuse-{r.key}" == step.id)
    return StepStats.of(refusal.to_dict())
