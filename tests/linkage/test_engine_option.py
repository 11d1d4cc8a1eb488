"""`koble run --engine spark` (issue 17): the option reaches the run, the manifest names the
engine, and an engine option that does not fit is a usage error before anything is written.

The Spark run goes through the CLI in this process, so the engine it makes shares the
session's local Spark (the ``spark`` fixture) instead of starting and stopping a JVM of its
own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from koble.cli.main import cli as main
from koble.cli.run import MEMORY_LIMIT_ENV
from koble.errors import UsageError
from koble.linkage.engine import Engine
from koble.linkage.engine_spark import SparkEngine
from tests.linkage.conftest import World


def _run(world: World, workspace: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main,
        ["run", str(world.central), "--workspace", str(workspace), "--world", str(world.path),
         "--kek-env", "KOBLE_TEST_KEK", *extra],
        env={"KOBLE_TEST_KEK": "00" * 32},
    )  # fmt: skip
    return result.exit_code, result.output


@pytest.mark.slow
def test_run_on_spark_names_the_engine_in_its_manifest(
    world: World, tmp_path: Path, spark: SparkEngine
) -> None:
    code, output = _run(world, tmp_path / "ws", "--engine", "spark")
    assert code == 0, output
    manifest = tmp_path / "ws" / "researcher" / "delivery" / "manifest.json"
    assert json.loads(manifest.read_text(encoding="utf-8"))["manifest"]["engine"] == "spark"


def test_a_spark_master_for_duckdb_is_a_usage_error(world: World, tmp_path: Path) -> None:
    code, output = _run(world, tmp_path / "ws", "--spark-master", "spark://nowhere:7077")
    assert code == 2, output
    assert "applies only to --engine spark" in output
    assert not (tmp_path / "ws" / "researcher").exists()


def test_engine_named_caps_duckdb_memory() -> None:
    from koble.linkage.engine import engine_named

    engine = engine_named("duckdb", memory_limit="1GB")
    try:
        got = engine.query("SELECT current_setting('memory_limit') AS m", {})
    finally:
        engine.close()
    assert got.column("m").to_pylist() == ["953.6 MiB"]  # DuckDB shows 10^9 bytes in MiB


def test_the_memory_limit_reaches_the_runs_engine(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given by the environment variable (or --memory-limit), the limit reaches the engine
    the run makes, and the run delivers as without it."""
    from koble.linkage.engine import engine_named

    made: list[str | None] = []

    def recording(name: str, **options: str | None) -> Engine:
        made.append(options.get("memory_limit"))
        return engine_named(name, **options)

    monkeypatch.setattr("koble.linkage.executor.engine_named", recording)
    result = CliRunner().invoke(
        main,
        ["run", str(world.central), "--workspace", str(tmp_path / "ws"), "--world",
         str(world.path), "--kek-env", "KOBLE_TEST_KEK"],
        env={"KOBLE_TEST_KEK": "00" * 32, MEMORY_LIMIT_ENV: "2GB"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert made == ["2GB"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--memory-limit", "lots"), "must be a size such as 4GB"),
        (
            ("--memory-limit", "2GB", "--engine", "spark", "--spark-remote", "sc://nowhere"),
            "cannot be set for a Spark Connect server",
        ),
    ],
)
def test_a_memory_limit_that_does_not_fit_is_a_usage_error(
    world: World, tmp_path: Path, extra: tuple[str, ...], message: str
) -> None:
    code, output = _run(world, tmp_path / "ws", *extra)
    assert code == 2, output
    assert message in output
    assert not (tmp_path / "ws").exists()


@pytest.mark.parametrize(
    ("size", "spark"),
    [("4GB", "3814m"), ("512MiB", "512m"), ("1.5GiB", "1536m"), ("2 gb", "1907m")],
)
def test_a_memory_size_in_sparks_form(size: str, spark: str) -> None:
    from koble.linkage.memory_size import spark_memory

    assert spark_memory(size) == spark


def test_a_memory_limit_on_spark_is_the_drivers(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--memory-limit with --engine spark becomes the driver's memory; the environment's
    DuckDB limit does not reach Spark."""
    import koble.linkage.engine_spark as engine_spark

    confs: list[dict[str, str]] = []

    def fake(**options: object) -> Engine:
        confs.append(dict(options.get("conf") or {}))  # type: ignore[call-overload]
        raise UsageError("no Spark in this test")

    monkeypatch.setattr(engine_spark, "SparkEngine", fake)
    for args, env in [(("--memory-limit", "1GiB"), {}), ((), {MEMORY_LIMIT_ENV: "2GB"})]:
        result = CliRunner().invoke(
            main,
            ["run", str(world.central), "--workspace", str(tmp_path / "ws"), "--world",
             str(world.path), "--kek-env", "KOBLE_TEST_KEK", "--engine", "spark", *args],
            env={"KOBLE_TEST_KEK": "00" * 32, **env},
        )  # fmt: skip
        assert result.exit_code == 2 and "no Spark in this test" in result.output, result.output
    assert confs == [{"spark.driver.memory": "1024m"}, {}]
