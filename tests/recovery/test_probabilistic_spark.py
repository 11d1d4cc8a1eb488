"""The probabilistic stage on Spark (Splink's SparkAPI on the TTP's engine session, issue 17)
decides as on DuckDB: the same links, rejects and review pairs with the same digits, the same
m and u, and the same model and report.

The session's one local Spark is the ``spark`` fixture of tests/conftest.py.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

import koble.recovery.backends as backends
from koble.errors import KobleError
from koble.linkage.engine_spark import SparkEngine
from koble.recovery.contract import StageResult
from koble.recovery.model import ModelReport
from koble.recovery.probabilistic import probabilistic
from tests.recovery.test_probabilistic import THRESHOLDS, World

pytestmark = pytest.mark.slow

Run = tuple[StageResult, ModelReport]


@pytest.fixture(scope="module")
def w() -> World:
    return World()


@pytest.fixture(scope="module")
def runs(w: World, spark: SparkEngine) -> dict[str, Run]:
    """The same stage on each engine (u_max_pairs small enough that u is sampled); on
    Spark, what Splink's API was asked for counted (it ran there, not on DuckDB)."""
    asked: list[str] = []
    make = backends.SparkBackend.api

    def api(self: backends.SparkBackend) -> Any:
        made = make(self)
        asked.append(type(made).__mro__[1].__name__)
        return made

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backends.SparkBackend, "api", api)
        on_spark = probabilistic(
            w.records, w.register, training=w.training, thresholds=THRESHOLDS, seed=42,
            u_max_pairs=2e5, spark=spark.session,
        )  # fmt: skip
    assert asked and set(asked) == {"SparkAPI"}
    return {"duckdb": w.run(), "spark": on_spark}


def test_spark_links_rejects_and_reviews_as_duckdb_to_the_bit(runs: dict[str, Run]) -> None:
    (duck, _), (on_spark, _) = runs["duckdb"], runs["spark"]
    assert duck.linked.height >= 25
    for part in ("linked", "rejected", "review", "remaining"):
        assert getattr(on_spark, part).equals(getattr(duck, part)), part


def test_the_model_and_its_report_are_the_same(runs: dict[str, Run]) -> None:
    """m and u (u from the pairs DuckDB's hash samples), λ, the counts, the model's own
    precision and recall, and the model itself as recorded (its conditions as written, in
    DuckDB SQL: :func:`koble.recovery.model.as_written`): equal, JSON to the byte."""
    (_, duck), (_, on_spark) = runs["duckdb"], runs["spark"]
    assert on_spark.parameters == duck.parameters
    assert on_spark.to_json() == duck.to_json()


def test_the_stage_leaves_nothing_in_the_engine_session(
    runs: dict[str, Run],
    spark: SparkEngine,
) -> None:
    """Splink ran in a session of its own made from the engine's: no table or function of
    its in the engine's session, nothing of it left cached in Spark."""
    session = spark.session
    names = [t.name for t in session.catalog.listTables()]
    assert not [n for n in names if n.startswith(("__splink__", "koble_"))]
    assert not session.catalog.functionExists("koble_jaro_winkler")
    cache = session._jsparkSession.sharedState().cacheManager()  # every session's
    assert cache.isEmpty()


def test_a_failure_on_spark_never_quotes_values(
    w: World,
    spark: SparkEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Spark error inside the stage reaches the caller as a koble error without Spark's
    message (it may quote a name)."""

    def boom(*_: Any) -> pl.DataFrame:
        spark.session.sql("SELECT CAST('Sæther' AS INT)").collect()  # ANSI: an error
        raise AssertionError("unreachable")

    monkeypatch.setattr(backends.SparkBackend, "arrow", boom)
    with pytest.raises(KobleError, match="probabilistic model failed") as err:
        probabilistic(
            w.records, w.register, training=w.training, thresholds=THRESHOLDS, seed=42,
            u_max_pairs=2e5, spark=spark.session,
        )  # fmt: skip
    assert "Sæther" not in str(err.value) and err.value.__cause__ is None


def test_too_few_labels_train_by_em_on_spark_as_on_duckdb(w: World, spark: SparkEngine) -> None:
    """Fewer exact links than ``MIN_LABELS``: m by EM alone (tests/recovery/test_training.py),
    on Spark with the same EM sample, the same model and the same decisions as on DuckDB."""
    few = w.training.head(20)
    duck, duck_report = probabilistic(
        w.records, w.register, training=few, thresholds=THRESHOLDS, seed=42, u_max_pairs=2e5
    )
    on_spark, spark_report = probabilistic(
        w.records, w.register, training=few, thresholds=THRESHOLDS, seed=42, u_max_pairs=2e5,
        spark=spark.session,
    )  # fmt: skip
    assert duck_report.training == spark_report.training == "em"
    assert spark_report.n_training_pairs == 0
    for part in ("linked", "rejected", "review", "remaining"):
        assert getattr(on_spark, part).equals(getattr(duck, part)), part
    assert spark_report.to_json() == duck_report.to_json()
