"""``koble run``, ``koble audit verify`` and ``koble audit reproduce`` end to end."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from koble.cli.main import cli as main
from tests.linkage.conftest import World

PASS = "correct horse battery staple"


@pytest.fixture(scope="module")
def cli_run(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    workspace = tmp_path_factory.mktemp("cli") / "ws"
    result = CliRunner().invoke(
        main,
        ["run", str(world.distributed), "--workspace", str(workspace), "--world", str(world.path),
         "--json"],
        env={"KOBLE_KEYSET_PASSPHRASE": PASS},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["route"] == "distributed" and summary["delivery"].endswith("delivery")
    return workspace


def test_run_prints_timings_per_step_and_resumes_as_done(world: World, cli_run: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["run", str(world.distributed), "--workspace", str(cli_run), "--world", str(world.path)],
        env={"KOBLE_KEYSET_PASSPHRASE": PASS},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "done earlier" in result.stdout and "resumed after step" in result.stdout


def test_audit_verify_passes_then_catches_tampering(cli_run: Path, tmp_path: Path) -> None:
    delivery = tmp_path / "delivery"
    shutil.copytree(cli_run / "researcher" / "delivery", delivery)
    runner = CliRunner()
    pin = ["--public-key", str(cli_run / "keys" / "operator.signing.pub.pem")]
    unpinned = runner.invoke(main, ["audit", "verify", str(delivery)])
    assert unpinned.exit_code == 1 and "signing key pinned" in unpinned.stdout
    ok = runner.invoke(main, ["audit", "verify", str(delivery), "--workspace", str(cli_run), *pin])
    assert ok.exit_code == 0, ok.output
    assert "VERIFIED" in ok.stdout and "signature" in ok.stdout
    # a changed data byte: the hash no longer matches
    target = delivery / "npr_extract.csv"
    data = bytearray(target.read_bytes())
    data[-2] = ord("9") if data[-2] != ord("9") else ord("8")
    target.write_bytes(bytes(data))
    bad = runner.invoke(main, ["audit", "verify", str(delivery), "--json", *pin])
    assert bad.exit_code == 1
    failed = [c for c in json.loads(bad.stdout)["checks"] if not c["ok"]]
    assert [c["check"] for c in failed] == ["file npr_extract.csv"]


def test_audit_verify_catches_an_edited_manifest_and_a_wrong_key(
    cli_run: Path, tmp_path: Path
) -> None:
    delivery = tmp_path / "delivery"
    shutil.copytree(cli_run / "researcher" / "delivery", delivery)
    runner = CliRunner()
    wrong_key = runner.invoke(main, ["audit", "verify", str(delivery), "--key-id", "0" * 16])
    assert wrong_key.exit_code == 1 and "not the expected" in wrong_key.stdout
    manifest = json.loads((delivery / "manifest.json").read_text("utf-8"))
    manifest["manifest"]["outputs"][0]["sha256"] = "0" * 64
    (delivery / "manifest.json").write_text(json.dumps(manifest), "utf-8")
    pin = ["--public-key", str(cli_run / "keys" / "operator.signing.pub.pem")]
    bad = runner.invoke(main, ["audit", "verify", str(delivery), *pin])
    assert bad.exit_code == 1 and "does not verify" in bad.stdout


def test_audit_verify_finds_a_fodselsnummer_in_a_delivered_file(
    world: World, cli_run: Path, tmp_path: Path
) -> None:
    """A delivery re-signed by the operator but holding an fnr still fails the scan."""
    import polars as pl

    from koble.linkage.formats import write_delivery
    from koble.linkage.verify import verify_delivery

    delivery = tmp_path / "delivery"
    shutil.copytree(cli_run / "researcher" / "delivery", delivery)
    fnr = pl.read_parquet(world.path / "population.parquet")["person_id"][0]
    frame = pl.DataFrame({"note": [f"pasient {fnr}"]})
    import datetime

    write_delivery(frame, delivery / "npr_extract.csv", "csv", labels={},
                   timestamp=datetime.datetime(2026, 1, 1))  # fmt: skip
    report = verify_delivery(delivery)
    scans = {c.name: c.ok for c in report.checks}
    assert scans["identifier scan npr_extract.csv"] is False
    assert str(fnr) not in report.to_text()


def test_audit_reproduce_is_byte_identical(world: World, cli_run: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["audit", "reproduce", str(world.distributed), "--workspace", str(tmp_path / "again"),
         "--against", str(cli_run / "researcher" / "delivery"), "--keys", str(cli_run / "keys"),
         "--world", str(world.path)],
        env={"KOBLE_KEYSET_PASSPHRASE": PASS},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "BYTE-IDENTICAL" in result.stdout and "DIFF" not in result.stdout


def test_reproduce_with_other_keys_differs(world: World, cli_run: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["audit", "reproduce", str(world.distributed), "--workspace", str(tmp_path / "other"),
         "--against", str(cli_run / "researcher" / "delivery"), "--keys", str(tmp_path / "new"),
         "--world", str(world.path)],
        env={"KOBLE_KEYSET_PASSPHRASE": PASS},
    )  # fmt: skip
    assert result.exit_code == 1
    assert "NOT IDENTICAL" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--world", "nowhere", "--sources", "x.toml"], "not both"),
        ([], "KOBLE_KEYSET_PASSPHRASE"),
    ],
)
def test_run_usage_errors_are_one_line(
    world: World, tmp_path: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(
        main, ["run", str(world.distributed), "--workspace", str(tmp_path / "ws"), *args], env={}
    )
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_wrong_passphrase_is_uninformative(world: World, cli_run: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["run", str(world.distributed), "--workspace", str(cli_run), "--world", str(world.path)],
        env={"KOBLE_KEYSET_PASSPHRASE": "wrong"},
    )  # fmt: skip
    assert result.exit_code == 2
    assert re.fullmatch(
        r"koble: error: cannot open keyset \S+ with the passphrase from "
        r"KOBLE_KEYSET_PASSPHRASE: cryptographic operation failed",
        result.stderr.strip(),
    )


def test_job_errors_name_the_line(world: World, tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text(world.distributed.read_text("utf-8").replace("REK 2026/12345", ""), "utf-8")
    result = CliRunner().invoke(
        main, ["run", str(job), "--workspace", str(tmp_path / "ws"), "--world", str(world.path)],
        env={"KOBLE_KEYSET_PASSPHRASE": PASS},
    )  # fmt: skip
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 4 and all("job.toml:" in line and "approval" in line for line in lines)
