"""The demo job end to end, and the console entry points."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from koble.cli.main import cli
from koble.demo import DemoResult, Expectation, run_demo
from koble.pseudonym.keystore import RawKek
from koble.registries.identifiers.check import CheckReport


def test_demo_checks_reconcile_and_match_truth(tmp_path: Path) -> None:
    now = lambda: datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)  # noqa: E731
    result = run_demo(
        tmp_path, persons=3_000, seed=7, kek=RawKek(os.urandom(32)), now=now,
        randbytes=os.urandom, fmt="parquet",
    )  # fmt: skip
    assert result.ok, result.failures()
    # the linkage half: both jobs, every route, verified; the distributed one reproduced
    routes = {o.run.plan.route for o in result.linkage}
    assert routes == {"distributed", "central-anonymous"}
    assert all(o.verify.ok for o in result.linkage)
    distributed = next(o for o in result.linkage if o.name == "distributed")
    assert distributed.reproduce is not None and distributed.reproduce.identical
    assert [r.registry for r in distributed.run.plan.refusals] == ["abortregisteret"]
    # identity recovery: the cohort's dirty numbers and Helsearkivregisteret's journals
    (cohort_recovery,) = distributed.recovery
    assert (
        cohort_recovery["by_outcome"]["repaired"] + cohort_recovery["by_outcome"]["probabilistic"]
        > 0
    )
    journals = next(o for o in result.linkage if o.name == "helsearkiv")
    (journal_recovery,) = journals.recovery
    assert journal_recovery["by_outcome"]["probabilistic"] > 0
    assert journal_recovery["estimated_precision"] is not None
    assert any("recovery (population)" in line for line in distributed.recovery_lines())
    cohort = next(r for e, r in result.checks if e.table == "cohort.parquet")
    truth = json.loads((tmp_path / "world" / "manifest.json").read_text())["truth"]["cohort"]
    assert cohort.rejected == truth["wrong_check_digit"] + truth["missing"] > 0
    assert cohort.by_reason.get("missing") == truth["missing"]
    assert (tmp_path / "checks" / "cohort.fnr.rejects.csv").is_file()
    summary = json.loads((tmp_path / "checks" / "summary.json").read_text())
    assert summary["ok"] is True and summary["deidentified_scan"] == {"abortregisteret.parquet": 0}


def _report(rows: int, valid: int, rejected: int) -> CheckReport:
    return CheckReport(
        path="x", column="fnr", scheme="fnr", rows=rows, valid=valid, rejected=rejected,
        by_kind={}, by_rule={}, by_reason={}, duplicate_rows=0, duplicated_values=0,
        test_numbers_allowed=False,
    )  # fmt: skip


def test_demo_reports_every_broken_expectation() -> None:
    result = DemoResult(world=Path("w"), persons=1)
    result.checks.append((Expectation("a.parquet", "fnr", rejected=2), _report(10, 9, 1)))
    result.checks.append((Expectation("b.parquet", "fnr"), _report(10, 8, 1)))
    result.leaks["c.parquet"] = 3
    failures = result.failures()
    assert "a.parquet.fnr: 1 rejected, expected 2" in failures
    assert "b.parquet.fnr: counts do not reconcile" in failures
    assert "c.parquet: 3 valid fødselsnummer found" in failures
    assert not result.ok


def test_demo_cli_json(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["demo", "--out", str(tmp_path), "--persons", "2000", "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["ok"] is True
    assert [job["ok"] for job in summary["linkage"]] == [True, True, True]


def test_python_dash_m_and_console_script() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "koble", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("koble, version")
    listing = subprocess.run(
        [sys.executable, "-m", "koble", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("demo", "ids", "synth"):
        assert command in listing.stdout
