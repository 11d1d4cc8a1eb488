"""The operator's and the TTP's steps: the key list, person lists, registry pseudonyms.

Only these two parties ever hold fødselsnummer together with løpenummer as a key list
(design.md §1.1). Every population row ends in the key list or in the operator's rejects
file with a reason; the counts go into the quality report.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from koble.digests import sha256_file
from koble.errors import FileFormatError, InputError, UsageError
from koble.files import atomic_write
from koble.linkage import names
from koble.linkage.context import Context, registry_domain
from koble.linkage.engine import Table, quote, write_batches
from koble.linkage.key_list import DUPLICATE, Population, write_key_list
from koble.linkage.plan import FNR, SERIAL, Step
from koble.linkage.reports import PopulationCounts, PopulationReport, TtpReport, write_report
from koble.linkage.step_stats import StepStats
from koble.linkage.steps_recovery import (
    RECOVERY_MESSAGES,
    apply_population_recovery,
    write_link_methods,
)
from koble.pseudonym.domain_cipher import domain_cipher
from koble.pseudonym.identity import IdentityHistory
from koble.pseudonym.pseudonymise import AMBIGUOUS, EXTRA_MESSAGES, pseudonymise_frame
from koble.pseudonym.serials import SERIAL as SERIALS_COLUMN
from koble.pseudonym.serials import assign_serials
from koble.registries.identifiers.check import refuse_reject_columns, reject_messages
from koble.registries.identifiers.column import dropped_leading_zero, validate_column
from koble.tables import PARQUET_SUFFIXES, read_table, require_column

__all__ = [
    "KEY_LIST",
    "Validation",
    "assign_serials_step",
    "pseudonymise_step",
    "send_persons_step",
    "validate_population",
]

KEY_LIST = names.KEY_LIST
_MESSAGES = reject_messages(
    {
        **EXTRA_MESSAGES,
        DUPLICATE: "the same person appears on an earlier row (after resolving "
        "separators and identity changes); kept once",
    }
)


def _history(path: Path | None) -> IdentityHistory | None:
    return None if path is None else IdentityHistory.read(path)


@dataclass(frozen=True)
class Validation:
    """The population validated: per row the ``reason`` it fails (null: valid) and the
    ``compact`` number (resolved through the identity history where one is kept)."""

    path: Path
    frame: pl.DataFrame
    checked: pl.DataFrame
    reason: pl.Series
    compact: pl.Series
    history: IdentityHistory | None
    changed: int


def validate_population(ctx: Context) -> Validation:
    """Read and validate the population's id column (the same for every step that needs
    it: identity recovery picks out the failing rows, assign-serials keys the rest)."""
    path = ctx.population_path
    frame = read_table(path)
    ids = require_column(frame, ctx.job.id_column, path)
    refuse_reject_columns(frame.columns, path)
    if frame.height == 0:
        raise FileFormatError("the study population has no rows: nothing to link", path=path)
    checked = validate_column(ids.cast(pl.String), scheme="fnr", test_numbers=ctx.test_numbers)
    reason = checked["reason"].cast(pl.String)
    compact = checked["compact"]
    history = _history(ctx.sources.operator_history)
    changed = 0
    if history is not None:
        resolution = history.resolve(compact)
        reason = pl.select(
            pl.when(reason.is_null() & resolution.ambiguous)
            .then(pl.lit(AMBIGUOUS))
            .otherwise(reason)
        ).to_series()
        changed = int((resolution.changed & reason.is_null()).sum())
        compact = resolution.resolved.fill_null(compact)
    return Validation(path, frame, checked, reason, compact, history, changed)


def assign_serials_step(ctx: Context, step: Step) -> StepStats:
    """Validate the population, resolve identity changes, give each person a løpenummer.

    The key list holds each person's current identifier and every older identifier that
    resolves to it, all with the person's løpenummer, so a registry finds events recorded
    under an H-number or an earlier fødselsnummer too. With identity recovery the rows the
    TTP resolved count as valid, with the number it found (:mod:`.steps_recovery`).

    The identifiers are checked and resolved locally, a column at a time
    (:func:`validate_population`); the rest is engine work over named tables
    (:mod:`koble.linkage.key_list`): which rows repeat a person, the rejects, the counts by
    reason and the key list. The keyed numbering itself is NumPy over the column of persons
    the engine hands over (:func:`~koble.pseudonym.serials.assign_serials`).
    """
    v = validate_population(ctx)
    path, frame, history, changed = v.path, v.frame, v.history, v.changed
    reason, compact = v.reason, v.compact
    recovered = None
    if ctx.job.recovery is not None:
        recovered = apply_population_recovery(ctx, step, reason, compact)
        reason, compact = recovered.reason, recovered.compact
    population = Population(ctx.engine, compact, reason, dropped_leading_zero(v.checked))
    persons = population.persons()
    reason = population.reason
    store = ctx.store(step.party)
    messages = _MESSAGES if recovered is None else {**_MESSAGES, **RECOVERY_MESSAGES}
    with atomic_write(store / names.declared(names.POPULATION_REJECTS, step.outputs)) as temp:
        rejected = population.write_rejects(frame, messages, temp)
    numbered = assign_serials(ctx.keys.operator, ctx.job.project_id, persons, checked=True)
    numbered = numbered.rename({SERIALS_COLUMN: SERIAL})
    with atomic_write(store / names.declared(KEY_LIST, step.outputs)) as temp:
        key_rows = write_key_list(ctx.engine, numbered, history, temp)
    linkage = None
    if recovered is not None:
        keys = numbered.with_columns(pl.lit(True).alias("current"))
        linkage = write_link_methods(ctx, step, keys, recovered, compact, reason, DUPLICATE)
    reasons = population.counts
    persons_n = numbered.height
    history_path = ctx.sources.operator_history
    report = PopulationReport(
        population=PopulationCounts(
            file=path.name,
            sha256=sha256_file(path),
            rows=frame.height,
            persons=persons_n,
            invalid=int(rejected - reasons.get(DUPLICATE, 0) - reasons.get(AMBIGUOUS, 0)),
            duplicates=int(reasons.get(DUPLICATE, 0)),
            unresolved=int(reasons.get(AMBIGUOUS, 0)),
            resolved_from_history=changed,
            recovered=0 if recovered is None else int(recovered.found.sum()),
            old_identifiers_sent=key_rows - persons_n,
            reasons=dict(sorted(reasons.items())),
        ),
        history_sha256=None if history_path is None else sha256_file(history_path),
        history_file=None if history_path is None else history_path.name,
        history_rows=None
        if history_path is None
        else pq.ParquetFile(history_path).metadata.num_rows,
        linkage=linkage,
    )
    return StepStats.of(
        write_report(store / names.declared(names.POPULATION_REPORT, step.outputs), report)
    )


def _pseudonymise_checked(
    ctx: Context, received: Path, history: Path | None, column: str, domain: str, out: Path
) -> tuple[int, int, int] | None:
    """The TTP's engine path (see :func:`pseudonymise_step`): (received, pseudonymised,
    unresolved), or None when the list is not what the operator should send."""
    tables: dict[str, Table] = {"persons": received}
    if history is not None:
        tables["history"] = history
    checked = ctx.engine.query(_received_sql(history is not None), tables).to_pylist()[0]
    if checked["malformed"] or checked["known_as_old"]:
        return None
    sql = f"SELECT p.{quote(FNR)} AS {quote(column)}, p.{quote(SERIAL)} FROM persons p"
    cipher = domain_cipher(ctx.keys.ttp, domain)
    try:
        with atomic_write(out) as temp:
            made = ctx.engine.pseudonymise(sql, {"persons": received}, {column: cipher}, temp)
    except (UsageError, InputError):  # a value that is not digits (Spark: from a worker)
        return None
    return int(checked["received"]), made, 0


@dataclass(frozen=True)
class _Sent:
    """A person list written from a key list: where, the file as written (device, inode,
    size, modification and change time) and its counts."""

    path: Path
    identity: tuple[int, int, int, int, int]
    rows: int
    persons: int


#: The person lists written in this process, by (SHA-256 of the key list, current ids only).
_SENT: dict[tuple[str, bool], _Sent] = {}


def _identity(path: Path) -> tuple[int, int, int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns


def _earlier(memo: tuple[str, bool], target: Path) -> _Sent | None:
    """Another person list this process wrote from the same key list, if it is still the
    file as written (a replaced or changed file is not copied)."""
    found = _SENT.get(memo)
    if found is None or found.path == target or _identity(found.path) != found.identity:
        return None
    return found


def send_persons_step(ctx: Context, step: Step) -> StepStats:
    """(fnr, lopenr) for the registry (every known id) or the TTP (current ids only).

    The selection is engine work over the key list, written from the engine's batches by
    the one writer every engine shares (:func:`~koble.linkage.engine.write_batches`: the same
    bytes on DuckDB and Spark), the persons counted as the løpenummer pass. Every registry on the
    distributed route is sent the same list: once one is written, the next is a copy of its
    bytes (the same key list, by its SHA-256, and the same file as written), which takes a
    few milliseconds instead of a query and a Parquet writer."""
    store = ctx.store(step.party)
    key_file = store / names.declared(KEY_LIST, step.inputs)
    via_ttp = ctx.route(step.registry).pseudonymous
    target = store / step.outputs[0]
    memo = (sha256_file(key_file), via_ttp)
    earlier = _earlier(memo, target)
    if earlier is not None:
        with atomic_write(target) as temp:
            shutil.copyfile(earlier.path, temp)
        rows, persons = earlier.rows, earlier.persons
    else:
        rows, persons = _write_person_list(ctx, key_file, via_ttp, target)
    written = _identity(target)
    if written is not None:
        if len(_SENT) >= 64:  # a long-lived process (a test session) runs many jobs
            _SENT.clear()
        _SENT[memo] = _Sent(target, written, rows, persons)
    return StepStats.of({"rows": rows, "persons": persons})


def _write_person_list(
    ctx: Context, key_file: Path, via_ttp: bool, target: Path
) -> tuple[int, int]:
    """Write (fnr, lopenr) of the key list's rows (its current ones only ``via_ttp``) in
    its order to ``target``; (rows, persons)."""
    where = f" WHERE {quote('current')}" if via_ttp else ""
    sql = f"SELECT {quote(FNR)}, {quote(SERIAL)} FROM keys{where}"
    serials: list[pa.Array] = []

    def kept(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
        for batch in reader:
            serials.append(batch.column(SERIAL))
            yield batch

    with ctx.engine.batches(sql, {"keys": key_file}) as reader, atomic_write(target) as temp:
        rows = write_batches(kept(reader), reader.schema, temp)
    persons = pl.Series(SERIAL, pa.chunked_array(serials, reader.schema.field(SERIAL).type))
    return rows, persons.n_unique()


#: The identity history's old identifier column (as :meth:`IdentityHistory.read` reads it)
#: and the characters :func:`~koble.registries.identifiers.column.validate_column` removes.
_OLD_ID = "old_id"
_SEPARATORS = " \t\n\r\u00a0\u2009\u202f-:."


def _received_sql(history: bool) -> str:
    """The TTP's check of a person list: rows, identifiers that are not 11 characters long
    (that they are digits the cipher checks as it goes), and (with an identity history)
    identifiers the history holds as old ones, ambiguous or looping ones too, compared as
    :class:`IdentityHistory` compares them (separators removed)."""
    fnr = f"p.{quote(FNR)}"
    malformed = f"{fnr} IS NULL OR LENGTH({fnr}) <> 11"
    select = f"SELECT COUNT(*) AS received, COUNT(CASE WHEN {malformed} THEN 1 END) AS malformed"
    if not history:
        return f"{select}, 0 AS known_as_old FROM persons p"
    old = f"TRANSLATE(CAST({quote(_OLD_ID)} AS STRING), '{_SEPARATORS}', '')"
    return (
        f"{select}, COUNT(h.old) AS known_as_old FROM persons p "
        f"LEFT JOIN (SELECT DISTINCT {old} AS old FROM history) h ON {fnr} = h.old"
    )


def pseudonymise_step(ctx: Context, step: Step) -> StepStats:
    """The TTP turns (fnr, lopenr) into (registry pseudonym, lopenr) under the registry's key.

    The operator sends current, valid, resolved identifiers (:func:`assign_serials_step`), in
    a transfer it signed. The TTP does not validate and resolve them again: one engine query
    checks that every identifier is 11 characters and none is an old identifier in the
    TTP's own identity history (which catches a list resolved against an older history, or
    not resolved), and the engine pseudonymises the column in the TTP's session, its cipher
    refusing anything but digits. A list that fails either check goes through full
    validation and resolution (:func:`pseudonymise_frame`), whose rejects are the persons
    left unresolved.
    """
    assert step.registry is not None
    store = ctx.store(step.party)
    received = store / step.inputs[0]
    column = names.pseudonym_column(step.registry)
    domain = registry_domain(step.registry)
    history = ctx.sources.ttp_history
    counts = None
    if history is None or history.suffix in PARQUET_SUFFIXES:
        counts = _pseudonymise_checked(ctx, received, history, column, domain,
                                       store / step.outputs[0])  # fmt: skip
    if counts is None:
        persons = pl.read_parquet(received)
        done = pseudonymise_frame(
            persons, FNR, keyset=ctx.keys.ttp, domain=domain, history=_history(history),
            test_numbers=ctx.test_numbers, output_column=column, path=step.inputs[0],
        )  # fmt: skip
        with atomic_write(store / step.outputs[0]) as temp:
            done.table.select(column, SERIAL).write_parquet(temp)
        counts = (persons.height, done.table.height, done.rejects.height)
    report = TtpReport(
        registry=step.registry,
        persons_received=counts[0],
        persons_pseudonymised=counts[1],
        persons_unresolved=counts[2],
        key_id=ctx.keys.ttp.primary.key_id,
        domain=domain,
    )
    return StepStats.of(
        write_report(store / names.declared(names.ttp_report(step.registry), step.outputs), report)
    )
