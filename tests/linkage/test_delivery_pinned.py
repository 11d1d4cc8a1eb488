"""The deliveries of the demo's routes, pinned byte for byte (issue 17).

The plan-as-contract refactor and a second engine must deliver exactly what koble delivered
before them. With the clock and the randomness fixed, a run is a function of its inputs, so
each delivered file's SHA-256 is frozen in ``data/pinned_deliveries.json``: the distributed
route (pseudonymous Reseptregisteret and four fødselsnummer registries) and the central one
(the anonymity gate over IPLOS). The manifest must list those files with those hashes; it
is not pinned itself (it names the software's version, which a release changes, and hashes
the parties' intermediate Parquet files, whose bytes name the library that wrote them).

The files are CSV, Markdown, JSON and HTML written by koble itself, so the bytes do not
depend on a library's binary layout. After an intended change of a delivery, regenerate
with ``KOBLE_PIN_UPDATE=1 .venv/bin/pytest tests/linkage/test_delivery_pinned.py`` (which
writes the file and fails, so a run that rewrote it is never mistaken for a pass) and say
in the commit why the bytes changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import pytest

from tests.linkage.conftest import World

PINNED = Path(__file__).parent / "data" / "pinned_deliveries.json"
SEED = 2017


def _delivered(world: World, job: Path, workspace: Path) -> dict[str, str]:
    """Every file the researcher receives with its SHA-256 (the manifest's list of them
    agreeing)."""
    rng = random.Random(SEED)
    delivery = world.run(job, workspace, randbytes=rng.randbytes).delivery
    files = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(delivery.iterdir())
        if p.name != "manifest.json"
    }
    manifest = json.loads((delivery / "manifest.json").read_text(encoding="utf-8"))["manifest"]
    listed = {entry["file"]: entry["sha256"] for entry in manifest["outputs"]}
    assert listed == files, "the manifest lists what was delivered, as delivered"
    return files


def test_the_demo_routes_deliver_the_pinned_bytes(world: World, tmp_path: Path) -> None:
    got = {
        "distributed": _delivered(world, world.distributed, tmp_path / "dist" / "ws"),
        "central": _delivered(world, world.central, tmp_path / "central" / "ws"),
    }
    assert all(got.values()), "a route delivered nothing"
    if os.environ.get("KOBLE_PIN_UPDATE"):
        PINNED.parent.mkdir(exist_ok=True)
        PINNED.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        pytest.fail(f"rewrote {PINNED}: check the change and commit it with its reason")
    assert got == json.loads(PINNED.read_text(encoding="utf-8"))
