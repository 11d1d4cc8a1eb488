"""Identity recovery in a linkage job: the steps around the TTP's resolve (design.md §1.5).

The holder of the records (the operator for the population, a registry such as
Helsearkivregisteret for its own journals) sends every record, with its name and birth
fields, to the TTP only (:func:`prepare_population_step` / :func:`prepare_registry_step`):
those whose number is missing or invalid to be recovered, and those whose number is valid too,
because a valid number may be someone else's (typed for the wrong person): only the TTP can
check it against the person's birth date and sex, and the exactly linked records are what the
probabilistic model learns its m-probabilities from. The TTP resolves them against its
population register (:func:`resolve_step`, the pipeline of :mod:`koble.recovery`) and returns,
per record, the person's fødselsnummer with ``link_method``, ``match_probability`` and
``match_weight``, or the reason it is unresolved; the TTP's answer decides for every record,
valid number or not. The model, the
review pairs and every name stay at the TTP. The operator then keys exact and recovered
persons alike (:func:`apply_population_recovery`, called by assign-serials) and writes how
each person was linked (:func:`write_link_methods`); a registry fills in the numbers it got
back (:func:`apply_recovery_step`) and extracts with them.

Record ids are row numbers (1-based) of the holder's file, never an identifier.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import polars as pl
import pyarrow.parquet as pq

from koble.errors import UsageError
from koble.files import atomic_write
from koble.linkage.context import Context
from koble.linkage.labels import LINK_METHOD_CODES
from koble.linkage.linkage_bias import bias_table, outcome_counts
from koble.linkage.plan import FNR, SERIAL, Step
from koble.linkage.reports import ResolveReport, read_report, write_report
from koble.linkage.step_stats import StepStats
from koble.recovery.contract import (
    LINK_SCHEMA,
    METHODS,
    REASONS,
    RECORD_SCHEMA,
    REJECT_SCHEMA,
    StageResult,
    empty,
)
from koble.recovery.records import prepare_records
from koble.registries.identifiers.column import validate_column

__all__ = [
    "RECOVERY_MESSAGES",
    "SEED",
    "Recovered",
    "apply_population_recovery",
    "apply_recovery_step",
    "prepare_population_step",
    "prepare_registry_step",
    "resolve_step",
    "write_link_methods",
]

#: The seed of the model's u-sampling: fixed, and written with the result, so an auditor's
#: reproduction trains the same model.
SEED: Final = 16
#: A rejected population row's reason when the TTP could not resolve it either.
RECOVERY_MESSAGES: Final[Mapping[str, str]] = {
    f"recovery_{reason}": f"the number is missing or invalid, and identity recovery at the "
    f"TTP left it unresolved ({reason.replace('_', ' ')})"
    for reason in REASONS
}
_RESOLVED: Final = pl.Schema({
    "record_id": pl.String, FNR: pl.String, "link_method": pl.String,
    "match_probability": pl.Float64, "match_weight": pl.Float64, "reason": pl.String,
})  # fmt: skip
#: Digits the delivered probability keeps: enough to tell 0.9999999 from an exact link's 1.0,
#: few enough that the same model gives the same bytes.
_DIGITS: Final = 10
#: Digits the delivered match weight (bits) keeps.
_WEIGHT_DIGITS: Final = 6


def _record_frame(frame: pl.DataFrame, mapping: Mapping[str, str], path: Any) -> pl.DataFrame:
    """``frame``'s columns named in ``mapping`` (record field -> column) as the contract's
    records (checked by :func:`koble.recovery.records.prepare_records`), with record ids
    from the row number."""
    columns = list(dict.fromkeys(mapping.values()))
    return prepare_records(frame.select(columns), path=path, columns=mapping)


def _send(
    ctx: Context, step: Step, records: pl.DataFrame, recover: pl.Series,
    valid: pl.Series, compact: pl.Series, fields: tuple[str, ...],
) -> dict[str, Any]:  # fmt: skip
    """Write the records to send: those in ``recover`` as written and every ``valid`` one
    with its compact number (the TTP checks it against birth date and sex, and trains on the
    exact links). Every record sent is resolved and answered."""
    out = (
        records.with_columns(pl.when(valid).then(compact).otherwise(pl.col(FNR)).alias(FNR))
        .filter(recover | valid)
        .select("record_id", FNR, *fields)
    )
    with atomic_write(ctx.store(step.party) / step.outputs[0]) as temp:
        out.write_parquet(temp)
    return {"rows": out.height, "invalid_rows": int(recover.sum()),
            "valid_rows": int(valid.sum())}  # fmt: skip


def prepare_population_step(ctx: Context, step: Step) -> StepStats:
    """The operator's rows, with the record fields the job names, for the TTP: those whose
    number is missing or invalid, and those whose number is valid (the TTP checks them)."""
    from koble.linkage.steps_keys import validate_population  # it imports this module

    recovery = ctx.job.recovery
    assert recovery is not None
    v = validate_population(ctx)
    mapping = {**recovery.fields, FNR: ctx.job.id_column}
    records = _record_frame(v.frame, mapping, v.path)
    ambiguous = v.reason == "ambiguous_identity"  # a history question, not a typing error
    recover = v.reason.is_not_null() & ~ambiguous
    fields = tuple(f for f in RECORD_SCHEMA.names() if f in recovery.fields)
    valid = v.reason.is_null()
    return StepStats.of(_send(ctx, step, records, recover, valid, v.compact, fields))


def prepare_registry_step(ctx: Context, step: Step) -> StepStats:
    """A registry's records, with the record fields its table has, for the TTP: those whose
    number is missing or invalid (Helsearkivregisteret's older journals) and those whose
    number is valid (the TTP checks them against birth date and sex)."""
    assert step.registry is not None
    source = ctx.sources.get(step.registry)
    names = pq.read_schema(source.file).names
    fields = tuple(f for f in RECORD_SCHEMA.names()[2:] if f in names)
    frame = pl.read_parquet(source.file, columns=list(dict.fromkeys([source.id_column, *fields])))
    mapping = {FNR: source.id_column, **{f: f for f in fields}}
    records = _record_frame(frame, mapping, source.file)
    checked = validate_column(
        frame[source.id_column].cast(pl.String), scheme="fnr", test_numbers=ctx.test_numbers
    )
    valid = checked["reason"].is_null()
    every = tuple(RECORD_SCHEMA.names()[2:])  # as the plan declares; null where it has none
    return StepStats.of(_send(ctx, step, records, ~valid, valid, checked["compact"], every))


def _probabilistic(
    records: pl.DataFrame, register: Any, *, training: pl.DataFrame,
    thresholds: tuple[float, float], seed: int, spark: Any = None,
) -> tuple[StageResult, object]:  # fmt: skip
    """The Splink stage (:func:`koble.recovery.probabilistic.probabilistic`), skipped when
    no exactly linked record carries a field to learn from: then every record goes on.
    ``spark``: the TTP's Spark session when the run's engine is Spark (Splink runs there)."""
    from koble.recovery.exact import REVIEW_BASE
    from koble.recovery.probabilistic import probabilistic

    fields = [c for c in ("first_name", "last_name", "birth_date") if c in training.columns]
    usable = training.select(pl.any_horizontal(pl.col(c).is_not_null() for c in fields)).sum()
    if not fields or not training.height or not usable.item():
        return StageResult(
            empty(LINK_SCHEMA), empty(REJECT_SCHEMA), records, empty(REVIEW_BASE)
        ), None
    return probabilistic(
        records, register, training=training, thresholds=thresholds, seed=seed, threads=1,
        spark=spark,
    )  # fmt: skip


def resolve_step(ctx: Context, step: Step) -> StepStats:
    """The TTP resolves the records it was sent against its population register and
    returns, for each, (record_id, fnr, link_method, match_probability, match_weight) or
    the reason it is unresolved. Counts, thresholds and the model's
    figures go to the operator; the model, review pairs and names stay here."""
    from koble.recovery.exact import number_keys
    from koble.recovery.register import Register
    from koble.recovery.resolve import resolve

    if ctx.sources.ttp_register is None:
        raise UsageError("the sources name no population register for the TTP ([ttp] register)")
    store = ctx.store(step.party)
    sent = pl.read_parquet(store / step.inputs[0])
    records = prepare_records(sent, path=step.inputs[0])
    register = Register.open(ctx.sources.ttp_register)
    thresholds = ctx.job.thresholds
    spark = getattr(ctx.engine, "session", None) if ctx.engine.name == "spark" else None
    result = resolve(
        records, register, probabilistic=functools.partial(_probabilistic, spark=spark),
        thresholds=thresholds, seed=SEED, test_numbers=ctx.test_numbers,
    )  # fmt: skip
    asked = sent.select("record_id")
    links = result.links.select(
        "record_id", pl.col("person_id").alias(FNR), pl.col("method").alias("link_method"),
        pl.col("match_probability").round(_DIGITS),
        pl.col("match_weight").round(_WEIGHT_DIGITS), pl.lit(None, pl.String).alias("reason"),
    )  # fmt: skip
    unresolved = result.unresolved().select(
        "record_id",
        pl.lit(None, pl.String).alias(FNR),
        pl.lit(None, pl.String).alias("link_method"),
        pl.lit(None, pl.Float64).alias("match_probability"),
        pl.lit(None, pl.Float64).alias("match_weight"),
        "reason",
    )
    resolved = asked.join(
        pl.concat([links.cast(dict(_RESOLVED)), unresolved.cast(dict(_RESOLVED))]),  # type: ignore[arg-type]
        on="record_id", how="left", maintain_order="left",
    )  # fmt: skip
    with atomic_write(store / step.outputs[0]) as temp:
        resolved.write_parquet(temp)
    model = result.model
    model_json = model.to_json() if hasattr(model, "to_json") else "null"
    with atomic_write(store / step.outputs[2]) as temp:
        temp.write_text(model_json + "\n", encoding="utf-8")
    with atomic_write(store / step.outputs[3]) as temp:
        result.review.write_parquet(temp)
    fields = [  # the fields the records carry (a registry sends every one, null or not)
        f
        for f in RECORD_SCHEMA.names()[2:]
        if f in sent.columns and sent[f].null_count() < sent.height
    ]
    outcome = pl.coalesce(resolved["link_method"], pl.lit("unresolved")).alias("outcome")
    typed = records.join(asked, on="record_id", how="semi", maintain_order="left")
    report = ResolveReport(
        scope=step.registry or "population",
        records=asked.height,
        training_records=int((resolved["link_method"] == "exact").sum()),
        valid_numbers=int(number_keys(records, test_numbers=ctx.test_numbers).is_not_null().sum()),
        fields=fields,
        by_method={m: int((resolved["link_method"] == m).sum()) for m in METHODS},
        unresolved=int(resolved["link_method"].is_null().sum()),
        by_reason={r: n for r in REASONS if (n := int((resolved["reason"] == r).sum()))},
        same_person=result.same_person.height,
        thresholds=list(thresholds),
        seed=SEED,
        register_persons=register.persons.height,
        model=_model_summary(model),
        model_sha256=hashlib.sha256(model_json.encode()).hexdigest(),
        bias=bias_table(
            typed.with_columns(pl.Series("outcome", resolved.select(outcome).to_series())),
            ctx.created.date(),
        ),
    )
    write_report(store / step.outputs[1], report)
    return StepStats.of(
        {
            "rows": asked.height,
            "linked": asked.height - int(resolved["link_method"].is_null().sum()),
            "audit": _audit_details(report),
        }
    )


def _model_summary(model: object) -> dict[str, Any] | None:
    """What the operator and the quality report learn of the model: its estimated precision
    and recall at the thresholds and the parameters it was trained with; never a record."""
    if model is None or not hasattr(model, "to_dict"):
        return None
    data = model.to_dict()
    keys = ("estimated_precision", "estimated_recall", "n_comparisons", "n_training_pairs",
            "n_records", "probability_two_random_records_match", "margin", "u_max_pairs",
            "splink_version", "parameters")  # fmt: skip
    return {k: data.get(k) for k in keys}


def _audit_details(report: ResolveReport) -> dict[str, Any]:
    """The audit event's details of a resolve: counts, thresholds, model parameters."""
    model = report.model or {}
    low, high = report.thresholds
    out: dict[str, Any] = {
        "records": report.records, "training_records": report.training_records,
        "threshold_low": low, "threshold_high": high, "seed": report.seed,
        "unresolved": report.unresolved,
        **{f"linked_{m}": n for m, n in report.by_method.items()},
        **{f"reason_{r}": n for r, n in report.by_reason.items()},
    }  # fmt: skip
    for key in ("estimated_precision", "estimated_recall", "n_comparisons", "n_training_pairs",
                "probability_two_random_records_match"):  # fmt: skip
        value = model.get(key)
        if isinstance(value, int | float):
            out[key[:40]] = value
    return out


def apply_recovery_step(ctx: Context, step: Step) -> StepStats:
    """The registry's table with the numbers the TTP resolved filled in, and each record's
    ``link_method`` (code), ``match_probability`` and ``match_weight``. The TTP's answer
    decides for every record it answered, a valid number too (it may be someone else's);
    only a valid number the TTP was not asked about (none, in a run) stays an exact link."""
    assert step.registry is not None
    source = ctx.sources.get(step.registry)
    store = ctx.store(step.party)
    table = pl.read_parquet(source.file)
    checked = validate_column(
        table[source.id_column].cast(pl.String), scheme="fnr", test_numbers=ctx.test_numbers
    )
    resolved = pl.read_parquet(store / step.inputs[0])
    ids = pl.int_range(1, table.height + 1, eager=True).cast(pl.String).alias("record_id")
    answers = pl.DataFrame([ids]).join(resolved, on="record_id", how="left", maintain_order="left")
    valid = checked["reason"].is_null()
    unasked = valid & answers["link_method"].is_null() & answers["reason"].is_null()
    method = pl.select(
        pl.when(unasked).then(pl.lit("exact")).otherwise(answers["link_method"])
    ).to_series()
    out = table.with_columns(
        pl.select(pl.when(unasked).then(checked["compact"]).otherwise(answers[FNR]))
        .to_series()
        .alias(source.id_column),
        method.replace_strict(LINK_METHOD_CODES, default=None, return_dtype=pl.Int8).alias(
            "link_method"
        ),
        pl.select(pl.when(unasked).then(1.0).otherwise(answers["match_probability"]))
        .to_series()
        .round(_DIGITS)
        .alias("match_probability"),
        answers["match_weight"].round(_WEIGHT_DIGITS).alias("match_weight"),
    )
    with atomic_write(store / step.outputs[0]) as temp:
        out.write_parquet(temp)
    return StepStats.of(
        {
            "rows": out.height,
            "exact": int((method == "exact").sum()),
            "recovered": int((method.is_in(list(METHODS[1:]))).sum()),
            "unresolved": int(method.is_null().sum()),
            "valid_number_not_exact": int((valid & (method != "exact").fill_null(True)).sum()),
        }
    )


@dataclass(frozen=True)
class Recovered:
    """The population's rows after recovery: ``reason`` (null: keyed), ``compact`` (the
    number, the TTP's where it resolved the row), ``method``, ``probability`` and ``weight``
    per row keyed (null for rows still failing; weight null for exact and repaired)."""

    reason: pl.Series
    compact: pl.Series
    method: pl.Series
    probability: pl.Series
    weight: pl.Series
    #: the rows the TTP resolved
    found: pl.Series


def apply_population_recovery(
    ctx: Context, step: Step, reason: pl.Series, compact: pl.Series
) -> Recovered:
    """The TTP's answers (``population_resolved.parquet``) applied to the validated rows: the
    TTP decides for every row it answered, a valid number too (it may be someone else's: then
    another stage's person, or a ``recovery_conflict`` reject); a valid row it was not asked
    about (``ambiguous_identity`` rows are not sent) keeps its own verdict."""
    resolved = pl.read_parquet(ctx.store(step.party) / step.inputs[1])
    ids = pl.int_range(1, reason.len() + 1, eager=True).cast(pl.String).alias("record_id")
    answers = pl.DataFrame([ids]).join(resolved, on="record_id", how="left", maintain_order="left")
    found = answers[FNR].is_not_null()
    failed = answers["reason"].is_not_null()
    was_valid = reason.is_null() & ~found & ~failed  # valid and not answered

    def pick(*cases: tuple[pl.Series, Any], otherwise: Any) -> pl.Series:
        expr: Any = pl.when(cases[0][0]).then(cases[0][1])
        for cond, value in cases[1:]:
            expr = expr.when(cond).then(value)
        return pl.select(expr.otherwise(otherwise)).to_series()

    return Recovered(
        reason=pick(
            (found, pl.lit(None, pl.String)),
            (failed, pl.lit("recovery_") + answers["reason"]),
            otherwise=reason,
        ).alias(reason.name),
        compact=pick((found, answers[FNR]), otherwise=compact).alias(compact.name),
        method=pick(
            (found, answers["link_method"]),
            (was_valid, pl.lit("exact")),
            otherwise=pl.lit(None, pl.String),
        ),
        probability=pick(
            (found, answers["match_probability"]),
            (was_valid, pl.lit(1.0)),
            otherwise=pl.lit(None, pl.Float64),
        ),
        weight=pick((found, answers["match_weight"]), otherwise=pl.lit(None, pl.Float64)),
        found=found,
    )


def write_link_methods(
    ctx: Context, step: Step, keys: pl.DataFrame, recovered: Recovered,
    compact: pl.Series, reason: pl.Series, duplicate: str,
) -> dict[str, Any]:  # fmt: skip
    """Write (lopenr, link_method, match_probability, match_weight) per person (its best
    row: exact before repaired before probabilistic, then the highest probability) and
    return the population's linkage figures for the quality report: rows by outcome and the
    link rate by group."""
    rows = pl.DataFrame({
        FNR: compact, "reason": reason, "method": recovered.method,
        "p": recovered.probability, "w": recovered.weight,
    })  # fmt: skip
    best = ["method", "p", "w"]
    per_person = (
        rows.filter(pl.col("reason").is_null())
        .with_columns(pl.col("method").replace_strict(LINK_METHOD_CODES, return_dtype=pl.Int8))
        .group_by(FNR)
        .agg(
            pl.col(c).sort_by(best, descending=[False, True, True], nulls_last=True).first()
            for c in best
        )
    )
    out = (
        keys.filter(pl.col("current"))
        .join(per_person, on=FNR, how="left")
        .select(
            SERIAL, pl.col("method").alias("link_method"),
            pl.col("p").round(_DIGITS).alias("match_probability"),
            pl.col("w").round(_WEIGHT_DIGITS).alias("match_weight"),
        )
        .sort(SERIAL)
    )  # fmt: skip
    with atomic_write(ctx.store(step.party) / step.outputs[1]) as temp:
        out.write_parquet(temp)
    outcome = rows.select(
        pl.when(pl.col("reason").is_null())
        .then(pl.col("method"))
        .when(pl.col("reason") == duplicate)
        .then(pl.lit("duplicate"))
        .otherwise(pl.lit("unresolved"))
        .alias("outcome")
    ).to_series()
    recovery = ctx.job.recovery
    assert recovery is not None
    v_frame = _population_fields(ctx, recovery.fields)
    ttp = read_report(ctx.store(step.party) / step.inputs[2], ResolveReport)  # counts, model
    return {
        "scope": "population",
        "rows": rows.height,
        "by_outcome": outcome_counts(outcome),
        "thresholds": list(ctx.job.thresholds),
        "sent_to_ttp": ttp.records,
        "valid_numbers": ttp.valid_numbers,
        "training_records": ttp.training_records,
        "by_reason": dict(ttp.by_reason),
        "model": ttp.model,
        "bias": bias_table(
            v_frame.with_columns(outcome).filter(pl.col("outcome") != "duplicate"),
            ctx.created.date(),
        ),
    }


def _population_fields(ctx: Context, fields: Mapping[str, str]) -> pl.DataFrame:
    """The population's own sex, birth and death date and kommune (where the job maps them),
    typed (the death date gives the deceased's age at death in the bias table)."""
    from koble.tables import read_table

    wanted = {
        f: c for f, c in fields.items() if f in ("sex", "birth_date", "death_date", "kommune")
    }
    path = ctx.population_path
    frame = read_table(path)
    if not wanted:
        return pl.DataFrame({"record_id": pl.int_range(1, frame.height + 1, eager=True)})
    return _record_frame(frame, wanted, path)
