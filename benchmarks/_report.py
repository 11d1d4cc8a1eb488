"""The pieces the benchmark scripts share: the best of repeated timings, the machine's CPU
model, a markdown table, the load average, a target's verdict, the command line as typed and
the state of the code measured (a commit alone does not place numbers from an uncommitted
tree).
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def best_of(repeat: int, fn: Callable[[], T]) -> tuple[float, T]:
    """The least wall time of ``repeat`` calls of ``fn`` (at least one), and the last call's
    result."""
    start = time.perf_counter()
    result = fn()
    best = time.perf_counter() - start
    for _ in range(repeat - 1):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load() -> str:
    """The machine's load average, printed beside each part (other work skews the times)."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]], right: int = 0) -> None:
    """Print a markdown table; columns from ``right`` on are right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    rule = ["-" * (w + 1) + ":" if i >= right > 0 else "-" * (w + 2) for i, w in enumerate(widths)]
    print("|" + "|".join(rule) + "|")
    for row in cells:
        padded = [c.rjust(w) if i >= right > 0 else c.ljust(w)
                  for i, (c, w) in enumerate(zip(row, widths, strict=True))]  # fmt: skip
        print("| " + " | ".join(padded) + " |")
    print(flush=True)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def shown_python() -> str:
    """The interpreter as typed from the repository root (``.venv/bin/python``)."""
    try:
        return str(Path(sys.executable).relative_to(Path.cwd()))
    except ValueError:
        return sys.executable


def code_state(package: str) -> str:
    """The commit, and a digest of ``koble/<package>/`` as it is on disk (it may be
    uncommitted)."""
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    digest = hashlib.sha256()
    for path in sorted((REPO / "koble" / package).rglob("*.py")):
        digest.update(path.read_bytes())
    return f"commit {head or '?'}, koble/{package}/**/*.py sha256 {digest.hexdigest()[:12]}"
