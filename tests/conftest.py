"""Project-wide test settings, loaded before any test module.

Hypothesis profiles. Hypothesis fails an example that takes longer than its deadline (200 ms
by default), which on a loaded 2-core CI machine is timing, not a bug: a property over a
polars frame or a cryptographic round trip can take that long when another job holds the
cores. So the default profile, ``ci``, has no deadline and does not fail the "too slow"
health check. It is also derandomised: every run tries the same examples, so a red CI is a
change in the code, never a new roll of the dice (a random run once found a payload count
that was a valid fødselsnummer, a fault of the test). New examples are searched for on
purpose, with ``HYPOTHESIS_PROFILE=explore``: randomised, 1,000 examples per property, a
failure printing the blob that replays it. ``HYPOTHESIS_PROFILE=default`` gives
Hypothesis's own defaults.

The ``browser`` fixture: Debian's headless Chromium through ChromeDriver, for the tests that
render koble's HTML pages (reports, the clerical review). The ``spark`` fixture: the session's
one local Spark, for every directory's Spark tests (one JVM per process). The
``spark_connect`` fixture: the session's one local Spark Connect server (tests/spark_connect.py,
a process of its own) and an engine on it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings
from selenium import webdriver
from selenium.webdriver import Chrome as WebDriver
from selenium.webdriver.chrome.service import Service

if TYPE_CHECKING:
    from koble.linkage.engine_spark import SparkEngine

settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "explore", settings.get_profile("ci"), derandomize=False, max_examples=1000
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# koble's digest cache across processes (koble.digests.digest_cache_path) is the test run's
# own, in a directory removed at its end: tests and the commands they start never read or
# fill the user's cache
_DIGEST_CACHE = tempfile.mkdtemp(prefix="koble-test-digests-")
os.environ.setdefault("KOBLE_DIGEST_CACHE", os.path.join(_DIGEST_CACHE, "sha256.json"))
atexit.register(shutil.rmtree, _DIGEST_CACHE, ignore_errors=True)

CHROMIUM = ("/usr/bin/chromium", "chromium", "chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver", "chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,2000")  # fmt: skip


def _which(names: tuple[str, ...]) -> str:
    for name in names:
        if found := shutil.which(name):
            return found
    pytest.fail(f"{names[0]} is missing: `make test` installs it (apt-get install chromium "
                "chromium-driver); browser tests never skip")  # fmt: skip


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = _which(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(_which(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


#: Spark's scratch files uncompressed, so the linkage tests' scans of them read plain bytes.
UNCOMPRESSED = ("spark.shuffle.compress", "spark.shuffle.spill.compress",
                "spark.broadcast.compress", "spark.rdd.compress")  # fmt: skip


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkEngine]:
    """One local Spark for the session: its JVM starts once (about 15 s), and the engine
    each Spark run makes shares it (:mod:`koble.linkage.engine_spark`). Compression of its
    scratch files is off, so that the scans of them (tests/linkage's ``EngineRuns``) read
    plain bytes. A ``UsageError`` here says how to install pyspark or Java."""
    from koble.linkage.engine_spark import SparkEngine

    eng = SparkEngine(conf=dict.fromkeys(UNCOMPRESSED, "false"))
    scratch = eng.scratch
    assert scratch is not None and scratch.is_dir()
    yield eng
    eng.close()
    assert not scratch.exists()  # the last engine removes the private scratch directory


@pytest.fixture(scope="session")
def spark_connect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkEngine]:
    """An engine on the session's one local Spark Connect server (started once, about 25 s).
    Making a Connect session sets pyspark's process-wide SPARK_CONNECT_MODE_ENABLED, which
    turns ``pyspark.sql.functions`` into Connect's for the classic ``spark`` of the same
    process too: it is put back here, and the Connect tests set it while they run
    (``monkeypatch``), as a process that runs only on Spark Connect has it."""
    from koble.linkage.engine_spark import SparkEngine
    from tests import spark_connect as connect

    server = connect.start(tmp_path_factory.mktemp("spark-connect"))
    try:
        before = os.environ.get("SPARK_CONNECT_MODE_ENABLED")
        try:
            eng = SparkEngine(remote=server.url)
        finally:
            if before is None:
                os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)
        yield eng
        eng.close()
    finally:
        server.stop()
