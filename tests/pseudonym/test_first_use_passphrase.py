"""``koble ingest`` without its passphrase: the error says what to set (issue 14)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from click.testing import CliRunner

from koble.cli.main import cli as main


def test_keygen_without_the_party_passphrase_names_the_variable_and_option(
    tmp_path: Path,
) -> None:
    result = CliRunner().invoke(main, ["ingest", "keygen", "ttp", "--out", str(tmp_path)], env={
        "KOBLE_PARTY_PASSPHRASE": ""})  # fmt: skip
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in result.output
    assert "the passphrase of the party key" in message
    assert "KOBLE_PARTY_PASSPHRASE, which is not set" in message
    assert "export KOBLE_PARTY_PASSPHRASE=" in message and "--passphrase-env" in message
    assert not list(tmp_path.iterdir())  # no key written


def test_keygen_names_the_variable_given_by_option(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["ingest", "keygen", "ttp", "--out", str(tmp_path), "--passphrase-env", "MY_PASS"],
        env={"MY_PASS": ""},
    )
    assert result.exit_code == 2 and "MY_PASS, which is not set" in result.stderr
    ok = CliRunner().invoke(
        main,
        ["ingest", "keygen", "ttp", "--out", str(tmp_path), "--passphrase-env", "MY_PASS"],
        env={"MY_PASS": "a long passphrase"},
    )
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "ttp.key.pem").is_file() and (tmp_path / "ttp.pub.pem").is_file()


def test_ingest_pseudonymise_names_the_keyset_variable_and_its_option(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    env = {"KOBLE_PARTY_PASSPHRASE": "a long passphrase", "KOBLE_KEYSET_PASSPHRASE": ""}
    runner = CliRunner()
    for name in ("ttp", "resept"):
        assert (
            runner.invoke(main, ["ingest", "keygen", name, "--out", str(keys)], env=env).exit_code
            == 0
        )
    batch, sealed = tmp_path / "batch.parquet", tmp_path / "batch.sealed"
    pl.DataFrame({"fnr": ["15108695088"], "atc": ["N02BE01"]}).write_parquet(batch)
    seal = runner.invoke(
        main,
        ["ingest", "seal", str(batch), str(sealed), "--ttp-public", str(keys / "ttp.pub.pem"),
         "--registry-public", str(keys / "resept.pub.pem"), "--id-column", "fnr"],
        env=env,
    )  # fmt: skip
    assert seal.exit_code == 0, seal.output
    result = runner.invoke(
        main,
        ["ingest", "pseudonymise", str(sealed), str(tmp_path / "out"),
         "--ttp-key", str(keys / "ttp.key.pem"), "--keyset", str(tmp_path / "keys.json"),
         "--domain", "fnr=reseptregisteret", "--registry-public", str(keys / "resept.pub.pem")],
        env=env,
    )  # fmt: skip
    assert result.exit_code == 2
    assert "the passphrase of the keyset" in result.stderr
    assert "KOBLE_KEYSET_PASSPHRASE, which is not set" in result.stderr
    assert "--keyset-passphrase-env" in result.stderr
