"""The central route's ``person`` delivery shape: one row per person, the service history as
counts and first/last dates per service type, k-anonymous over its rows (= persons)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from koble.linkage.formats import read_delivery
from koble.linkage.job import JobError
from tests.linkage.conftest import JobWriter, World

SHAPE = 'shape = { unit = "person", kind = "service_type", date = "start_date" }'


def _variant(world: World, job_variant: JobWriter, line: str) -> Path:
    text = world.central.read_text("utf-8")
    return job_variant("central", text.replace('model = "person-set"', line))


def test_the_person_shape_delivers_one_k_anonymous_row_per_person(
    world: World, job_variant: JobWriter, tmp_path: Path
) -> None:
    run = world.run(_variant(world, job_variant, SHAPE), tmp_path / "ws")
    store = run.workspace / "operator" / "store"
    gate = json.loads((store / "anonymity.json").read_text("utf-8"))
    linked = pl.read_parquet(store / "linked.parquet")
    assert gate["meets"] and gate["shape"] and "one row per person" in gate["shape"][0]
    assert gate["model"] == "5-anonymity over one row per person"
    delivered = read_delivery(run.delivery / "delivery.csv")
    assert "LOPENR" not in delivered.columns
    withheld = pl.read_parquet(store / "withheld.parquet")
    # every person of the linked file is either a delivered row or a withheld person row
    assert delivered.height + withheld.height == linked["lopenr"].n_unique()
    counts = [c for c in delivered.columns if c.startswith("N_")]
    assert counts and any(c.startswith("FIRST_") for c in delivered.columns)
    # every class over the released quasi-identifier columns holds k rows, i.e. k persons
    qi_columns = [c.upper() for c in gate["coarsened_columns"]] or counts
    qi_columns += [c for c in ("KOMMUNE", "NUS_LEVEL") if c in delivered.columns]
    sizes = delivered.group_by(sorted(set(qi_columns))).len()["len"]
    assert int(sizes.min()) >= 5  # type: ignore[arg-type]
    codebook = (run.delivery / "codebook.md").read_text("utf-8")
    coarsened = [c for c, level in gate["coarsened_columns"].items() if level]
    assert coarsened and all(f"coarsened: {gate['coarsened_columns'][c]}" in codebook
                             for c in coarsened[:1])  # fmt: skip


@pytest.mark.parametrize(
    "line",
    [
        'shape = { unit = "persons", kind = "service_type" }',
        'shape = { unit = "person", kind = "no_such_variable" }',
        'shape = { unit = "person", kind = "service_type", extra = 1 }',
    ],
)
def test_a_bad_shape_is_named_at_its_line(
    world: World, job_variant: JobWriter, tmp_path: Path, line: str
) -> None:
    with pytest.raises(JobError) as caught:
        world.run(_variant(world, job_variant, line), tmp_path / "ws")
    assert "anonymity.shape" in str(caught.value)
