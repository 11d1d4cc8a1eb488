"""The exception tree and the CLI's error mapping."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from koble.cli.main import cli
from koble.errors import (
    ColumnError,
    CryptoError,
    FileFormatError,
    InputError,
    InvalidIdentifier,
    KobleError,
    UsageError,
    redact,
)


def test_tree() -> None:
    for error in (UsageError, FileFormatError, ColumnError, InvalidIdentifier):
        assert issubclass(error, InputError)
    assert issubclass(InputError, KobleError)
    assert issubclass(CryptoError, KobleError)
    assert not issubclass(CryptoError, InputError)


def test_input_errors_name_file_column_and_row() -> None:
    error = ColumnError("not text", path="data/cohort.csv", column="fnr", row=17)
    assert str(error) == "data/cohort.csv: column 'fnr': row 17: not text"
    assert (error.path, error.column, error.row) == ("data/cohort.csv", "fnr", 17)
    assert str(FileFormatError("empty")) == "empty"


def test_crypto_errors_say_nothing() -> None:
    assert str(CryptoError()) == "cryptographic operation failed"


@pytest.mark.parametrize(
    "text",
    ["15108695088", "151086 95088", "151086-95088", "value 974760673 here", "7125186"],
)
def test_redact_removes_identifier_like_digit_runs(text: str) -> None:
    cleaned = redact(text)
    assert "<redacted>" in cleaned
    assert not any(ch.isdigit() for ch in cleaned)


def test_redact_keeps_short_numbers() -> None:
    assert redact("row 17 of 2024") == "row 17 of 2024"


def test_cli_maps_unexpected_errors_to_one_redacted_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("could not parse 15108695088")

    monkeypatch.setattr("koble.registries.identifiers.check.read_table", boom)
    result = CliRunner().invoke(cli, ["ids", "check", "x.csv", "-c", "id"])
    assert result.exit_code == 3
    assert "15108695088" not in result.stderr
    assert result.stderr.count("\n") == 1
    assert "internal error (RuntimeError)" in result.stderr


def test_version_and_help() -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["--version"]).exit_code == 0
    result = runner.invoke(cli, ["ids", "--help"])
    assert result.exit_code == 0 and "check" in result.stdout
