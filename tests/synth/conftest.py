"""A small synthetic world, generated once per test session and shared by the synth tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from koble.synth import SynthConfig, generate_world

#: Small but multi-chunk, with shares raised so rare cases occur often enough to test.
CONFIG = SynthConfig(persons=4000, seed=7, chunk_size=1500, share_2032=0.01, share_history=0.04)


class World:
    """A generated world: its directory, manifest and tables (read on first use)."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self._tables: dict[str, pl.DataFrame] = {}

    def table(self, name: str) -> pl.DataFrame:
        if name not in self._tables:
            self._tables[name] = pl.read_parquet(self.path / f"{name}.parquet")
        return self._tables[name]

    @property
    def truth(self) -> dict[str, Any]:
        truth: dict[str, Any] = self.manifest["truth"]
        return truth


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    path = tmp_path_factory.mktemp("world")
    return World(path, generate_world(path, CONFIG))
