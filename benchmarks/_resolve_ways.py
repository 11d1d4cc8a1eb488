"""The three ways ``bench_resolve.py`` resolves a data set (koble, exact name+dob, Splink
generic; the script's docstring tells each) and a case scored: each way's links, per method
and overall, and the facts its summary needs."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from _resolve_cases import Case
from _resolve_score import Score, pair_score, score

if TYPE_CHECKING:
    import polars as pl

    from koble.recovery.resolve import Resolution

SPLINK_THRESHOLD = 0.5


def run_koble(case: Case, *, seed: int = 0) -> Resolution:
    """koble's pipeline at the automatic thresholds (it trains itself: on the exact links,
    or by EM when there are too few; :mod:`koble.recovery.training`)."""
    from koble.recovery.probabilistic import probabilistic
    from koble.recovery.resolve import resolve

    return resolve(case.records, case.register, probabilistic=probabilistic, seed=seed,
                   compare=case.compare, register_fields=case.register_fields,
                   block=case.block)  # fmt: skip


def exact_baseline(case: Case) -> pl.DataFrame:
    """What a careful script does (module docstring): ``record_id``, ``person_id``,
    ``method`` (``number`` or ``name+dob``)."""
    import polars as pl

    rec, per = case.raw_records, case.raw_persons
    frames = []
    if case.number is not None:
        ids = per.select(pl.col(case.number).alias("_n"), pl.col("unique_id").alias("person_id"))
        ids = ids.drop_nulls().filter(pl.len().over("_n") == 1)
        found = rec.select("unique_id", pl.col(case.number).alias("_n")).join(ids, on="_n")
        frames.append(found.select(pl.col("unique_id").alias("record_id"), "person_id",
                                   method=pl.lit("number")))  # fmt: skip
    done = pl.concat(frames) if frames else pl.DataFrame(schema={"record_id": pl.String})
    key = [pl.col(c).str.to_lowercase().str.strip_chars().alias(c)
           for c in ("first_name", "last_name", "birth_date")]  # fmt: skip
    left = rec.select(pl.col("unique_id").alias("record_id"), *key).drop_nulls()
    left = left.join(done.select("record_id"), on="record_id", how="anti")
    right = per.select(pl.col("unique_id").alias("person_id"), *key).drop_nulls()
    joined = left.join(right, on=["first_name", "last_name", "birth_date"])
    unique = joined.filter(pl.len().over("record_id") == 1)
    frames.append(unique.select("record_id", "person_id", method=pl.lit("name+dob")))
    return pl.concat(frames)


def splink_generic(case: Case, *, seed: int = 0) -> pl.DataFrame:
    """Splink's generic configuration (module docstring): every scored pair with match
    probability >= 0.01, as ``record_id``, ``person_id``, ``match_probability``."""
    import logging

    import polars as pl
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    base = ("unique_id", "first_name", "last_name", "birth_date")
    rest = [c for c in case.raw_records.columns
            if c not in base and c in case.raw_persons.columns]  # fmt: skip
    comparisons: list[Any] = [
        cl.NameComparison("first_name").configure(term_frequency_adjustments=True),
        cl.NameComparison("last_name").configure(term_frequency_adjustments=True),
        cl.DateOfBirthComparison("birth_date", input_is_string=True, datetime_format="%Y-%m-%d"),
        *(cl.ExactMatch(c) for c in rest),
    ]
    blocking: list[Any] = [block_on("first_name", "last_name"), block_on("birth_date"),
                *(block_on(c) for c in case.blocking)]  # fmt: skip
    settings = SettingsCreator(
        link_type="link_only", comparisons=comparisons,
        blocking_rules_to_generate_predictions=blocking, retain_matching_columns=False,
    )  # fmt: skip
    logging.getLogger("splink").setLevel(logging.ERROR)
    db = DuckDBAPI()
    columns = ["unique_id", *base[1:], *rest]
    left = db.register(case.raw_records.select(columns).to_arrow(), table_name="records")
    right = db.register(case.raw_persons.select(columns).to_arrow(), table_name="register")
    linker = Linker([left, right], settings, log_level=logging.ERROR)
    training = linker.training
    training.estimate_probability_two_random_records_match(
        [block_on("first_name", "last_name", "birth_date")], recall=0.7
    )
    training.estimate_u_using_random_sampling(max_pairs=1e7, seed=seed)
    training.estimate_parameters_using_expectation_maximisation(block_on("first_name", "last_name"))
    training.estimate_parameters_using_expectation_maximisation(block_on("birth_date"))
    predicted = linker.inference.predict(threshold_match_probability=0.01)
    frame = pl.from_arrow(predicted.as_pyarrow_table())  # type: ignore[no-untyped-call]
    assert isinstance(frame, pl.DataFrame)
    left_is_record = pl.col("source_dataset_l") == "records"
    return frame.select(
        pl.when(left_is_record).then("unique_id_l").otherwise("unique_id_r").alias("record_id"),
        pl.when(left_is_record).then("unique_id_r").otherwise("unique_id_l").alias("person_id"),
        "match_probability",
    ).cast({"record_id": pl.String, "person_id": pl.String})


def best_threshold(pairs: pl.DataFrame, truth: pl.DataFrame) -> float:
    """The match-probability threshold with the best F1 against ``truth`` (an oracle)."""
    import polars as pl

    marked = pairs.join(truth.rename({"person_id": "_true"}), on="record_id", how="left")
    ok = (pl.col("person_id") == pl.col("_true")).fill_null(False).alias("ok")
    marked = marked.with_columns(ok).sort("match_probability", descending=True)
    found = pl.int_range(1, marked.height + 1, eager=True)
    right = marked["ok"].cum_sum()
    f1 = 2 * right / (found + truth.height)
    if not marked.height:
        return SPLINK_THRESHOLD
    return float(marked["match_probability"][int(f1.arg_max() or 0)])


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of a case's table: a system (and method) scored."""

    system: str
    method: str
    score: Score


def evaluate(case: Case, *, seed: int = 0) -> tuple[list[Row], dict[str, Any]]:
    """Run the three ways on ``case`` and score them: the table rows, and facts for the
    summary (F1 per system, koble's counts and training, seconds per system)."""
    import polars as pl

    rows: list[Row] = []
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    resolution = run_koble(case, seed=seed)
    seconds["koble"] = time.perf_counter() - start
    model = resolution.model
    for method in ("exact", "repaired", "probabilistic", "clerical"):
        part = resolution.links.filter(pl.col("method") == method)
        if part.height:
            rows.append(Row("koble", method, score(part, case.truth)))
    rows.append(Row("koble", "all", score(resolution.links, case.truth)))
    start = time.perf_counter()
    exact = exact_baseline(case)
    seconds["exact"] = time.perf_counter() - start
    for method in ("number", "name+dob"):
        part = exact.filter(pl.col("method") == method)
        if part.height:
            rows.append(Row("exact name+dob", method, score(part, case.truth)))
    rows.append(Row("exact name+dob", "all", score(exact, case.truth)))
    start = time.perf_counter()
    pairs = splink_generic(case, seed=seed)
    seconds["splink"] = time.perf_counter() - start
    best = best_threshold(pairs, case.truth)
    at_half = pairs.filter(pl.col("match_probability") >= SPLINK_THRESHOLD)
    at_best = pairs.filter(pl.col("match_probability") >= best)
    rows.append(Row("Splink generic", f"p >= {SPLINK_THRESHOLD}", score(at_half, case.truth)))
    rows.append(Row("Splink generic", f"p >= {best:.3g} (best F1, oracle)",
                    score(at_best, case.truth)))  # fmt: skip
    if case.dedup_pairs is not None:
        for system, links in (("koble", resolution.links), ("exact name+dob", exact),
                              ("Splink generic", at_half)):  # fmt: skip
            rows.append(Row(system, "pairs (dedup)", pair_score(links, case.dedup_pairs)))
        oracle = pair_score(at_best, case.dedup_pairs)
        rows.append(Row("Splink generic", "pairs (dedup), best-F1 threshold (oracle)", oracle))
    counts = resolution.counts
    facts = {
        "koble": _overall(rows, "koble"),
        "exact": _overall(rows, "exact name+dob"),
        "splink": _overall(rows, "Splink generic", f"p >= {SPLINK_THRESHOLD}"),
        "splink_best": next(r.score.f1 for r in rows if r.method.endswith("(best F1, oracle)")),
        "counts": counts,
        "training": getattr(model, "n_training_pairs", 0),
        "how": getattr(model, "training", "none"),
        "comparisons": getattr(model, "n_comparisons", 0),
        "seconds": seconds,
        "koble_score": next(r.score for r in rows if r.system == "koble" and r.method == "all"),
        "links": {"koble": resolution.links, "exact name+dob": exact, "Splink generic": at_half},
    }
    if case.dedup_pairs is not None:
        pairs_f1 = {r.system: r.score.f1 for r in rows if r.method == "pairs (dedup)"}
        facts.update(koble=pairs_f1["koble"], exact=pairs_f1["exact name+dob"],
                     splink=pairs_f1["Splink generic"], splink_best=oracle.f1)  # fmt: skip
    return rows, facts


def _overall(rows: Sequence[Row], system: str, method: str = "all") -> float:
    return next(r.score.f1 for r in rows if r.system == system and r.method == method)
