"""Issue 12 §2 end to end: a command never writes one of its paths over another (same file by
name, ``..``, hard link or symlink), and a command with several outputs (pseudonymise:
output + rejects; anonymise: release + withheld + report + certificate) makes them appear
together or not at all, also when it fails or is killed between them."""

from __future__ import annotations

import errno
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result

from koble.cli.main import cli

ENV = {"KOBLE_KEYSET_PASSPHRASE": "correct horse battery", "KOBLE_ACTOR": "ola.operator"}
VALID = ["15108695088", "01010750160"]
INVALID = "15108695077"


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=ENV)


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def make_cohort(folder: Path) -> Path:
    """A keyset and a 3-row cohort (2 valid numbers, 1 wrong check digit) in ``folder``."""
    assert run("keys", "create", folder / "ks.json").exit_code == 0
    source = folder / "in.csv"
    source.write_text("fnr;x\n" + "".join(f"{n};{i}\n" for i, n in enumerate([*VALID, INVALID])))
    return source


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    return make_cohort(tmp_path)


def pseudonymise(source: Path, output: Path, *extra: str | Path) -> Result:
    return run("pseudonymise", source, output, "-c", "fnr", "--domain", "npr",
               "--keyset", source.parent / "ks.json", *extra)  # fmt: skip


def test_rejects_equal_to_output_is_refused_and_nothing_is_lost(cohort: Path) -> None:
    out = cohort.parent / "out.csv"
    result = pseudonymise(cohort, out, "--rejects", out)
    assert result.exit_code == 2, result.output
    assert "OUTPUT and --rejects name the same file" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("how", ["same", "detour", "hardlink", "symlink"])
@pytest.mark.parametrize("which", ["OUTPUT", "--rejects"])
def test_an_output_naming_the_input_never_overwrites_it(cohort: Path, how: str, which: str) -> None:
    before = cohort.read_bytes()
    folder = cohort.parent
    aliases = {"same": cohort, "detour": folder / "sub" / ".." / cohort.name,
               "hardlink": folder / "hard.csv", "symlink": folder / "soft.csv"}  # fmt: skip
    alias = aliases[how]
    (cohort.parent / "sub").mkdir()
    if how == "hardlink":
        alias.hardlink_to(cohort)
    elif how == "symlink":
        alias.symlink_to(cohort)
    if which == "OUTPUT":
        result = pseudonymise(cohort, alias)
    else:
        result = pseudonymise(cohort, cohort.parent / "out.csv", "--rejects", alias)
    assert result.exit_code == 2, result.output
    assert f"{which} and SOURCE name the same file" in result.stderr
    assert cohort.read_bytes() == before
    assert not (cohort.parent / "out.csv").exists()


def test_output_over_the_keyset_is_refused(cohort: Path) -> None:
    keyset = cohort.parent / "ks.json"
    before = keyset.read_bytes()
    result = pseudonymise(cohort, keyset.with_suffix(".csv"), "--rejects", keyset)
    assert result.exit_code == 2 and "--rejects and --keyset" in result.stderr
    assert keyset.read_bytes() == before


def test_other_commands_refuse_the_same_file(cohort: Path, tmp_path: Path) -> None:
    before = cohort.read_bytes()
    refused = [
        run("ids", "check", cohort, "--column", "fnr", "--rejects", cohort),
        run("rekey", cohort, cohort, "-c", "fnr", "--domain", "npr", "--keyset",
            tmp_path / "ks.json"),
        run("serials", cohort, cohort, "-c", "fnr", "--project", "P1", "--keyset",
            tmp_path / "ks.json"),
        run("anonymity", "table", cohort, "--rows", "fnr", "--cols", "x", "--out", cohort),
    ]  # fmt: skip
    for result in refused:
        assert result.exit_code == 2, result.output
        assert "name the same file" in result.stderr
    assert cohort.read_bytes() == before


def test_pseudonymise_failing_between_its_outputs_writes_neither(
    cohort: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = pl.DataFrame.write_csv
    calls: list[int] = []

    def second_fails(self: pl.DataFrame, file: str | Path, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, file, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(pl.DataFrame, "write_csv", second_fails)
    result = pseudonymise(cohort, cohort.parent / "out.csv")
    assert result.exit_code == 2, result.output
    assert "no space left on device" in result.stderr and "internal error" not in result.stderr
    written = [n for n in names(cohort.parent) if n not in {"in.csv", "ks.json", "ks.json.lock"}]
    assert written == []  # neither out.csv nor out.rejects.csv, and no temporary file


def _anonymity_input(tmp_path: Path) -> tuple[Path, Path]:
    source = tmp_path / "data.csv"
    rows = [f"{20 + (i * 7) % 60};{'MK'[i % 2]};{i % 3}" for i in range(60)]
    source.write_text("age;sex;diagnosis\n" + "\n".join(rows) + "\n")
    config = tmp_path / "anon.toml"
    config.write_text(
        '[requirements]\nk = 2\nsuppression = 0.5\nmetric = "precision"\n'
        '[quasi_identifiers]\nage = "age"\nsex = "categorical"\n'
    )
    return source, config


def test_anonymise_out_equal_to_the_input_is_refused(tmp_path: Path) -> None:
    source, config = _anonymity_input(tmp_path)
    before = source.read_bytes()
    result = run("anonymity", "anonymise", source, "--config", config, "--out", source,
                 "--report", tmp_path / "report")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "--out and FILE name the same file" in result.stderr
    assert source.read_bytes() == before


def test_anonymise_writes_all_its_outputs(tmp_path: Path) -> None:
    source, config = _anonymity_input(tmp_path)
    result = run("anonymity", "anonymise", source, "--config", config,
                 "--out", tmp_path / "release.csv", "--report", tmp_path / "report")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert names(tmp_path / "report") == ["certificate.json", "report.html", "report.json",
                                          "report.md", "withheld.parquet"]  # fmt: skip
    assert (tmp_path / "release.csv").is_file()


def test_anonymise_failing_at_the_report_leaves_no_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, config = _anonymity_input(tmp_path)

    def disk_full(*_: object) -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("koble.anonymity.report._html", disk_full)
    result = run("anonymity", "anonymise", source, "--config", config,
                 "--out", tmp_path / "release.csv", "--report", tmp_path / "report")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "no space left on device" in result.stderr
    assert not (tmp_path / "release.csv").exists()
    assert not (tmp_path / "report").exists() or names(tmp_path / "report") == []
    assert [p.name for p in tmp_path.rglob("*.tmp*")] == []


KILLED_AT_THE_REPORT = """
import os, signal, sys
import koble.anonymity.report as report
from koble.cli.main import main

def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

report._html = killed
sys.argv = ["koble", "anonymity", "anonymise", *sys.argv[1:]]
main()
"""


def test_anonymise_killed_before_its_report_leaves_no_release(tmp_path: Path) -> None:
    source, config = _anonymity_input(tmp_path)
    release, report = tmp_path / "release.csv", tmp_path / "report"
    args = [str(source), "--config", str(config), "--out", str(release), "--report", str(report)]
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED_AT_THE_REPORT), *args],
                          check=False)  # fmt: skip
    assert done.returncode == -signal.SIGKILL
    assert not release.exists()
    assert not (report / "withheld.parquet").exists()
    assert not (report / "certificate.json").exists()


def test_reproduce_into_the_delivery_it_compares_with_is_refused(tmp_path: Path) -> None:
    delivery = tmp_path / "delivery"
    delivery.mkdir()
    (delivery / "manifest.json").write_text("{}")
    job = tmp_path / "job.toml"
    job.write_text("")
    result = run("audit", "reproduce", job, "--workspace", delivery, "--against", delivery,
                 "--keys", tmp_path / "keys")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "--workspace and --against name the same file" in result.stderr
    assert [p.name for p in delivery.iterdir()] == ["manifest.json"]
