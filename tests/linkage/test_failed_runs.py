"""A failed ``koble run``: nothing left behind when it did nothing; ``--restart`` otherwise.

Issue 14: a run that failed at validation locked its workspace ("holds a run of another
job; use a new workspace"), and a changed job over a stopped run had no way to start again
in the same workspace.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from koble.cli.main import cli as main
from koble.errors import UsageError
from koble.pseudonym.audit_verify import verify_log
from koble.pseudonym.keystore import PassphraseKek
from tests.linkage.conftest import JobWriter, World

PASS = "correct horse battery staple"


def _run(world: World, job: Path, workspace: Path, *extra: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        main,
        ["run", str(job), "--workspace", str(workspace), "--world", str(world.path),
         "--keys", str(workspace.parent / "keys"), *extra],
        env={"KOBLE_KEYSET_PASSPHRASE": PASS},
    )  # fmt: skip
    return result.exit_code, result.stdout, result.stderr


def _events(log: Path) -> list[dict[str, object]]:
    entries = [json.loads(line) for line in log.read_text("utf-8").splitlines() if line.strip()]
    return [e for e in entries if e["type"] == "event"]


def test_a_run_that_fails_at_validation_leaves_no_workspace(
    world: World, job_variant: JobWriter, tmp_path: Path
) -> None:
    """A wrong population column stops the run before anything (the sealed ingest of the
    feed included) and leaves no workspace; the corrected job then runs in the same place."""
    text = world.distributed.read_text("utf-8")
    wrong = job_variant("wrong-column", text.replace('id_column = "fnr"', 'id_column = "nope"'))
    workspace = tmp_path / "ws"
    code, _, err = _run(world, wrong, workspace)
    assert code == 2 and "column 'nope'" in err and "Traceback" not in err
    assert not workspace.exists()
    fixed = job_variant("fixed", text)
    code, _, err = _run(world, fixed, workspace)
    assert code == 0, err
    assert (workspace / "researcher" / "delivery" / "manifest.json").is_file()


def test_a_failure_in_an_existing_directory_removes_only_what_it_made(
    world: World, job_variant: JobWriter, tmp_path: Path
) -> None:
    text = world.distributed.read_text("utf-8")
    wrong = job_variant("wrong-column", text.replace('id_column = "fnr"', 'id_column = "nope"'))
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "notes.txt").write_text("mine", "utf-8")
    code, _, _ = _run(world, wrong, workspace)
    assert code == 2
    assert sorted(p.name for p in workspace.iterdir()) == ["notes.txt"]


def test_a_step_that_fails_before_anything_is_done_leaves_nothing(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure in the first step (here: the feed's ingest) of a fresh run: the workspace,
    its keys and its audit log go; the next run starts afresh rather than refusing."""
    import koble.linkage.executor as executor

    def broken(*args: object, **kwargs: object) -> dict[str, object]:
        raise UsageError("the disk went away")

    monkeypatch.setitem(executor.HANDLERS, "sealed_ingest", broken)
    workspace = tmp_path / "ws"
    with pytest.raises(UsageError, match="disk went away"):
        world.run(world.distributed, workspace, keys=workspace / "keys")
    assert not workspace.exists()


def test_a_stored_run_that_did_nothing_is_replaced_not_refused(
    world: World, tmp_path: Path
) -> None:
    """A run.json an older koble left after failing before its first step (another job's
    hash, nothing done) no longer locks the workspace."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    stale = {"job_sha256": "0" * 64, "plan_sha256": "0" * 64, "sources": {},
             "created": "2026-01-01T00:00:00+00:00", "done": {}, "setup": {}}  # fmt: skip
    (workspace / "run.json").write_text(json.dumps(stale), "utf-8")
    result = world.run(world.distributed, workspace, keys=tmp_path / "keys")
    assert result.delivery.is_dir()


def test_a_changed_job_over_a_stopped_run_names_restart_which_keeps_the_trail(
    world: World, job_variant: JobWriter, tmp_path: Path
) -> None:
    workspace, keys = tmp_path / "ws", tmp_path / "keys"
    kek = PassphraseKek(PASS.encode())  # the CLI's, so the CLI runs below share the keys
    world.run(world.distributed, workspace, keys=keys, kek=kek, stop_after="npr-extract")
    before = _events(workspace / "audit.log")
    old_state = json.loads((workspace / "run.json").read_text("utf-8"))
    changed = job_variant(
        "changed",
        world.distributed.read_text("utf-8").replace(
            "period = { start = 2015, end = 2024 }", "period = { start = 2016, end = 2024 }", 1
        ),
    )
    code, _, err = _run(world, changed, workspace)
    assert code == 2
    done = len(old_state["done"])  # the steps up to npr-extract (identity recovery first)
    assert "another job" in err and "--restart" in err and f"completed {done} step(s)" in err

    code, out, err = _run(world, changed, workspace, "--restart")
    assert code == 0, err
    assert (workspace / "researcher" / "delivery" / "manifest.json").is_file()
    # the stopped run's records, set aside under a dated name
    (aside,) = (workspace / "restarted").iterdir()
    assert aside.name.endswith("Z") and (aside / "run.json").is_file()
    assert json.loads((aside / "run.json").read_text("utf-8")) == old_state
    assert (aside / "operator" / "store").is_dir()
    # one audit log across both runs: the old events, the restart, the new run's steps
    after = _events(workspace / "audit.log")
    assert after[: len(before)] == before
    restart = after[len(before)]
    assert restart["operation"] == "linkage.restart"
    assert restart["input_sha256"] == old_state["job_sha256"]
    assert restart["details"] == {  # the feed's sealed ingest is one of the steps done
        "moved_to": f"restarted/{aside.name}",
        "steps_done": done,
    }
    report = verify_log(workspace / "audit.log", (keys / "operator.signing.pub.pem").read_bytes())
    assert report.ok
    # the new run's state is the changed job's, and resuming it is an ordinary resume
    code, out, _ = _run(world, changed, workspace)
    assert code == 0 and "resumed after step" in out


def test_restart_without_a_run_in_the_workspace_just_runs(world: World, tmp_path: Path) -> None:
    code, _, err = _run(world, world.distributed, tmp_path / "ws", "--restart")
    assert code == 0, err
    assert not (tmp_path / "ws" / "restarted").exists()
    assert all(e["operation"] != "linkage.restart" for e in _events(tmp_path / "ws" / "audit.log"))


@pytest.mark.parametrize("column", ["row", "reason", "message"])
def test_a_population_with_a_rejects_column_name_is_refused_before_anything(
    world: World, job_variant: JobWriter, tmp_path: Path, column: str
) -> None:
    """A population column named as one the rejects file adds (row, reason, message) would
    give that file two columns of one name: refused at once (exit 2, naming the file and
    the column, never a traceback), with no workspace left, not an internal error."""
    import polars as pl

    study = pl.read_parquet(world.path / "study_population.parquet")
    clashing = world.path / f"population-{tmp_path.name}-{column}.parquet"
    study.with_columns(pl.lit("x").alias(column)).write_parquet(clashing)
    text = world.distributed.read_text("utf-8")
    job = job_variant(column, text.replace('"study_population.parquet"', f'"{clashing.name}"'))
    workspace = tmp_path / "ws"
    code, _, err = _run(world, job, workspace)
    assert code == 2, err
    assert f"column {column!r}" in err and clashing.name in err and "rename it" in err
    assert "Traceback" not in err and "internal" not in err
    assert not workspace.exists()
