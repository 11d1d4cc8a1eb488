"""A small synthetic world and the demo jobs on it, shared by the executor tests; the
demo jobs' runs on each engine; one local Spark for the session; small tables for the
engines' own tests."""

from __future__ import annotations

import base64
import datetime
import os
import random
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from koble.linkage.demo_jobs import write_demo_jobs, write_helsearkiv_job
from koble.linkage.engine import DuckDBEngine
from koble.linkage.engine_spark_session import SharedContext
from koble.linkage.executor import RunResult, run_job
from koble.linkage.sources import Sources, synthetic_sources
from koble.pseudonym.keystore import RawKek
from koble.registries.catalogue import Catalogue
from koble.synth import SynthConfig, generate_world

CREATED = datetime.datetime(2026, 11, 1, 12, 0, tzinfo=datetime.UTC)


def fixed_now() -> datetime.datetime:
    return CREATED


@dataclass
class World:
    path: Path
    distributed: Path
    central: Path
    catalogue: Catalogue
    sources: Sources
    kek: RawKek

    def run(self, job: Path, workspace: Path, keys: Path | None = None, **extra: Any) -> RunResult:
        kwargs: dict[str, Any] = {
            "keys_dir": keys or workspace.parent / f"{workspace.name}-keys",
            "kek": self.kek,
            "sources": self.sources,
            "catalogue": self.catalogue,
            "now": fixed_now,
            "randbytes": os.urandom,
        }
        kwargs.update(extra)
        return run_job(job, workspace, **kwargs)


@pytest.fixture(scope="module")
def duck() -> Iterator[DuckDBEngine]:
    """A one-thread DuckDB engine per test module, the reference the engine tests compare
    Spark's and the steps' results with (a module that needs another overrides it)."""
    engine = DuckDBEngine(threads=1)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("linkage-world")
    generate_world(root, SynthConfig(persons=6_000, seed=11))
    distributed, central = write_demo_jobs(root, fmt="csv")
    catalogue = Catalogue.load()  # the real catalogue: no demo-only registry facts
    return World(root, distributed, central, catalogue, synthetic_sources(root), RawKek(bytes(32)))


#: The engines a job runs on. Spark's runs are marked slow (local mode takes seconds per
#: query); ``make test`` runs them, and they fail, never skip, without pyspark or Java.
ENGINES = ["duckdb", pytest.param("spark", marks=pytest.mark.slow)]
#: The demo's jobs by name: together they take every route (distributed, TTP pseudonym,
#: consent filter, refusal, central anonymous with sealed ingest, identity recovery at the
#: TTP for the population and for a registry).
DEMO_JOBS = ("distributed", "central", "helsearkiv")
#: The population of the Helsearkivregisteret job the engine runs use (a file of its own).
HELSEARKIV_POPULATION = "deceased_population_engines.parquet"


# The session's one local Spark, ``spark``, is tests/conftest.py's (tests/anonymity uses it too).


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Each engine's name; for Spark, the session's Spark is started first."""
    if request.param == "spark":
        request.getfixturevalue("spark")
    return str(request.param)


@dataclass
class EngineRuns:
    """The demo jobs run once per session on each engine, with the same keys and randomness
    (a seeded generator), so that two runs of a job differ only by their engine. After each
    step of a Spark run every file in Spark's scratch directory is read: ``scratch`` keeps,
    per job, each file seen after each step and what it held (:class:`_ScratchScan`)."""

    world: World
    root: Path
    jobs: dict[str, Path]
    runs: dict[tuple[str, str], RunResult] = field(default_factory=dict)
    scratch: dict[str, list[ScratchFile]] = field(default_factory=dict)

    def get(self, job: str, engine: str) -> RunResult:
        if (job, engine) not in self.runs:
            workspace = self.root / f"{job}-{engine}" / "ws"
            kwargs: dict[str, Any] = {"engine": engine}
            if engine == "spark":
                seen = self.scratch.setdefault(job, [])
                kwargs["on_step"] = _ScratchScan(workspace, self.world, seen)
            self.runs[job, engine] = self.world.run(
                self.jobs[job], workspace, randbytes=random.Random(5).randbytes, **kwargs
            )
        return self.runs[job, engine]


@dataclass(frozen=True)
class ScratchFile:
    """A file in Spark's scratch directory after a step, and which needles it held."""

    step: str
    path: str
    found: frozenset[str]


class _ScratchScan:
    """``on_step``: after each step, every file under Spark's scratch directory, read for
    key material (the keysets' keys and the TTP's registry keys, raw, hex and base64) and
    11-digit numbers."""

    def __init__(self, workspace: Path, world: World, seen: list[ScratchFile]) -> None:
        self.keys_dir = workspace.parent / f"{workspace.name}-keys"
        self.world, self.seen = world, seen
        self.needles: dict[str, list[bytes]] | None = None

    def __call__(self, step: Any, event: str, index: int, total: int) -> None:
        shared = SharedContext.current  # the scratch directory of this process's Spark
        if event != "done" or shared is None:
            return
        if self.needles is None:
            self.needles = key_needles(self.keys_dir, self.world)
        for path in sorted(p for p in shared.root.rglob("*") if p.is_file()):
            try:
                data = path.read_bytes()
            except FileNotFoundError:  # Spark's cleaner removed it after the listing
                continue
            found = {name for name, forms in self.needles.items() if any(f in data for f in forms)}
            if _ELEVEN_DIGITS.search(data):
                found.add("11-digit number")
            self.seen.append(ScratchFile(step.id, str(path.relative_to(shared.root)),
                                         frozenset(found)))  # fmt: skip


_ELEVEN_DIGITS = re.compile(rb"(?<![0-9])[0-9]{11}(?![0-9])")


def key_needles(keys_dir: Path, world: World) -> dict[str, list[bytes]]:
    """Every key of the run's keysets, and the TTP's key for each registry's domain, as the
    bytes a file holding it would show: raw, hex and base64."""
    from koble.linkage.context import registry_domain
    from koble.linkage.keys import LinkageKeys

    keys = LinkageKeys.load(keys_dir, world.kek)
    found: dict[str, bytes] = {}
    for owner, keyset in (("operator", keys.operator), ("ttp", keys.ttp)):
        for info in keyset.keys:
            found[f"{owner} key v{info.version}"] = keyset._material_any(info.version)
            for registry in world.sources.registries:
                domain = registry_domain(registry)
                found[f"{owner} {domain} key v{info.version}"] = keyset._domain_key(
                    info.version, domain
                )
    return {
        name: [key, key.hex().encode(), base64.b64encode(key), base64.urlsafe_b64encode(key)]
        for name, key in found.items()
    }


@pytest.fixture(scope="session")
def engine_runs(world: World, tmp_path_factory: pytest.TempPathFactory) -> EngineRuns:
    """The demo jobs' runs on each engine (made when first asked for). The
    Helsearkivregisteret job is written to a file of its own, which other tests' variants of
    it do not overwrite."""
    helsearkiv = write_helsearkiv_job(world.path, fmt="stata", persons=600)
    population = world.path / HELSEARKIV_POPULATION
    shutil.copyfile(world.path / "deceased_population.parquet", population)
    own = helsearkiv.with_name("job_helsearkiv_engines.toml")
    text = helsearkiv.read_text("utf-8").replace('"deceased_population.parquet"',
                                                 f'"{population.name}"')  # fmt: skip
    own.write_text(text, "utf-8")
    jobs = {"distributed": world.distributed, "central": world.central, "helsearkiv": own}
    return EngineRuns(world, tmp_path_factory.mktemp("engine-runs"), jobs)


@pytest.fixture(scope="session")
def distributed_run(engine_runs: EngineRuns) -> RunResult:
    return engine_runs.get("distributed", "duckdb")


@pytest.fixture(scope="session")
def central_run(engine_runs: EngineRuns) -> RunResult:
    return engine_runs.get("central", "duckdb")


JobWriter = Callable[[str, str], Path]


@pytest.fixture
def job_variant(world: World, tmp_path: Path) -> JobWriter:
    """Write a variant of a demo job (text replaced) beside the world's files."""

    def write(base: str, text: str) -> Path:
        path = world.path / f"variant-{tmp_path.name}-{base}.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


# --- small tables for the engines' own tests -------------------------------------------------

PEOPLE = pa.table({"pid": ["a", "b", "d"], "age": [40, 51, 62]})


@pytest.fixture
def events(tmp_path: Path) -> Path:
    """Four events of three persons, as a Parquet file."""
    path = tmp_path / "events.parquet"
    pq.write_table(
        pa.table({"pid": ["a", "b", "a", "c"], "code": ["C50", "I21", "S72", "C50"]}), path
    )
    return path
