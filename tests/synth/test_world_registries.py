"""The world says which of its tables holds which registry (issue 15, item 4): every world
holds ``registries.toml``, a sources file naming each registry by catalogue id with its
table, key and date columns and variables, and the linkage code reads it from the world."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from koble.linkage.sources import load_sources, synthetic_sources
from koble.registries.catalogue import Catalogue
from koble.synth.registries import BUNDLED, REGISTRIES_FILE
from tests.synth.conftest import World


def test_the_world_holds_its_registries_file(world: World) -> None:
    written = world.path / REGISTRIES_FILE
    assert written.read_bytes() == BUNDLED.read_bytes()
    manifest_paths = {f["path"] for f in world.manifest["files"]}
    assert REGISTRIES_FILE not in manifest_paths  # the data files and manifest are unchanged


def test_every_registry_is_a_catalogue_id_with_a_real_table(world: World) -> None:
    catalogue = Catalogue.load()
    sources = synthetic_sources(world.path)
    as_file = load_sources(world.path / REGISTRIES_FILE)  # `koble run --sources` reads the same
    assert (as_file.registries, as_file.names) == (sources.registries, sources.names)
    assert sources.registries
    for reg, source in sources.registries.items():
        assert reg in catalogue, reg
        assert source.file.is_file(), source.file
        columns = set(pq.read_schema(source.file).names)
        keys = set(source.id_columns) if source.ingest else {source.id_column} - {""}
        assert keys <= columns, (reg, keys)
        assert source.date_column in columns, reg
        assert source.variables and set(source.variables) <= columns, reg
        assert not {"fnr", "mother_fnr", "child_fnr"} & set(source.variables), reg
        if source.consent_column is not None:
            assert source.consent_column in columns
    tables = {s.file.relative_to(world.path).as_posix() for s in sources.registries.values()}
    data_files = {f["path"] for f in world.manifest["files"]}
    assert tables <= data_files  # every registry the file names is one of the world's tables


def test_the_worlds_own_names_resolve_to_catalogue_ids(world: World) -> None:
    sources = synthetic_sources(world.path)
    for name, reg in {
        "dar": "dodsarsaksregisteret",
        "quality_registry": "hoftebruddregisteret",
        "ssb_education": "ssb-utdanning",
        "ssb_income": "ssb-inntekt",
    }.items():
        assert sources.get(name) is sources.get(reg)
        assert sources.get(reg).file.stem == name


def test_sources_come_from_the_worlds_file_not_from_constants(tmp_path: Path) -> None:
    world = tmp_path / "world"
    world.mkdir()
    text = BUNDLED.read_text("utf-8").replace('file = "npr.parquet"', 'file = "pasient.parquet"')
    (world / REGISTRIES_FILE).write_text(text, "utf-8")
    sources = synthetic_sources(world)
    assert sources.get("npr").file == world / "pasient.parquet"
    assert sources.population_dir == world
    assert sources.operator_history == world / "identity_history.parquet"
