"""End to end: each route run on a synthetic world, checked against the world's own tables."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from koble.errors import ColumnError, UsageError
from koble.linkage.executor import RunResult
from koble.linkage.formats import read_delivery
from koble.linkage.steps_central import AnonymityGateError
from koble.linkage.verify import verify_delivery
from koble.registries.identifiers.column import validate_column
from tests.linkage.conftest import JobWriter, World


def quality(run: RunResult) -> dict[str, object]:
    data: dict[str, object] = json.loads((run.delivery / "quality.json").read_text("utf-8"))
    return data


def operator_key(run: RunResult) -> str:
    """The operator's signing key id, from the run's keys directory (as an auditor pins it)."""
    from koble.pseudonym.signing import key_id_of

    keys = run.workspace.parent / f"{run.workspace.name}-keys"
    return key_id_of((keys / "operator.signing.pub.pem").read_bytes())


def registry_stats(run: RunResult, registry: str) -> dict[str, int]:
    for entry in quality(run)["registries"]:  # type: ignore[attr-defined]
        if entry["registry"] == registry:
            return dict(entry)
    raise KeyError(registry)


def test_distributed_route_delivers_one_verified_file_per_registry(
    distributed_run: RunResult,
) -> None:
    files = sorted(p.name for p in distributed_run.delivery.iterdir())
    extracts = [f for f in files if f.endswith("_extract.csv")]
    assert extracts == [
        "dodsarsaksregisteret_extract.csv", "hoftebruddregisteret_extract.csv",
        "kreftregisteret_extract.csv", "npr_extract.csv", "reseptregisteret_extract.csv",
    ]  # fmt: skip
    assert {"manifest.json", "quality.md", "quality.html", "quality.json", "codebook.md"} <= set(
        files
    )
    report = verify_delivery(distributed_run.delivery, key_id=operator_key(distributed_run))
    assert report.ok, report.to_text()
    npr = read_delivery(distributed_run.delivery / "npr_extract.csv")
    assert npr.columns == ["LOPENR", "START_DATE", "END_DATE", "CARE_LEVEL", "ICD10_MAIN"]


def test_distributed_extract_matches_the_registry_for_the_population(
    world: World, distributed_run: RunResult
) -> None:
    """NPR rows delivered = the registry's rows for the study population in the period,
    found through current and old identifiers; each person has exactly one løpenummer."""
    keys = pl.read_parquet(distributed_run.workspace / "operator" / "store" / "key_list.parquet")
    npr = pl.read_parquet(world.path / "npr.parquet")
    expected = npr.join(keys, on="fnr").filter(
        pl.col("start_date").dt.year().is_between(2015, 2024)
    )
    delivered = read_delivery(distributed_run.delivery / "npr_extract.csv")
    assert delivered.height == expected.height
    assert delivered["LOPENR"].cast(pl.Int64).n_unique() == expected["lopenr"].n_unique()
    stats = registry_stats(distributed_run, "npr")
    assert stats["rows_delivered"] == expected.height
    outside = npr.join(keys, on="fnr").height - expected.height
    assert stats["rows_outside_period"] == outside
    # the population: every row is keyed or rejected, for a reason
    population = quality(distributed_run)["population"]
    assert isinstance(population, dict)
    study = pl.read_parquet(world.path / "study_population.parquet")
    assert population["rows"] == study.height
    rejects = pl.read_parquet(
        distributed_run.workspace / "operator" / "store" / "population_rejects.parquet"
    )
    assert population["rows"] == population["persons"] + rejects.height
    # invalid numbers: rejected, or recovered at the TTP (the demo job asks for recovery)
    assert population["duplicates"] > 0 and population["invalid"] + population["recovered"] > 0


def test_consent_filter_keeps_only_consenting_persons(
    world: World, distributed_run: RunResult
) -> None:
    keys = pl.read_parquet(distributed_run.workspace / "operator" / "store" / "key_list.parquet")
    registry = pl.read_parquet(world.path / "quality_registry.parquet").join(keys, on="fnr")
    consenting = registry.filter(pl.col("consent"))["lopenr"].unique()
    refusing = registry.group_by("lopenr").agg(pl.col("consent").any()).filter(~pl.col("consent"))
    delivered = read_delivery(distributed_run.delivery / "hoftebruddregisteret_extract.csv")
    lopenr = delivered["LOPENR"].cast(pl.Int64)
    assert set(lopenr.to_list()) <= set(consenting.to_list())
    assert not set(lopenr.to_list()) & set(refusing["lopenr"].to_list())
    assert registry_stats(distributed_run, "hoftebruddregisteret")["persons_without_consent"] == (
        refusing.height
    )
    assert refusing.height > 0 and lopenr.n_unique() > 0
    # consent is per registration: a consenting person's unconsented rows stay behind too
    stats = registry_stats(distributed_run, "hoftebruddregisteret")
    consented_rows = registry.filter(pl.col("consent")).height
    assert stats["rows_delivered"] + stats["rows_outside_period"] == consented_rows
    assert stats["rows_without_consent"] == registry.filter(~pl.col("consent")).height


def test_ttp_route_links_through_registry_pseudonyms(distributed_run: RunResult) -> None:
    ttp = json.loads(
        (distributed_run.workspace / "operator" / "store" / "reseptregisteret_ttp_report.json")
        .read_text("utf-8")
    )  # fmt: skip
    assert ttp["persons_received"] == ttp["persons_pseudonymised"] + ttp["persons_unresolved"]
    assert ttp["domain"] == "registry:reseptregisteret"
    stats = registry_stats(distributed_run, "reseptregisteret")
    assert stats["route"] == "ttp-pseudonym" and stats["persons_found"] > 0
    delivered = read_delivery(distributed_run.delivery / "reseptregisteret_extract.csv")
    assert delivered.columns == ["LOPENR", "ATC", "DDD", "DISPENSING_DATE"]
    assert delivered.height == stats["rows_delivered"] > 0


def test_refused_registry_is_reported_and_receives_nothing(distributed_run: RunResult) -> None:
    refusals = quality(distributed_run)["refusals"]
    assert [r["registry"] for r in refusals] == ["abortregisteret"]  # type: ignore[attr-defined]
    assert "de-identified" in refusals[0]["reason"]  # type: ignore[index]
    assert not (distributed_run.workspace / "registry-abortregisteret").exists()


def test_central_route_delivers_an_anonymous_file_meeting_k(central_run: RunResult) -> None:
    assert verify_delivery(central_run.delivery, key_id=operator_key(central_run)).ok
    frame = read_delivery(central_run.delivery / "delivery.csv")
    assert "LOPENR" not in frame.columns
    qis = ["KOMMUNE", "SERVICE_TYPE", "START_DATE"]
    assert frame.group_by(qis).len()["len"].min() >= 5  # type: ignore[operator]
    gate = quality(central_run)["anonymity"]
    assert isinstance(gate, dict) and gate["meets"] and gate["k"] == 5
    assert frame.height == gate["rows"] - gate["suppressed"]
    assert (central_run.delivery / "anonymity.md").is_file()
    for column in frame.columns:
        assert not validate_column(frame[column].cast(pl.String))["valid"].any()


def test_anonymity_gate_failure_stops_without_delivery(
    world: World, job_variant: JobWriter, tmp_path: Path
) -> None:
    text = world.central.read_text("utf-8").replace("k = 5", "k = 100000")
    job = job_variant("central", text.replace("max_suppression = 0.05", "max_suppression = 0.0"))
    with pytest.raises(AnonymityGateError, match=r"nothing is delivered"):
        world.run(job, tmp_path / "ws")
    assert not (tmp_path / "ws" / "researcher" / "delivery").exists()
    assert (tmp_path / "ws" / "operator" / "store" / "anonymity" / "report.md").is_file()


def test_missing_population_column_names_file_and_column(
    world: World, job_variant: JobWriter, tmp_path: Path
) -> None:
    job = job_variant("dist", world.distributed.read_text("utf-8").replace(
        'id_column = "fnr"', 'id_column = "personnummer"'))  # fmt: skip
    with pytest.raises(ColumnError) as caught:
        world.run(job, tmp_path / "ws")
    assert "study_population.parquet" in str(caught.value)
    assert "personnummer" in str(caught.value)


def test_registry_without_source_is_a_clear_error(world: World, tmp_path: Path) -> None:
    from koble.linkage.sources import Sources

    empty = Sources({}, None, None, world.path)
    with pytest.raises(UsageError, match="no data source for registry"):
        world.run(world.distributed, tmp_path / "ws", sources=empty)


def test_workspace_of_another_job_is_refused(
    world: World, distributed_run: RunResult, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match="another job"):
        world.run(world.central, distributed_run.workspace)


@pytest.mark.parametrize("fmt", ["parquet", "stata", "spss", "sas"])
def test_every_delivery_format_verifies(
    world: World, job_variant: JobWriter, tmp_path: Path, fmt: str
) -> None:
    text = world.distributed.read_text("utf-8").replace('format = "csv"', f'format = "{fmt}"')
    result = world.run(job_variant(f"fmt-{fmt}", text), tmp_path / "ws")
    report = verify_delivery(result.delivery, key_id=operator_key(result))
    assert report.ok, report.to_text()
    suffix = {"parquet": "parquet", "stata": "dta", "spss": "sav", "sas": "xpt"}[fmt]
    frame = read_delivery(result.delivery / f"npr_extract.{suffix}")
    assert frame.height == registry_stats(result, "npr")["rows_delivered"]
    # every format follows design.md §1.5: delivered names, and labels where it holds them
    assert frame.columns == ["LOPENR", "START_DATE", "END_DATE", "CARE_LEVEL", "ICD10_MAIN"]
    if fmt == "stata":  # a truncated file is a failed check in the report, not a crash
        target = result.delivery / "npr_extract.dta"
        target.write_bytes(target.read_bytes()[:100])
        broken = verify_delivery(result.delivery, key_id=operator_key(result))
        failed = {c.name: c.detail for c in broken.checks if not c.ok}
        assert failed["pseudonym scan npr_extract.dta"].startswith("cannot read")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        schema = pq.read_schema(result.delivery / "npr_extract.parquet")
        assert all(b"label" in (f.metadata or {}) for f in schema)


def test_every_step_is_an_audit_event_in_a_verifiable_log(distributed_run: RunResult) -> None:
    from koble.pseudonym.audit import verify_log

    keys = distributed_run.workspace.parent / f"{distributed_run.workspace.name}-keys"
    public = (keys / "operator.signing.pub.pem").read_bytes()
    log = distributed_run.workspace / "audit.log"
    report = verify_log(log, public, require_closed=True)
    assert report.ok and report.signatures_checked
    events = [json.loads(line) for line in log.read_text("utf-8").splitlines()]
    steps = [e["details"]["step"] for e in events if e["type"] == "event"]
    assert steps == [s.id for s in distributed_run.plan.steps]  # the feed's ingest first
    assert steps[0] == "ingest-reseptregisteret"
    ingest = next(e for e in events if e.get("operation") == "linkage.sealed_ingest")
    assert ingest["rows_in"] == ingest["rows_out"] + (ingest["rejected"] or 0) > 0
    ttp = next(e for e in events if e.get("operation") == "linkage.pseudonymise_for_registry")
    assert ttp["domain"] == "registry:reseptregisteret" and ttp["key_id"]


def test_feed_ingested_in_chunks_gives_the_same_registry_table(
    world: World, distributed_run: RunResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A feed loaded a few thousand rows at a time (as a national feed is, to bound memory)
    gives the registry the same table as one load with the same keys, every feed row is
    stored or rejected, and a reject names its row in the whole feed."""
    import dataclasses

    import koble.linkage.steps_ingest as steps_ingest

    source = world.sources.get("reseptregisteret")
    feed = pl.read_parquet(source.file)
    bad = [2, 3_001, 3_002, feed.height]  # 1-based, on both sides of chunk boundaries
    broken = feed.with_columns(
        pl.when(pl.int_range(1, feed.height + 1).is_in(bad))
        .then(pl.lit("12345678901"))
        .otherwise(pl.col("fnr"))
        .alias("fnr")
    )
    broken.write_parquet(tmp_path / "feed.parquet")
    registries = dict(world.sources.registries)
    registries["reseptregisteret"] = dataclasses.replace(source, file=tmp_path / "feed.parquet")
    sources = dataclasses.replace(world.sources, registries=registries)
    keys = distributed_run.workspace.parent / f"{distributed_run.workspace.name}-keys"
    runs = {}
    for chunk in (3_001, 10_000_000):
        monkeypatch.setattr(steps_ingest, "FEED_CHUNK_ROWS", chunk)
        runs[chunk] = world.run(
            world.distributed, tmp_path / f"ws{chunk}", keys=keys, sources=sources
        )
    store = Path("registry-reseptregisteret") / "store" / "reseptregisteret.parquet"
    tables = [pl.read_parquet(r.workspace / store) for r in runs.values()]
    assert tables[0].equals(tables[1])
    assert tables[0].height == feed.height - len(bad)
    for run in runs.values():
        done = json.loads((run.workspace / "run.json").read_text("utf-8"))["done"]
        loaded = done["ingest-reseptregisteret"]["stats"]
        assert loaded["rows_sent"] == feed.height
        assert loaded["rows_stored"] + loaded["rows_rejected"] == feed.height
        sender = run.workspace / "ingest" / "reseptregisteret" / "sender"
        rejects = pl.read_parquet(sender / "rejects.parquet")
        assert sorted(rejects["feed_row"].to_list()) == bad
        assert set(rejects["reason"].to_list()) == {"invalid_date"}  # day 12, month 34


def test_central_route_counts_k_in_persons(central_run: RunResult) -> None:
    """Each released class holds k distinct persons, not just k rows: the linked file's
    persons, generalised independently to the gate's chosen levels, are counted per class."""
    from koble.anonymity.hierarchies import hierarchy_for

    store = central_run.workspace / "operator" / "store"
    gate = json.loads((store / "anonymity.json").read_text("utf-8"))
    linked = pl.read_parquet(store / "linked.parquet")
    assert linked["lopenr"].is_duplicated().any()  # several rows per person: the case at hand
    columns = []
    for qi in gate["level_index"]:  # the job's QIs and the person-constant columns
        generalised = hierarchy_for(gate["hierarchies"].get(qi, "categorical")).apply(linked[qi])
        level = generalised.level_names.index(gate["levels"][qi])
        columns.append(generalised.column(level).cast(pl.String).alias(qi.upper()))
    classes = (
        pl.DataFrame([*columns, linked["lopenr"]])
        .group_by([c.name for c in columns])
        .agg(pl.col("lopenr").n_unique().alias("persons"))
    )
    frame = read_delivery(central_run.delivery / "delivery.csv")
    released = frame.select([c.name for c in columns]).cast(pl.String).unique()
    persons = released.join(classes, on=released.columns, how="left")["persons"]
    assert persons.null_count() == 0 and persons.min() >= 5  # type: ignore[operator]
    # the linked file also holds the persons withheld whole, so its classes are no smaller
    assert persons.min() >= gate["min_class_persons"] >= 5  # type: ignore[operator]


def test_consent_is_per_registration(world: World, tmp_path: Path) -> None:
    """A person who consented to one registration and not another: only the consented
    registration leaves the registry."""
    import dataclasses

    source = world.sources.get("hoftebruddregisteret")
    table = pl.read_parquet(source.file).with_row_index("i")
    # withdraw consent for the first of every consenting person's several registrations
    first = table.filter(pl.col("consent")).filter(pl.col("fnr").is_duplicated())
    first = first.group_by("fnr").agg(pl.col("i").min())["i"]
    mixed = table.with_columns(
        pl.when(pl.col("i").is_in(first.implode())).then(False).otherwise(pl.col("consent"))
        .alias("consent")
    ).drop("i")  # fmt: skip
    path = tmp_path / "quality_registry_mixed.parquet"
    mixed.write_parquet(path)
    registries = {**world.sources.registries,
                  "hoftebruddregisteret": dataclasses.replace(source, file=path)}  # fmt: skip
    sources = dataclasses.replace(world.sources, registries=registries)
    run = world.run(world.distributed, tmp_path / "ws", sources=sources)
    keys = pl.read_parquet(run.workspace / "operator" / "store" / "key_list.parquet")
    in_keys = mixed.join(keys, on="fnr")
    per_person = in_keys.group_by("lopenr").agg(pl.col("consent").n_unique().alias("kinds"))
    assert (per_person["kinds"] == 2).any(), "no person with mixed consent in the population"
    stats = registry_stats(run, "hoftebruddregisteret")
    consented = in_keys.filter(pl.col("consent")).height
    assert stats["rows_delivered"] + stats["rows_outside_period"] == consented
    assert stats["rows_without_consent"] == in_keys.filter(~pl.col("consent")).height
    delivered = read_delivery(run.delivery / "hoftebruddregisteret_extract.csv")
    assert delivered.height == stats["rows_delivered"] > 0


def test_manifest_lists_every_input_with_its_rows(world: World, distributed_run: RunResult) -> None:
    manifest = json.loads((distributed_run.delivery / "manifest.json").read_text("utf-8"))
    inputs = {(i["party"], i["file"]): i for i in manifest["manifest"]["inputs"]}
    history = inputs[("operator", "identity_history.parquet")]
    assert history["rows"] == pl.read_parquet(world.path / "identity_history.parquet").height
    feed = inputs[("sender:reseptregisteret", "reseptregisteret.parquet")]
    assert feed["rows"] == pl.read_parquet(world.path / "feeds" / "reseptregisteret.parquet").height
    assert all(i["rows"] is not None and len(i["sha256"]) == 64 for i in inputs.values())


def test_reproduce_refuses_a_workspace_that_holds_a_run(
    world: World, distributed_run: RunResult
) -> None:
    from koble.linkage.reproduce import reproduce_job

    with pytest.raises(UsageError, match="new, empty workspace"):
        reproduce_job(
            world.distributed, distributed_run.workspace, distributed_run.delivery,
            keys_dir=distributed_run.workspace.parent / "ws-keys", kek=world.kek,
            sources=world.sources, catalogue=world.catalogue, now=lambda: None,
            randbytes=lambda n: bytes(n),
        )  # fmt: skip


def test_an_empty_population_is_refused(
    world: World, job_variant: JobWriter, tmp_path: Path
) -> None:
    from koble.errors import FileFormatError

    empty = world.path / f"empty_population_{tmp_path.name}.parquet"
    pl.read_parquet(world.path / "study_population.parquet").clear().write_parquet(empty)
    text = world.distributed.read_text("utf-8").replace("study_population.parquet", empty.name)
    with pytest.raises(FileFormatError, match="has no rows") as caught:
        world.run(job_variant("empty", text), tmp_path / "ws")
    assert empty.name in str(caught.value)
    assert not (tmp_path / "ws" / "researcher" / "delivery").exists()


def test_central_labels_say_what_was_coarsened(central_run: RunResult) -> None:
    gate = json.loads(
        (central_run.workspace / "operator" / "store" / "anonymity.json").read_text("utf-8")
    )
    coarsened = [q for q, i in gate["level_index"].items() if i > 0]
    assert coarsened
    codebook = (central_run.delivery / "codebook.md").read_text("utf-8")
    for qi in coarsened:
        assert f"(coarsened: {gate['levels'][qi]})" in codebook


def test_population_rejects_say_where_a_spreadsheet_dropped_a_leading_zero(
    world: World, job_variant: JobWriter, tmp_path: Path
) -> None:
    study = pl.read_parquet(world.path / "study_population.parquet")
    row = study["fnr"].str.starts_with("0").arg_true()[0]
    cut = study.with_columns(
        pl.when(pl.int_range(pl.len()) == row)
        .then(pl.col("fnr").str.slice(1))
        .otherwise(pl.col("fnr"))
        .alias("fnr")
    )
    path = world.path / f"cut_population_{tmp_path.name}.parquet"
    cut.write_parquet(path)
    text = world.distributed.read_text("utf-8").replace("study_population.parquet", path.name)
    text = text.replace("recover = true", "recover = false")  # rejected, not recovered
    result = world.run(job_variant("cut", text), tmp_path / "ws")
    rejects = pl.read_parquet(
        result.workspace / "operator" / "store" / "population_rejects.parquet"
    )
    hit = rejects.filter(pl.col("row") == row + 1)
    assert hit["reason"].to_list() == ["wrong_length"]
    assert hit["message"][0].endswith(
        "(10 digits: a leading zero may have been dropped by a spreadsheet)"
    )
    assert not rejects.filter(pl.col("row") != row + 1)["message"].str.contains("spreadsheet").any()
