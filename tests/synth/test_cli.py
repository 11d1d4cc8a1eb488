"""``koble synth`` end to end, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from koble.cli.main import cli
from koble.errors import UsageError
from koble.synth import SynthConfig


def test_synth_writes_a_world(tmp_path: Path) -> None:
    out = tmp_path / "w"
    result = CliRunner().invoke(
        cli, ["synth", "--persons", "800", "--seed", "3", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["persons"] == 800
    assert "population.parquet" in result.output
    assert (out / "feeds" / "reseptregisteret.parquet").exists()


def test_synth_rejects_bad_parameters(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["synth", "--persons", "0", "--out", str(tmp_path)])
    assert result.exit_code == UsageError.exit_code
    assert "persons must be at least 1" in result.output
    result = CliRunner().invoke(
        cli, ["synth", "--out", str(tmp_path), "--reference-date", "yesterday"]
    )
    assert result.exit_code == UsageError.exit_code


def test_config_collects_every_problem() -> None:
    with pytest.raises(UsageError) as info:
        SynthConfig(persons=0, dirt_missing=0.9, chunk_size=0)
    message = str(info.value)
    assert "persons" in message and "dirt" in message and "chunk_size" in message
