"""Every example job runs, as written, against a ``koble synth`` world (issue 14).

``koble run examples/JOB --workspace ws --world world`` is what the README tells a new user to
type: the job's relative population file is found in the world when it is not beside the
job, the synthetic world holds the 67+ population the central job names, and the column
names in the examples are the world's. A population found nowhere stops the run before it
does anything, naming both places looked in.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from koble.cli.main import cli
from koble.errors import InputError
from koble.linkage.context import locate_population
from koble.linkage.sources import synthetic_sources
from koble.synth.persons import ELDERLY_BORN_BEFORE
from tests.linkage.conftest import World

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: Each example job, with the options the README gives it.
JOBS = {
    "job.toml": [],
    "job_central.toml": [],
}
PASSPHRASE = {"KOBLE_KEYSET_PASSPHRASE": "example keyset passphrase"}


def test_every_example_job_is_covered() -> None:
    jobs = {p.name for p in EXAMPLES.glob("*.toml") if "[population]" in p.read_text("utf-8")}
    assert jobs == set(JOBS)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(JOBS))
def test_example_job_runs_against_a_synth_world(world: World, tmp_path: Path, name: str) -> None:
    ws = tmp_path / "ws"
    args = ["run", str(EXAMPLES / name), "--workspace", str(ws), "--world", str(world.path)]
    result = CliRunner().invoke(cli, [*args, *JOBS[name]], env=PASSPHRASE)
    assert result.exit_code == 0, result.output
    assert "refused" not in result.stdout  # every registry of the example is routed
    delivered = {p.name for p in (ws / "researcher" / "delivery").iterdir()}
    assert {"manifest.json", "quality.json"} <= delivered
    verify = [
        "audit", "verify", str(ws / "researcher" / "delivery"), "--public-key",
        str(ws / "keys" / "operator.signing.pub.pem"),
    ]  # fmt: skip
    checked = CliRunner().invoke(cli, verify)
    assert checked.exit_code == 0, checked.output


def test_synth_world_holds_the_67_plus_population(world: World) -> None:
    population = pl.read_parquet(world.path / "population.parquet")
    expected = population.filter(
        (pl.col("birth_date") < ELDERLY_BORN_BEFORE)
        & pl.col("kind").is_in(["fnr", "dnr"])
        & pl.col("death_date").is_null()
    ).select("person_id")
    elderly = pl.read_parquet(world.path / "population_67.parquet")
    assert elderly.height > 0 and elderly.equals(expected)
    manifest = json.loads((world.path / "manifest.json").read_text("utf-8"))
    rows = {f["path"]: f["rows"] for f in manifest["files"]}
    assert rows["population_67.parquet"] == elderly.height


def test_population_is_found_beside_the_job_first_then_in_the_world(tmp_path: Path) -> None:
    world = tmp_path / "world"
    world.mkdir()
    (world / "people.parquet").touch()
    job = tmp_path / "jobs" / "job.toml"
    job.parent.mkdir()
    sources = synthetic_sources(world)
    assert locate_population(job, "people.parquet", sources) == world / "people.parquet"
    (job.parent / "people.parquet").touch()
    assert locate_population(job, "people.parquet", sources) == job.parent / "people.parquet"
    absolute = tmp_path / "elsewhere.parquet"
    assert locate_population(job, str(absolute), sources) == absolute


def test_population_found_nowhere_names_both_places(tmp_path: Path) -> None:
    world = tmp_path / "world"
    world.mkdir()
    job = tmp_path / "jobs" / "job.toml"
    job.parent.mkdir()
    with pytest.raises(InputError) as caught:
        locate_population(job, "missing.parquet", synthetic_sources(world))
    message = str(caught.value)
    assert str(job.parent / "missing.parquet") in message
    assert str(world / "missing.parquet") in message


def test_run_with_population_nowhere_stops_before_doing_anything(
    world: World, tmp_path: Path
) -> None:
    job = tmp_path / "job.toml"
    text = (EXAMPLES / "job.toml").read_text("utf-8")
    job.write_text(text.replace('"population.parquet"', '"nobody.parquet"'), "utf-8")
    ws = tmp_path / "ws"
    args = ["run", str(job), "--workspace", str(ws), "--world", str(world.path)]
    result = CliRunner().invoke(cli, args, env=PASSPHRASE)
    assert result.exit_code == 2, result.output
    assert str(tmp_path / "nobody.parquet") in result.output
    assert str(world.path / "nobody.parquet") in result.output
    assert not (ws / "run.json").exists() and not (ws / "ingest").exists()
