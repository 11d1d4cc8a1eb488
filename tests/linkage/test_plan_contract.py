"""The plan is the only contract between steps (design.md §2.1, issue 17).

- every file in a party's store after a run is one its steps declared as an output, or one
  it was sent by a transfer the plan lists (or a registry's sealed feed, loaded before the
  steps): no step writes a file of its own naming;
- a step that looks for a file the plan does not declare for it is stopped;
- ``koble.linkage`` has a small public face, and importing one of its modules does not load
  the executor and its engines.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import koble.linkage
from koble.linkage import names
from koble.linkage.executor import RunResult


def _held(party_dir: Path) -> set[str]:
    store = party_dir / "store"
    return {p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file()}


def _check_declared(run: RunResult) -> None:
    plan = run.plan
    for party in plan.parties:
        party_dir = run.workspace / party.id.replace(":", "-")
        if not party_dir.is_dir():
            continue
        declared = {o for s in plan.steps if s.party == party.id for o in s.outputs}
        received = {t.file for t in plan.transfers if t.target == party.id}
        # a registry's sealed feed is loaded before the plan's steps (not a step yet)
        fed = {n(p.registry) for p in plan.accepted for n in (names.ingested, names.ingest_counts)}
        stray = _held(party_dir) - declared - received - fed
        assert not stray, f"{party.id} holds files no step of the plan declares: {sorted(stray)}"


def test_every_file_a_party_holds_is_declared_distributed(distributed_run: RunResult) -> None:
    _check_declared(distributed_run)


def test_every_file_a_party_holds_is_declared_central(central_run: RunResult) -> None:
    _check_declared(central_run)


def test_a_step_finds_only_what_its_plan_declares() -> None:
    assert names.declared(names.KEY_LIST, ("a",), (names.KEY_LIST,)) == names.KEY_LIST
    with pytest.raises(LookupError, match="does not declare"):
        names.declared(names.consent_report("npr"), ("npr_persons.parquet",))
    assert names.pseudonym_column("kpr-x") == "pseudonym_kpr_x"


def test_the_public_face_and_a_light_import() -> None:
    for name in koble.linkage.__all__:
        assert getattr(koble.linkage, name) is not None
    with pytest.raises(AttributeError):
        koble.linkage.steps_helper_that_does_not_exist  # noqa: B018
    code = (
        "import sys, koble.linkage.names, koble.linkage.plan\n"
        "heavy = [m for m in ('koble.linkage.executor', 'duckdb') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
