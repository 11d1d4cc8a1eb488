"""A registry's steps: load a sealed feed, filter on consent, extract the approved data.

A registry reads its own table and the person list it was sent; it never sees another
registry's data. Extraction is one SQL join on the engine, keyed by fødselsnummer
(distributed route) or by the registry's own pseudonym (TTP route), and the registry
reports its counts and the hash of what it sent, never person data, to the operator.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from koble.digests import sha256_file
from koble.errors import ColumnError, InputError
from koble.files import atomic_write
from koble.linkage import names
from koble.linkage.codebook import Codebook, CodebookFile, codebook, sorted_duplicates
from koble.linkage.context import Context
from koble.linkage.engine import quote
from koble.linkage.extract_stream import IN_PERIOD, held_extract, streamed_extract
from koble.linkage.formats import write_delivery
from koble.linkage.labels import IDENTIFYING, labels_for
from koble.linkage.plan import FNR, OPERATOR, SERIAL, Step
from koble.linkage.planner import LINK_VARIABLES
from koble.linkage.reports import ExtractReport, write_report
from koble.linkage.reservation import Withheld, withhold_at_registry
from koble.linkage.sources import require_columns
from koble.linkage.step_stats import StepStats

__all__ = ["consent_step", "extract_step", "registry_table"]


def registry_table(ctx: Context, registry: str, step: Step) -> tuple[Path, str]:
    """The registry's own table and its identifier column (a loaded feed lives in its store:
    the ingest step's output, which ``step`` declares as its input)."""
    source = ctx.sources.get(registry)
    if source.ingest:
        table = names.declared(names.ingested(registry), step.inputs)
        return ctx.store(f"registry:{registry}") / table, source.id_column
    if recovering(ctx, registry):  # the table with the numbers the TTP resolved filled in
        return ctx.store(f"registry:{registry}") / names.recovered(registry), source.id_column
    return source.file, source.id_column


def recovering(ctx: Context, registry: str) -> bool:
    """Whether the job asks ``registry`` to recover its records' identities first."""
    part = ctx.plan.part(registry)
    asked = part.requested if part is not None else registry
    return any(r.recover for r in ctx.job.requests if r.registry == asked)


def _key(ctx: Context, registry: str) -> str:
    return names.pseudonym_column(registry) if ctx.route(registry).pseudonymous else FNR


def consent_step(ctx: Context, step: Step) -> StepStats:
    """Keep only the persons with a consent that covers the project.

    Consent is recorded per registration: a person is kept when at least one of their
    registrations is consented, and the extract then keeps only the consented
    registrations (:func:`extract_step`), so a row without consent never leaves.
    """
    assert step.registry is not None
    source = ctx.sources.get(step.registry)
    table, id_column = registry_table(ctx, step.registry, step)
    if source.consent_column is None:
        raise ColumnError(
            "the registry is consent-based but its source names no consent_column",
            path=table,
            column="consent_column",
        )
    require_columns(table, [id_column, source.consent_column])
    store = ctx.store(step.party)
    key = _key(ctx, step.registry)
    sql = f"""
        SELECT p.{quote(key)} AS key, p.{quote(SERIAL)} AS lopenr,
               MAX(CASE WHEN s.{quote(source.consent_column)} THEN 1 ELSE 0 END) AS consented,
               SUM(CASE WHEN s.{quote(source.consent_column)} THEN 0 ELSE 1 END) AS refused
        FROM persons p JOIN source s ON s.{quote(id_column)} = p.{quote(key)}
        GROUP BY p.{quote(key)}, p.{quote(SERIAL)}
    """
    found = pl.from_arrow(
        ctx.engine.query(sql, {"persons": store / step.inputs[0], "source": table})
    )
    assert isinstance(found, pl.DataFrame)
    keep = found.filter(pl.col("consented") == 1)
    persons = pl.read_parquet(store / step.inputs[0])
    if persons.height and not found.height:
        _found_nobody(ctx, step.registry, int(persons[SERIAL].n_unique()), table, id_column)
    kept = persons.join(keep.select(pl.col("key").alias(key)), on=key, how="semi")
    with atomic_write(store / step.outputs[0]) as temp:
        kept.write_parquet(temp)
    without = int(found.filter(pl.col("consented") == 0)[SERIAL].n_unique())
    stats = {
        "persons_without_consent": without,
        "persons_consented": int(kept[SERIAL].n_unique()),
        "rows_without_consent": int(found["refused"].sum()),
    }
    ctx.write_json(store / names.declared(names.consent_report(step.registry), step.outputs), stats)
    return StepStats.of(stats)


def _year(column: str, dtype: str) -> str:
    if dtype.startswith(("date", "timestamp")):
        return f"EXTRACT(YEAR FROM s.{quote(column)})"
    return f"CAST(s.{quote(column)} AS INTEGER)"


def extract_step(ctx: Context, step: Step) -> StepStats:
    """Join the person list to the registry's table, keep the approved variables and period.

    One SQL query joins, flags the rows inside the period and sorts: rows inside the period
    first, then by løpenummer and every variable, so the extract is the query's first rows,
    its duplicate rows are adjacent, and the rows outside the period, which carry their
    løpenummer only, are counted from the same stream and never kept
    (:mod:`koble.linkage.extract_stream`).
    """
    assert step.registry is not None
    reg = step.registry
    request = ctx.request(reg)  # the years of its part of the request
    source = ctx.sources.get(reg)
    table, id_column = registry_table(ctx, reg, step)
    store = ctx.store(step.party)
    variables = list(request.variables)
    collector = next(
        t.target for t in ctx.plan.transfers_after(step.id) if t.file == step.outputs[0]
    )
    if recovering(ctx, reg) and collector != OPERATOR:  # how each record was linked
        variables += [v for v in LINK_VARIABLES if v not in variables]
    require_columns(
        table, [id_column, *variables, *([source.date_column] if source.date_column else [])]
    )
    key = _key(ctx, reg)
    schema = pq.read_schema(table)
    if source.date_column:
        dtype = str(schema.field(source.date_column).type)
        period = f"{_year(source.date_column, dtype)} BETWEEN {request.start} AND {request.end}"
    else:
        period = "TRUE"
    consented = "TRUE"
    if ctx.route(reg).consent_filter and source.consent_column:
        consented = f"COALESCE(s.{quote(source.consent_column)}, FALSE)"
    # outside the period a row's variables are NULL: the engine sorts and sends less
    selected = ", ".join(
        f"CASE WHEN {period} THEN s.{quote(v)} END AS {quote(v)}" for v in variables
    )
    order = ", ".join(f"{quote(c)} NULLS LAST" for c in [SERIAL, *variables])
    sql = f"""
        SELECT p.{quote(SERIAL)} AS {quote(SERIAL)}, {selected},
               COALESCE({period}, FALSE) AS {IN_PERIOD}
        FROM source s JOIN persons p ON s.{quote(id_column)} = p.{quote(key)}
        WHERE {consented}
        ORDER BY {IN_PERIOD} DESC, {order}
    """
    persons_file = store / step.inputs[0]
    tables = {"persons": persons_file, "source": table}
    out = store / step.outputs[0]
    recipient = next(t.target for t in ctx.plan.transfers_after(step.id) if t.file == out.name)
    labels, value_labels = labels_for([SERIAL, *variables])
    sent = pl.read_parquet(ctx.store(step.party) / _persons_input(ctx, step), columns=[SERIAL])
    with ThreadPoolExecutor(1) as pool:  # hash the registry's table while the engine joins
        source_sha256 = pool.submit(sha256_file, table)
        if recipient != OPERATOR and not ctx.route(reg).reservation_filter:
            # the researcher's file, streamed: the rows never held whole (extract_stream.py)
            with streamed_extract(
                ctx.engine, sql, tables, out, ctx.job.delivery_format, serial=SERIAL,
                labels=labels, value_labels=value_labels, identifying=set(IDENTIFYING),
                timestamp=ctx.created,
            ) as streamed:  # fmt: skip
                if sent.height and not streamed.delivered:
                    _nothing_delivered(ctx, step, sent, persons_file, streamed.rows,
                                       streamed.persons, table, id_column)  # fmt: skip
            assert streamed.entry is not None
            figures = _Figures(streamed.rows, streamed.persons, streamed.delivered,
                               streamed.delivered, streamed.persons_inside,
                               streamed.duplicates, streamed.entry, Withheld())  # fmt: skip
        else:
            figures = _extract_held(ctx, step, sql, tables, out, recipient, key, variables,
                                    sent, table, id_column)  # fmt: skip
    consent_file = names.consent_report(reg)  # declared when the registry filters by consent
    consent = ctx.read_json(store / consent_file) if consent_file in step.inputs else {}
    entry = ctx.catalogue.get(reg)
    feed = None  # the registry's own record of its feed, the ingest step's other output
    if source.ingest:  # (absent beside a table an older koble loaded: its counts unknown)
        counts = table.with_name(names.declared(names.ingest_counts(reg), step.inputs))
        feed = ctx.read_json(counts) if counts.is_file() else None
    withheld = figures.withheld
    report = ExtractReport(
        registry=reg,
        name=entry.name,
        route="ttp-pseudonym" if ctx.route(reg).pseudonymous else "distributed",
        consent_filter=ctx.route(reg).consent_filter,
        period=[request.start, request.end],
        # the job's request these years belong to, and the identity model in force for them
        requested=part.requested if (part := ctx.plan.part(reg)) else reg,
        identity_model=part.identity_model if part else entry.identity_model,
        persons_sent=int(sent[SERIAL].n_unique()),
        persons_without_consent=int(consent.get("persons_without_consent", 0)),
        rows_without_consent=int(consent.get("rows_without_consent", 0)),
        persons_found=figures.persons,
        persons_delivered=figures.persons_delivered,
        source_file=table.name,
        source_sha256=source_sha256.result(),
        source_rows=pq.ParquetFile(table).metadata.num_rows,
        feed=None
        if feed is None
        else {k: feed[k] for k in ("feed_file", "feed_sha256", "rows_sent", "rows_rejected")},
        rows_delivered=figures.delivered,
        rows_outside_period=figures.rows - figures.inside,
        # every row found is delivered or withheld: by period, consent or reservation
        rows_found=figures.rows + int(consent.get("rows_without_consent", 0)),
        reservation_filter=ctx.route(reg).reservation_filter,
        rows_withheld_reservation=withheld.rows,
        values_nulled_reservation=dict(sorted(withheld.values.items())),
        duplicate_rows=figures.duplicates,
        file=out.name,
        file_sha256=sha256_file(out),
        file_rows=figures.delivered,
        variables=variables,
        codebook=Codebook([figures.entry]),
        recipient=recipient,
    )
    write_report(store / names.declared(names.registry_report(reg), step.outputs), report)
    return StepStats.of(report.summary())


@dataclass(frozen=True)
class _Figures:
    """What the report says of the extract: the join's rows and persons (inside the period
    or not), the rows inside it, the rows and persons delivered, the file's duplicate rows
    and codebook entry, and what the reservation filter withheld."""

    rows: int
    persons: int
    inside: int
    delivered: int
    persons_delivered: int
    duplicates: int
    entry: CodebookFile
    withheld: Withheld


def _extract_held(
    ctx: Context,
    step: Step,
    sql: str,
    tables: Mapping[str, Path],
    out: Path,
    recipient: str,
    key: str,
    variables: list[str],
    sent: pl.DataFrame,
    table: Path,
    id_column: str,
) -> _Figures:
    """The extract held whole, for the operator's input to central linkage and for a
    registry whose reservation filter withholds from the whole extract before it leaves."""
    assert step.registry is not None
    reg = step.registry
    inside, joined = held_extract(ctx.engine, sql, tables, out, serial=SERIAL)
    extract = inside
    withheld = Withheld()
    if ctx.route(reg).reservation_filter:  # opt-outs are withheld before anything leaves
        extract, withheld = withhold_at_registry(
            extract,
            tables["persons"],
            key,
            ctx.sources.get(reg).reservations,
            registry=reg,
            order=[SERIAL, *variables],
        )
    if sent.height and not extract.height:  # an empty delivery is never a silent success
        _nothing_delivered(
            ctx,
            step,
            sent,
            tables["persons"],
            joined.rows,
            joined.persons,
            table,
            id_column,
        )
    labels, value_labels = labels_for(extract.columns)
    if recipient == OPERATOR:  # the central route's input to linkage, not a delivery
        with atomic_write(out) as temp:
            extract.write_parquet(temp)
    else:  # the researcher's file: delivered names, labels and code lists (design.md §1.5)
        write_delivery(
            extract,
            out,
            ctx.job.delivery_format,
            labels=labels,
            value_labels=value_labels,
            timestamp=ctx.created,
        )
    duplicates = sorted_duplicates(extract)
    book = codebook(
        {out.name: extract},
        labels=labels,
        value_labels=value_labels,
        identifying=set(IDENTIFYING),
        duplicates={out.name: duplicates},
    )
    persons_delivered = (
        joined.persons_inside if extract is inside else int(extract[SERIAL].n_unique())
    )
    return _Figures(joined.rows, joined.persons, joined.delivered, extract.height,
                    persons_delivered, duplicates, book.files[0], withheld)  # fmt: skip


def _found_nobody(ctx: Context, registry: str, sent: int, table: Path, column: str) -> None:
    """Raise: the registry's table matched none of the ``sent`` persons, so its delivery
    would be empty. Names the registry, its table and key column, and the likely cause."""
    if ctx.route(registry).pseudonymous:
        cause = (
            "the table is keyed by the registry's pseudonyms, and none matched: is it the "
            "feed with fødselsnummer (give it `ingest = true` in the sources file), or a "
            "table pseudonymised under another key?"
        )
    else:
        cause = (
            "the column should hold the fødselsnummer of the persons sent, and none matched: "
            "is it the right column and the right table?"
        )
    raise InputError(
        f"registry {registry} found none of the {sent:,} persons it was sent; {cause}",
        path=table,
        column=column,
    )


def _nothing_delivered(
    ctx: Context,
    step: Step,
    persons_sent: pl.DataFrame,
    persons_file: Path,
    rows: int,
    persons: int,
    table: Path,
    column: str,
) -> None:
    """Raise: the registry would deliver no row for a non-empty population. Says why:
    nobody found, nobody of those found consented, or no row in the approved period
    (``rows`` and ``persons``: what the join found)."""
    assert step.registry is not None
    reg = step.registry
    sent = int(persons_sent[SERIAL].n_unique())
    asked = int(pl.read_parquet(persons_file, columns=[SERIAL])[SERIAL].n_unique())
    if not asked:
        raise InputError(
            f"registry {reg} has no consent covering the project for any of the {sent:,} "
            "persons it was sent: nothing to deliver",
            path=table,
        )
    if not rows:
        _found_nobody(ctx, reg, asked, table, column)
    request = ctx.request(reg)  # the years of its part of the request
    date_column = ctx.sources.get(reg).date_column
    raise InputError(
        f"registry {reg} found {persons:,} of the {asked:,} persons it was "
        f"sent, but none of their {rows:,} rows lies in the approved period "
        f"{request.start}–{request.end} (column {date_column!r}): nothing to deliver",
        path=table,
    )


def _persons_input(ctx: Context, step: Step) -> str:
    """The person list the registry was sent (before any consent filter)."""
    assert step.registry is not None
    sent = names.persons(step.registry)
    if any(t.file == sent for t in ctx.plan.received_by(step.party)):
        return sent
    return step.inputs[0]
