"""No silently empty delivery (issue 14): a pseudonymous registry given its raw fnr feed
delivered 0 rows with exit 0, "Reconciliation PASS" and "VERIFIED"."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from koble.cli.main import cli as main
from koble.errors import ColumnError, InputError
from koble.linkage.keys import LinkageKeys
from koble.linkage.manifest import sign_manifest
from koble.linkage.quality import verdict
from koble.linkage.reports import ExtractReport
from koble.linkage.steps_deliver import _checks
from koble.linkage.verify import verify_delivery
from tests.linkage.conftest import JobWriter, World, fixed_now
from tests.linkage.report_factories import extract_report, population_counts

PASS = "correct horse battery staple"


def _with_source(world: World, registry: str, **changes: object) -> object:
    source = dataclasses.replace(world.sources.get(registry), **changes)  # type: ignore[arg-type]
    return dataclasses.replace(
        world.sources, registries={**world.sources.registries, registry: source}
    )


def test_a_raw_fnr_feed_for_a_pseudonymous_registry_is_refused_before_anything(
    world: World, tmp_path: Path
) -> None:
    """The README's way in: a sources file naming the feed without `ingest = true`."""
    sources = tmp_path / "sources.toml"
    feed = (world.path / "feeds" / "reseptregisteret.parquet").as_posix()
    sources.write_text(
        f'[registries.npr]\nfile = "{(world.path / "npr.parquet").as_posix()}"\n'
        'id_column = "fnr"\ndate_column = "start_date"\n'
        f'[registries.reseptregisteret]\nfile = "{feed}"\nid_column = "fnr"\n'
        'date_column = "dispensing_date"\n',
        "utf-8",
    )
    job = tmp_path / "job.toml"
    text = world.distributed.read_text("utf-8")
    head, *sections = text.split("\n[registries.")
    kept = [s for s in sections if s.startswith(("npr]", "resept"))]
    job.write_text("\n[registries.".join([head, *kept]), "utf-8")
    shutil.copy(world.path / "study_population.parquet", tmp_path)
    workspace = tmp_path / "ws"
    result = CliRunner().invoke(
        main,
        ["run", str(job), "--workspace", str(workspace), "--sources", str(sources),
         "--keys", str(tmp_path / "keys")],
        env={"KOBLE_KEYSET_PASSPHRASE": PASS},
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "reseptregisteret.parquet: column 'fnr'" in result.stderr
    assert "holds fødselsnummer" in result.stderr and "ingest = true" in result.stderr
    assert "must be called fnr or end in _fnr" in " ".join(result.stderr.split())  # one step
    assert "Traceback" not in result.output and not workspace.exists()


def test_a_table_without_pseudonyms_is_refused(world: World, tmp_path: Path) -> None:
    table = tmp_path / "resept.parquet"
    pl.read_parquet(world.path / "feeds" / "reseptregisteret.parquet").with_columns(
        pl.lit("not-a-pseudonym").alias("fnr")
    ).write_parquet(table)
    sources = _with_source(world, "reseptregisteret", file=table, id_column="fnr", ingest=False)
    with pytest.raises(ColumnError, match="holds no koble pseudonyms") as info:
        world.run(world.distributed, tmp_path / "ws", sources=sources)
    assert str(table) in str(info.value) and "column 'fnr'" in str(info.value)


def test_a_pseudonymous_registry_that_finds_nobody_fails_the_run(
    world: World, tmp_path: Path
) -> None:
    """Keyed by pseudonyms, but not under this TTP's key: nobody matches."""
    feed = pl.read_parquet(world.path / "feeds" / "reseptregisteret.parquet")
    foreign = [os.urandom(18).hex() for _ in range(feed.height)]
    table = tmp_path / "resept.parquet"
    feed.drop("fnr").with_columns(pl.Series("fnr_pseudonym", foreign)).write_parquet(table)
    sources = _with_source(world, "reseptregisteret", file=table, ingest=False)
    with pytest.raises(InputError) as info:
        world.run(world.distributed, tmp_path / "ws", sources=sources)
    message = str(info.value)
    assert "registry reseptregisteret found none of the" in message
    assert str(table) in message and "column 'fnr_pseudonym'" in message
    assert "ingest = true" in message and info.value.exit_code == 2


def test_an_identifiable_registry_that_finds_nobody_fails_the_run(
    world: World, tmp_path: Path
) -> None:
    table = tmp_path / "npr.parquet"
    npr = pl.read_parquet(world.path / "npr.parquet")
    npr.with_columns(pl.lit("00000000000").alias("fnr")).write_parquet(table)
    sources = _with_source(world, "npr", file=table)
    with pytest.raises(InputError, match="registry npr found none of the"):
        world.run(world.distributed, tmp_path / "ws", sources=sources)


def test_a_period_with_no_rows_fails_the_run_saying_so(
    world: World, job_variant: JobWriter, tmp_path: Path
) -> None:
    text = world.distributed.read_text("utf-8").replace(
        "period = { start = 2015, end = 2024 }", "period = { start = 1990, end = 1991 }", 1
    )
    with pytest.raises(InputError, match=r"registry npr found .* lies in the approved period"):
        world.run(job_variant("old-period", text), tmp_path / "ws")


def _report(**values: object) -> ExtractReport:
    base = {"registry": "reseptregisteret", "persons_sent": 120, "persons_found": 0,
            "rows_delivered": 0, "file_rows": 0}  # fmt: skip
    return extract_report(**{**base, **values})


def test_the_reconciliation_fails_an_empty_delivery_for_a_non_empty_population() -> None:
    population = population_counts(rows=130, persons=120, invalid=10)
    checks = _checks(population, [_report()], {})
    failed = [c for c in checks if not c.ok]
    assert [c.check for c in failed] == [
        "reseptregisteret: rows delivered > 0 when persons were sent"
    ]
    ok, message = verdict({"reconciliation": [c.to_json() for c in checks]})
    assert not ok and message.startswith("FAIL")
    fine = _checks(population, [_report(persons_found=3, rows_delivered=7, file_rows=7)], {})
    assert all(c.ok for c in fine)


@pytest.mark.parametrize("keep_new_check", [True, False])
def test_audit_verify_fails_a_delivery_with_an_empty_file(
    world: World, distributed_run: object, tmp_path: Path, keep_new_check: bool
) -> None:
    """A delivery whose npr file is empty, signed by the operator: with the reconciliation's
    new check failing, and as an older manifest without it: both NOT VERIFIED."""
    source = distributed_run.delivery  # type: ignore[attr-defined]
    delivery = tmp_path / "delivery"
    shutil.copytree(source, delivery)
    target = delivery / "npr_extract.csv"
    target.write_text(target.read_text("utf-8").splitlines()[0] + "\n", "utf-8")
    document = json.loads((delivery / "manifest.json").read_text("utf-8"))
    body = document["manifest"]
    for output in body["outputs"]:
        if output["file"] == target.name:
            from koble.digests import sha256_file

            output.update(sha256=sha256_file(target), rows=0)
    checks = [c for c in body["reconciliation"] if c["check"].startswith("npr: rows delivered >")]
    assert checks
    if keep_new_check:
        checks[0]["ok"] = False
    else:
        body["reconciliation"] = [c for c in body["reconciliation"] if c not in checks]
    keys_dir = distributed_run.workspace.parent / "ws-keys"  # type: ignore[attr-defined]
    keys = LinkageKeys.open_or_create(keys_dir, world.kek, randbytes=os.urandom, now=fixed_now)
    (delivery / "manifest.json").write_text(
        json.dumps(sign_manifest(body, keys.signer), indent=2), "utf-8"
    )
    report = verify_delivery(delivery, key_id=keys.signer.key_id)
    failed = {c.name: c.detail for c in report.checks if not c.ok}
    assert not report.ok
    assert failed["no empty delivery"].startswith("0 rows in npr_extract.csv")
    assert ("counts reconcile" in failed) is keep_new_check
    result = CliRunner().invoke(
        main,
        ["audit", "verify", str(delivery), "--public-key",
         str(keys_dir / "operator.signing.pub.pem")],
    )  # fmt: skip
    assert result.exit_code == 1 and "NOT VERIFIED" in result.stdout
