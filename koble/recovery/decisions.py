"""Reading a reviewer's decisions on the clerical review pairs back into the pipeline.

A decisions file is CSV (any of koble's separators) or Parquet with the columns
``record_id``, ``person_id``, ``decision`` and ``reviewer``; other columns are ignored, so
the review CSV itself (:mod:`koble.recovery.review`), with its ``decision`` and ``reviewer``
columns filled in, is a decisions file. ``decision`` is ``match`` or ``non-match``
(``non_match`` too, any case); a row whose decision is left blank is a pair not decided yet
and stays under review.

Everything is checked before a decision is used, and the first problem is reported with
file, column and 1-based data row, never with a value (the row may hold a name or a
number): a missing column, a decided row without record, person or reviewer, a decision
that is neither word, a reviewer that is not a user id (it goes into the audit log: 1-64
letters, digits, ``.``, ``_``, ``-``, ``@``; not a date, a person number, or any name, name
part or date of the file's other cells or of the records), one pair decided both ways,
one record matched to two persons, and (:meth:`Decisions.check_pairs`) a decision on a pair
that is not a candidate pair of the review. The ``'`` the review CSV
puts before a cell starting with = + - @ (against formula injection) is taken off
``record_id``, ``person_id`` and ``reviewer`` again, so they round-trip.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from koble.digests import sha256_file
from koble.errors import ColumnError, UsageError
from koble.recovery.contract import StageResult
from koble.registries.identifiers.scan import contains_person_number
from koble.tables import read_table

__all__ = ["DECISION_COLUMNS", "CheckedStage", "Decisions", "read_decisions"]

#: the columns a decisions file must have
DECISION_COLUMNS = ("record_id", "person_id", "decision", "reviewer")
#: a reviewer is audited by this: a user id, never a name with a space or a birth date
_USER_ID = r"^[\p{L}0-9._@-]{1,64}$"
_DATE_LIKE = r"^[0-9]{1,4}[-./][0-9]{1,2}[-./][0-9]{1,4}$"
_SEPARATORS = r"[\s/,;:-]+"
#: the key columns whose review-CSV prefix ``'`` is taken off again
_PREFIXED = ("record_id", "person_id", "reviewer")
_WORDS = {"match": "match", "non-match": "non_match", "non_match": "non_match"}
_ROWS = pl.Schema({
    "record_id": pl.String, "person_id": pl.String, "decision": pl.String,
    "reviewer": pl.String, "row": pl.UInt32,
})  # fmt: skip


@dataclasses.dataclass(frozen=True, repr=False)
class Decisions:
    """The decided rows of a decisions file, checked.

    ``table``: ``record_id``, ``person_id``, ``decision`` (``match``/``non_match``),
    ``reviewer`` and ``row`` (the 1-based data row in the file), one row per decided pair,
    in file order. ``undecided``: rows left blank. ``sha256``: the file's hash (audit).
    """

    table: pl.DataFrame
    path: Path
    sha256: str
    undecided: int

    def __repr__(self) -> str:  # never a record, a person or a reviewer's name
        return f"Decisions({str(self.path)!r}, {self.table.height} decided)"

    def for_resolve(self) -> pl.DataFrame:
        """What :func:`koble.recovery.resolve.resolve` takes as ``decisions``."""
        return self.table.select("record_id", "person_id", "decision", "reviewer")

    def counts(self) -> dict[str, int]:
        """``decisions``, ``match``, ``non_match`` and ``undecided``."""
        matches = int((self.table["decision"] == "match").sum())
        return {"decisions": self.table.height, "match": matches,
                "non_match": self.table.height - matches, "undecided": self.undecided}  # fmt: skip

    def by_reviewer(self) -> pl.DataFrame:
        """``reviewer``, ``match``, ``non_match``: how many of each kind, per reviewer, sorted."""
        return (
            self.table.group_by("reviewer")
            .agg(
                (pl.col("decision") == "match").sum().cast(pl.Int64).alias("match"),
                (pl.col("decision") == "non_match").sum().cast(pl.Int64).alias("non_match"),
            )
            .sort("reviewer")
        )

    def check_pairs(self, review: pl.DataFrame) -> None:
        """Refuse a decision on a pair that is not among ``review``'s (``record_id``,
        ``person_id``) pairs: it was decided on another run's review, or mistyped."""
        pairs = review.select(
            pl.col("record_id").cast(pl.String), pl.col("person_id").cast(pl.String)
        )
        unknown = self.table.join(pairs, on=["record_id", "person_id"], how="anti")
        if not unknown.height:
            return
        first = unknown.sort("row").row(0, named=True)
        known_record = first["record_id"] in set(pairs["record_id"].unique().to_list())
        column = "person_id" if known_record else "record_id"
        what = (
            "this person is not a candidate for the record"
            if known_record
            else ("this record has no pair under review")
        )
        raise ColumnError(
            f"a decision on a pair that is not in the review: {what} "
            f"({unknown.height} such row(s), the first here); decide only pairs of the "
            "review file this run writes",
            path=self.path, column=column, row=int(first["row"]),
        )  # fmt: skip


class CheckedStage:
    """The probabilistic stage (:func:`koble.recovery.probabilistic.probabilistic`, or
    ``stage``) with ``decisions`` checked against the pairs it sends to review, before
    :func:`~koble.recovery.resolve.resolve` applies them: a decision on any other pair is
    refused (:meth:`Decisions.check_pairs`). Call :meth:`finish` after ``resolve``: when the
    stage never ran (every record resolved before it), no pair was under review at all."""

    def __init__(self, decisions: Decisions | None, stage: Any = None) -> None:
        self._decisions = decisions
        self._stage = stage
        self.ran = False

    def __call__(
        self,
        records: pl.DataFrame,
        register: Any,
        *,
        training: pl.DataFrame,
        thresholds: tuple[float, float],
        seed: int,
        **options: Any,
    ) -> tuple[StageResult, object]:
        stage = self._stage
        if stage is None:
            from koble.recovery.probabilistic import probabilistic as stage  # Splink: lazily
        result, report = stage(  # options: extra comparison fields (resolve's compare=)
            records, register, training=training, thresholds=thresholds, seed=seed, **options
        )
        self.ran = True
        if self._decisions is not None:
            self._decisions.check_pairs(result.review)
        return result, report

    def finish(self) -> None:
        """Refuse the decisions if the stage never ran: they decide pairs no review holds."""
        if self._decisions is not None and not self.ran:
            self._decisions.check_pairs(
                pl.DataFrame(schema={"record_id": pl.String, "person_id": pl.String})
            )


def read_decisions(
    path: str | Path, *, encoding: str = "utf-8", known: Sequence[pl.Series] = ()
) -> Decisions:
    """The decisions in the CSV or Parquet file ``path``, checked (see the module docstring).

    ``known``: columns of names and dates (e.g. the records') no reviewer may equal, beyond
    every other cell of the decisions file itself."""
    path = Path(path)
    frame = read_table(path, encoding=encoding)
    for name in DECISION_COLUMNS:
        if name not in frame.columns:
            raise ColumnError(
                f"missing; a decisions file needs {', '.join(DECISION_COLUMNS)} "
                "(the review CSV has them all)",
                path=path, column=name,
            )  # fmt: skip
    rows = frame.select(_text(name) for name in DECISION_COLUMNS).with_row_index("row", offset=1)
    rows = rows.with_columns(_unprefixed(pl.col(name)) for name in _PREFIXED)
    decided = rows.filter(pl.col("decision").is_not_null())
    undecided = rows.height - decided.height
    for name in ("record_id", "person_id", "reviewer"):
        _first_bad(decided, pl.col(name).is_null(), f"a decided pair needs its {name}", path, name)
    word = pl.col("decision").str.to_lowercase().str.replace_all(r"\s+", "")
    decided = decided.with_columns(
        word.replace_strict(_WORDS, default=None, return_dtype=pl.String).alias("decision")
    )
    _first_bad(decided, pl.col("decision").is_null(),
               "a decision must be match or non-match (or blank: not decided yet)",
               path, "decision")  # fmt: skip
    _check_reviewers(decided, frame, known, path)
    table = decided.select(_ROWS.names()).cast(dict(_ROWS))  # type: ignore[arg-type]
    table = table.unique(["record_id", "person_id", "decision"], keep="first", maintain_order=True)
    both = pl.int_range(pl.len()).over("record_id", "person_id") > 0
    message = "one pair is decided both as a match and as a non-match"
    _first_bad(table, both, message, path, "decision")
    matched = pl.col("decision") == "match"
    again = pl.int_range(pl.len()).over("record_id", "decision") > 0
    _first_bad(table, matched & again, "one record is matched to two persons; a record is one "
               "person at most", path, "decision")  # fmt: skip
    if table.height == 0:
        raise UsageError(
            "the decisions file decides no pair: write match or non-match in the decision "
            "column (and who decided in reviewer)",
            path=path,
        )
    return Decisions(table, path, sha256_file(path), undecided)


def _unprefixed(text: pl.Expr) -> pl.Expr:
    """``text`` without the ``'`` the review CSV puts before a cell starting with = + - @
    TAB, CR or ``'`` (against formula injection, :func:`koble.recovery.review.csv_safe`)."""
    return text.str.replace(r"^'([=+\-@\t\r'])", "$1")


def _check_reviewers(
    decided: pl.DataFrame, frame: pl.DataFrame, known: Sequence[pl.Series], path: Path
) -> None:
    """Refuse a reviewer that is not a user id (it goes into the audit log): one of 1-64
    letters, digits, ``.``, ``_``, ``-``, ``@``, not written as a date or holding a person
    number, and not equal (in any case) to a name, name part or date in any other cell of
    the decisions file or in ``known``. A spreadsheet's shifted column puts a name or a
    birth date there; the error names file, column and row, never the value."""
    reviewer = pl.col("reviewer")
    reviewers = decided["reviewer"].drop_nulls().unique().to_list()  # a handful of people
    numbered = [r for r in reviewers if contains_person_number(r)]
    message = "a reviewer must not hold a person number (it is audited)"
    _first_bad(decided, reviewer.is_in(numbered), message, path, "reviewer")
    _first_bad(decided, ~reviewer.str.contains(_USER_ID) | reviewer.str.contains(_DATE_LIKE),
               "a reviewer must be a user id: 1-64 letters, digits, '.', '_', '-' or '@', "
               "no spaces, not a date (it is audited)", path, "reviewer")  # fmt: skip
    lowered = [r.lower() for r in reviewers]
    others = [frame[c] for c in frame.columns if c not in DECISION_COLUMNS]
    hits: set[str] = set()
    for column in [*others, *known]:  # a few columns, each a whole-column operation
        text = column.cast(pl.String).str.strip_chars().str.to_lowercase()
        parts = text.str.replace_all(_SEPARATORS, " ").str.split(" ")
        found = pl.concat([text, parts.explode()]).drop_nulls()
        hits.update(found.filter(found.is_in(lowered)).unique().to_list())
    message = ("a reviewer must be a user id, not a name, name part or date of the review "
               "(it is audited; a shifted spreadsheet column puts one there)")  # fmt: skip
    _first_bad(decided, reviewer.str.to_lowercase().is_in(sorted(hits)), message, path,
               "reviewer")  # fmt: skip


def _text(name: str) -> pl.Expr:
    """A column as stripped text, blank as null."""
    text = pl.col(name).cast(pl.String).str.strip_chars()
    return pl.when(text.str.len_bytes() > 0).then(text).otherwise(None).alias(name)


def _first_bad(frame: pl.DataFrame, bad: pl.Expr, message: str, path: Path,
               column: str) -> None:  # fmt: skip
    """Raise at the first row (by its ``row`` number) where ``bad`` holds."""
    flagged = frame.filter(bad.fill_null(False))
    if flagged.height:
        row = int(flagged["row"].min())  # type: ignore[arg-type]
        raise ColumnError(f"{message} ({flagged.height} row(s), the first here)",
                          path=path, column=column, row=row)  # fmt: skip
