"""What every part of ``bench_anonymity.py`` shares: where the adult data and the script are,
adult's quasi-identifiers, k and the suppression limits, best-of timing, running the script
again in a fresh process (each case's peak RSS its own) and the table cells' formats."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ADULT_DIR = REPO.parent / "shared" / "data" / "adult"
#: The script every child runs (with a worker or generator option)
SCRIPT = Path(__file__).with_name("bench_anonymity.py")
QIS8 = (
    "age",
    "sex",
    "race",
    "marital-status",
    "education",
    "native-country",
    "workclass",
    "salary-class",
)
QIS9 = (*QIS8, "occupation")
K = 5
LIMITS = (0.0, 0.02)


def fmt_ms(seconds: float) -> str:
    """Seconds as milliseconds, one decimal."""
    return f"{seconds * 1000:,.1f}"


def fmt_levels(levels: Sequence[int]) -> str:
    """A lattice node's levels as a tuple without spaces: ``(1,0,2)``."""
    return "(" + ",".join(str(v) for v in levels) + ")"


def fmt_loss(value: float) -> str:
    """A loss to four significant digits (large ones whole, with separators); "—" if none."""
    if value != value or value in (float("inf"), float("-inf")):
        return "—"
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"


def run_child(args: Sequence[str]) -> tuple[str, float]:
    """Run the script with ``args`` in a fresh process: its last stdout line, peak RSS (MB)."""
    child = subprocess.Popen(
        [sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise SystemExit(f"child {' '.join(args[:2])} failed with exit code {code}")
    return out.strip().splitlines()[-1], usage.ru_maxrss / 1024
