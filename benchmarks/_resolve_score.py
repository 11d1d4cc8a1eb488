"""Links scored against the truth, for ``bench_resolve.py``: precision, recall and F1 of a
set of record-to-person links, and of a deduplication's links closed into clusters and
scored as pairs."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl


@dataclasses.dataclass(frozen=True)
class Score:
    """Links scored against the truth."""

    links: int
    true_links: int
    false_links: int
    missed: int
    precision: float
    recall: float
    f1: float


def score(links: pl.DataFrame, truth: pl.DataFrame, total: int | None = None) -> Score:
    """``links`` (``record_id``, ``person_id``; a record may have several) against ``truth``
    (one true ``person_id`` per record). ``total``: the true links to find (default: all)."""
    pairs = links.select("record_id", "person_id").unique()
    checked = pairs.join(truth.rename({"person_id": "_true"}), on="record_id", how="left")
    right = int((checked["person_id"] == checked["_true"]).fill_null(False).sum())
    wanted = truth.height if total is None else total
    return _score(pairs.height, right, wanted)


def _score(found: int, right: int, wanted: int) -> Score:
    precision = right / found if found else 1.0
    recall = right / wanted if wanted else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Score(found, right, found - right, wanted - right, precision, recall, f1)


def pair_score(links: pl.DataFrame, true_pairs: pl.DataFrame) -> Score:
    """Deduplication as pairs: each person with the records linked to it is a cluster; every
    two members of a cluster are a found pair, scored against ``true_pairs`` (``a`` < ``b``)."""
    import polars as pl

    clusters = pl.concat(
        [links.select("record_id", "person_id"),
         links.select(pl.col("person_id").alias("record_id"), "person_id")]
    ).unique()  # fmt: skip
    found = (
        clusters.join(clusters, on="person_id", suffix="_b")
        .filter(pl.col("record_id") < pl.col("record_id_b"))
        .select(pl.col("record_id").alias("a"), pl.col("record_id_b").alias("b"))
        .unique()
    )
    right = found.join(true_pairs, on=["a", "b"]).height
    return _score(found.height, right, true_pairs.height)
