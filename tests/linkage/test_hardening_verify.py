"""Issue 12 §1: a person number in a job's free text never reaches a delivery, and the
auditor's check scans every file of a delivery, text and JSON included.

Before: a job whose project id, recipient or organisation held a fødselsnummer was accepted,
the number went into manifest.json, quality.md and quality.json, and ``koble audit verify``
said VERIFIED because it scanned only the data files' columns.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from koble.cli.main import cli
from koble.digests import sha256_file
from koble.linkage.job import JobError, parse_job
from koble.linkage.keys import write_json
from koble.linkage.manifest import FORMAT, sign_manifest
from koble.linkage.verify import verify_delivery
from koble.pseudonym.signing import Ed25519Signer
from koble.registries.catalogue import Catalogue

FNR = "15108695088"
OTHER = "25124940411"
OPERATOR = Ed25519Signer(Ed25519PrivateKey.from_private_bytes(random.Random(5).randbytes(32)))

JOB = """\
[project]
id = "{project}"
title = "Test"

[population]
file = "population.parquet"
id_column = "fnr"

[recipient]
name = "{name}"
organisation = "{organisation}"

[delivery]
format = "parquet"

[registries.npr]
approval = {{ kind = "rek", reference = "{reference}" }}
variables = ["icd10_main", "start_date"]
period = {{ start = 2010, end = 2020 }}
"""


def job(**fields: str) -> str:
    values = {"project": "P1", "name": "Kari", "organisation": "UiO", "reference": "REK 1"}
    return JOB.format(**{**values, **fields})


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load()


def test_job_fields_holding_a_person_number_are_refused_all_at_once(
    catalogue: Catalogue,
) -> None:
    text = job(project=f"P-{FNR}", name=f"Kari {FNR[:6]} {FNR[6:]}", organisation=OTHER,
               reference=f"REK {OTHER}")  # fmt: skip
    with pytest.raises(JobError) as info:
        parse_job(text, catalogue, path="job.toml")
    found = [(p.line, p.message.split(" holds")[0]) for p in info.value.problems]
    assert found == [
        (2, "project.id"),
        (10, "recipient.name"),
        (11, "recipient.organisation"),
        (17, "registries.npr.approval.reference"),
    ]
    rendered = str(info.value) + "\n".join(info.value.lines())
    assert FNR not in rendered and OTHER not in rendered and FNR[6:] not in rendered


def test_a_person_number_in_a_key_or_list_is_refused_without_echo(catalogue: Catalogue) -> None:
    text = job().replace('"start_date"]', f'"start_date", "_{OTHER}"]')
    text += f'\n[schemas]\nx{FNR} = ["a"]\n'
    with pytest.raises(JobError) as info:
        parse_job(text, catalogue, path="job.toml")
    messages = [p.message for p in info.value.problems]
    assert any(m.startswith("registries.npr.variables holds a person number") for m in messages)
    assert any(m.startswith("a key in schemas holds a person number") for m in messages)
    assert not re.search(r"\d{11}", "\n".join(info.value.lines()))


def test_an_ordinary_job_is_still_valid(catalogue: Catalogue) -> None:
    """Long digit runs that are no person number (a case number, a year) are fine."""
    parsed = parse_job(job(reference="REK 2026/12345678901", project="P2026-014"), catalogue)
    assert parsed.project_id == "P2026-014"


def manifest_body(outputs: list[dict[str, Any]], *, rows: int, **overrides: Any) -> dict[str, Any]:
    """Every field of a ManifestBody (which verify reads it as), listing ``outputs``, their
    ``rows`` reconciled; ``overrides`` replace fields."""
    return {
        "format": FORMAT,
        "project": {"id": "P1", "title": "T"},
        "recipient": {"name": "Kari", "organisation": "UiO"},
        "job": {"file": "job.toml", "sha256": "ab" * 32},
        "catalogue_version": "2026.1",
        "software": {"koble": "0.1.0"},
        "engine": "duckdb",
        "created": "2026-11-01T12:00:00+00:00",
        "route": "distributed",
        "delivery_format": "parquet",
        "keys": {},
        "inputs": [],
        "outputs": outputs,
        "transfers": [],
        "refusals": [],
        "reconciliation": [{"check": "rows", "ok": True, "detail": f"{rows} = {rows}"}],
        **overrides,
    }


def make_delivery(directory: Path, **overrides: Any) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "cohort.parquet"
    pq.write_table(pa.table({"lopenr": [1, 2], "age": [40, 51]}), data)

    def entry(path: Path, rows: int | None) -> dict[str, Any]:
        return {"file": path.name, "sha256": sha256_file(path), "rows": rows, "from": "operator"}

    outputs = [entry(data, 2)]
    for name, text in overrides.pop("texts", {}).items():
        (directory / name).write_text(text, encoding="utf-8")
        outputs.append(entry(directory / name, None))
    body = manifest_body(outputs, rows=2, **overrides)
    write_json(directory / "manifest.json", sign_manifest(body, OPERATOR))


def failed(directory: Path) -> dict[str, str]:
    report = verify_delivery(directory, key_id=OPERATOR.key_id)
    return {c.name: c.detail for c in report.checks if not c.ok}


def test_verify_scans_the_manifest(tmp_path: Path) -> None:
    make_delivery(tmp_path, project={"id": f"P-{FNR}", "title": "T"})
    assert set(failed(tmp_path)) == {"identifier scan manifest.json"}
    assert FNR not in verify_delivery(tmp_path, key_id=OPERATOR.key_id).to_text()


@pytest.mark.parametrize(
    "name,text",
    [
        ("quality.md", f"# Quality\n\nRecipient: Kari ({FNR[:6]} {FNR[6:]})\n"),
        ("quality.json", json.dumps({"recipient": {"organisation": OTHER}})),
        ("codebook.txt", f"note: {FNR}\n"),
    ],
)
def test_verify_scans_every_text_file(tmp_path: Path, name: str, text: str) -> None:
    make_delivery(tmp_path, texts={name: text})
    assert set(failed(tmp_path)) == {f"identifier scan {name}"}
    assert FNR not in verify_delivery(tmp_path, key_id=OPERATOR.key_id).to_text()


def test_verify_passes_hashes_and_clean_text(tmp_path: Path) -> None:
    """A digit run inside a hash or word is not a person number standing alone."""
    make_delivery(tmp_path, texts={"quality.md": f"sha256 ab{FNR}cd, case P{FNR}x\n"})
    assert failed(tmp_path) == {}


def test_audit_verify_cli_fails_on_a_number_in_a_text_file(tmp_path: Path) -> None:
    make_delivery(tmp_path, texts={"quality.json": json.dumps({"project": FNR})})
    result = CliRunner().invoke(
        cli, ["audit", "verify", str(tmp_path), "--key-id", OPERATOR.key_id]
    )
    assert result.exit_code != 0, result.output
    assert "NOT VERIFIED" in result.output and FNR not in result.output
