"""How a run records a step done (issue 17's fixed costs): the step's transfers are staged
and fsynced together, the audit event and run.json's new content wait for the disk
together, and run.json names the step done only once its event is written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from koble import files
from koble.errors import OutputError
from koble.linkage.executor import AUDIT_LOG
from koble.pseudonym.audit import AuditLog
from tests.linkage.conftest import World

STEP = "npr-extract"


def _events(workspace: Path) -> list[str]:
    lines = (workspace / AUDIT_LOG).read_text("utf-8").splitlines()
    return [json.loads(line).get("details", {}).get("step") for line in lines if line.strip()]


def test_a_step_whose_event_fails_is_not_recorded_done_and_is_redone(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = tmp_path / "ws"
    real = AuditLog.append

    def failing(self: AuditLog, **event: Any) -> Any:
        if (event.get("details") or {}).get("step") == STEP:
            raise OutputError("cannot write the audit log: disk full", path=self.path)
        return real(self, **event)

    monkeypatch.setattr(AuditLog, "append", failing)
    with pytest.raises(OutputError, match="audit log"):
        world.run(world.distributed, workspace)
    state = json.loads((workspace / "run.json").read_text("utf-8"))
    assert STEP not in state["done"] and state["done"]  # the steps before it are recorded
    assert STEP not in _events(workspace)
    assert not [p for p in workspace.rglob("*") if files.TEMP_MARK in p.name]
    monkeypatch.undo()
    resumed = world.run(world.distributed, workspace)
    assert STEP in resumed.seconds  # redone, then audited once
    assert _events(workspace).count(STEP) == 1


def test_transfers_are_moved_to_the_inbox_whole_and_the_outbox_left_empty(
    world: World, tmp_path: Path
) -> None:
    result = world.run(world.distributed, tmp_path / "ws")
    parties = [p for p in (tmp_path / "ws").iterdir() if (p / "inbox").is_dir()]
    sealed = [f for p in parties for f in (p / "inbox").iterdir()]
    assert sealed and all(f.read_bytes()[:8] == b"\x89KOBLT\r\n" for f in sealed)
    assert not [f for p in parties for f in (p / "outbox").iterdir()]
    assert result.delivery.is_dir()
