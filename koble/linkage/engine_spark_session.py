"""The process's one Spark JVM and the settings of every Spark session koble opens.

In one Python process there is one Spark JVM: local-mode engines share one SparkContext
(:class:`SharedContext`, started by the first engine, stopped with its private scratch
directory when the last closes) and each engine has its own ``SparkSession`` (its own
temporary views and SQL settings). A party that must not share a JVM with another runs in
its own process, cluster or Spark Connect session. What is fixed when the JVM starts is
fixed for the process: the master, and the driver's memory (``spark.driver.memory``, the
JVM's heap; :func:`~koble.linkage.engine.engine_named`'s ``memory_limit``). An engine
asking for another is refused with both named, never run silently with the first one's.

Split from :mod:`koble.linkage.engine_spark`, which re-exports what callers use.
"""

from __future__ import annotations

import atexit
import importlib
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from subprocess import DEVNULL
from typing import Any, ClassVar

from koble.errors import UsageError
from koble.linkage.memory_size import spark_mebibytes

__all__ = [
    "CLASSIC_CONF",
    "DRIVER_MEMORY",
    "LOCAL_DRIVER_MEMORY",
    "LOCAL_MASTER",
    "SESSION_CONF",
    "SharedContext",
    "java_executable",
    "pyspark_module",
]

LOCAL_MASTER = "local[2]"
INSTALL_PYSPARK = "pip install 'koble[spark]'"
INSTALL_JAVA = "apt-get install openjdk-17-jre-headless"

#: The JVM heap of local mode (every task runs in the driver), unless the conf says otherwise.
LOCAL_DRIVER_MEMORY = "4g"

#: Settings every session gets (see the module docstring for why).
SESSION_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.ansi.enabled": "true",
    "spark.sql.ansi.doubleQuotedIdentifiers": "true",
}
#: And a classic (not Spark Connect) session: Arrow between Python and the JVM, always;
#: timestamps written to Parquet as Arrow reads them (not INT96) for :meth:`SparkEngine.stream`.
CLASSIC_CONF = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}

#: The setting of the driver's memory: the JVM's heap, fixed when the JVM starts.
DRIVER_MEMORY = "spark.driver.memory"
#: Spark's own default for it, when neither koble nor the conf sets it (a cluster's driver).
SPARK_DRIVER_MEMORY = "1g"


def pyspark_module(name: str = "pyspark.sql") -> Any:
    """``pyspark`` (or one of its modules), imported now; a usage error when absent."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise UsageError(
            f"the Spark engine needs pyspark, which is not installed: {INSTALL_PYSPARK}"
        ) from None


def java_executable() -> Path:
    """The ``java`` Spark will start: ``$JAVA_HOME/bin/java``, else the first on ``PATH``."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return Path(home) / "bin" / "java"
    found = shutil.which("java")
    if found is None:
        raise UsageError(
            "the Spark engine needs Java 17 or newer, and no `java` was found on PATH or in "
            f"JAVA_HOME: install it (Debian/Ubuntu: `{INSTALL_JAVA}`; elsewhere any OpenJDK "
            "17+) or set JAVA_HOME to an installed JDK"
        )
    return Path(found)


class SharedContext:
    """The process's one SparkContext, its private scratch directory, and who uses it.

    :attr:`jvm_memory` is the driver memory of the JVM koble started in this process (None
    before it starts one): the JVM outlives a stopped context, and a later context in it
    runs with that heap whatever its own conf says, so an engine asking for another size
    is refused (:meth:`acquire`).
    """

    lock = threading.Lock()
    current: SharedContext | None = None
    jvm_memory: ClassVar[str | None] = None
    _jvm: ClassVar[Any] = None

    def __init__(self, master: str, conf: Mapping[str, str]) -> None:
        self.master = master
        self.users = 0
        self.root = Path(tempfile.mkdtemp(prefix="koble-spark-"))
        try:
            self.session = self._start(conf)
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        # spill files hold person data: gone at exit even if an engine was never closed
        atexit.register(self.remove_scratch)

    def _start(self, extra: Mapping[str, str]) -> Any:
        sql, core = pyspark_module(), pyspark_module("pyspark")
        conf = core.SparkConf().setMaster(self.master).setAppName("koble")
        settings = {
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.eventLog.enabled": "false",
            "spark.local.dir": str(self.root / "local"),
            "spark.sql.warehouse.dir": str(self.root / "warehouse"),
            **SESSION_CONF,
            **CLASSIC_CONF,
            **extra,
        }
        if self.master.startswith("local") and "spark.sql.shuffle.partitions" not in extra:
            # one machine: 8 shuffle partitions, not 200 (a fifth faster at 1 M rows, and
            # small queries run in half the time); a cluster keeps Spark's default
            settings["spark.sql.shuffle.partitions"] = "8"
        if self.master.startswith("local") and DRIVER_MEMORY not in extra:
            # local mode runs every task in the driver's JVM, whose default heap (1 GB) is
            # too small for a national registry's sorted extract
            settings[DRIVER_MEMORY] = LOCAL_DRIVER_MEMORY
        for key, value in settings.items():
            conf.set(key, value)
        gateway = None
        if core.SparkContext._gateway is None:  # the JVM, started once, silent on the console
            launch = pyspark_module("pyspark.java_gateway").launch_gateway
            try:
                gateway = launch(conf, popen_kwargs={"stdout": DEVNULL, "stderr": DEVNULL})
            except pyspark_module("pyspark.errors").PySparkRuntimeError:
                raise UsageError(
                    f"the Spark JVM did not start with {java_executable()}: Spark 4 needs Java "
                    f"17 or newer (`java -version`; Debian/Ubuntu: `{INSTALL_JAVA}`)"
                ) from None
            SharedContext._jvm = gateway
            SharedContext.jvm_memory = settings.get(DRIVER_MEMORY, SPARK_DRIVER_MEMORY)
        context = core.SparkContext(conf=conf, gateway=gateway)
        context.setLogLevel("OFF")  # logs may quote data; errors reach Python as exceptions
        if self.master.startswith("local") and "PYSPARK_PYTHON" not in os.environ:
            context.pythonExec = sys.executable  # local workers: this Python, with koble
        return sql.SparkSession(context)

    @classmethod
    def acquire(cls, master: str, conf: Mapping[str, str]) -> SharedContext:
        """The process's context, started now with ``conf`` if none runs; refused when the
        one running cannot be what is asked (another master, another driver memory)."""
        with cls.lock:
            shared = cls.current
            if shared is not None and shared.master != master:
                raise UsageError(
                    f"this process already runs Spark on {shared.master!r}; one process has "
                    f"one Spark JVM, so an engine on {master!r} needs its own process"
                )
            cls._check_memory(conf.get(DRIVER_MEMORY))
            if shared is None:
                shared = cls.current = SharedContext(master, conf)
            shared.users += 1
            return shared

    @classmethod
    def _check_memory(cls, wanted: str | None) -> None:
        """A :class:`UsageError` naming both sizes when ``wanted`` (the engine's
        ``spark.driver.memory``) is not the memory of the JVM koble started in this process
        and that JVM still runs: its heap was fixed when it started. An engine that asks for
        no size (no ``--memory-limit``) takes the running JVM's, whatever it is: it asked for
        no particular memory, and the size it runs with is the one that JVM reports."""
        running = cls.jvm_memory
        if wanted is None or running is None or not cls._jvm_running():
            return
        if spark_mebibytes(wanted) != spark_mebibytes(running):
            raise UsageError(
                f"this process's Spark runs with {running} of driver memory "
                f"(spark.driver.memory), fixed when its JVM started; an engine asking for "
                f"{wanted} (--memory-limit) needs its own process: run the job in a new one"
            )

    @classmethod
    def _jvm_running(cls) -> bool:
        """Whether the JVM koble started is still this process's Spark JVM."""
        core = sys.modules.get("pyspark")
        if core is None or cls._jvm is None:
            return False
        return bool(core.SparkContext._gateway is cls._jvm)

    def release(self) -> None:
        with self.lock:
            self.users -= 1
            if self.users > 0:
                return
            SharedContext.current = None
            try:
                self.session.stop()
            finally:
                self.remove_scratch()
                atexit.unregister(self.remove_scratch)

    def remove_scratch(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
