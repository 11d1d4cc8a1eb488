"""The operator's and the TTP's steps: the key list, person lists, registry pseudonyms.

Only these two parties ever hold fødselsnummer together with løpenummer as a key list
(design.md §1.1). Every population row ends in the key list or in the operator's rejects
file with a reason; the counts go into the quality report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from koble.errors import FileFormatError
from koble.files import atomic_write, sha256_file
from koble.linkage import names
from koble.linkage.context import Context, registry_domain
from koble.linkage.plan import FNR, SERIAL, Step
from koble.linkage.reports import PopulationCounts, PopulationReport, TtpReport, write_report
from koble.linkage.steps_recovery import (
    RECOVERY_MESSAGES,
    apply_population_recovery,
    write_link_methods,
)
from koble.pseudonym.identity import IdentityHistory
from koble.pseudonym.pseudonymise import AMBIGUOUS, EXTRA_MESSAGES, pseudonymise_frame
from koble.pseudonym.serials import SERIAL as SERIALS_COLUMN
from koble.pseudonym.serials import assign_serials
from koble.registries.identifiers.check import reject_messages, rejects_table
from koble.registries.identifiers.column import dropped_leading_zero, validate_column
from koble.tables import read_table, require_column

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
    keys = assign_serials(ctx.keys.operator, ctx.job.project_id, compact.filter(good).alias(FNR))
    keys = keys.rename({SERIALS_COLUMN: SERIAL}).with_columns(pl.lit(True).alias("current"))
    if history is not None:
        aliases = history.aliases(keys[FNR]).join(
            keys.select(pl.col(FNR).alias("current"), SERIAL), on="current"
        )
        old = aliases.select(pl.col("old").alias(FNR), SERIAL, pl.lit(False).alias("current"))
        keys = pl.concat([keys, old.sort(SERIAL, FNR)])
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


def send_persons_step(ctx: Context, step: Step) -> dict[str, Any]:
    """(fnr, lopenr) for the registry (every known id) or the TTP (current ids only)."""
    keys = pl.read_parquet(ctx.store(step.party) / names.declared(KEY_LIST, step.inputs))
    via_ttp = ctx.route(step.registry).pseudonymous
    persons = keys.filter(pl.col("current")) if via_ttp else keys
    out = persons.select(FNR, SERIAL)
    with atomic_write(ctx.store(step.party) / step.outputs[0]) as temp:
        out.write_parquet(temp)
    return {"rows": out.height, "persons": int(out[SERIAL].n_unique())}


def pseudonymise_step(ctx: Context, step: Step) -> dict[str, Any]:
    """The TTP turns (fnr, lopenr) into (registry pseudonym, lopenr) under the registry's key."""
    assert step.registry is not None
    store = ctx.store(step.party)
    persons = pl.read_parquet(store / step.inputs[0])
    column = names.pseudonym_column(step.registry)
    done = pseudonymise_frame(
        persons,
        FNR,
        keyset=ctx.keys.ttp,
        domain=registry_domain(step.registry),
        history=_history(ctx.sources.ttp_history),
        test_numbers=ctx.test_numbers,
        output_column=column,
        path=step.inputs[0],
    )
    with atomic_write(store / step.outputs[0]) as temp:
        done.table.select(column, SERIAL).write_parquet(temp)
    report = TtpReport(
        registry=step.registry,
        persons_received=persons.height,
        persons_pseudonymised=done.table.height,
        persons_unresolved=done.rejects.height,
        key_id=done.report.key_id,
        domain=registry_domain(step.registry),
    )
    return write_report(
        store / names.declared(names.ttp_report(step.registry), step.outputs), report
    )
