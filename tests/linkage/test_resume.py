"""Stopping a run (an exception, a kill) leaves no delivery; running again completes it,
byte-identical to a run that was never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from koble.linkage import executor
from koble.linkage.executor import RunResult
from tests.linkage.conftest import World

#: The distributed demo's first step: Reseptregisteret loads its sealed feed.
INGEST = "ingest-reseptregisteret"


def delivered(result: RunResult) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(result.delivery.iterdir())}


@pytest.fixture(scope="module")
def reference(world: World, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunResult]:
    """An uninterrupted run, with its own keys directory (reused by the resumed runs)."""
    root = tmp_path_factory.mktemp("resume")
    return root / "keys", world.run(world.distributed, root / "reference", keys=root / "keys")


def test_stop_after_a_step_then_resume(
    world: World, reference: tuple[Path, RunResult], tmp_path: Path
) -> None:
    keys, full = reference
    workspace = tmp_path / "ws"
    stopped = world.run(world.distributed, workspace, keys=keys, stop_after="npr-extract")
    assert not stopped.delivery.exists()
    state = json.loads((workspace / "run.json").read_text("utf-8"))
    assert "npr-extract" in state["done"] and "operator-deliver" not in state["done"]
    resumed = world.run(world.distributed, workspace, keys=keys)
    assert resumed.resumed >= 3
    assert "npr-extract" not in resumed.seconds  # not redone
    assert delivered(resumed) == delivered(full)


def test_exception_mid_step_leaves_no_delivery_and_resumes(
    world: World, reference: tuple[Path, RunResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys, full = reference
    workspace = tmp_path / "ws"
    real = executor.HANDLERS["extract"]
    calls = {"n": 0}

    def crash_on_third(ctx, step):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full (simulated)")
        return real(ctx, step)

    monkeypatch.setitem(executor.HANDLERS, "extract", crash_on_third)
    with pytest.raises(OSError, match="simulated"):
        world.run(world.distributed, workspace, keys=keys)
    assert not (workspace / "researcher" / "delivery").exists()
    monkeypatch.setitem(executor.HANDLERS, "extract", real)
    resumed = world.run(world.distributed, workspace, keys=keys)
    assert delivered(resumed) == delivered(full)


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from koble.linkage import executor, transfer
    from tests.linkage.conftest import World, fixed_now
    from koble.linkage.sources import synthetic_sources
    from koble.pseudonym.keystore import RawKek
    from koble.registries.catalogue import Catalogue

    world_dir, workspace, keys, where = (Path(a) for a in sys.argv[1:5])
    where = str(where)
    if where == "mid-transfer":
        real_open = transfer.open_into  # the run opens its transfers staged, fsynced together
        def open_then_die(path, *args, **kwargs):
            if "reseptregisteret_extract" in path.name:
                os.kill(os.getpid(), signal.SIGKILL)
            return real_open(path, *args, **kwargs)
        executor.open_into = open_then_die
    if where == "ingest-audit":
        from koble.pseudonym.audit import AuditLog
        real_append = AuditLog.append
        def append_then_die(self, **event):
            if event.get("operation") == "linkage.sealed_ingest":
                os.kill(os.getpid(), signal.SIGKILL)
            return real_append(self, **event)
        AuditLog.append = append_then_die
    def event(step, what, index, total):
        if what == "start" and step.id == where:
            os.kill(os.getpid(), signal.SIGKILL)
    catalogue = Catalogue.load()
    executor.run_job(world_dir / "job_distributed.toml", workspace, keys_dir=keys,
        kek=RawKek(bytes(32)), sources=synthetic_sources(world_dir), catalogue=catalogue,
        now=fixed_now, randbytes=os.urandom, on_step=event)
    """
)


@pytest.mark.parametrize("where", ["reseptregisteret-extract", "operator-deliver", "mid-transfer"])
def test_killed_run_resumes_to_the_same_delivery(
    world: World, reference: tuple[Path, RunResult], tmp_path: Path, where: str
) -> None:
    keys, full = reference
    workspace = tmp_path / "ws"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-c", KILLER, str(world.path), str(workspace), str(keys), where],
        env=env, cwd=root, capture_output=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    assert not (workspace / "researcher" / "delivery").exists()
    resumed = world.run(world.distributed, workspace, keys=keys)
    assert resumed.resumed > 0
    assert delivered(resumed) == delivered(full)


def test_resume_keeps_the_ingest_counts(
    world: World, reference: tuple[Path, RunResult], tmp_path: Path
) -> None:
    """The sealed ingest redone after a stop before run.json recorded it keeps the table it
    finds (not loaded again) and reports the counts it was loaded with."""
    keys, _ = reference
    workspace = tmp_path / "ws"
    world.run(world.distributed, workspace, keys=keys, stop_after=INGEST)
    state = json.loads((workspace / "run.json").read_text("utf-8"))
    first = state["done"].pop(INGEST)["stats"]
    assert first["loaded"] and first["rows_sent"] == first["rows_stored"] + first["rows_rejected"]
    (workspace / "run.json").write_text(json.dumps(state))  # as if killed before it was recorded
    resumed = world.run(world.distributed, workspace, keys=keys)
    again = json.loads((workspace / "run.json").read_text("utf-8"))["done"][INGEST]["stats"]
    assert not again["loaded"] and resumed.resumed == 0 and resumed.delivery.is_dir()
    assert {k: v for k, v in again.items() if k != "loaded"} == {
        k: v for k, v in first.items() if k != "loaded"
    }


EXTRA_REGISTRY = """\
[[registry]]
id = "x-extra"
name = "An extra registry"
kind = "central-health-register"
owner = "Test"
legal_basis = "none"
identity_model = "identifiable"
consent_required = false
anonymous_output = false
identifier = "fnr"
linkage_by = "unknown"
period = { start = 2000, end = "unknown" }
source = { seed = "a test catalogue", quote = "An extra registry with fødselsnummer." }
"""


def test_resume_refuses_another_catalogue_or_changed_data(
    world: World, reference: tuple[Path, RunResult], tmp_path: Path
) -> None:
    import dataclasses

    from koble.errors import UsageError
    from koble.registries.catalogue import Catalogue

    keys, _ = reference
    workspace = tmp_path / "ws"
    world.run(world.distributed, workspace, keys=keys, stop_after="npr-extract")
    extra = tmp_path / "extra.toml"  # another catalogue: the bundled one and one more entry
    extra.write_text(EXTRA_REGISTRY, encoding="utf-8")
    other = world.catalogue.extended(Catalogue.from_file(extra))
    with pytest.raises(UsageError, match="the plan differs"):
        world.run(world.distributed, workspace, keys=keys, catalogue=other)
    npr = world.sources.get("npr")
    copy = tmp_path / "npr_copy.parquet"
    copy.write_bytes(npr.file.read_bytes()[:-1] + npr.file.read_bytes()[-1:])
    registries = {**world.sources.registries, "npr": dataclasses.replace(npr, file=copy)}
    changed = dataclasses.replace(world.sources, registries=registries)
    with pytest.raises(UsageError, match=r"data sources changed .*\(npr\)"):
        world.run(world.distributed, workspace, keys=keys, sources=changed)
    finished = world.run(world.distributed, workspace, keys=keys)  # the same data: resumes
    assert finished.delivery.is_dir()


def test_a_table_loaded_without_counts_is_used_and_said_so(
    world: World, reference: tuple[Path, RunResult], tmp_path: Path
) -> None:
    """A registry table loaded by an older version (no counts beside it) is not re-ingested,
    and run.json says its counts are unknown rather than inventing them."""
    keys, _ = reference
    workspace = tmp_path / "ws"
    world.run(world.distributed, workspace, keys=keys, stop_after=INGEST)
    store = workspace / "registry-reseptregisteret" / "store"
    (store / "reseptregisteret.ingest.json").unlink()
    state = json.loads((workspace / "run.json").read_text("utf-8"))
    del state["done"][INGEST]
    (workspace / "run.json").write_text(json.dumps(state))
    resumed = world.run(world.distributed, workspace, keys=keys)
    stats = json.loads((workspace / "run.json").read_text("utf-8"))["done"][INGEST]["stats"]
    assert stats["counts"] == "unknown" and stats["loaded"] is False
    assert "rows_stored" not in stats and resumed.delivery.is_dir()


@pytest.mark.parametrize("how", ["exception", "kill"])
def test_a_feed_load_stopped_at_its_audit_is_recorded_once(
    world: World,
    reference: tuple[Path, RunResult],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    """The sealed ingest is a step like any other: audited once it has written its table,
    then recorded done in run.json. Stopped at its audit event by an exception, the run has
    done nothing and leaves nothing (no table the audit log does not record); killed there,
    the table stays and the step is not done, and the resumed run redoes it keeping the
    table (the feed is not loaded twice). Either way the audit log records the ingest once
    and the delivery is the uninterrupted run's."""
    from koble.pseudonym.audit import AuditLog, verify_log

    keys, full = reference
    workspace = tmp_path / "ws"
    table = workspace / "registry-reseptregisteret" / "store" / "reseptregisteret.parquet"
    if how == "kill":
        root = Path(__file__).resolve().parents[2]
        env = {**os.environ, "PYTHONPATH": str(root)}
        done = subprocess.run(
            [sys.executable, "-c", KILLER, str(world.path), str(workspace), str(keys),
             "ingest-audit"],
            env=env, cwd=root, capture_output=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == -signal.SIGKILL, done.stderr.decode()
        assert table.is_file()
        assert not json.loads((workspace / "run.json").read_text("utf-8"))["done"]
        loaded = table.stat().st_mtime_ns
    else:
        real = AuditLog.append

        def stopped_at_the_ingest_event(self: AuditLog, **event: object) -> object:
            if event.get("operation") == "linkage.sealed_ingest":
                raise KeyboardInterrupt  # as Ctrl-C at that moment
            return real(self, **event)  # type: ignore[arg-type]

        monkeypatch.setattr(AuditLog, "append", stopped_at_the_ingest_event)
        with pytest.raises(KeyboardInterrupt):
            world.run(world.distributed, workspace, keys=keys)
        assert not workspace.exists()
        monkeypatch.setattr(AuditLog, "append", real)
    resumed = world.run(world.distributed, workspace, keys=keys)
    assert delivered(resumed) == delivered(full)
    done = json.loads((workspace / "run.json").read_text("utf-8"))["done"][INGEST]
    assert done["stats"]["loaded"] is (how == "exception") and done["stats"]["rows_stored"] > 0
    if how == "kill":
        assert table.stat().st_mtime_ns == loaded
    pem = (keys / "operator.signing.pub.pem").read_bytes()
    report = verify_log(workspace / "audit.log", public_key=pem)
    assert report.ok
    lines = [json.loads(x) for x in (workspace / "audit.log").read_text("utf-8").splitlines()]
    ingests = [e for e in lines if e.get("operation") == "linkage.sealed_ingest"]
    assert len(ingests) == 1 and ingests[0]["rows_out"] > 0
