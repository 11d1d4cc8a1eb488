"""Each step's CPU time in a run's result (issue 17, part 5: the benchmark's steadier measure).

``RunResult.cpu_seconds`` holds, for every step the run carried out, the process's CPU
seconds (every thread's) over the same span as its wall time in ``seconds``; a resumed run
has neither for the steps it skipped.
"""

from __future__ import annotations

import time
from pathlib import Path

from koble.linkage.executor import RunResult

from .conftest import World


def test_every_step_run_has_its_cpu_time(world: World, tmp_path: Path) -> None:
    before = time.process_time()
    result: RunResult = world.run(world.distributed, tmp_path / "ws")
    spent = time.process_time() - before
    assert set(result.cpu_seconds) == set(result.seconds) == {s.id for s in result.plan.steps}
    assert all(v >= 0 for v in result.cpu_seconds.values())
    # within the run's own CPU time, and not nothing: the steps read, join and write
    assert 0 < sum(result.cpu_seconds.values()) <= spent
    extract = next(s.id for s in result.plan.steps if s.action == "extract")
    assert result.cpu_seconds[extract] > 0


def test_a_resumed_run_times_only_the_steps_it_runs(world: World, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    first = world.run(world.distributed, workspace, stop_after="operator-assign-serials")
    done = list(first.cpu_seconds)
    assert done == list(first.seconds) and done[-1] == "operator-assign-serials"
    second = world.run(world.distributed, workspace)
    assert not set(done) & set(second.cpu_seconds)
    assert set(second.cpu_seconds) == set(second.seconds)
    assert len(second.cpu_seconds) == len(second.plan.steps) - second.resumed


def test_each_step_times_its_transfers_apart(world: World, tmp_path: Path) -> None:
    """``transfer_seconds``: the wall and CPU time of the files sent after each step (sealed,
    signed, moved, opened), a part of that step's own times."""
    result = world.run(world.distributed, tmp_path / "ws")
    assert set(result.transfer_seconds) == set(result.seconds)
    for step in result.plan.steps:
        wall, cpu = result.transfer_seconds[step.id]
        assert 0 <= wall <= result.seconds[step.id]
        assert 0 <= cpu <= result.cpu_seconds[step.id]
    senders = {t.after for t in result.plan.transfers}
    assert senders, "the distributed job sends files between parties"
    assert sum(result.transfer_seconds[s][0] for s in senders) > 0  # the sealing is measured
