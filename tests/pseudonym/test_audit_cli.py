"""``koble audit verify-log``."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from koble.cli.audit import audit
from koble.cli.main import KobleGroup
from koble.errors import FileFormatError
from tests.pseudonym._audit_helpers import SIGNER, base_lines

# --- koble audit verify-log -------------------------------------------------------------------


def run(*args: str, via_main: bool = False) -> tuple[int, str, str]:
    command: click.Command = audit
    if via_main:
        command = KobleGroup(name="koble", commands={"audit": audit})
        args = ("audit", *args)
    result = CliRunner().invoke(command, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def good_log(tmp_path: Path) -> Path:
    path = tmp_path / "audit.log"
    path.write_bytes(b"".join(base_lines()))
    return path


@pytest.fixture
def public_pem(tmp_path: Path) -> Path:
    path = tmp_path / "ttp.pub.pem"
    path.write_bytes(SIGNER.public_pem())
    return path


def test_cli_ok(good_log: Path, public_pem: Path) -> None:
    code, out, _ = run("verify-log", str(good_log), "--public-key", str(public_pem))
    assert code == 0
    assert out.strip() == "ok: 7 entries, 3 checkpoints, signatures verified"
    code, out, _ = run("verify-log", str(good_log))
    assert code == 0
    assert "signatures NOT checked" in out


def test_cli_bad_log(good_log: Path, public_pem: Path) -> None:
    lines = good_log.read_bytes().splitlines(keepends=True)
    good_log.write_bytes(b"".join([*lines[:3], *lines[4:]]))
    code, out, _ = run("verify-log", str(good_log), "--public-key", str(public_pem))
    assert code == 1
    assert out.startswith("FAILED at line 4: ")


def test_cli_open_log(good_log: Path) -> None:
    good_log.write_bytes(b"".join(base_lines()[:5]))
    assert run("verify-log", str(good_log))[0] == 1
    code, out, _ = run("verify-log", str(good_log), "--allow-open")
    assert code == 0
    assert "still open" in out


def test_cli_json(good_log: Path, public_pem: Path) -> None:
    code, out, _ = run("verify-log", str(good_log), "--public-key", str(public_pem), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["ok"] is True
    assert (report["entries"], report["checkpoints"], report["last_seq"]) == (7, 3, 10)
    assert report["signatures_checked"] is True
    good_log.write_bytes(b"".join(base_lines()[:-1]))
    code, out, _ = run("verify-log", str(good_log), "--json")
    assert code == 1
    assert json.loads(out)["first_bad_line"] == 10


def test_cli_unusable_input(tmp_path: Path, good_log: Path) -> None:
    result = CliRunner().invoke(audit, ["verify-log", str(tmp_path / "missing.log")])
    assert isinstance(result.exception, FileFormatError)
    assert result.exception.exit_code == 2
    code, _, err = run("verify-log", str(tmp_path / "missing.log"), via_main=True)
    assert code == 2
    assert "missing.log" in err
    code, _, err = run(
        "verify-log", str(good_log), "--public-key", str(tmp_path / "none.pem"), via_main=True
    )
    assert code == 2
    bad_key = tmp_path / "bad.pem"
    bad_key.write_bytes(b"not a key")
    code, _, err = run("verify-log", str(good_log), "--public-key", str(bad_key), via_main=True)
    assert code == 2
    # a public key is no secret: the error names the option, the file and the kind of key
    assert "--public-key: not an Ed25519 public key" in err and "bad.pem" in err
