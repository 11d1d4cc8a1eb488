"""The operator's and the TTP's steps: the key list, person lists, registry pseudonyms.

Only these two parties ever hold fødselsnummer together with løpenummer as a key list
(design.md §1.1). Every population row ends in the key list or in the operator's rejects
file with a reason; the counts go into the quality report.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from koble.errors import FileFormatError, InputError, UsageError
from koble.files import atomic_write, sha256_file
from koble.linkage import names
from koble.linkage.context import Context, registry_domain
from koble.linkage.engine import Table, quote
from koble.linkage.plan import FNR, SERIAL, Step
from koble.linkage.reports import PopulationCounts, PopulationReport, TtpReport, write_report
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
from koble.registries.identifiers.check import reject_messages, rejects_table
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
DUPLICATE = "duplicate_person"
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


def assign_serials_step(ctx: Context, step: Step) -> dict[str, Any]:
    """Validate the population, resolve identity changes, give each person a løpenummer.

    The key list holds each person's current identifier and every older identifier that
    resolves to it, all with the person's løpenummer, so a registry finds events recorded
    under an H-number or an earlier fødselsnummer too. With identity recovery the rows the
    TTP resolved count as valid, with the number it found (:mod:`.steps_recovery`).
    """
    v = validate_population(ctx)
    path, frame, checked, history, changed = v.path, v.frame, v.checked, v.history, v.changed
    reason, compact = v.reason, v.compact
    recovered = None
    if ctx.job.recovery is not None:
        recovered = apply_population_recovery(ctx, step, reason, compact)
        reason, compact = recovered.reason, recovered.compact
    # a valid identifier is 11 digits: as an integer it is distinct exactly when its text is
    repeated = (
        pl.DataFrame({"c": compact.cast(pl.Int64, strict=False), "ok": reason.is_null()})
        .select(pl.col("ok") & ~pl.struct("c", "ok").is_first_distinct())
        .to_series()
    )
    reason = pl.select(pl.when(repeated).then(pl.lit(DUPLICATE)).otherwise(reason)).to_series()
    good = reason.is_null()
    store = ctx.store(step.party)
    messages = _MESSAGES if recovered is None else {**_MESSAGES, **RECOVERY_MESSAGES}
    rejects = rejects_table(frame, reason, messages, dropped_zero=dropped_leading_zero(checked))
    with atomic_write(store / names.declared(names.POPULATION_REJECTS, step.outputs)) as temp:
        rejects.write_parquet(temp)
    keys = key_list(ctx, compact.filter(good).alias(FNR), history)
    with atomic_write(store / names.declared(KEY_LIST, step.outputs)) as temp:
        keys.write_parquet(temp)
    linkage = None
    if recovered is not None:
        linkage = write_link_methods(ctx, step, keys, recovered, compact, reason, DUPLICATE)
    counts = reason.drop_nulls().value_counts(sort=True)
    reasons = dict(zip(counts[reason.name].to_list(), counts["count"].to_list(), strict=True))
    persons = int(good.sum())
    history_path = ctx.sources.operator_history
    report = PopulationReport(
        population=PopulationCounts(
            file=path.name,
            sha256=sha256_file(path),
            rows=frame.height,
            persons=persons,
            invalid=int(rejects.height - reasons.get(DUPLICATE, 0) - reasons.get(AMBIGUOUS, 0)),
            duplicates=int(reasons.get(DUPLICATE, 0)),
            unresolved=int(reasons.get(AMBIGUOUS, 0)),
            resolved_from_history=changed,
            recovered=0 if recovered is None else int(recovered.found.sum()),
            old_identifiers_sent=keys.height - persons,
            reasons={str(k): int(v) for k, v in sorted(reasons.items())},
        ),
        history_sha256=None if history_path is None else sha256_file(history_path),
        history_file=None if history_path is None else history_path.name,
        history_rows=None
        if history_path is None
        else pq.ParquetFile(history_path).metadata.num_rows,
        linkage=linkage,
    )
    return write_report(store / names.declared(names.POPULATION_REPORT, step.outputs), report)


def key_list(ctx: Context, persons: pl.Series, history: IdentityHistory | None) -> pl.DataFrame:
    """Each of ``persons`` (valid, distinct, resolved: the population as validated) with its
    løpenummer (:func:`assign_serials`, which need not check them again), then their older
    identifiers from the identity history, by løpenummer and identifier.

    Local, not engine SQL: the identifiers are in memory from the validation, and ranking
    the blocks with NumPy takes a third of the CPU time of a window over the pseudonyms in
    DuckDB and a Parquet file between (measured at 500,000 persons).
    """
    keys = assign_serials(ctx.keys.operator, ctx.job.project_id, persons, checked=True)
    keys = keys.rename({SERIALS_COLUMN: SERIAL}).with_columns(pl.lit(True).alias("current"))
    if history is None:
        return keys
    aliases = history.aliases(keys[FNR]).join(
        keys.select(pl.col(FNR).alias("current"), SERIAL), on="current"
    )
    old = aliases.select(pl.col("old").alias(FNR), SERIAL, pl.lit(False).alias("current"))
    return pl.concat([keys, old.sort(SERIAL, FNR)])


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


def send_persons_step(ctx: Context, step: Step) -> dict[str, Any]:
    """(fnr, lopenr) for the registry (every known id) or the TTP (current ids only).

    Polars, not the engine: DuckDB's writer takes about 40 % more CPU time for this copy
    (measured at 500,000 persons), and the step's work is a column selection. Every registry
    on the distributed route is sent the same list: once one is written, the next is a copy
    of its bytes (the same key list, by its SHA-256, and the same file as written), which
    takes a few milliseconds instead of a read, a selection and a Parquet writer."""
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
        keys = pl.read_parquet(key_file)
        out = (keys.filter(pl.col("current")) if via_ttp else keys).select(FNR, SERIAL)
        with atomic_write(target) as temp:
            out.write_parquet(temp)
        rows, persons = out.height, int(out[SERIAL].n_unique())
    written = _identity(target)
    if written is not None:
        if len(_SENT) >= 64:  # a long-lived process (a test session) runs many jobs
            _SENT.clear()
        _SENT[memo] = _Sent(target, written, rows, persons)
    return {"rows": rows, "persons": persons}


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


def pseudonymise_step(ctx: Context, step: Step) -> dict[str, Any]:
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
    return write_report(
        store / names.declared(names.ttp_report(step.registry), step.outputs), report
    )
