"""`koble run --engine spark` (issue 17): the option reaches the run, the manifest names the
engine, and an engine option that does not fit is a usage error before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from koble.cli.main import cli as main
from tests.linkage.conftest import World


def _run(world: World, workspace: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main,
        ["run", str(world.central), "--workspace", str(workspace), "--world", str(world.path),
         "--kek-env", "KOBLE_TEST_KEK", *extra],
        env={"KOBLE_TEST_KEK": "00" * 32},
    )  # fmt: skip
    return result.exit_code, result.output


def test_run_on_spark_names_the_engine_in_its_manifest(world: World, tmp_path: Path) -> None:
    code, output = _run(world, tmp_path / "ws", "--engine", "spark")
    assert code == 0, output
    manifest = tmp_path / "ws" / "researcher" / "delivery" / "manifest.json"
    assert json.loads(manifest.read_text(encoding="utf-8"))["manifest"]["engine"] == "spark"


def test_a_spark_master_for_duckdb_is_a_usage_error(world: World, tmp_path: Path) -> None:
    code, output = _run(world, tmp_path / "ws", "--spark-master", "spark://nowhere:7077")
    assert code == 2, output
    assert "applies only to --engine spark" in output
    assert not (tmp_path / "ws" / "researcher").exists()
