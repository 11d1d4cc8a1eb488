"""The recovery pipeline: every record resolved to a person, sent to review, or rejected.

:func:`resolve` runs the stages in their fixed order, each on what the previous one left:
exact (:mod:`.exact`), repaired number (:mod:`.repair`), probabilistic (a callable passed in,
normally :func:`koble.recovery.probabilistic.probabilistic`, trained on the exact links), and
clerical (a reviewer's decisions on the pairs the model sent to review). What no stage
resolves is rejected with a reason: the mark an earlier stage left (``conflict``,
``ambiguous``) wins over the later stage's ``no_candidate``/``below_threshold``, since it
says more; a reviewer's ``non_match`` wins over both.

The result is checked before it is returned (a failed check is a bug, raised as an
AssertionError that names counts, never a record): every input record is in exactly one of
the links, the rejects and the records awaiting review; no record links to two persons;
every linked person is in the register; the counts add up. Persons that several records
resolved to are reported in ``same_person``: two journals of one patient are normal, two
survey answers of one person may not be.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from koble.errors import ColumnError, UsageError
from koble.recovery.contract import (
    LINK_SCHEMA,
    METHODS,
    REASONS,
    RECORD_SCHEMA,
    REJECT_SCHEMA,
    StageResult,
    empty,
)
from koble.recovery.exact import REVIEW_BASE, exact
from koble.recovery.register import Register
from koble.recovery.repair import repair

__all__ = [
    "DECISIONS",
    "DECISION_SCHEMA",
    "DEFAULT_THRESHOLDS",
    "ProbabilisticStage",
    "Resolution",
    "resolve",
]

#: A reviewer's decisions (extra columns, such as who and when, are ignored here).
DECISION_SCHEMA = pl.Schema({"record_id": pl.String, "person_id": pl.String, "decision": pl.String})
#: what a reviewer may decide about a pair
DECISIONS = ("match", "non_match")
#: (low, high): below low a pair is rejected, from high on it is linked, between: review
DEFAULT_THRESHOLDS = (0.80, 0.99)


class ProbabilisticStage(Protocol):
    """The probabilistic stage's signature (koble.recovery.probabilistic.probabilistic)."""

    def __call__(
        self,
        records: pl.DataFrame,
        register: Register,
        *,
        training: pl.DataFrame,
        thresholds: tuple[float, float],
        seed: int,
    ) -> tuple[StageResult, object]: ...


@dataclasses.dataclass(frozen=True)
class Resolution:
    """What :func:`resolve` made of the records.

    ``links``: one row per resolved record (:data:`LINK_SCHEMA`), in input order.
    ``review``: the pairs still awaiting a reviewer's decision (their records are neither
    linked nor rejected). ``rejects``: the records no stage resolved (:data:`REJECT_SCHEMA`).
    ``counts``: ``records``, ``linked``, ``rejected``, ``awaiting_review``, one per method
    and one per reason, and ``decisions_applied``/``decisions_unmatched`` (decisions on a
    pair that is not under review now). ``same_person``: ``person_id``, ``record_ids``
    (list), ``records``, for each person several records resolved to. ``model``: the
    probabilistic stage's report, or None when it did not run.
    """

    links: pl.DataFrame
    review: pl.DataFrame
    rejects: pl.DataFrame
    counts: dict[str, int]
    same_person: pl.DataFrame
    model: object | None = None

    def unresolved(self) -> pl.DataFrame:
        """The rejects plus one ``awaiting_review`` row per record under review: what a
        rejects file holds, so that links and unresolved together cover every record."""
        waiting = self.review.select("record_id").unique(maintain_order=True)
        detail = "between the thresholds; see the review file"
        awaiting = waiting.select(
            "record_id", reason=pl.lit("awaiting_review"), detail=pl.lit(detail)
        )
        return pl.concat([self.rejects, awaiting])


def resolve(
    records: pl.DataFrame,
    register: Register,
    *,
    probabilistic: ProbabilisticStage | None = None,
    thresholds: tuple[float, float] = DEFAULT_THRESHOLDS,
    decisions: pl.DataFrame | None = None,
    decisions_path: str | Path = "<decisions>",
    seed: int = 0,
    test_numbers: bool = True,
    compare: Mapping[str, str] | None = None,
    register_fields: pl.DataFrame | None = None,
    block: Sequence[str] = (),
) -> Resolution:
    """Resolve ``records`` (:data:`RECORD_SCHEMA`, unique ``record_id``) against
    ``register``: see the module docstring. ``decisions`` (:data:`DECISION_SCHEMA`) are a
    reviewer's verdicts on earlier review pairs (read from ``decisions_path``, named in
    errors); ``seed`` goes to the probabilistic stage. ``compare`` (field -> kind,
    :data:`~koble.recovery.contract.COMPARE_KINDS`) names extra columns of ``records`` the
    model compares with ``register_fields`` (``person_id`` + those fields); ``block``: those
    of them that are also blocking keys."""
    low, high = thresholds
    if not 0.0 <= low <= high <= 1.0:
        raise UsageError("thresholds must satisfy 0 <= low <= high <= 1")
    fields = list(compare or {})
    missing = [f for f in fields if f not in records.columns]
    if missing:
        raise ColumnError("the extra comparison field is missing in the records",
                          column=missing[0])  # fmt: skip
    extra = records.select("record_id", *fields)
    records = records.select(RECORD_SCHEMA.names())
    first = exact(records, register, test_numbers=test_numbers)
    second = repair(first.remaining, register, test_numbers=test_numbers)
    marks = pl.concat([first.pending, second.pending]).unique("record_id", keep="last")
    model: object | None = None
    if probabilistic is not None and second.remaining.height:
        # labelled pairs: the exact links with their records' fields (names, dates, ...)
        training = first.linked.select("record_id", "person_id").join(records, on="record_id")
        stage: Any = probabilistic
        if fields:  # the extra fields ride along (the stages keep the contract's columns)
            options = {"compare": dict(compare or {}), "register_fields": register_fields,
                       "block": tuple(block)}  # fmt: skip
            stage = functools.partial(stage, **options)
            training = training.join(extra, on="record_id", how="left")
        left = second.remaining.join(extra, on="record_id", how="left", maintain_order="left")
        third, model = stage(
            left if fields else second.remaining, register, training=training,
            thresholds=thresholds, seed=seed,
        )  # fmt: skip
    else:
        third = StageResult(
            empty(LINK_SCHEMA), empty(REJECT_SCHEMA), second.remaining, empty(REVIEW_BASE)
        )
    clerical, review, reviewed_out, applied = _apply_decisions(
        third.review, decisions, decisions_path
    )
    leftover = third.remaining.select(
        "record_id", reason=pl.lit("no_candidate"), detail=pl.lit("no stage found a candidate")
    )
    rejects = _marked(pl.concat([third.rejected.select(REJECT_SCHEMA.names()), leftover]), marks)
    rejects = pl.concat([rejects, reviewed_out])
    order = records.select("record_id").with_row_index("_row")
    links = pl.concat([first.linked, second.linked, third.linked.select(LINK_SCHEMA.names()),
                       clerical])  # fmt: skip
    links = _in_order(links.cast(dict(LINK_SCHEMA)), order)  # type: ignore[arg-type]
    rejects = _in_order(rejects.cast(dict(REJECT_SCHEMA)), order)  # type: ignore[arg-type]
    counts = _counts(records.height, links, rejects, review, applied)
    same = (
        links.group_by("person_id")
        .agg(pl.col("record_id").sort().alias("record_ids"), pl.len().alias("records"))
        .filter(pl.col("records") > 1)
        .sort("person_id")
    )
    result = Resolution(links, review, rejects, counts, same, model)
    _check(result, records["record_id"], register)
    return result


def _marked(rejects: pl.DataFrame, marks: pl.DataFrame) -> pl.DataFrame:
    """Rejects with an earlier stage's mark (conflict, ambiguous) in place of their reason."""
    joined = rejects.join(marks, on="record_id", how="left", suffix="_mark")
    return joined.select(
        "record_id",
        pl.coalesce("reason_mark", "reason").alias("reason"),
        pl.when(pl.col("reason_mark").is_not_null())
        .then(pl.col("detail_mark"))
        .otherwise(pl.col("detail"))
        .alias("detail"),
    )


def _apply_decisions(
    review: pl.DataFrame, decisions: pl.DataFrame | None, path: str | Path
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, tuple[int, int]]:
    """(clerical links, pairs still awaiting a decision, rejects ``rejected_in_review``,
    (decisions applied, decisions on pairs not under review))."""
    verdicts = _check_decisions(decisions, path)
    pairs = review.join(verdicts, on=["record_id", "person_id"], how="left", maintain_order="left")
    matched = pairs.filter(pl.col("decision") == "match")
    twice = matched.filter(pl.col("record_id").is_duplicated())
    if twice.height:
        row = int(twice["_row"].max())  # type: ignore[arg-type]
        raise ColumnError("a reviewer matched one record to two persons",
                          path=path, column="decision", row=row)  # fmt: skip
    clerical = matched.select(
        "record_id", "person_id", method=pl.lit("clerical"),
        match_probability="match_probability", match_weight="match_weight",
    )  # fmt: skip
    open_pairs = pairs.join(matched, on="record_id", how="anti").filter(
        pl.col("decision").is_null()
    )
    decided = pairs.join(matched, on="record_id", how="anti").select("record_id").unique()
    refused = decided.join(open_pairs, on="record_id", how="anti").select(
        "record_id",
        reason=pl.lit("rejected_in_review"),
        detail=pl.lit("a reviewer decided every candidate is not a match"),
    )
    used = pairs["decision"].is_not_null().sum()
    waiting = open_pairs.select(review.columns)
    return clerical, waiting, refused, (int(used), verdicts.height - int(used))


def _check_decisions(decisions: pl.DataFrame | None, path: str | Path) -> pl.DataFrame:
    """The decisions as (record_id, person_id, decision, _row), checked: the columns there,
    each decision one of :data:`DECISIONS`, no pair decided both ways."""
    if decisions is None:
        return pl.DataFrame(schema={**DECISION_SCHEMA, "_row": pl.UInt32})
    for name in DECISION_SCHEMA:
        if name not in decisions.columns:
            raise ColumnError("missing in the decisions", path=path, column=name)
    frame = decisions.select(
        pl.col(n).cast(pl.String).str.strip_chars() for n in DECISION_SCHEMA
    ).with_row_index("_row", offset=1)
    frame = frame.with_columns(pl.col("decision").str.to_lowercase().str.replace("-", "_"))
    bad = frame.filter(~pl.col("decision").is_in(DECISIONS).fill_null(False))
    if bad.height:
        raise ColumnError(f"a decision must be one of {', '.join(DECISIONS)}",
                          path=path, column="decision", row=int(bad["_row"][0]))  # fmt: skip
    per_pair = frame.unique(["record_id", "person_id", "decision"], keep="last")
    both = per_pair.filter(pl.struct("record_id", "person_id").is_duplicated())
    if both.height:
        raise ColumnError("one pair is decided both as a match and as a non-match",
                          path=path, column="decision", row=int(both["_row"].max()))  # type: ignore[arg-type]  # fmt: skip
    return per_pair.sort("_row")


def _in_order(frame: pl.DataFrame, order: pl.DataFrame) -> pl.DataFrame:
    return frame.join(order, on="record_id", how="left").sort("_row").drop("_row")


def _counts(
    total: int, links: pl.DataFrame, rejects: pl.DataFrame, review: pl.DataFrame,
    applied: tuple[int, int],
) -> dict[str, int]:  # fmt: skip
    methods = dict(links.group_by("method").len().iter_rows())
    reasons = dict(rejects.group_by("reason").len().iter_rows())
    waiting = review["record_id"].n_unique() if review.height else 0
    counts = {
        "records": total, "linked": links.height, "rejected": rejects.height,
        "awaiting_review": waiting,
        **{m: int(methods.get(m, 0)) for m in METHODS},
        **{r: int(reasons.get(r, 0)) for r in REASONS if r != "awaiting_review"},
        "decisions_applied": applied[0], "decisions_unmatched": applied[1],
    }  # fmt: skip
    return counts


def _check(result: Resolution, ids: pl.Series, register: Register) -> None:
    """The invariants of the module docstring; a failure is a bug in a stage."""
    linked, rejected = result.links["record_id"], result.rejects["record_id"]
    waiting = result.review["record_id"].unique()
    every = pl.concat([linked, rejected, waiting.cast(pl.String)])
    problems = []
    if linked.is_duplicated().any():
        problems.append("a record links to more than one person")
    if every.len() != ids.len() or every.is_duplicated().any():
        problems.append(f"{every.len()} outcomes for {ids.len()} records")
    elif not every.is_in(ids.implode()).all():
        problems.append("an outcome for a record that was not given")
    unknown = result.links.join(register.persons, on="person_id", how="anti").height
    if unknown:
        problems.append(f"{unknown} links to persons not in the register")
    if set(result.rejects["reason"].unique()) - set(REASONS):
        problems.append("a reject reason outside the contract")
    counts = result.counts
    parts = counts["linked"] + counts["rejected"] + counts["awaiting_review"]
    if parts != counts["records"] or sum(counts[m] for m in METHODS) != counts["linked"]:
        problems.append("the counts do not add up")
    if problems:
        raise AssertionError("resolve broke its invariants: " + "; ".join(problems))
