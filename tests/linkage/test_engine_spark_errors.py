"""The Spark engine's failures are koble errors that quote no data; without pyspark, its
Connect client or Java the message says how to install them; engines share the one JVM,
which prints nothing and keeps no event log.

On the session's one local Spark (``spark`` in tests/linkage/conftest.py), as in
test_engine_spark.py.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from koble.errors import InputError, UsageError
from koble.linkage.engine import engine_named
from koble.linkage.engine_spark import SparkEngine


def test_runtime_errors_name_the_error_class_not_the_value(
    spark: SparkEngine, capfd: pytest.CaptureFixture[str]
) -> None:
    table = pa.table({"name": ["Kari Nordmann"], "fnr": ["15108695088"]})
    for column in ("name", "fnr"):
        with pytest.raises(InputError) as info:
            spark.query(f'SELECT CAST("{column}" AS INTEGER) AS n FROM t', {"t": table})
        assert "[CAST_INVALID_INPUT]" in str(info.value)
        assert "Kari" not in str(info.value) and "15108695088" not in str(info.value)
    out, err = capfd.readouterr()
    assert "Kari" not in out + err and "15108695088" not in out + err


@pytest.mark.parametrize(
    "words",
    ["TaskResultLost (result lost from block manager)", "java.lang.OutOfMemoryError: Java heap "
     "space", "bigger than spark.driver.maxResultSize (1024.0 MiB)"],
)  # fmt: skip
def test_a_jvm_short_of_memory_says_so_and_quotes_nothing(spark: SparkEngine, words: str) -> None:
    """How the x16 failure reached Python (an ArrowInvalid carrying the JVM's message)."""
    text = f"Unknown error: [CAST_INVALID_INPUT] The value '15108695088' ... {words}"
    with pytest.raises(UsageError) as info, spark._failures():
        raise pa.ArrowInvalid(text)
    message = str(info.value)
    assert message.startswith("Spark ran out of memory (")
    assert "spark.driver.memory" in message and "4g" in message
    assert "15108695088" not in message and "CAST_INVALID_INPUT" not in message


def test_without_pyspark_the_message_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [m for m in sys.modules if m == "pyspark" or m.startswith("pyspark.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "pyspark", None)
    for make in (SparkEngine, lambda: engine_named("spark")):
        with pytest.raises(UsageError, match=r"needs pyspark.*pip install 'koble\[spark\]'"):
            make()


def test_spark_connect_without_its_client_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "grpc", None)
    with pytest.raises(UsageError, match=r"pip install 'pyspark\[connect\]'"):
        SparkEngine(remote="sc://localhost:15002")


def test_without_java_the_message_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    with pytest.raises(UsageError) as info:
        SparkEngine()
    message = str(info.value)
    assert "needs Java 17 or newer" in message
    assert "apt-get install openjdk-17-jre-headless" in message


def test_engines_share_the_jvm_but_not_their_views(spark: SparkEngine, events: Path) -> None:
    other = engine_named("spark")
    try:
        assert isinstance(other, SparkEngine) and other.scratch == spark.scratch
        assert other.session is not spark.session
        with (
            spark.tables({"events": events}),
            pytest.raises(InputError, match="TABLE_OR_VIEW_NOT_FOUND"),
        ):
            other.query("SELECT * FROM events", {})
    finally:
        other.close()
    assert spark.scratch is not None and spark.scratch.is_dir()  # still in use
    assert spark.scratch.stat().st_mode & 0o077 == 0  # private to this user
    with pytest.raises(UsageError, match="one Spark JVM"):
        SparkEngine(master="local[1]")
    with pytest.raises(UsageError, match="not both"):
        SparkEngine(master="local[2]", remote="sc://localhost:15002")
    with pytest.raises(UsageError, match="only to --engine spark"):
        engine_named("duckdb", master="local[2]")


def test_the_jvm_prints_nothing_and_keeps_no_event_log(spark: SparkEngine) -> None:
    """Spark's console output (banner, log lines, progress bars) goes to /dev/null, its
    log level is OFF and there is no UI or event log: nothing a run does lands in a log."""
    context = spark.session.sparkContext
    proc = context._gateway.proc
    assert proc is not None
    for fd in (1, 2):
        assert os.readlink(f"/proc/{proc.pid}/fd/{fd}") == "/dev/null"
    conf = dict(context.getConf().getAll())
    assert conf["spark.eventLog.enabled"] == "false"
    assert conf["spark.ui.enabled"] == "false"
    assert conf["spark.local.dir"].startswith(str(spark.scratch))
    logger = context._jvm.org.apache.logging.log4j.LogManager.getRootLogger()
    assert str(logger.getLevel()) == "OFF"
