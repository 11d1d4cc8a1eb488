"""The identifier scan of the anonymise command runs beside the search (issue 14: the
command's overhead), and refuses as it did when it ran first: the same message, before any
other refusal on the way, and nothing written."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import koble.anonymity.release as release_module
from koble.anonymity.config import AnonymiseConfig
from koble.anonymity.report import anonymise_with_report
from koble.errors import KobleError

FNR, OTHER = "15108695088", "25124940411"  # valid (synthetic) fødselsnumre


def _source(tmp_path: Path, *, missing_person: bool = False) -> Path:
    rows = 60
    frame = pl.DataFrame({
        "pid": [None if missing_person and i == 7 else f"p{i % 20}" for i in range(rows)],
        "id": [(FNR, OTHER)[i % 2] for i in range(rows)],
        "age": [str(20 + (i * 7) % 60) for i in range(rows)],
        "sex": ["MK"[i % 2] for i in range(rows)],
    })  # fmt: skip
    source = tmp_path / "in.parquet"
    frame.write_parquet(source)
    return source


def _refused(source: Path, config: AnonymiseConfig, tmp_path: Path) -> str:
    out, report = tmp_path / "out.parquet", tmp_path / "report"
    with pytest.raises(KobleError) as info:
        anonymise_with_report(source, config, out, report)
    assert not out.exists() and not report.exists()
    assert not list(tmp_path.glob("*withheld*"))
    return str(info.value)


QIS: dict[str, str | dict[str, Any]] = {"age": "age", "sex": "categorical"}


def test_a_person_number_refuses_the_command_and_nothing_is_written(tmp_path: Path) -> None:
    config = AnonymiseConfig(k=2, quasi_identifiers=dict(QIS), suppression=0.5)
    message = _refused(_source(tmp_path), config, tmp_path)
    assert "valid fødselsnummer-family numbers in id (60 rows, first row 1)" in message
    assert FNR not in message and OTHER not in message


def test_the_scan_refuses_before_a_later_refusal(tmp_path: Path) -> None:
    """A missing person is refused after the scan has started; the scan's finding is still
    the refusal the user sees, as when the scan ran first."""
    config = AnonymiseConfig(k=2, quasi_identifiers=dict(QIS), suppression=0.5, person="pid")
    message = _refused(_source(tmp_path, missing_person=True), config, tmp_path)
    assert "fødselsnummer-family numbers in id" in message
    clean = pl.read_parquet(_source(tmp_path, missing_person=True)).drop("id")
    clean.write_parquet(tmp_path / "clean.parquet")
    assert "fødselsnummer" not in _refused(tmp_path / "clean.parquet", config, tmp_path)


def test_the_scan_runs_beside_the_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[str] = []
    scan = release_module.refuse_person_numbers  # type: ignore[attr-defined]

    def recorded(*args: Any) -> None:
        threads.append(threading.current_thread().name)
        scan(*args)

    monkeypatch.setattr(release_module, "refuse_person_numbers", recorded)
    source = _source(tmp_path)
    pl.read_parquet(source).drop("id").write_parquet(source)
    config = AnonymiseConfig(k=2, quasi_identifiers=dict(QIS), suppression=0.5)
    release, _ = anonymise_with_report(source, config, tmp_path / "o.parquet", tmp_path / "r")
    assert release.result.feasible and (tmp_path / "o.parquet").exists()
    assert threads and threading.main_thread().name not in threads
