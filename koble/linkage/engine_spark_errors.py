"""Spark's failures as koble errors that quote no data, and PySpark's loggers silenced.

The JVM's console output and logs go nowhere (:mod:`koble.linkage.engine_spark_session`)
and PySpark's error loggers are off (:func:`silence_python_loggers`): errors reach the caller
as koble errors (:func:`failures`), an analysis error with its first line (it names columns),
a runtime error with Spark's error class only (its message may quote a value), a JVM short
of memory as a usage error saying which setting gives it more.

Split from :mod:`koble.linkage.engine_spark`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import pyarrow as pa

from koble.errors import InputError, UsageError
from koble.linkage.engine_spark_session import LOCAL_DRIVER_MEMORY, pyspark_module

__all__ = ["OUT_OF_MEMORY", "failures", "reason", "silence_python_loggers", "spark_errors"]

#: Spark's own words, never data, for a JVM short of memory: a heap exhausted, a task's
#: result lost from the driver's block manager, or results over the driver's limit.
OUT_OF_MEMORY = ("java.lang.OutOfMemoryError", "TaskResultLost", "spark.driver.maxResultSize")
_CONDITION = re.compile(r"\[([A-Z][A-Z0-9_]*(?:\.[A-Z0-9_]+)*)\]")


def spark_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a Spark call may raise: PySpark's, Py4J's and Arrow's."""
    errors = pyspark_module("pyspark.errors")
    py4j = pyspark_module("py4j.protocol")
    return (errors.PySparkException, py4j.Py4JError, pa.ArrowException)


def silence_python_loggers() -> None:
    """PySpark logs every failed query's message, which may quote a value, to stderr."""
    logger = pyspark_module("pyspark.logger").PySparkLogger
    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        logger.getLogger(name).disabled = True


@contextlib.contextmanager
def failures(errors: tuple[type[BaseException], ...]) -> Iterator[None]:
    """``errors`` (:func:`spark_errors`) raised inside as an :class:`InputError` of one
    redacted line, a JVM short of memory as a :class:`UsageError` naming the setting
    (Spark's own words for it, never its message)."""
    try:
        yield
    except errors as exc:
        short = next((m for m in OUT_OF_MEMORY if m in str(exc)), None)
        if short is not None:
            more = "a higher spark.driver.maxResultSize or " if "maxResult" in short else ""
            raise UsageError(
                f"Spark ran out of memory ({short}; Spark's message is not shown: it may "
                f"quote the data): give it {more}more with the Spark setting "
                "spark.driver.memory (local mode runs every task in the driver; koble "
                f"gives it {LOCAL_DRIVER_MEMORY} unless the engine's conf says otherwise), "
                "or run the job on DuckDB"
            ) from None
        raise InputError(f"Spark could not run the query: {reason(exc)}") from None


def reason(exc: BaseException) -> str:
    """The part of a Spark failure that is safe to show: a koble error raised in a Python
    worker; the first line of an analysis error (it names columns and tables, from the SQL);
    else only Spark's error class, since a runtime error's message may quote a value."""
    text = str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("koble.errors."):
            return line.removeprefix("koble.errors.")
    if isinstance(exc, pyspark_module("pyspark.errors").AnalysisException) and lines:
        return lines[0]
    found = _CONDITION.search(text)
    if found:
        return f"[{found.group(1)}] (Spark's message is not shown: it may quote the data)"
    return f"{type(exc).__name__} (Spark's message is not shown: it may quote the data)"
