"""The probabilistic stage: a Fellegi–Sunter model in Splink (on DuckDB, or on the TTP's Spark
under ``--engine spark``: :mod:`koble.recovery.backends`) over names, birth date, sex, death
date and places, for the records no number resolved.

How it runs (all on whole columns; no Python loop over rows):

1. :func:`prepare_records` / :func:`prepare_register` make the compared columns of
   :mod:`koble.recovery.model` (Norwegian name keys of :mod:`koble.recovery.normalise`). The
   register is exploded by name history: one row per person and name they have had, so a
   record written under a maiden name still meets its person.
2. m-probabilities are counted directly from labelled pairs: the records the exact stage
   linked, each paired with the name row of its person that fits it best
   (``estimate_m_from_pairwise_labels``, not EM). u-probabilities come from random pairs
   (``estimate_u_using_random_sampling`` with the caller's seed); both get half a pair
   added per level (:func:`koble.recovery.model.smooth`). λ is 1 / persons (each
   record has one person in the register). Exact name agreement is term-frequency adjusted,
   so "Hansen" weighs less than a rare farm name.
3. Splink compares the pairs from the blocking rules; koble weighs them from the trained
   model (:mod:`koble.recovery.weights`: Splink's weights, the same digits on every
   engine); per (record, person) the best name row is kept.
4. The best candidate of each record decides: ``match_probability >= high`` and at least
   ``margin`` bits ahead of the runner-up links it; above ``high`` but within the margin is
   ``ambiguous`` and goes to review with its rivals; between ``low`` and ``high`` goes to
   review; under ``low`` is rejected (``below_threshold``); a record no blocking rule paired
   with a person scoring at least ``low * candidate_floor`` is rejected (``no_candidate``).
   Review rows carry ``gamma_<comparison>`` and ``review_reason`` (``between_thresholds``
   or ``ambiguous``).

Splink's logging is silenced while the stage runs; nothing logged or raised holds a name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import polars as pl

from koble.errors import KobleError, UsageError
from koble.recovery import candidates, model, weights
from koble.recovery import training as training_mod
from koble.recovery.backends import Backend, DuckDBBackend, SparkBackend
from koble.recovery.contract import LINK_SCHEMA, RECORD_SCHEMA, REJECT_SCHEMA, StageResult, empty
from koble.recovery.model import ModelReport
from koble.recovery.preparation import (
    RECORDS,
    REGISTER,
    RegisterLike,
    _field_candidates,
    prepare_records,
    prepare_register,
)

__all__ = [
    "GAMMA_COLUMNS",
    "ModelReport",
    "RegisterLike",
    "classify",
    "prepare_records",
    "prepare_register",
    "probabilistic",
]

GAMMA_COLUMNS = tuple(f"gamma_{c['output_column_name']}" for c in model.COMPARISONS)
_REVIEW_SCHEMA = pl.Schema({
    "record_id": pl.String, "person_id": pl.String, "match_probability": pl.Float64,
    "match_weight": pl.Float64, **dict.fromkeys(GAMMA_COLUMNS, pl.Int64),
    "review_reason": pl.String,
})  # fmt: skip
_RECORDS, _REGISTER = RECORDS, REGISTER


def _training_labels(
    recs: pl.DataFrame, training: pl.DataFrame, reg_rows: pl.DataFrame
) -> pl.DataFrame:
    """Each exactly linked record (``recs``: ``training`` prepared) paired with its person's
    name row of ``reg_rows`` that fits it best."""
    pairs = recs.select("unique_id", "fn_key", "ln_key").join(
        training.select(pl.col("record_id").alias("unique_id"), "person_id"), on="unique_id"
    )
    cand = pairs.join(
        reg_rows.select(
            pl.col("entity_id").alias("person_id"),
            pl.col("unique_id").alias("unique_id_r"),
            pl.col("fn_key").alias("fn_r"),
            pl.col("ln_key").alias("ln_r"),
        ),
        on="person_id",
    )
    fit = 2 * (pl.col("ln_key") == pl.col("ln_r")).fill_null(False).cast(pl.Int8) + (
        pl.col("fn_key") == pl.col("fn_r")
    ).fill_null(False).cast(pl.Int8)
    best = (
        cand.with_columns(fit.alias("fit"))
        .sort(["unique_id", "fit", "unique_id_r"], descending=[False, True, False])
        .unique(subset="unique_id", keep="first", maintain_order=True)
    )
    return best.select(
        pl.lit(_RECORDS).alias("source_dataset_l"),
        pl.col("unique_id").alias("unique_id_l"),
        pl.lit(_REGISTER).alias("source_dataset_r"),
        "unique_id_r",
    )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence Splink's loggers (they may echo SQL and table names; never wanted here)."""
    log = logging.getLogger("splink")
    level, propagate = log.level, log.propagate
    log.setLevel(logging.CRITICAL + 1)
    log.propagate = False
    try:
        yield
    finally:
        log.setLevel(level)
        log.propagate = propagate


def _arrow_table(backend: Backend, name: str, frame: pl.DataFrame, *, append: bool = False) -> str:
    """``frame`` as table ``name`` (or appended to it), in ``unique_id`` order: sorted here
    unless it is already (the engine keeps the order given; sorting in DuckDB would hold
    the table twice)."""
    if not frame["unique_id"].is_sorted():
        frame = frame.sort("unique_id")
    return backend.load(name, frame, append=append)


def _load_register(
    backend: Backend,
    register: RegisterLike,
    persons: pl.Series,
    keys: pl.DataFrame,
    training: tuple[pl.DataFrame, pl.DataFrame],
    compare: Mapping[str, str],
    fields: pl.DataFrame | None,
    chunk_persons: int,
) -> pl.DataFrame:
    """Prepare the register rows of ``persons`` and load them into ``koble_register_rows``,
    ``chunk_persons`` persons at a time in person_id order, so only one chunk's prepared rows
    (and the garbage of making them) are in memory at once. Returns the training labels
    (:func:`_training_labels` of ``training``: prepared records and the links)."""
    ids = persons.unique().sort()
    labels = []
    for start in range(0, max(ids.len(), 1), chunk_persons):
        chosen = candidates.subset(register, ids.slice(start, chunk_persons), names=False)
        rows = prepare_register(chosen, compare, fields, keys=keys)
        del chosen
        labels.append(_training_labels(*training, rows))
        _arrow_table(backend, "koble_register_rows", rows, append=start > 0)
        del rows
    return pl.concat(labels).sort("unique_id_l")


def probabilistic(
    records: pl.DataFrame,
    register: RegisterLike,
    *,
    training: pl.DataFrame,
    thresholds: tuple[float, float],
    seed: int,
    margin: float = 3.0,
    u_max_pairs: float = 2e6,
    candidate_floor: float = 0.01,
    threads: int | None = None,
    compare: Mapping[str, str] | None = None,
    register_fields: pl.DataFrame | None = None,
    block: Sequence[str] = (),
    min_labels: int = training_mod.MIN_LABELS,
    em_max_records: int = 50_000,
    memory_limit: str = "3GB",
    u_sample_persons: int = 200_000,
    chunk_records: int = 100_000,
    chunk_persons: int = 1_000_000,
    spark: Any = None,
) -> tuple[StageResult, ModelReport]:
    """Resolve ``records`` (:data:`RECORD_SCHEMA`) against ``register`` with Splink.

    ``training`` is the exact stage's links joined to their records: the record columns
    plus ``person_id``. ``thresholds`` is ``(low, high)`` on match probability; ``margin``
    the bits the best candidate must lead the runner-up by; ``seed`` fixes u-sampling and
    the EM sample. ``compare`` (field -> kind) adds the caller's extra fields, compared
    between ``records``' columns and ``register_fields`` (``person_id`` + the fields);
    ``block``: those of them that are also blocking keys.
    m is learned from the exact links when there are at least ``min_labels``, else by EM
    on at most ``em_max_records`` records (:mod:`koble.recovery.training`).
    Splink sees only the register persons a blocking rule pairs with some record, and the
    labelled ones (:mod:`koble.recovery.candidates`), with term frequencies of the whole
    register; u comes from random pairs with ``u_sample_persons`` persons drawn with
    ``seed``. Splink runs on a DuckDB connection of the stage's own, on ``threads``
    (default 2) within ``memory_limit``, spilling to a temporary directory removed
    afterwards; or, given a Spark session ``spark`` (the TTP's engine's, under
    ``--engine spark``), on Spark with the same comparisons, training and decisions
    (:mod:`koble.recovery.backends`). The register rows are prepared and loaded
    ``chunk_persons`` persons at a time, and pairs scored ``chunk_records`` records at a
    time (bounded memory).
    Returns the stage result (``remaining`` empty: every record is linked, reviewed or
    rejected) and the :class:`ModelReport`.
    """
    import splink
    from splink import Linker
    from splink.internals.exceptions import SplinkException

    low, high = thresholds
    if not 0.0 < low <= high < 1.0:
        raise UsageError(f"thresholds must satisfy 0 < low <= high < 1, got {low}, {high}")
    if chunk_records < 1 or chunk_persons < 1:
        raise UsageError("chunk_records and chunk_persons must be at least 1")
    if not {"record_id", "person_id"} <= set(training.columns):
        raise UsageError("training needs the exact stage's links: record_id and person_id")
    if not {"first_name", "last_name", "birth_date"} & set(training.columns):
        raise UsageError(
            "training needs the exact links joined to their records (first_name, last_name, "
            "birth_date, ...): the model learns its m-probabilities from those fields"
        )
    compare = dict(compare or {})
    prepared = prepare_records(records, compare)
    keys = candidates.key_rows(register)
    tf_tables = candidates.term_frequencies(keys)  # over the whole register
    wanted = candidates.candidate_persons(prepared, keys)
    wanted = pl.concat([wanted, _field_candidates(prepared, compare, register_fields, block)])
    # the candidates and the labelled persons (training), prepared; u from a random sample
    wanted = pl.concat([wanted, training["person_id"].cast(pl.String)])
    drawn = candidates.sample_persons(register, u_sample_persons, seed, names=False)
    u_rows = prepare_register(drawn, compare, register_fields, keys=keys)
    del drawn
    n_persons = register.persons.height
    train_recs = prepare_records(training, compare)
    lam = 1.0 / max(n_persons, 2)
    spill = tempfile.TemporaryDirectory(prefix="koble-duckdb-")
    backend: Backend
    try:
        if spark is None:
            backend = DuckDBBackend(
                threads=threads or 2, memory_limit=memory_limit, spill=spill.name
            )
        else:
            backend = SparkBackend(spark)
    except BaseException:
        spill.cleanup()
        raise
    settings = model.settings(lam, compare, block, backend.dialect)
    try:
        with _quiet():
            labels = _load_register(backend, register, wanted, keys, (train_recs, training),
                                    compare, register_fields, chunk_persons)  # fmt: skip
            del keys, wanted
            if labels.height == 0 and records.height == 0:
                raise UsageError(
                    "nothing to train the model on: no exactly linked record and no record "
                    "to resolve"
                )
            _arrow_table(backend, "koble_u_rows", u_rows)
            n_u_rows = u_rows.height
            del u_rows
            for column, table in tf_tables.items():
                backend.load(f"koble_tf_{column}", table.to_arrow())
            _arrow_table(backend, "koble_training", train_recs)
            _arrow_table(backend, "koble_records", prepared)
            sample = training_mod.em_sample(prepared, em_max_records, seed)
            _arrow_table(backend, "koble_em_records", sample)
            backend.load("koble_labels", labels.to_arrow())
            # DuckDB holds them now: the frames go before training and scoring need memory
            n_labels, n_sample, tf_columns = labels.height, sample.height, tuple(tf_tables)
            del labels, sample, prepared, train_recs, tf_tables
            use_labels = n_labels >= min_labels
            sides = float(training.height if use_labels else n_sample)
            n_u = min(u_max_pairs, sides * float(n_u_rows))
            tables = {"training": "koble_training", "labels": "koble_labels",
                      "records": "koble_em_records", "register": "koble_register_rows",
                      "u_register": "koble_u_rows"}  # fmt: skip
            trained, how = training_mod.train(
                backend, settings, tables=tables, n_labels=n_labels, n_records=n_sample,
                n_u=n_u, seed=seed, u_max_pairs=u_max_pairs,
                min_labels=min_labels if n_sample else 1,
            )  # fmt: skip
            trained["probability_two_random_records_match"] = lam
            trained.pop("linker_uid", None)  # random per Linker, not part of the model
            if records.height:
                api = backend.api()
                linker = Linker(
                    [
                        api.register("koble_records", table_name=_RECORDS),
                        api.register("koble_register_rows", table_name=_REGISTER),
                    ],
                    # the pairs' term frequencies kept for koble's weights (_best_per_person)
                    {**trained, "retain_intermediate_calculation_columns": True},
                    log_level=None,
                )
                for column in tf_columns:  # a name's frequency in the whole register
                    linker.table_management.register_term_frequency_lookup(
                        api.register(f"koble_tf_{column}", table_name=f"tf_{column}"), column
                    )
                n_chunks = max(1, math.ceil(records.height / chunk_records))
                n_comparisons, pairs = _predict_in_chunks(
                    backend, linker, n_chunks, _Scoring(trained, low * candidate_floor)
                )
            else:
                n_comparisons, pairs = 0, _best_per_person_empty()
    except (*backend.errors, SplinkException) as exc:  # type: ignore[misc]
        # their messages may quote values (names, dates) of the failing rows: withheld
        raise KobleError(
            f"the probabilistic model failed ({type(exc).__name__}); details withheld "
            "because they may quote record values"
        ) from None
    finally:
        backend.close()
        spill.cleanup()
    result, precision, recall = classify(records, pairs, low, high, margin)
    if backend.dialect != "duckdb":  # recorded as written, whichever engine ran it
        trained = model.as_written(trained, compare)
    report = ModelReport(
        model=trained,
        parameters=model.parameters(trained),
        probability_two_random_records_match=lam,
        thresholds=(low, high),
        margin=margin,
        seed=seed,
        u_max_pairs=u_max_pairs,
        n_training_pairs=n_labels if how == "labels" else 0,
        n_records=records.height,
        n_comparisons=n_comparisons,
        estimated_precision=precision,
        estimated_recall=recall,
        splink_version=splink.__version__,
        training=how,
        compare=tuple(compare.items()),
        block=tuple(block),
    )
    return result, report


@dataclasses.dataclass(frozen=True)
class _Scoring:
    """How a chunk's pairs are scored (:mod:`koble.recovery.weights`): the trained model
    and the probability under which a pair is dropped."""

    trained: dict[str, Any]
    floor: float

    @property
    def tf_columns(self) -> tuple[str, ...]:
        """The compared columns whose frequency adjusts a weight (``tf_<column>_l``/``_r``)."""
        return tuple(dict.fromkeys(
            lv["tf_adjustment_column"] for c in self.trained["comparisons"]
            for lv in c["comparison_levels"] if lv.get("tf_adjustment_column")
        ))  # fmt: skip


def _predict_in_chunks(
    backend: Backend, linker: Any, n_chunks: int, scoring: _Scoring
) -> tuple[int, pl.DataFrame]:
    """Score the blocked pairs in ``n_chunks`` chunks of the records (bounded memory: a
    chunk's blocked pairs are materialised once, counted, scored and dropped), keeping of
    each chunk the best pair per (record, person) at or above ``scoring.floor`` (a record's
    pairs are all in one chunk). Splink finds the pairs and their gammas (with half the
    floor: a pair its engine's arithmetic puts a hair under the floor is not lost); koble
    weighs them (:func:`_best_per_person`). Returns the number of comparisons and the pairs."""
    n_comparisons, kept = 0, []
    for chunk in range(1, n_chunks + 1):
        blocked = linker.inference.compute_blocked_pairs_for_predict_chunk(
            left_chunk=(chunk, n_chunks), right_chunk=(1, 1)
        )
        n_comparisons += backend.scalar(f"SELECT count(*) FROM {blocked.physical_name}")
        # scored from these pairs: blocking runs once, not again inside predict
        linker.table_management.register_blocked_pairs_for_predict(blocked)
        pred = linker.inference.predict(
            threshold_match_probability=scoring.floor / 2, warning_mode="never"
        )
        kept.append(_best_per_person(backend, pred.physical_name, scoring))
        pred.drop_table_from_database_and_remove_from_cache()
        blocked.drop_table_from_database_and_remove_from_cache()
    pairs = pl.concat(kept) if kept else _best_per_person_empty()
    return n_comparisons, pairs.sort("record_id", "person_id")


def _best_per_person(backend: Backend, table: str, scoring: _Scoring) -> pl.DataFrame:
    """Splink's predictions in ``table`` weighed by koble (:func:`koble.recovery.weights
    .score`), those under the floor dropped, and reduced to one row per (record, person):
    the best-scoring name row (the highest weight, then the lowest row id)."""
    tf = [f"tf_{c}_{side}" for c in scoring.tf_columns for side in ("l", "r")]
    gammas = [f"gamma_{c['output_column_name']}" for c in scoring.trained["comparisons"]]
    columns = ", ".join(["unique_id_l", "unique_id_r", "entity_id_r", *gammas, *tf])
    frame = pl.from_arrow(backend.arrow(f"SELECT {columns} FROM {table}"))
    assert isinstance(frame, pl.DataFrame)
    types: dict[Any, Any] = dict.fromkeys(("unique_id_l", "unique_id_r", "entity_id_r"), pl.String)
    frame = frame.cast(types | dict.fromkeys(gammas, pl.Int64))
    scored = weights.score(frame, scoring.trained)
    return (
        scored.filter(pl.col("match_weight") >= weights.prior_weight(scoring.floor))
        .sort(
            ["unique_id_l", "entity_id_r", "match_weight", "unique_id_r"],
            descending=[False, False, True, False],
        )
        .unique(subset=["unique_id_l", "entity_id_r"], keep="first", maintain_order=True)
        .select(
            pl.col("unique_id_l").alias("record_id"),
            pl.col("entity_id_r").alias("person_id"),
            "match_probability",
            "match_weight",
            *GAMMA_COLUMNS,
        )
    )


def _best_per_person_empty() -> pl.DataFrame:
    return pl.DataFrame(schema={k: v for k, v in _REVIEW_SCHEMA.items() if k != "review_reason"})


def classify(
    records: pl.DataFrame, pairs: pl.DataFrame, low: float, high: float, margin: float
) -> tuple[StageResult, float | None, float | None]:
    """Route each record by its best candidate (see the module docstring)."""
    ranked = pairs.sort(
        ["record_id", "match_weight", "person_id"], descending=[False, True, False]
    ).with_columns(pl.int_range(pl.len()).over("record_id").alias("rank"))
    top = ranked.filter(pl.col("rank") == 0)
    second = ranked.filter(pl.col("rank") == 1).select(
        "record_id", pl.col("match_weight").alias("w2")
    )
    top = top.join(second, on="record_id", how="left").with_columns(
        ((pl.col("match_weight") - pl.col("w2")).fill_null(math.inf) >= margin).alias("ahead")
    )
    p = pl.col("match_probability")
    linked_top = top.filter((p >= high) & pl.col("ahead"))
    ambiguous_ids = top.filter((p >= high) & ~pl.col("ahead")).select("record_id")
    between_ids = top.filter((p >= low) & (p < high)).select("record_id")
    below = top.filter(p < low).select("record_id")
    linked = linked_top.select(
        "record_id", "person_id", pl.lit("probabilistic").alias("method"),
        "match_probability", "match_weight",
    ).cast(LINK_SCHEMA)  # fmt: skip
    amb = ranked.join(
        top.select("record_id", pl.col("match_weight").alias("w1")), on="record_id"
    ).filter(
        pl.col("record_id").is_in(ambiguous_ids["record_id"].implode())
        & (pl.col("match_weight") > pl.col("w1") - margin)
    )
    btw = ranked.filter(pl.col("record_id").is_in(between_ids["record_id"].implode()) & (p >= low))
    review = pl.concat(
        [
            amb.select(_REVIEW_SCHEMA.names()[:-1]).with_columns(
                pl.lit("ambiguous").alias("review_reason")
            ),
            btw.select(_REVIEW_SCHEMA.names()[:-1]).with_columns(
                pl.lit("between_thresholds").alias("review_reason")
            ),
        ]
    ).cast(_REVIEW_SCHEMA)
    seen = pairs.select("record_id").unique()
    no_cand = records.select("record_id").join(seen, on="record_id", how="anti")
    rejected = pl.concat(
        [
            below.select(
                "record_id",
                pl.lit("below_threshold").alias("reason"),
                pl.lit(f"best candidate's match probability is under {low}").alias("detail"),
            ),
            no_cand.select(
                "record_id",
                pl.lit("no_candidate").alias("reason"),
                pl.lit("no register person shares a blocking key and scores near the lower "
                       "threshold").alias("detail"),
            ),
        ]
    ).cast(REJECT_SCHEMA).sort("record_id")  # fmt: skip
    result = StageResult(
        linked=linked.sort("record_id"),
        rejected=rejected,
        remaining=empty(RECORD_SCHEMA),
        review=review.sort("record_id", "match_weight", descending=[False, True]),
    )
    # the model's own expectation of its precision and recall at these thresholds
    # (fsum and a fixed order: the same pairs give the same digits, run after run)
    expected_true = math.fsum(linked["match_probability"].to_list())
    per_record = (
        pairs.sort("record_id", "person_id")
        .group_by("record_id", maintain_order=True)
        .agg(p.sum().clip(upper_bound=1.0).alias("e"))
    )
    expected_all = math.fsum(per_record["e"].to_list())
    precision = expected_true / linked.height if linked.height else None
    recall = min(1.0, expected_true / expected_all) if expected_all > 0 else None
    return result, precision, recall
