"""One Spark JVM per process, one driver memory (issue 17 leftovers): an engine asking for
another ``spark.driver.memory`` than the JVM koble started runs with is refused with both
sizes named, never run silently with the first one's heap
(:class:`koble.linkage.engine_spark_session.SharedContext`)."""

from __future__ import annotations

import pytest

from koble.errors import UsageError
from koble.linkage.engine import engine_named
from koble.linkage.engine_spark import SparkEngine
from koble.linkage.engine_spark_session import DRIVER_MEMORY, SharedContext
from koble.linkage.memory_size import spark_mebibytes, spark_memory


@pytest.mark.parametrize(
    ("size", "mebibytes"),
    [("4g", 4096), ("4GB", 4096), ("4096m", 4096), ("4096", 4096), ("1024k", 1),
     ("2t", 2 << 20), ("2097152b", 2), (" 512 m ", 512), ("4.5g", None), ("four", None)],
)  # fmt: skip
def test_spark_sizes_in_mebibytes(size: str, mebibytes: int | None) -> None:
    assert spark_mebibytes(size) == mebibytes


def test_a_limit_and_sparks_default_compare_as_sizes() -> None:
    assert spark_mebibytes(spark_memory("4GiB")) == spark_mebibytes("4g")
    assert spark_mebibytes(spark_memory("4GB")) != spark_mebibytes("4g")


@pytest.fixture
def running_jvm(monkeypatch: pytest.MonkeyPatch) -> None:
    """SharedContext as in a process whose koble-started JVM has a 1 GiB heap and no
    context open: no Java needed."""
    monkeypatch.setattr(SharedContext, "jvm_memory", "1024m")
    monkeypatch.setattr(SharedContext, "current", None)
    monkeypatch.setattr(SharedContext, "_jvm_running", classmethod(lambda cls: True))
    started: list[object] = []
    monkeypatch.setattr(SharedContext, "_start", lambda self, conf: started.append(conf))


@pytest.mark.usefixtures("running_jvm")
def test_another_driver_memory_is_refused_naming_both() -> None:
    with pytest.raises(UsageError) as info:
        SharedContext.acquire("local[2]", {DRIVER_MEMORY: "2048m"})
    message = str(info.value)
    assert "1024m" in message and "2048m" in message and "own process" in message
    assert SharedContext.current is None  # nothing started


@pytest.mark.usefixtures("running_jvm")
def test_the_same_size_however_written_or_none_asked_is_accepted() -> None:
    for conf in ({DRIVER_MEMORY: "1g"}, {DRIVER_MEMORY: "1024m"}, {}):
        shared = SharedContext.acquire("local[2]", conf)
        assert shared is SharedContext.current
    assert SharedContext.current is not None and SharedContext.current.users == 3
    SharedContext.current.remove_scratch()


def test_no_refusal_before_koble_started_a_jvm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SharedContext, "jvm_memory", "1024m")
    monkeypatch.setattr(SharedContext, "_jvm", None)  # that JVM is gone (or never was)
    SharedContext._check_memory("2048m")


def test_a_second_engine_asking_for_other_memory_is_refused(spark: SparkEngine) -> None:
    """With the session's Spark running, ``--memory-limit`` of another size is a usage
    error naming both sizes, and the running engine goes on; the same size is accepted."""
    running = SharedContext.jvm_memory
    assert running is not None
    mebibytes = spark_mebibytes(running)
    assert mebibytes is not None
    with pytest.raises(UsageError) as info:
        engine_named("spark", memory_limit=f"{mebibytes + 512}MiB")
    assert running in str(info.value) and f"{mebibytes + 512}m" in str(info.value)
    same = engine_named("spark", memory_limit=f"{mebibytes}MiB")
    try:
        assert same.query("SELECT 1 AS x", {}).to_pylist() == [{"x": 1}]
    finally:
        same.close()
    assert spark.query("SELECT 2 AS y", {}).to_pylist() == [{"y": 2}]
