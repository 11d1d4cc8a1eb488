"""The probabilistic stage on Spark Connect (``koble run --engine spark --spark-remote``):
Splink's SparkAPI on a Connect session decides as on DuckDB, pair for pair, and leaves
nothing in the engine's session.

Splink 5 runs on Spark Connect as it is: its SparkAPI takes any ``SparkSession`` and, with
``break_lineage_method="persist"`` (koble's), needs no JVM handle (only its ``checkpoint``
and ``parquet`` methods reach for the SparkContext). ``newSession`` on Connect (pyspark 4)
is a new server session on the same connection, so Splink's views and koble's functions stay
out of the engine's session as on classic Spark.

The server is the ``spark_connect`` fixture of tests/conftest.py (tests/spark_connect.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from koble.linkage.engine_spark import SparkEngine
from koble.recovery.contract import StageResult
from koble.recovery.model import ModelReport
from koble.recovery.probabilistic import probabilistic
from tests.recovery.test_probabilistic import THRESHOLDS, World

pytestmark = pytest.mark.slow

Run = tuple[StageResult, ModelReport]


@pytest.fixture(autouse=True)
def connect_mode(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """pyspark's own marker of a Connect process, for these tests only (tests/conftest.py)."""
    monkeypatch.setenv("SPARK_CONNECT_MODE_ENABLED", "1")
    yield


@pytest.fixture(scope="module")
def runs(spark_connect: SparkEngine) -> dict[str, Run]:
    w = World()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPARK_CONNECT_MODE_ENABLED", "1")
        on_connect = probabilistic(
            w.records, w.register, training=w.training, thresholds=THRESHOLDS, seed=42,
            u_max_pairs=2e5, spark=spark_connect.session,
        )  # fmt: skip
    return {"duckdb": w.run(), "connect": on_connect}


def test_the_engine_is_a_spark_connect_session(spark_connect: SparkEngine) -> None:
    assert type(spark_connect.session).__module__.startswith("pyspark.sql.connect")
    assert spark_connect.scratch is None


def test_on_spark_connect_the_stage_decides_as_on_duckdb(runs: dict[str, Run]) -> None:
    (duck, duck_report), (on_connect, connect_report) = runs["duckdb"], runs["connect"]
    assert duck.linked.height >= 25
    for part in ("linked", "rejected", "review", "remaining"):
        assert getattr(on_connect, part).equals(getattr(duck, part)), part
    assert connect_report.to_json() == duck_report.to_json()


def test_the_stage_leaves_nothing_in_the_connect_session(
    runs: dict[str, Run], spark_connect: SparkEngine
) -> None:
    session = spark_connect.session
    names = [t.name for t in session.catalog.listTables()]
    assert not [n for n in names if n.startswith(("__splink__", "koble_"))]
    assert not session.catalog.functionExists("koble_jaro_winkler")
