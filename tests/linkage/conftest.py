"""A small synthetic world and the demo jobs on it, shared by the executor tests."""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from koble.linkage.demo_jobs import write_demo_jobs
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


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("linkage-world")
    generate_world(root, SynthConfig(persons=6_000, seed=11))
    distributed, central = write_demo_jobs(root, fmt="csv")
    catalogue = Catalogue.load()  # the real catalogue: no demo-only registry facts
    return World(root, distributed, central, catalogue, synthetic_sources(root), RawKek(bytes(32)))


@pytest.fixture(scope="session")
def distributed_run(world: World, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    return world.run(world.distributed, tmp_path_factory.mktemp("dist") / "ws")


@pytest.fixture(scope="session")
def central_run(world: World, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    return world.run(world.central, tmp_path_factory.mktemp("central") / "ws")


JobWriter = Callable[[str, str], Path]


@pytest.fixture
def job_variant(world: World, tmp_path: Path) -> JobWriter:
    """Write a variant of a demo job (text replaced) beside the world's files."""

    def write(base: str, text: str) -> Path:
        path = world.path / f"variant-{tmp_path.name}-{base}.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write
