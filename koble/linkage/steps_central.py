"""The central anonymous route's operator steps: link on løpenummer, then the anonymity gate.

design.md §1.4: anonymity cannot be judged before linkage, so the operator links the
extracts first, then coarsens the linked file (:mod:`koble.anonymity`) until it meets the
job's requirements, and delivers it without løpenummer. If no coarsening does, the run
stops with :class:`AnonymityGateError` and the report goes back to the applicant.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from koble.errors import KobleError
from koble.files import OutputSet, atomic_write
from koble.linkage import names
from koble.linkage.context import Context
from koble.linkage.engine import Table, quote
from koble.linkage.job_model import Anonymity
from koble.linkage.plan import SERIAL, Step
from koble.linkage.reports import GateReport
from koble.linkage.reports import write_report as write_step_report
from koble.linkage.step_stats import StepStats

if TYPE_CHECKING:  # koble.anonymity is imported by the gate only: a run without one skips it
    from koble.anonymity.config import AnonymiseConfig
    from koble.anonymity.release import AnonymityCheck

__all__ = [
    "AnonymityGateError",
    "gate_config",
    "gate_step",
    "link_step",
    "person_figures",
]

LINKED = names.LINKED
REPORT_DIR = names.GATE_REPORT_DIR


class AnonymityGateError(KobleError):
    """No coarsening meets the job's anonymity requirements; nothing is delivered."""

    exit_code = 1


def link_step(ctx: Context, step: Step) -> StepStats:
    """Join the extracts on løpenummer; the anonymous-only registry's rows are the base.

    A variable two registries share is prefixed with the registry id in the later one. The
    join and sort are one engine query over the extracts as named tables, and so are the
    rows a join repeats.
    """
    store = ctx.store(step.party)
    # A request split by period (IPLOS to 2017, then KPR) is one table: its parts' rows
    # stacked, under the request's name; it is anonymous-only if any part is.
    stacks: dict[str, list[Path]] = {}
    anonymous: dict[str, bool] = {}
    extracts = {names.extract(p.registry, "parquet"): p.registry for p in ctx.plan.accepted}
    for file in step.inputs:
        registry = extracts[file]  # the plan says whose extract it is
        part = ctx.plan.part(registry)
        asked = part.requested if part is not None else registry
        stacks.setdefault(asked, []).append(store / file)
        anonymous[asked] = anonymous.get(asked, False) or ctx.route(registry).anonymous_output
    order = sorted(stacks, key=lambda asked: not anonymous[asked])  # stable: plan order
    tables: dict[str, Table] = {f"t{i}": stacks[asked] for i, asked in enumerate(order)}
    key = quote(SERIAL)
    base = _columns(ctx, "t0", tables)
    seen = set(base)
    selected = [(f"t0.{quote(c)}", c) for c in base]  # (expression, output name)
    joins = []
    multiplied = {}
    for i, registry in enumerate(order[1:], start=1):
        name = f"t{i}"
        frame = _columns(ctx, name, tables)
        renames = {c: f"{registry}_{c}".replace("-", "_") for c in frame
                   if c in seen and c != SERIAL}  # fmt: skip
        seen |= {renames.get(c, c) for c in frame}
        selected += [(f"{name}.{quote(c)}", renames.get(c, c)) for c in frame if c != SERIAL]
        joins.append(f"LEFT JOIN {name} ON t0.{key} = {name}.{key}")
        repeated = ctx.engine.query(
            "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) AS n FROM (SELECT COUNT(*) AS n "
            f"FROM {name} GROUP BY {key} HAVING COUNT(*) > 1) AS g", {name: tables[name]}
        )  # fmt: skip
        multiplied[registry] = int(repeated.column("n")[0].as_py())
    sql = (
        f"SELECT {', '.join(f'{e} AS {quote(n)}' for e, n in selected)} FROM t0 "
        f"{' '.join(joins)} ORDER BY {', '.join(f'{quote(n)} NULLS LAST' for _, n in selected)}"
    )
    # Written by Polars, as before the join moved to the engine: the anonymity report names
    # this file's SHA-256, and the delivered report's bytes are pinned.
    linked = pl.from_arrow(ctx.engine.query(sql, tables))
    assert isinstance(linked, pl.DataFrame)
    with atomic_write(store / names.declared(LINKED, step.outputs)) as temp:
        linked.write_parquet(temp)
    return StepStats.of(
        {
            "base": order[0],
            "rows": linked.height,
            "persons": linked[SERIAL].n_unique(),
            "rows_repeated_by_join": multiplied,
        }
    )


def _columns(ctx: Context, name: str, tables: dict[str, Table]) -> list[str]:
    """The columns of table ``name`` (its files' footers only)."""
    empty = ctx.engine.query(f"SELECT * FROM {name} LIMIT 0", {name: tables[name]})
    return [str(c) for c in empty.column_names]


def person_figures(check: AnonymityCheck) -> dict[str, int] | None:
    """Persons singled out by their set of rows (person-constant columns included), and
    persons in sets shared by fewer than k: the attack row classes do not see."""
    found = check.person_level
    if found is None:
        return None
    return {
        "persons": found.persons,
        "unique": found.by_set_with_constant.unique,
        "under_k": found.by_set_with_constant.under_k,
    }


def gate_config(
    anonymity: Anonymity, linked: Path, base_dir: Path, *, model: str | None = None
) -> AnonymiseConfig:
    """The gate's requirements for the linked file: k counts persons, not rows (a person
    with several rows, as in IPLOS, never fills a class alone), judged under the job's
    person-level model (``model`` overrides it, for comparisons). The løpenummer identifies
    the person and is dropped from the release."""
    from koble.anonymity.config import AnonymiseConfig
    from koble.anonymity.person_columns import infer_hierarchy

    schema = pl.read_parquet_schema(linked)
    qis: dict[str, str | dict[str, Any]] = {
        q: anonymity.hierarchies.get(q) or infer_hierarchy(q, schema[q])
        for q in anonymity.quasi_identifiers
    }
    return AnonymiseConfig(
        k=anonymity.k,
        quasi_identifiers=qis,
        suppression=anonymity.max_suppression,
        person=SERIAL,
        model=model or anonymity.model,
        m=anonymity.m,
        shape=anonymity.shape,
        kind=anonymity.kind,
        date=anonymity.date,
        base_dir=base_dir,
    )


def gate_step(ctx: Context, step: Step) -> StepStats:
    """Coarsen the linked file (without løpenummer) until it meets the requirements."""
    from koble.anonymity.release import anonymise_file
    from koble.anonymity.report import write_report

    anonymity = ctx.job.anonymity
    assert anonymity is not None
    store = ctx.store(step.party)
    config = gate_config(anonymity, store / step.inputs[0], ctx.job_path.parent)
    qis = config.quasi_identifiers
    with OutputSet() as outputs:  # release, withheld rows and report together or not at all
        release = anonymise_file(
            store / step.inputs[0], config, store / names.declared(names.ANONYMOUS, step.outputs),
            store / names.declared(names.WITHHELD, step.outputs), outputs=outputs,
        )  # fmt: skip
        written = write_report(release, store / REPORT_DIR, outputs=outputs)
        for path in written.values():  # the report's files are the plan's
            names.declared(f"{REPORT_DIR}/{path.name}", step.outputs)
    result = release.result
    summary = GateReport(
        k=anonymity.k,
        quasi_identifiers=list(anonymity.quasi_identifiers),
        hierarchies={q: str(v) for q, v in qis.items()},
        levels=dict(release.level_names),
        level_index=dict(zip(result.names, map(int, result.levels), strict=True)),
        coarsened_columns={
            column: release.level_names[qi]
            for qi, level in zip(result.names, result.levels, strict=True)
            if level > 0
            for column in release.qi_columns.get(qi, [qi])
        },
        shape=None if release.shape is None else release.shape.describe(),
        model=release.model,
        models_tried=list(release.tried),
        person_constant_quasi_identifiers=list(release.person_constant),
        rows=result.rows,
        suppressed=result.suppressed,
        persons_withheld=result.persons_suppressed,
        min_class_size=result.min_class_size,
        min_class_persons=None if release.after is None else release.after.smallest_class_persons,
        person_level={
            "before": person_figures(release.before),
            "after": None if release.after is None else person_figures(release.after),
        },
        meets=bool(result.feasible),
    )
    record = write_step_report(store / names.declared(names.ANONYMITY_JSON, step.outputs), summary)
    if not result.feasible:
        raise AnonymityGateError(
            f"anonymity gate: no coarsening of {', '.join(anonymity.quasi_identifiers)} meets "
            f"k = {anonymity.k} with at most {anonymity.max_suppression:.0%} suppressed; "
            f"nothing is delivered; the report for the applicant is in {store / REPORT_DIR}"
        )
    return StepStats.of(record)
