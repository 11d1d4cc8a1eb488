"""Issue 12 §3: clear errors, never an internal error, for what a user can get wrong.

Missing parent directories of an output are created (``keys create-signer`` too); a wrong
secret says which secret failed to open which file (never why); a fødselsnummer that a
spreadsheet shortened to 10 digits is called that, in the scalar validator, the rejects files
and the summary of ``koble ids check`` and ``koble pseudonymise``.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result

from koble.cli.ingest import _private
from koble.cli.main import cli
from koble.errors import CryptoError, InvalidIdentifier
from koble.pseudonym.keys import Keyset
from koble.pseudonym.keystore import PassphraseKek, load_keyset, save_keyset
from koble.registries.identifiers import fodselsnummer, validate_column
from koble.registries.identifiers.column import dropped_leading_zero

KEYSET_SECRET = "correct horse battery"
AUDIT_SECRET = "audit staple"
ENV = {
    "KOBLE_KEYSET_PASSPHRASE": KEYSET_SECRET,
    "KOBLE_AUDIT_PASSPHRASE": AUDIT_SECRET,
    "KOBLE_ACTOR": "ola.operator",
}
SHORTENED = "1019012345"  # 01019012345 with its leading zero dropped
CRYPTO = "cryptographic operation failed"


def run(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env={**ENV, **(env or {})})


# --- item 2: missing parent directories ----------------------------------------------------


def test_create_signer_creates_missing_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "ttp" / "nested" / "audit.pem"
    result = run("keys", "create-signer", path)
    assert result.exit_code == 0, result.output
    assert path.is_file() and path.with_name("audit.pem.pub").is_file()
    assert path.stat().st_mode & 0o077 == 0


def test_keys_create_creates_missing_parent_directories(tmp_path: Path) -> None:
    result = run("keys", "create", tmp_path / "new" / "dir" / "ks.json")
    assert result.exit_code == 0, result.output


def test_audit_log_in_a_missing_directory_is_created(tmp_path: Path) -> None:
    assert run("keys", "create-signer", tmp_path / "audit.pem").exit_code == 0
    log = tmp_path / "logs" / "2025" / "audit.log"
    result = run("keys", "create", tmp_path / "ks.json",
                 "--audit-log", log, "--audit-key", tmp_path / "audit.pem")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert log.is_file()


# --- item 3: which secret failed to open which file ----------------------------------------


@pytest.fixture
def ttp(tmp_path: Path) -> Path:
    assert run("keys", "create-signer", tmp_path / "audit.pem").exit_code == 0
    assert run("keys", "create", tmp_path / "ks.json").exit_code == 0
    return tmp_path


def _audited(ttp: Path) -> list[str | Path]:
    return ["--audit-log", ttp / "audit.log", "--audit-key", ttp / "audit.pem"]


def test_wrong_keyset_passphrase_names_the_keyset_and_the_variable(ttp: Path) -> None:
    result = run("keys", "rotate", ttp / "ks.json", *_audited(ttp),
                 env={"KOBLE_KEYSET_PASSPHRASE": "wrong one"})  # fmt: skip
    assert result.exit_code == 2, result.output
    expected = (f"cannot open keyset {ttp / 'ks.json'} with the passphrase from "
                f"KOBLE_KEYSET_PASSPHRASE: {CRYPTO}")  # fmt: skip
    assert expected in result.output
    assert "wrong one" not in result.output and "audit key" not in result.output


def test_wrong_audit_passphrase_names_the_audit_key_and_the_variable(ttp: Path) -> None:
    result = run("keys", "rotate", ttp / "ks.json", *_audited(ttp),
                 env={"KOBLE_AUDIT_PASSPHRASE": "wrong one"})  # fmt: skip
    assert result.exit_code == 2, result.output
    expected = (f"cannot open audit key {ttp / 'audit.pem'} with the passphrase from "
                f"KOBLE_AUDIT_PASSPHRASE: {CRYPTO}")  # fmt: skip
    assert expected in result.output
    assert "wrong one" not in result.output and "keyset" not in result.output


def test_wrong_kek_from_the_environment_names_the_variable(ttp: Path) -> None:
    result = run("keys", "list", ttp / "ks.json", "--kek-env", "MY_KEK",
                 env={"MY_KEK": "00" * 32})  # fmt: skip
    assert result.exit_code == 2, result.output
    assert f"cannot open keyset {ttp / 'ks.json'} with the key from MY_KEK: {CRYPTO}" in (
        result.output
    )
    assert "00" * 32 not in result.output


def test_wrong_party_key_passphrase_names_the_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run("ingest", "keygen", "ttp", "--out", tmp_path / "keys",
                 env={"KOBLE_PARTY_PASSPHRASE": "party secret"})  # fmt: skip
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("WRONG_PARTY_PASSPHRASE", "not it")
    with pytest.raises(CryptoError) as info:
        _private(tmp_path / "keys" / "ttp.key.pem", "WRONG_PARTY_PASSPHRASE")
    key = tmp_path / "keys" / "ttp.key.pem"
    assert str(info.value) == (
        f"cannot open party key {key} with the passphrase from WRONG_PARTY_PASSPHRASE: {CRYPTO}"
    )


def test_library_keyset_error_stays_uninformative_about_why(tmp_path: Path) -> None:
    keyset = Keyset.create(randbytes=os.urandom, now=lambda: datetime.datetime.now(datetime.UTC))
    path = tmp_path / "ks.json"
    save_keyset(keyset, path, PassphraseKek(b"right"), randbytes=os.urandom)
    with pytest.raises(CryptoError) as wrong:
        load_keyset(path, PassphraseKek(b"wrong", source="the passphrase from X"))
    path.write_text(path.read_text().replace('"primary": 1', '"primary": 2'))
    with pytest.raises(CryptoError) as tampered:
        load_keyset(path, PassphraseKek(b"right", source="the passphrase from X"))
    # a wrong passphrase and a tampered file read exactly the same
    assert str(wrong.value) == str(tampered.value)
    assert str(wrong.value) == f"cannot open keyset {path} with the passphrase from X: {CRYPTO}"
    assert str(CryptoError()) == CRYPTO


# --- item 5: a spreadsheet dropped the leading zero ---------------------------------------------


def test_scalar_validator_says_a_leading_zero_may_have_been_dropped() -> None:
    with pytest.raises(InvalidIdentifier) as info:
        fodselsnummer.validate(SHORTENED)
    assert info.value.reason == "wrong_length"  # the stable code is unchanged
    assert "10 digits: a leading zero may have been dropped by a spreadsheet" in str(info.value)
    assert SHORTENED not in str(info.value)
    with pytest.raises(InvalidIdentifier) as other:
        fodselsnummer.validate("123456789")
    assert "spreadsheet" not in str(other.value)


def test_column_validator_marks_ten_digit_rows_only() -> None:
    values = [SHORTENED, "01019012345", "123", "0101901234", None, "10190 12345"]
    result = validate_column(values)
    assert dropped_leading_zero(result).to_list() == [True, False, False, False, False, True]
    assert result["reason"].cast(pl.String).to_list()[0] == "wrong_length"


def test_ids_check_rejects_and_summary_say_so(tmp_path: Path) -> None:
    source = tmp_path / "ids.csv"
    source.write_text(f"fnr\n{SHORTENED}\n25124940411\n123\n")
    rejects = tmp_path / "rejects.csv"
    result = run("ids", "check", source, "-c", "fnr", "--rejects", rejects, "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["by_reason"] == {"wrong_length": 2}
    assert any("1 row has 10 digits: a leading zero may have been dropped" in w
               for w in report["warnings"])  # fmt: skip
    table = pl.read_csv(rejects, separator=";", infer_schema=False)
    messages = dict(zip(table["row"].to_list(), table["message"].to_list(), strict=True))
    assert messages["1"].endswith(
        "(10 digits: a leading zero may have been dropped by a spreadsheet)"
    )
    assert messages["3"] == "wrong number of digits"


def test_pseudonymise_rejects_say_so(tmp_path: Path) -> None:
    assert run("keys", "create", tmp_path / "ks.json").exit_code == 0
    source = tmp_path / "ids.csv"
    source.write_text(f"fnr\n{SHORTENED}\n25124940411\n")
    rejects = tmp_path / "rejects.csv"
    keyset: list[str | Path] = ["--keyset", tmp_path / "ks.json"]
    result = run("pseudonymise", source, tmp_path / "out.csv", "-c", "fnr",
                 "--domain", "reseptregisteret", *keyset, "--rejects", rejects)  # fmt: skip
    assert result.exit_code == 1, result.output
    table = pl.read_csv(rejects, separator=";", infer_schema=False)
    assert table["message"].to_list() == [
        "wrong number of digits (10 digits: a leading zero may have been dropped by a spreadsheet)"
    ]
