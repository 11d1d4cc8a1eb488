"""Identity recovery in a linkage job (issue 16, item 3): the run, delivery, quality
report, audit and reproduction, and the review findings (issue 16) on runs: a valid number
of someone else, counts, ages at death, delivered weights.

The session's distributed demo job asks for recovery of its survey cohort (conftest's
``distributed_run``); the Helsearkivregisteret job here recovers the registry's journals.
Recovered records are checked against the synthetic world's truth. The job's recovery
options and the plan are test_recovery_plan.py; the linkage bias table's small cells
test_linkage_bias.py.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pyreadstat
import pytest
from click.testing import CliRunner

from koble.cli.main import cli as main
from koble.linkage.demo_jobs import write_helsearkiv_job
from koble.linkage.executor import RunResult
from koble.linkage.formats import read_delivery, write_delivery
from koble.linkage.labels import LINK_METHODS, labels_for
from koble.linkage.reproduce import reproduce_job
from tests.linkage.conftest import World, fixed_now


@pytest.fixture(scope="module")
def helsearkiv_run(world: World, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    job = write_helsearkiv_job(world.path, fmt="csv", persons=600)
    return world.run(job, tmp_path_factory.mktemp("helsearkiv") / "ws")


# --- the run --------------------------------------------------------------------------------
def test_recovered_population_rows_link_to_their_true_person(
    world: World, distributed_run: RunResult
) -> None:
    ttp = distributed_run.workspace / "ttp" / "store"
    resolved = pl.read_parquet(ttp / "population_resolved.parquet")
    truth = pl.read_parquet(world.path / "truth" / "cohort.parquet").with_columns(
        (pl.col("row") + 1).cast(pl.String).alias("record_id")
    )
    linked = resolved.filter(pl.col("fnr").is_not_null()).join(truth, on="record_id")
    dirty = truth.filter(pl.col("dirt").is_in(["wrong_check_digit", "missing"]))
    recovered = linked.join(dirty, on="record_id", how="semi")
    assert recovered.height >= 10  # the cohort's wrong check digits and missing numbers
    assert set(recovered["link_method"]) <= {"repaired", "probabilistic", "clerical"}
    assert (linked["fnr"] == linked["person_id"]).all()  # the valid numbers' too
    # every row went to the TTP (a valid number may be someone else's), none twice
    assert resolved["record_id"].n_unique() == resolved.height >= dirty.height
    assert (linked["link_method"] == "exact").sum() > dirty.height


def test_every_population_row_ends_keyed_or_rejected(distributed_run: RunResult) -> None:
    store = distributed_run.workspace / "operator" / "store"
    report = json.loads((store / "population_report.json").read_text("utf-8"))
    pop, linkage = report["population"], report["linkage"]
    rejects = pl.read_parquet(store / "population_rejects.parquet")
    assert pop["rows"] == pop["persons"] + rejects.height
    assert linkage["rows"] == pop["rows"] == sum(linkage["by_outcome"].values())
    keyed = sum(linkage["by_outcome"][m] for m in ("exact", "repaired", "probabilistic",
                                                   "clerical"))  # fmt: skip
    assert keyed == pop["rows"] - rejects.height
    quality = json.loads((distributed_run.delivery / "quality.json").read_text("utf-8"))
    assert all(c["ok"] for c in quality["reconciliation"])
    assert any(c["check"].startswith("linkage (population)") for c in quality["reconciliation"])


def test_researcher_gets_link_method_and_probability_per_person(
    distributed_run: RunResult,
) -> None:
    frame = read_delivery(distributed_run.delivery / "linkage.csv")
    persons = json.loads(
        (distributed_run.workspace / "operator" / "store" / "population_report.json").read_text()
    )["population"]["persons"]
    assert frame.columns == ["LOPENR", "LINK_METHOD", "MATCH_PROBABILITY", "MATCH_WEIGHT"]
    assert frame.height == persons == frame["LOPENR"].n_unique()
    assert set(frame["LINK_METHOD"]) <= {"1", "2", "3", "4"}
    assert {"2", "3"} & set(frame["LINK_METHOD"])  # some persons were recovered
    probability = frame["MATCH_PROBABILITY"].cast(pl.Float64)
    assert ((probability > 0) & (probability <= 1)).all()
    weight = frame["MATCH_WEIGHT"].cast(pl.Float64, strict=False)
    exactish = frame["LINK_METHOD"].is_in(["1", "2"])
    assert weight.filter(exactish).is_null().all()  # no model weight for exact and repaired
    assert weight.filter(frame["LINK_METHOD"] == "3").is_not_null().all()
    codebook = (distributed_run.delivery / "codebook.md").read_text("utf-8")
    assert "linkage.csv" in codebook and "probabilistic" in codebook
    manifest = json.loads((distributed_run.delivery / "manifest.json").read_text("utf-8"))
    assert "linkage.csv" in {o["file"] for o in manifest["manifest"]["outputs"]}


@pytest.mark.parametrize("fmt", ["parquet", "stata", "spss"])
def test_link_method_is_labelled_in_every_format(tmp_path: Path, fmt: str) -> None:
    frame = pl.DataFrame(
        {"lopenr": [1, 2, 3], "link_method": [1, 2, 3], "match_probability": [1.0, 1.0, 0.97]},
        schema_overrides={"link_method": pl.Int8},
    )
    labels, value_labels = labels_for(frame.columns)
    suffix = {"parquet": "parquet", "stata": "dta", "spss": "sav"}[fmt]
    path = tmp_path / f"linkage.{suffix}"
    write_delivery(frame, path, fmt, labels=labels, value_labels=value_labels,
                   timestamp=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))  # fmt: skip
    if fmt == "parquet":
        field = pq.read_schema(path).field("LINK_METHOD")
        assert field.metadata is not None
        assert b"probabilistic" in field.metadata[b"value_labels"]
        return
    reader = pyreadstat.read_dta if fmt == "stata" else pyreadstat.read_sav
    _, meta = reader(str(path))
    assert meta.column_names_to_labels["LINK_METHOD"] == "Koblingsmetode"
    codes = meta.variable_value_labels["LINK_METHOD"]
    assert {int(k): v for k, v in codes.items()} == dict(LINK_METHODS)


def test_quality_report_shows_the_linkage_section(distributed_run: RunResult) -> None:
    md = (distributed_run.delivery / "quality.md").read_text("utf-8")
    assert "## Linkage: population" in md
    assert "Estimated at the thresholds by the model: precision" in md
    assert "| by | group | records | linked | link rate | difference |" in md
    html = (distributed_run.delivery / "quality.html").read_text("utf-8")
    assert "Linkage: population" in html
    quality = json.loads((distributed_run.delivery / "quality.json").read_text("utf-8"))
    section = quality["linkage"][0]
    assert {g["by"] for g in section["bias"]["groups"]} == {"sex", "age_group", "birth_cohort",
                                                            "fylke"}  # fmt: skip
    assert "<5" not in md
    for group in section["bias"]["groups"]:
        if group["hidden"]:
            assert group["rows"] is None and group["linked"] is None and group["rate"] is None


def test_helsearkiv_job_recovers_its_journals(world: World, helsearkiv_run: RunResult) -> None:
    extract = read_delivery(helsearkiv_run.delivery / "helsearkivregisteret_extract.csv")
    assert {"LINK_METHOD", "MATCH_PROBABILITY"} <= set(extract.columns)
    assert {"1", "2", "3"} & set(extract["LINK_METHOD"]) >= {"1"}
    assert not {"FIRST_NAME", "LAST_NAME", "BIRTH_DATE", "FNR"} & set(extract.columns)
    party = helsearkiv_run.workspace / "registry-helsearkivregisteret" / "store"
    table = pl.read_parquet(party / "helsearkivregisteret_recovered.parquet")
    truth = pl.read_parquet(world.path / "truth" / "helsearkiv.parquet")
    recovered = table.filter(pl.col("link_method") > 1).join(truth, on="journal_id")
    assert recovered.height > 20
    wrong = recovered.filter(pl.col("fnr") != pl.col("person_id"))
    assert wrong.height <= max(1, recovered.height // 200)  # precision ≥ 0.995 here
    quality = json.loads((helsearkiv_run.delivery / "quality.json").read_text("utf-8"))
    section = next(s for s in quality["linkage"] if s["scope"] == "helsearkivregisteret")
    assert section["rows"] == sum(section["by_outcome"].values())
    assert section["model"]["estimated_precision"] > 0.9
    assert all(c["ok"] for c in quality["reconciliation"])


def test_resolve_is_audited_with_counts_and_thresholds_only(helsearkiv_run: RunResult) -> None:
    lines = (helsearkiv_run.workspace / "audit.log").read_text("utf-8").splitlines()
    entries = [json.loads(line) for line in lines if line.strip()]
    resolve = [e for e in entries if e.get("operation") == "linkage.resolve_identities"]
    assert len(resolve) == 1
    details = resolve[0]["details"]
    assert details["threshold_low"] == 0.8 and details["threshold_high"] == 0.99
    assert details["records"] > 0 and "estimated_precision" in details
    assert details["linked_probabilistic"] + details["linked_repaired"] > 0


def test_reproduce_a_run_with_recovery_gives_identical_bytes(
    world: World, helsearkiv_run: RunResult, tmp_path: Path
) -> None:
    report = reproduce_job(
        world.path / "job_helsearkiv.toml",
        tmp_path / "again",
        helsearkiv_run.delivery,
        keys_dir=helsearkiv_run.workspace.parent / f"{helsearkiv_run.workspace.name}-keys",
        kek=world.kek,
        sources=world.sources,
        catalogue=world.catalogue,
        now=fixed_now,
        randbytes=os.urandom,
    )
    assert report.identical, [c for c in report.files if not c.identical]


def test_recovery_without_a_register_is_refused_before_anything(
    world: World, tmp_path: Path
) -> None:
    sources = tmp_path / "sources.toml"
    sources.write_text(
        f'[registries.npr]\nfile = "{(world.path / "npr.parquet").as_posix()}"\n'
        'id_column = "fnr"\ndate_column = "start_date"\n',
        "utf-8",
    )
    text = world.distributed.read_text("utf-8")
    head, *sections = text.split("\n[registries.")
    job = tmp_path / "job.toml"
    job.write_text("\n[registries.".join([head, *[s for s in sections if s.startswith("npr]")]]))
    (tmp_path / "study_population.parquet").write_bytes(
        (world.path / "study_population.parquet").read_bytes()
    )
    result = CliRunner().invoke(
        main,
        ["run", str(job), "--workspace", str(tmp_path / "ws"), "--sources", str(sources),
         "--keys", str(tmp_path / "keys")],
        env={"KOBLE_KEYSET_PASSPHRASE": "correct horse battery staple"},
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "[ttp] register" in result.stderr
    assert not (tmp_path / "ws").exists()


# --- review findings (issue 16): wrong persons' numbers, counts, disclosure, weights --------
@pytest.fixture(scope="module")
def swapped_run(world: World, tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, Path]:
    """The Helsearkivregisteret job on a table where some journals with a valid number carry
    another registered person's number, of the other sex and another birth date."""
    import dataclasses

    root = tmp_path_factory.mktemp("swapped")
    job = write_helsearkiv_job(world.path, fmt="csv", persons=600)
    source = world.sources.get("helsearkivregisteret")
    table = pl.read_parquet(source.file)
    persons = pl.read_parquet(world.path / "population.parquet",
                              columns=["person_id", "sex", "birth_date"])  # fmt: skip
    truth = pl.read_parquet(world.path / "truth" / "helsearkiv.parquet",
                            columns=["journal_id", "person_id"])  # fmt: skip
    who = table.select("journal_id", source.id_column).join(truth, on="journal_id", how="left")
    mine = who.filter(pl.col(source.id_column) == pl.col("person_id")).head(60)
    others = persons.sample(n=600, seed=5)
    pairs = (
        mine.join(persons, on="person_id")
        .join(others, how="cross", suffix="_other")
        .filter((pl.col("sex") != pl.col("sex_other"))
                & (pl.col("birth_date") != pl.col("birth_date_other")))
        .unique("journal_id", keep="first", maintain_order=True)
        .select("journal_id", pl.col("person_id_other").alias("swap"))
    )  # fmt: skip
    assert pairs.height >= 40
    dirty = (
        table.join(pairs, on="journal_id", how="left", maintain_order="left")
        .with_columns(pl.coalesce("swap", source.id_column).alias(source.id_column))
        .drop("swap")
    )
    file = root / "helsearkiv_swapped.parquet"
    dirty.write_parquet(file)
    registries = {**world.sources.registries,
                  "helsearkivregisteret": dataclasses.replace(source, file=file)}  # fmt: skip
    sources = dataclasses.replace(world.sources, registries=registries)
    pairs.write_parquet(root / "swapped.parquet")
    return world.run(job, root / "ws", sources=sources), root / "swapped.parquet"


def test_a_valid_number_of_someone_else_is_never_an_exact_link(
    world: World, swapped_run: tuple[RunResult, Path]
) -> None:
    run, swapped_file = swapped_run
    swapped = pl.read_parquet(swapped_file)
    party = run.workspace / "registry-helsearkivregisteret" / "store"
    table = pl.read_parquet(party / "helsearkivregisteret_recovered.parquet")
    truth = pl.read_parquet(world.path / "truth" / "helsearkiv.parquet",
                            columns=["journal_id", "person_id"])  # fmt: skip
    checked = table.join(truth, on="journal_id")
    exact = checked.filter(pl.col("link_method") == 1)
    assert exact.height > 100
    assert (exact["fnr"] == exact["person_id"]).all()  # no exact link to the wrong person
    mine = checked.join(swapped, on="journal_id", how="semi")
    assert mine.height == swapped.height
    assert not (mine["fnr"] == mine["journal_id"].replace_strict(
        swapped["journal_id"], swapped["swap"])).any()  # fmt: skip
    linked = mine.filter(pl.col("fnr").is_not_null())
    assert (linked["fnr"] == linked["person_id"]).all()  # recovered to the right person
    resolved = pl.read_parquet(party / "helsearkivregisteret_resolved.parquet")
    assert resolved.height == table.height  # every journal went to the TTP
    # the registry's linkage section counts every journal, not only those without a number
    quality = json.loads((run.delivery / "quality.json").read_text("utf-8"))
    section = next(s for s in quality["linkage"] if s["scope"] == "helsearkivregisteret")
    assert section["rows"] == table.height == sum(section["by_outcome"].values())
    assert section["by_outcome"]["exact"] == exact.height
    assert all(c["ok"] for c in quality["reconciliation"])


def test_helsearkiv_bias_ages_at_death_and_leaves_out_an_unknown_fylke(
    helsearkiv_run: RunResult,
) -> None:
    quality = json.loads((helsearkiv_run.delivery / "quality.json").read_text("utf-8"))
    bias = next(s for s in quality["linkage"] if s["scope"] == "helsearkivregisteret")["bias"]
    assert "fylke" in bias["single_group"] and bias["ages_at_death"]
    assert "fylke" not in {g["by"] for g in bias["groups"]}
    ages = {g["group"] for g in bias["groups"] if g["by"] == "age_group"}
    assert ages - {"80+", "unknown"}  # ages at death, not every journal holder 80+ today
    md = (helsearkiv_run.delivery / "quality.md").read_text("utf-8")
    assert "left out, one group for every record: fylke" in md
    assert "ages at death for the deceased" in md


def test_delivered_weight_tells_probabilistic_links_from_exact(helsearkiv_run: RunResult) -> None:
    extract = read_delivery(helsearkiv_run.delivery / "helsearkivregisteret_extract.csv")
    assert list(extract.columns[-3:]) == ["LINK_METHOD", "MATCH_PROBABILITY", "MATCH_WEIGHT"]
    method = extract["LINK_METHOD"]
    weight = extract["MATCH_WEIGHT"].cast(pl.Float64, strict=False)
    assert weight.filter(method.is_in(["1", "2"])).is_null().all()
    probabilistic = weight.filter(method == "3")
    assert probabilistic.len() > 0 and probabilistic.is_not_null().all()
    assert probabilistic.n_unique() > 1  # the researcher can rank the probabilistic links
    codebook = (helsearkiv_run.delivery / "codebook.md").read_text("utf-8")
    assert "Koblingsvekt" in codebook


def test_the_resolve_report_reads_back_as_its_type(helsearkiv_run: RunResult) -> None:
    """The TTP's resolve report is a typed record: read back as ResolveReport, written
    exactly as its JSON, its records each in one outcome, and the quality report's section
    built from it."""
    from koble.linkage import names
    from koble.linkage.reports import ResolveReport, read_report

    path = helsearkiv_run.workspace / "operator" / "store"
    path /= names.resolve_report("helsearkivregisteret")
    report = read_report(path, ResolveReport)
    assert report.to_json() == json.loads(path.read_text(encoding="utf-8"))
    assert report.records == sum(report.by_method.values()) + report.unresolved
    assert report.records > 0 and report.scope == "helsearkivregisteret"
    quality = json.loads((helsearkiv_run.delivery / "quality.json").read_text("utf-8"))
    section = next(s for s in quality["linkage"] if s["scope"] == "helsearkivregisteret")
    assert section == json.loads(json.dumps(report.linkage_section()))
