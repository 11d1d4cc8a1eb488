"""The operator's population work on the engine (issue 17, §2): duplicates, rejects, counts
and the key list as engine queries (:mod:`koble.linkage.key_list`), the same rows as the
eager Polars they replace, and the same bytes on DuckDB and Spark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.linkage import key_list
from koble.linkage.engine import DuckDBEngine, Engine
from koble.linkage.key_list import DUPLICATE, Population, write_key_list
from koble.linkage.plan import FNR, SERIAL
from koble.pseudonym.identity import IdentityHistory
from koble.pseudonym.insecure_cleartext import keyset_from_key
from koble.pseudonym.serials import assign_serials
from koble.registries.identifiers.check import reject_messages, rejects_table
from koble.registries.identifiers.column import validate_column

MESSAGES = reject_messages({DUPLICATE: "kept once", "ambiguous_identity": "ambiguous"})


def _valid(n: int, date: str) -> list[str]:
    """``n`` valid fødselsnumre born on ``date`` (DDMMYY)."""
    candidates = pl.Series([f"{date}{i:05d}" for i in range(100_000)])
    checked = validate_column(candidates, scheme="fnr")
    found = candidates.filter(checked["reason"].is_null()).to_list()
    assert len(found) >= n
    return found[:n]


#: Valid identifiers the populations draw from.
POOL = _valid(800, "010180")


def _population(seed: int, n: int) -> tuple[pl.DataFrame, pl.Series, pl.Series, pl.Series]:
    """A population frame, its compact ids (few distinct: many duplicates), reasons (some
    rows invalid or ambiguous) and dropped-leading-zero marks."""
    rng = np.random.default_rng(seed)
    ids = pl.Series(rng.choice(POOL[: max(n // 3, 1)], n))
    reasons = rng.choice(["", "", "", "wrong_length", "check_digit", "ambiguous_identity"], n)
    reason = pl.Series("reason", reasons).replace("", None)
    zero = pl.Series(rng.random(n) < 0.1) & (reason == "wrong_length").fill_null(False)
    frame = pl.DataFrame({"person_id": ids, "age": rng.integers(0, 100, n).astype(np.int16)})
    return frame, ids, reason, zero


def _expected(
    frame: pl.DataFrame, compact: pl.Series, reason: pl.Series, zero: pl.Series
) -> tuple[pl.Series, pl.DataFrame]:
    """What the operator's step computed in eager Polars before the engine did it."""
    repeated = (
        pl.DataFrame({"c": compact.cast(pl.Int64, strict=False), "ok": reason.is_null()})
        .select(pl.col("ok") & ~pl.struct("c", "ok").is_first_distinct())
        .to_series()
    )
    reason = pl.select(pl.when(repeated).then(pl.lit(DUPLICATE)).otherwise(reason)).to_series()
    rejects = rejects_table(frame, reason, MESSAGES, dropped_zero=zero)
    return compact.filter(reason.is_null()).alias(FNR), rejects


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 300))
def test_duplicates_and_rejects_are_the_eager_ones(
    seed: int, n: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    engine = DuckDBEngine(threads=1)
    try:
        frame, compact, reason, zero = _population(seed, n)
        persons_expected, rejects_expected = _expected(frame, compact, reason, zero)
        population = Population(engine, compact, reason, zero)
        assert population.persons().equals(persons_expected)
        out = tmp_path_factory.mktemp("rejects") / "rejects.parquet"
        rows = population.write_rejects(frame, MESSAGES, out)
        got = pl.read_parquet(out)
        assert rows == got.height == rejects_expected.height
        assert got.equals(rejects_expected)
        counts = rejects_expected["reason"].value_counts()
        assert population.counts == dict(
            sorted(zip(counts["reason"], counts["count"], strict=True))
        )
    finally:
        engine.close()


def _history(seed: int, persons: pl.Series) -> IdentityHistory:
    """Old identifiers for some persons, a chain among them, and one for nobody sent."""
    rng = np.random.default_rng(seed)
    some = persons.sample(min(len(persons), 40), seed=seed).to_list()
    old = _valid(len(some) + 3, "020290")
    rows = list(zip(old[: len(some)], some, strict=True))
    rows += [(old[-3], old[0]), (old[-2], old[-1])]  # a chain; a stranger
    frame = pl.DataFrame(rows, schema=["old_id", "current_id"], orient="row")
    return IdentityHistory.from_frame(
        frame.sample(fraction=1.0, shuffle=True, seed=int(rng.integers(99)))
    )


def test_the_key_list_is_the_eager_one(duck: DuckDBEngine, tmp_path: Path) -> None:
    """The key list: the persons in population order with the keyed løpenummer, then their
    older identifiers (a chain followed) by løpenummer and identifier; as before."""
    keyset = keyset_from_key(bytes(range(32)))
    persons = pl.Series(FNR, POOL[:500])
    numbered = assign_serials(keyset, "p1", persons, checked=True).rename({"lopenummer": SERIAL})
    history = _history(3, persons)
    out = tmp_path / "keys.parquet"
    rows = write_key_list(duck, numbered, history, out)
    keys = numbered.with_columns(pl.lit(True).alias("current"))
    aliases = history.aliases(keys[FNR]).join(
        keys.select(pl.col(FNR).alias("current"), SERIAL), on="current"
    )
    old = aliases.select(pl.col("old").alias(FNR), SERIAL, pl.lit(False).alias("current"))
    expected = pl.concat([keys, old.sort(SERIAL, FNR)])
    got = pl.read_parquet(out)
    assert rows == got.height == 500 + 41
    assert got.equals(expected)
    assert write_key_list(duck, numbered, None, out) == 500
    assert pl.read_parquet(out).equals(keys)


def _files(engine: Engine, tmp: Path) -> dict[str, bytes]:
    frame, compact, reason, zero = _population(5, 2_000)
    population = Population(engine, compact, reason, zero)
    persons = population.persons()
    population.write_rejects(frame, MESSAGES, tmp / "rejects.parquet")
    numbered = assign_serials(keyset_from_key(bytes(32)), "p", persons, checked=True)
    numbered = numbered.rename({"lopenummer": SERIAL})
    write_key_list(engine, numbered, _history(1, persons), tmp / "keys.parquet")
    assert pq.ParquetFile(tmp / "keys.parquet").metadata.num_rows > persons.len()
    return {p.name: p.read_bytes() for p in sorted(tmp.iterdir())}


@pytest.mark.slow
def test_duckdb_and_spark_write_the_same_bytes(
    spark: Engine, duck: DuckDBEngine, tmp_path: Path
) -> None:
    (tmp_path / "duckdb").mkdir()
    (tmp_path / "spark").mkdir()
    assert _files(spark, tmp_path / "spark") == _files(duck, tmp_path / "duckdb")


def test_rejects_keep_the_population_columns_types(tmp_path: Path) -> None:
    """A reject's own columns are the population's as read: a time zone stays (an engine
    would give UTC), a category stays a category."""
    frame, compact, reason, zero = _population(7, 200)
    frame = frame.with_columns(
        pl.datetime_range(
            pl.datetime(2020, 1, 1), pl.datetime(2020, 1, 1) + pl.duration(hours=199), "1h",
            time_zone="Europe/Oslo", eager=True,
        ).alias("seen"),
        pl.Series("kommune", ["0301", "4601"] * 100, dtype=pl.Categorical),
    )  # fmt: skip
    engine = DuckDBEngine(threads=1)
    try:
        population = Population(engine, compact, reason, zero)
        population.persons()
        out = tmp_path / "rejects.parquet"
        population.write_rejects(frame, MESSAGES, out)
    finally:
        engine.close()
    got = pl.read_parquet(out)
    assert got.height > 0
    assert got.schema["seen"] == pl.Datetime("us", "Europe/Oslo")
    assert got.schema["kommune"] == pl.Categorical
    wanted = frame.with_row_index("row", offset=1).filter(population.reason.is_not_null())
    assert got.select(frame.columns).equals(wanted.select(frame.columns))


def test_rejects_written_a_slice_at_a_time_are_the_whole_ones(
    duck: DuckDBEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A population larger than a slice (here 7 rows) is written slice by slice: the same
    file as in one slice, rows numbered as in the whole population."""
    frame, compact, reason, zero = _population(11, 100)
    files = {}
    for rows in (7, 1_000_000):
        monkeypatch.setattr(key_list, "ROW_GROUP_ROWS", rows)
        population = Population(duck, compact, reason, zero)
        population.persons()
        files[rows] = tmp_path / f"{rows}.parquet"
        assert population.write_rejects(frame, MESSAGES, files[rows]) > 7
    assert files[7].read_bytes() == files[1_000_000].read_bytes()
    got = pl.read_parquet(files[7])
    assert got["row"].to_list() == [i + 1 for i, r in enumerate(population.reason) if r]
    assert pq.read_schema(files[7]).field("row").type == pa.uint32()


def test_a_reason_without_a_message_is_a_bug_named_by_code(
    duck: DuckDBEngine, tmp_path: Path
) -> None:
    frame, compact, reason, zero = _population(2, 50)
    population = Population(duck, compact, reason, zero)
    population.persons()
    messages = {k: v for k, v in MESSAGES.items() if k != "check_digit"}
    with pytest.raises(RuntimeError, match=r"without a message: \['check_digit'\]"):
        population.write_rejects(frame, messages, tmp_path / "rejects.parquet")
