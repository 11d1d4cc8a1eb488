"""``koble ingest`` end to end and its one-line errors, and the monthly feed's registry
step refusing a batch found twice."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import polars as pl
import pytest
from click.testing import CliRunner, Result

from koble.cli.ingest import ingest
from koble.cli.main import KobleGroup
from koble.errors import UsageError
from koble.pseudonym import ingest_feed as ingest_module
from koble.pseudonym.keystore import PassphraseKek, save_keyset
from tests.pseudonym._ingest_helpers import (
    GENERIC,
    PARTIES,
    World,
    inject_dirt,
    run_ttp,
    sealed_batch,
    valid_fnr_in_frame,
    world_fixture,  # noqa: F401  (the fixture world)
)


# -- the CLI --------------------------------------------------------------------------
@click.group(cls=KobleGroup)
def root() -> None:
    """The main group's error handling around ``ingest`` (the lead registers it for real)."""


root.add_command(ingest)
ENV = {"KOBLE_PARTY_PASSPHRASE": "party pass", "KOBLE_KEYSET_PASSPHRASE": "keyset pass"}


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(root, ["ingest", *args], env=ENV if env is None else env)


@pytest.fixture
def cli_setup(tmp_path: Path, world: World) -> dict[str, Path]:
    for name in ("ttp", "registry"):
        result = run("keygen", name, "--out", str(tmp_path / "keys"), "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["public"].endswith(f"{name}.pub.pem")
    keyset = tmp_path / "ttp.keyset.json"
    save_keyset(PARTIES.keyset, keyset, PassphraseKek(b"keyset pass"), randbytes=os.urandom)
    feed, _ = inject_dirt(world.resept.head(30))
    source = tmp_path / "feed.csv"
    feed.write_csv(source, separator=";")
    return {
        "dir": tmp_path, "keys": tmp_path / "keys", "keyset": keyset, "feed": source,
        "history": world.path / "identity_history.parquet",
    }  # fmt: skip


def test_cli_end_to_end(cli_setup: dict[str, Path]) -> None:
    d, keys = cli_setup["dir"], cli_setup["keys"]
    private = (keys / "ttp.key.pem").read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in private
    assert (keys / "ttp.key.pem").stat().st_mode & 0o777 == 0o600
    sealed = run(
        "seal", str(cli_setup["feed"]), str(d / "b.sealed"),
        "--ttp-public", str(keys / "ttp.pub.pem"),
        "--registry-public", str(keys / "registry.pub.pem"),
        "--id-column", "fnr", "--id-column", "prescriber_hpr:hpr", "--json",
    )  # fmt: skip
    assert sealed.exit_code == 0, sealed.output
    summary = json.loads(sealed.stdout)
    assert summary["rows"] == 30 and summary["identifiers"] == ["fnr", "prescriber_hpr"]
    forwarded = run(
        "pseudonymise", str(d / "b.sealed"), str(d / "b.forwarded"),
        "--ttp-key", str(keys / "ttp.key.pem"), "--keyset", str(cli_setup["keyset"]),
        "--domain", "fnr=reseptregisteret", "--domain", "prescriber_hpr=reseptregisteret-hpr",
        "--registry-public", str(keys / "registry.pub.pem"),
        "--rejects", str(d / "rejects.csv"), "--history", str(cli_setup["history"]), "--json",
    )  # fmt: skip
    assert forwarded.exit_code == 1, forwarded.output  # some rows were rejected
    ttp_report = json.loads(forwarded.stdout)
    assert ttp_report["rows"] == 30 and ttp_report["rejected"] == 6 and ttp_report["reconciled"]
    rejects = pl.read_csv(d / "rejects.csv", separator=";", infer_schema=False)
    assert sorted(set(rejects["row"].cast(pl.Int64).to_list())) == [1, 6, 10, 15, 21, 26]
    opened = run(
        "open", str(d / "b.forwarded"), str(d / "registry.parquet"),
        "--registry-key", str(keys / "registry.key.pem"), "--json",
    )  # fmt: skip
    assert opened.exit_code == 0, opened.output
    registry_report = json.loads(opened.stdout)
    assert registry_report["stored"] == 24 and registry_report["rejected"] == 6
    assert registry_report["reconciled"]
    table = pl.read_parquet(d / "registry.parquet")
    assert table.height == 24 and valid_fnr_in_frame(table) == 0
    assert table.columns[:2] == ["fnr_pseudonym", "prescriber_hpr_pseudonym"]
    plain = run(
        "open", str(d / "b.forwarded"), str(d / "plain.csv"),
        "--registry-key", str(keys / "registry.key.pem"),
    )  # fmt: skip
    assert plain.exit_code == 0 and "24 stored" in plain.stdout
    twice = run(
        "open", str(d / "b.forwarded"), str(d / "b.forwarded"), str(d / "twice.csv"),
        "--registry-key", str(keys / "registry.key.pem"),
    )  # fmt: skip
    assert twice.exit_code == 2 and "hold the same batch" in twice.stderr


def test_cli_errors_are_one_line_koble_errors(cli_setup: dict[str, Path]) -> None:
    d, keys = cli_setup["dir"], cli_setup["keys"]
    again = run("keygen", "ttp", "--out", str(keys))
    assert again.exit_code == 2 and "refusing to overwrite" in again.stderr
    no_env = run("keygen", "x", "--out", str(keys), env={})
    assert no_env.exit_code == 2 and "KOBLE_PARTY_PASSPHRASE" in no_env.stderr
    seal_args = [
        "seal", str(cli_setup["feed"]), str(d / "b.sealed"),
        "--ttp-public", str(keys / "ttp.pub.pem"),
        "--registry-public", str(keys / "registry.pub.pem"),
        "--id-column", "fnr", "--id-column", "prescriber_hpr:hpr",
    ]  # fmt: skip
    assert run(*seal_args).exit_code == 0
    bad_spec = run(*seal_args[:-1], "prescriber_hpr:ssn")
    assert bad_spec.exit_code == 2 and "COLUMN:SCHEME" in bad_spec.stderr
    wrong = run(
        "open", str(d / "b.sealed"), str(d / "out.parquet"),
        "--registry-key", str(keys / "registry.key.pem"),
    )  # fmt: skip
    assert wrong.exit_code == 2 and "expected a forwarded batch" in wrong.stderr
    ttp_args = [
        "--ttp-key", str(keys / "ttp.key.pem"), "--keyset", str(cli_setup["keyset"]),
        "--domain", "fnr=reseptregisteret", "--domain", "prescriber_hpr=reseptregisteret-hpr",
        "--registry-public", str(keys / "registry.pub.pem"),
    ]  # fmt: skip
    sealed, forwarded = str(d / "b.sealed"), str(d / "b.forwarded")
    bad = run(
        "pseudonymise", sealed, forwarded, *ttp_args,
        env={**ENV, "KOBLE_PARTY_PASSPHRASE": "nope"},
    )  # fmt: skip
    assert bad.exit_code == 2 and bad.stderr.strip() == (
        f"koble: error: cannot open party key {keys / 'ttp.key.pem'} with the passphrase from "
        f"KOBLE_PARTY_PASSPHRASE: {GENERIC}"
    )
    missing_domain = run("pseudonymise", sealed, forwarded, *ttp_args[:-4], *ttp_args[-2:])
    assert (
        missing_domain.exit_code == 2 and "exactly the identifier columns" in missing_domain.stderr
    )
    data = bytearray((d / "b.sealed").read_bytes())
    (d / "cut.sealed").write_bytes(bytes(data[: len(data) // 2]))
    cut = run("pseudonymise", str(d / "cut.sealed"), forwarded, *ttp_args)
    assert cut.exit_code == 2 and "cut.sealed" in cut.stderr and "Traceback" not in cut.output
    data[-5] ^= 1  # inside the payload: the TTP cannot tell, the registry can
    (d / "flip.sealed").write_bytes(bytes(data))
    assert run("pseudonymise", str(d / "flip.sealed"), str(d / "f.fwd"), *ttp_args).exit_code == 1
    broken = run(
        "open", str(d / "f.fwd"), str(d / "o.parquet"),
        "--registry-key", str(keys / "registry.key.pem"),
    )  # fmt: skip
    assert broken.exit_code == 2 and broken.stderr.strip() == f"koble: error: {GENERIC}"
    assert not (d / "o.parquet").exists()


def test_the_feed_registry_step_refuses_a_batch_found_twice(world: World, tmp_path: Path) -> None:
    """The monthly feed's registry step opens its inbox as `koble ingest open` does: a batch
    found twice (here a byte copy) would store its rows twice and still reconcile."""
    forwarded = run_ttp(sealed_batch(world.resept.head(10))).forwarded
    first, copy = tmp_path / "a.forwarded", tmp_path / "b.forwarded"
    first.write_bytes(forwarded.to_bytes())
    copy.write_bytes(forwarded.to_bytes())
    stored, _ = ingest_module._registry_step([first], registry_key=PARTIES.registry)
    assert stored.height == 10
    with pytest.raises(UsageError, match="hold the same batch"):
        ingest_module._registry_step([first, copy], registry_key=PARTIES.registry)
