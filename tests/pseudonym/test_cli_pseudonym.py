"""``koble keys|pseudonymise|reidentify|rekey|serials`` end to end, and leak scans of
everything they print, log and record."""

from __future__ import annotations

import base64
import json
import logging
import re
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result

from koble.cli.main import cli
from koble.pseudonym.insecure_cleartext import export_key
from koble.pseudonym.keystore import PassphraseKek, load_keyset
from koble.registries.identifiers import validate_column

ENV = {
    "KOBLE_KEYSET_PASSPHRASE": "correct horse battery",
    "KOBLE_AUDIT_PASSPHRASE": "audit staple",
    "KOBLE_ACTOR": "ola.operator",
}
OFFICER = ["--role", "reidentification-officer", "--reason", "adverse reaction follow-up",
           "--legal-basis", "helseregisterloven § 19 e"]  # fmt: skip


def run(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env={**ENV, **(env or {})})


def valid_fnr_in(text: str) -> list[str]:
    runs = re.findall(r"(?<![0-9A-Za-z+/])\d{11}(?![0-9A-Za-z+/])", text)
    if not runs:
        return []
    checked = validate_column(runs, test_numbers=True)
    return [r for r, ok in zip(runs, checked["valid"].to_list(), strict=True) if ok]


@pytest.fixture
def ttp(tmp_path: Path) -> Path:
    assert run("keys", "create-signer", tmp_path / "audit.pem").exit_code == 0
    audited = ["--audit-log", tmp_path / "audit.log", "--audit-key", tmp_path / "audit.pem"]
    assert run("keys", "create", tmp_path / "ks.json", *audited).exit_code == 0
    return tmp_path


def test_full_cycle_with_leak_scans(
    ttp: Path, world: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    audited = ["--audit-log", ttp / "audit.log", "--audit-key", ttp / "audit.pem"]
    keyset = ["--keyset", ttp / "ks.json"]
    outputs: list[Result] = []
    first = run("pseudonymise", world / "cohort.parquet", ttp / "p.parquet", "-c", "fnr",
                "--domain", "reseptregisteret", *keyset, *audited, "--json",
                "--history", world / "identity_history.parquet",
                "--population", world / "population.parquet")  # fmt: skip
    outputs.append(first)
    assert first.exit_code == 1, first.output  # the cohort is dirty on purpose
    summary = json.loads(first.stdout)
    truth = json.loads((world / "manifest.json").read_text())["truth"]["cohort"]
    assert summary["rejected"] == truth["wrong_check_digit"] + truth["missing"]
    assert summary["reconciled"] is True
    rejects = pl.read_parquet(summary["rejects_path"])
    assert rejects.height == summary["rejected"] and rejects["row"].min() >= 1

    outputs.append(run("keys", "rotate", ttp / "ks.json", *audited))
    rekeyed = run("rekey", ttp / "p.parquet", ttp / "r.parquet", "-c", "fnr",
                  "--domain", "reseptregisteret", *keyset, *audited, "--json")  # fmt: skip
    outputs.append(rekeyed)
    assert (
        rekeyed.exit_code == 0
        and json.loads(rekeyed.stdout)["converted"] == summary["pseudonymised"]
    )
    back = run("reidentify", ttp / "r.parquet", ttp / "back.parquet", "-c", "fnr",
               "--domain", "reseptregisteret", *keyset, *audited, *OFFICER)  # fmt: skip
    outputs.append(back)
    assert back.exit_code == 0, back.output
    refused = run("reidentify", ttp / "r.parquet", ttp / "x.parquet", "-c", "fnr",
                  "--domain", "reseptregisteret", *keyset, *audited, "--role", "researcher",
                  "--reason", "curious about it", "--legal-basis", "none whatsoever")  # fmt: skip
    outputs.append(refused)
    assert refused.exit_code == 4 and "refused" in refused.stderr

    original = pl.read_parquet(world / "cohort.parquet")
    assert pl.read_parquet(ttp / "back.parquet").height == summary["pseudonymised"]
    assert pl.read_parquet(ttp / "p.parquet").columns == original.columns
    verify = run("audit", "verify-log", ttp / "audit.log", "--public-key", ttp / "audit.pem.pub")
    assert verify.exit_code == 0, verify.output

    opened = load_keyset(ttp / "ks.json", PassphraseKek(ENV["KOBLE_KEYSET_PASSPHRASE"].encode()))
    secrets = [export_key(opened, k.version) for k in opened.keys]
    log_text = (ttp / "audit.log").read_text()
    printed = "".join(r.output for r in outputs) + caplog.text
    for text in (log_text, printed):
        assert valid_fnr_in(text) == []
        for secret in secrets:
            assert secret.hex() not in text and base64.b64encode(secret).decode() not in text
    operations = [json.loads(line).get("operation") for line in log_text.splitlines()]
    for expected in ("keys-create", "pseudonymise", "keys-rotate", "rekey", "reidentify",
                     "reidentify-refused"):  # fmt: skip
        assert expected in operations


def test_serials_cli(ttp: Path, world: Path) -> None:
    result = run("serials", world / "population.parquet", ttp / "keylist.parquet",
                 "--project", "p2026-01", "--keyset", ttp / "ks.json")  # fmt: skip
    assert result.exit_code == 0, result.output
    keylist = pl.read_parquet(ttp / "keylist.parquet")
    assert keylist["lopenummer"].sort().to_list() == list(range(1, keylist.height + 1))


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (["keys", "list", "{d}/ks.json"], {"KOBLE_KEYSET_PASSPHRASE": "wrong"}, 2,
         "cryptographic operation failed"),
        (["keys", "list", "{d}/nope.json"], {}, 2, "no such keyset file"),
        (["keys", "list", "{d}/ks.json"], {"KOBLE_KEYSET_PASSPHRASE": ""}, 2,
         "no key-encryption key"),
        (["keys", "create", "{d}/ks.json"], {}, 2, "exists already"),
        (["keys", "destroy", "{d}/ks.json", "1"], {}, 2, "pass --yes"),
        (["keys", "disable", "{d}/ks.json", "1"], {}, 2, "is the primary"),
        (["pseudonymise", "{d}/in.csv", "{d}/o.csv", "-c", "fnr", "--domain", "Bad Domain",
          "--keyset", "{d}/ks.json"], {}, 2, "invalid domain name"),
        (["pseudonymise", "{d}/in.csv", "{d}/o.csv", "-c", "pid", "--domain", "npr",
          "--keyset", "{d}/ks.json"], {}, 2, "column 'pid': no such column"),
    ],
)  # fmt: skip
def test_errors_are_one_line(ttp: Path, args: list[str], env: dict[str, str], code: int,
                             message: str) -> None:  # fmt: skip
    (ttp / "in.csv").write_text("fnr;x\n15108695088;1\n")
    result = run(*[a.format(d=ttp) for a in args], env=env)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_key_life_cycle_cli(ttp: Path) -> None:
    assert run("keys", "rotate", ttp / "ks.json").exit_code == 0
    assert run("keys", "disable", ttp / "ks.json", "1").exit_code == 0
    assert run("keys", "destroy", ttp / "ks.json", "1", "--yes").exit_code == 0
    listing = json.loads(run("keys", "list", ttp / "ks.json", "--json").stdout)
    assert [k["status"] for k in listing["keys"]] == ["destroyed", "enabled"]
    assert listing["primary"].startswith("v2-")
