"""The same job on DuckDB and on Spark (issue 17, part 4): every demo job delivers the same
bytes on both engines, its manifest differs only in the engine it names, and ``koble audit
reproduce`` of a Spark run on DuckDB finds every delivered byte again.

The runs (:class:`tests.linkage.conftest.EngineRuns`) share the session's one Spark, and the
same keys and seeded randomness on both engines.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from koble.cli.main import cli as main
from koble.linkage import names
from koble.linkage.engine_spark import SparkEngine
from koble.linkage.executor import RunResult
from koble.linkage.manifest import FORMAT, read_manifest, sign_manifest
from koble.linkage.reproduce import OTHER_ENGINE, Comparison, ReproduceReport, _engine_only
from koble.linkage.verify import verify_delivery
from koble.pseudonym.signing import Ed25519Signer, key_id_of
from tests.linkage.conftest import DEMO_JOBS, EngineRuns, World


def delivered(run: RunResult) -> dict[str, bytes]:
    """Every file of a run's delivery, by its path in the delivery."""
    return {
        p.relative_to(run.delivery).as_posix(): p.read_bytes()
        for p in sorted(run.delivery.rglob("*"))
        if p.is_file()
    }


def verified(run: RunResult) -> None:
    """The delivery verifies as an auditor checks it, against the operator's pinned key."""
    keys = run.workspace.parent / f"{run.workspace.name}-keys"
    pinned = key_id_of((keys / "operator.signing.pub.pem").read_bytes())
    report = verify_delivery(run.delivery, key_id=pinned, workspace=run.workspace)
    assert report.ok, [c.detail for c in report.checks if not c.ok]


@pytest.mark.slow
@pytest.mark.parametrize("job", DEMO_JOBS)
def test_a_demo_job_delivers_the_same_bytes_on_both_engines(
    spark: SparkEngine, engine_runs: EngineRuns, job: str
) -> None:
    duck, on_spark = engine_runs.get(job, "duckdb"), engine_runs.get(job, "spark")
    files = {"duckdb": delivered(duck), "spark": delivered(on_spark)}
    assert sorted(files["duckdb"]) == sorted(files["spark"])
    data = [f for f in files["duckdb"] if f != "manifest.json"]
    assert len(data) >= 4 and "quality.json" in data
    different = [f for f in data if files["spark"][f] != files["duckdb"][f]]
    assert not different, f"{job}: not the same bytes on Spark: {different}"
    manifests = {k: json.loads(v["manifest.json"])["manifest"] for k, v in files.items()}
    assert {k: m.pop("engine") for k, m in manifests.items()} == {
        "duckdb": "duckdb",
        "spark": "spark",
    }
    assert manifests["spark"] == manifests["duckdb"]
    verified(on_spark)


#: The demo jobs with identity recovery at the TTP, and the scope each resolves.
RECOVERY_SCOPES = {"distributed": "population", "helsearkiv": "helsearkivregisteret"}


@pytest.mark.slow
@pytest.mark.parametrize("job", sorted(RECOVERY_SCOPES))
def test_identity_recovery_runs_splink_on_spark_and_decides_the_same(
    spark: SparkEngine, engine_runs: EngineRuns, job: str
) -> None:
    """Under ``--engine spark`` the TTP's probabilistic stage runs Splink on Spark and
    answers every record as on DuckDB, to the bit: the same resolved file and review pairs,
    the same report and model (recorded as written, :func:`koble.recovery.model.as_written`),
    and the probabilistic stage did link records (it ran, it was not skipped)."""
    scope = RECOVERY_SCOPES[job]
    stores = {e: engine_runs.get(job, e).workspace / "ttp" / "store" for e in ("duckdb", "spark")}
    for name in (names.resolved(scope), names.resolve_review(scope)):
        duck = pl.read_parquet(stores["duckdb"] / name)
        assert pl.read_parquet(stores["spark"] / name).equals(duck), name
    resolved = pl.read_parquet(stores["spark"] / names.resolved(scope))
    assert (resolved["link_method"] == "probabilistic").sum() >= 1
    for name in (names.resolve_report(scope), names.resolve_model(scope)):
        duck_bytes = (stores["duckdb"] / name).read_bytes()
        assert (stores["spark"] / name).read_bytes() == duck_bytes, name


PASS_KEK = bytes(32).hex()  # the world's KEK (tests.linkage.conftest.World.kek), for the CLI


@pytest.mark.slow
def test_a_spark_run_reproduced_on_duckdb_gives_the_same_bytes(
    spark: SparkEngine, engine_runs: EngineRuns, world: World, tmp_path: Path
) -> None:
    """``koble audit reproduce --engine duckdb`` of the distributed job's Spark run: every
    delivered file byte-identical, the manifest the same but for the engine, and the
    reproduction's delivery verifies."""
    original = engine_runs.get("distributed", "spark")
    keys = original.workspace.parent / f"{original.workspace.name}-keys"
    again = tmp_path / "again"
    result = CliRunner().invoke(
        main,
        ["audit", "reproduce", str(engine_runs.jobs["distributed"]), "--workspace", str(again),
         "--against", str(original.delivery), "--keys", str(keys), "--world", str(world.path),
         "--kek-env", "TEST_KEK", "--engine", "duckdb", "--json"],
        env={"TEST_KEK": PASS_KEK},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["identical"]
    details = {f["file"]: f["detail"] for f in report["files"]}
    assert details["manifest.json"] == f"{OTHER_ENGINE}: spark there, duckdb here"
    assert all(d.startswith("sha256 ") for f, d in details.items() if f != "manifest.json")
    reproduced = Path(report["delivery"])
    for name in details:
        if name != "manifest.json":
            assert (reproduced / name).read_bytes() == (original.delivery / name).read_bytes()
    assert read_manifest(reproduced / "manifest.json")["manifest"]["engine"] == "duckdb"
    pinned = key_id_of((keys / "operator.signing.pub.pem").read_bytes())
    assert verify_delivery(reproduced, key_id=pinned, workspace=again).ok


def test_a_reproduced_manifest_may_differ_in_its_engine_alone() -> None:
    signer = Ed25519Signer.from_raw(bytes(range(32)))
    body = {"format": FORMAT, "engine": "spark", "created": "2026-11-01T12:00:00+00:00"}
    on_spark = sign_manifest(body, signer)
    assert _engine_only(on_spark, sign_manifest({**body, "engine": "duckdb"}, signer)) == (
        "spark",
        "duckdb",
    )
    assert _engine_only(on_spark, on_spark) is None  # the same engine: bytes must be equal
    later = {**body, "engine": "duckdb", "created": "2026-11-02T12:00:00+00:00"}
    assert _engine_only(on_spark, sign_manifest(later, signer)) is None
    other_key = Ed25519Signer.from_raw(bytes(range(1, 33)))
    assert _engine_only(on_spark, sign_manifest({**body, "engine": "duckdb"}, other_key)) is None
    engine_only = f"{OTHER_ENGINE}: spark there, duckdb here"
    files = [Comparison("npr_extract.csv", True, "sha256 0123…"),
             Comparison("manifest.json", True, engine_only)]  # fmt: skip
    text = ReproduceReport("spark-run", "again", files).to_text()
    assert text.endswith(
        "BYTE-IDENTICAL: 2/2 files (the manifest but for the engine named in it)\n"
    )
