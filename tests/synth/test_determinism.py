"""Same seed and config give byte-identical files; another seed gives another world."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from koble.digests import sha256_file
from koble.synth import SynthConfig, generate_world

SMALL = SynthConfig(persons=1200, seed=11, chunk_size=500)


def _hashes(manifest: dict[str, object]) -> dict[str, str]:
    return {f["path"]: f["sha256"] for f in manifest["files"]}  # type: ignore[attr-defined, index]


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    first = generate_world(tmp_path / "a", SMALL)
    second = generate_world(tmp_path / "b", SMALL)
    assert _hashes(first) == _hashes(second)
    a = (tmp_path / "a" / "manifest.json").read_bytes()
    assert a == (tmp_path / "b" / "manifest.json").read_bytes()


def test_other_seed_gives_other_files(tmp_path: Path) -> None:
    first = _hashes(generate_world(tmp_path / "a", SMALL))
    other = _hashes(generate_world(tmp_path / "b", dataclasses.replace(SMALL, seed=12)))
    assert all(first[path] != other[path] for path in first if path != "institutions.parquet")


def test_manifest_matches_files(world) -> None:
    import polars as pl

    on_disk = json.loads((world.path / "manifest.json").read_text())
    assert on_disk == world.manifest
    paths = {f["path"] for f in on_disk["files"]}
    expected = {
        "population.parquet", "population_67.parquet", "identity_history.parquet",
        "cohort.parquet", "npr.parquet", "dar.parquet", "mfr.parquet", "kreftregisteret.parquet",
        "quality_registry.parquet",
        "ssb_education.parquet", "ssb_income.parquet", "abortregisteret.parquet",
        "institutions.parquet", "feeds/reseptregisteret.parquet", "feeds/iplos.parquet",
        "npr_deidentified.parquet", "legemiddelregisteret.parquet", "kpr.parquet",
        "reservations/kpr.parquet", "reservations/kreftregisteret.parquet",
        "reservations/mfr.parquet", "reservations/quality_registry.parquet",
        "folkeregister/persons.parquet", "folkeregister/names.parquet",
        "folkeregister/addresses.parquet", "folkeregister/identity_history.parquet",
        "helsearkiv.parquet", "truth/helsearkiv.parquet", "truth/cohort.parquet",
    }  # fmt: skip
    assert paths == expected
    for entry in on_disk["files"]:
        path = world.path / entry["path"]
        assert sha256_file(path) == entry["sha256"]
        assert pl.read_parquet(path).height == entry["rows"]
    assert on_disk["seed"] == 7
    assert on_disk["config"]["persons"] == 4000
    assert on_disk["reference_date"] == "2025-12-31"
