"""A local Spark Connect server for the tests, in a process of its own.

One Python process has one Spark JVM (:mod:`koble.linkage.engine_spark`), and the session's
local Spark (the ``spark`` fixture) is this process's; pyspark's own ``remote("local[2]")``
would start its server in this JVM too, on the fixed port 15002 that another test run on the
machine may hold. So the server runs in a child Python that starts a local SparkContext
with Spark's Connect plugin on a free port of 127.0.0.1 (no authentication: loopback only)
and keeps it until its standard input closes; its Python workers are this interpreter (with
koble). Its console output goes to a log file in its directory, never to the test output.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

#: How long the server may take to listen (a JVM start, slower on a loaded machine).
START_SECONDS = 300

_SERVER = """
import sys
from pyspark import SparkConf, SparkContext
conf = SparkConf().setMaster("local[2]").setAppName("koble-connect-test").setAll([
    ("spark.plugins", "org.apache.spark.sql.connect.SparkConnectPlugin"),
    ("spark.connect.grpc.binding.address", "127.0.0.1"),
    ("spark.connect.grpc.binding.port", sys.argv[1]),
    ("spark.local.dir", sys.argv[2]),
    ("spark.sql.warehouse.dir", sys.argv[3]),
    ("spark.sql.artifact.isolation.enabled", "true"),
    ("spark.sql.artifact.isolation.alwaysApplyClassloader", "true"),
    ("spark.ui.enabled", "false"),
    ("spark.ui.showConsoleProgress", "false"),
    ("spark.eventLog.enabled", "false"),
    ("spark.sql.shuffle.partitions", "8"),
    ("spark.driver.memory", "2g"),
])
context = SparkContext(conf=conf)
context.setLogLevel("ERROR")
sys.stdin.read()
context.stop()
"""


@dataclass
class ConnectServer:
    """A running server: ``url`` is its ``sc://`` address."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Closes the server's standard input (it stops its SparkContext), then waits."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(directory: Path) -> ConnectServer:
    """A server whose scratch and log are in ``directory``, listening when returned."""
    port = _free_port()
    log = directory / "connect-server.log"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    env.pop("SPARK_REMOTE", None)
    env.pop("SPARK_CONNECT_MODE_ENABLED", None)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", _SERVER, str(port), str(directory / "local"),
             str(directory / "warehouse")],
            stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    server = ConnectServer(process, port, log)
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Spark Connect server stopped at start: see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"the Spark Connect server did not listen in {START_SECONDS} s: {log}")
