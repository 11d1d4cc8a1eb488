"""``koble anonymity`` end to end on the adult benchmark data: config, release, report,
certificate, reproducibility, and the check and table commands."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result

from koble.anonymity.config import AnonymiseConfig
from koble.anonymity.release import check_frame
from koble.cli.main import cli
from koble.digests import sha256_file
from koble.errors import UsageError

ADULT = Path(__file__).resolve().parents[3] / "shared" / "data" / "adult"
QIS = ["age", "sex", "race", "marital-status", "education", "native-country", "workclass",
       "salary-class"]  # fmt: skip
needs_adult = pytest.mark.skipif(not (ADULT / "adult.csv").is_file(), reason="no adult data")


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def write_config(path: Path, k: int = 5, suppression: float = 0.02, **extra: str) -> Path:
    lines = ["[requirements]", f"k = {k}", f"suppression = {suppression}",
             'metric = "precision"', *extra.values(), "[quasi_identifiers]"]  # fmt: skip
    lines += [f'"{q}" = "csv:{ADULT}/adult_hierarchy_{q}.csv"' for q in QIS]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_config_reports_every_problem_at_once(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[requirements]\nk = 0\nmetric = "magic"\nl = 2\nfoo = 1\n[extra]\n')
    with pytest.raises(UsageError) as info:
        AnonymiseConfig.read(bad)
    message = str(info.value)
    for part in ("unknown section [extra]", "requirements.k", "requirements.metric 'magic'",
                 "unknown key requirements.foo", "[quasi_identifiers]",
                 "need [sensitive] column"):  # fmt: skip
        assert part in message


@needs_adult
def test_release_meets_k_conserves_rows_and_reproduces(tmp_path: Path) -> None:
    config = write_config(tmp_path / "anon.toml")
    outputs = []
    for attempt in ("a", "b"):
        out, report = tmp_path / f"{attempt}.parquet", tmp_path / f"report-{attempt}"
        result = run("anonymity", "anonymise", ADULT / "adult.csv", "--config", config,
                     "--out", out, "--report", report, "--json")  # fmt: skip
        assert result.exit_code == 0, result.output
        outputs.append((out, report, json.loads(result.stdout)))
    (out, report, certificate), (out_b, _, certificate_b) = outputs
    assert sha256_file(out) == sha256_file(out_b) == certificate["output"]["sha256"]
    assert certificate["levels"] == certificate_b["levels"]
    released = pl.read_parquet(out)
    withheld = pl.read_parquet(report / "withheld.parquet")
    assert released.height + withheld.height == 30_162
    assert withheld.height == certificate["figures"]["suppressed"] <= 0.02 * 30_162
    assert check_frame(released, QIS, k=5).smallest_class >= 5
    assert set(withheld["suppression_reason"].unique()) == {"fails 5-anonymity"}
    assert certificate["input"]["sha256"] == sha256_file(ADULT / "adult.csv")
    html = (report / "report.html").read_text()
    assert html.count("<svg") >= 4 and "certificate" in html.lower()
    data = json.loads((report / "report.json").read_text())
    assert data["after"]["smallest_class"] >= 5
    assert data["before"]["risk"]["prosecutor"]["highest"] == 1.0


@needs_adult
def test_infeasible_release_writes_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path / "anon.toml", k=40_000, suppression=0.0)
    out = tmp_path / "out.parquet"
    result = run("anonymity", "anonymise", ADULT / "adult.csv", "--config", config,
                 "--out", out, "--report", tmp_path / "r")  # fmt: skip
    assert result.exit_code == 1
    assert "no generalisation meets the requirements" in result.stdout
    assert not out.exists()
    assert (
        json.loads((tmp_path / "r" / "certificate.json").read_text())["figures"]["feasible"]
        is False
    )


def test_check_command(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("age;sex;dx\n" + "40;F;a\n" * 5 + "41;M;b\n" * 2 + "41;M;c\n")
    result = run("anonymity", "check", path, "--qi", "age,sex", "--k", "3", "--json")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert (summary["smallest_class"], summary["classes"], summary["meets"]) == (3, 2, True)
    result = run("anonymity", "check", path, "--qi", "age,sex", "--k", "4", "--sensitive", "dx",
                 "--l", "2")  # fmt: skip
    assert result.exit_code == 1 and "does NOT meet" in result.stdout
    result = run("anonymity", "check", path, "--qi", "age,kommune", "--k", "3")
    assert result.exit_code == 2 and "column 'kommune'" in result.stderr


def test_table_command(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("fylke;sex\n" + "03;F\n" * 9 + "03;M\n" * 8 + "11;F\n" * 2 + "11;M\n" * 7)
    result = run("anonymity", "table", path, "--rows", "fylke", "--cols", "sex", "--json")
    assert result.exit_code == 0
    table = json.loads(result.stdout)
    assert table["cells"] == [[None, None], [None, None]]
    assert table["primary_suppressed"] == 1 and table["secondary_suppressed"] == 3
