"""``koble run`` freezes what it imported before the job, in its own process only (issue 17).

:func:`koble.cli.freeze_imports` moves the objects alive before the work to the garbage
collector's permanent generation, so the collections during the job and at shutdown skip
them. The command does that only when it is the process (:func:`koble.cli.main.main` was
its entry), never inside a program that calls it, such as this test session.
"""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import koble.cli
import koble.cli.run as run_module
from koble.cli.main import cli
from koble.errors import UsageError


def test_freeze_imports_moves_the_objects_alive_to_the_permanent_generation() -> None:
    before = gc.get_freeze_count()
    try:
        koble.cli.freeze_imports()
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()  # this test session keeps collecting them


class _StopError(UsageError):
    """Raised by the stand-in for ``run_job`` once it has recorded what it saw."""


def _invoke(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, process: bool) -> list[str]:
    """``koble run`` through click with ``run_job`` replaced: the order of freezing and
    running, as the command did it."""
    seen: list[str] = []
    monkeypatch.setattr(koble.cli, "COMMAND_PROCESS", process)
    monkeypatch.setattr(koble.cli, "freeze_imports", lambda: seen.append("freeze"))
    monkeypatch.setattr(run_module, "resolve_run", lambda *a, **k: {})

    def run_job(*args: Any, **kwargs: Any) -> None:
        seen.append("run_job")
        raise _StopError("stopped by the test")

    monkeypatch.setattr(run_module, "run_job", run_job)
    job = tmp_path / "job.toml"
    job.write_text("", encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", str(job), "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 2 and "stopped by the test" in result.stderr, result.output
    return seen


def test_the_command_process_freezes_just_before_the_job(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert _invoke(monkeypatch, tmp_path, process=True) == ["freeze", "run_job"]


def test_a_program_calling_the_command_keeps_its_collector(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert koble.cli.COMMAND_PROCESS is False  # nothing in this session set it
    assert _invoke(monkeypatch, tmp_path, process=False) == ["run_job"]


def test_the_entry_point_marks_its_process() -> None:
    """``python -m koble`` (as the console script) is the command's own process."""
    code = (
        "import sys, koble.cli, koble.cli.main as m\n"
        "assert koble.cli.COMMAND_PROCESS is False\n"
        "try:\n"
        "    m.main(['--version'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(koble.cli.COMMAND_PROCESS)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "True"
