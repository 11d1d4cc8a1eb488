"""Memory and CPU of the benchmarks' children, read from ``/proc``: a step's own peak RSS
inside a child (:class:`StepPeaks`), and a child's process tree sampled from outside
(:class:`Watch`, a Spark JVM included)."""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class StepPeaks:
    """This process's peak RSS during each step of a run (``run_job``'s ``on_step``): the
    kernel's high-water mark (``VmHWM``) is reset as a step starts (``clear_refs``) and read
    as it ends, so a step's peak is its own, not an earlier step's. Only this process: a
    Spark JVM's memory is not in it (the parent's :class:`Watch` sees the whole tree)."""

    def __init__(self) -> None:
        self.gib: dict[str, float] = {}  # step id -> peak RSS GiB

    def on_step(self, step: Any, event: str, index: int, total: int) -> None:
        if event == "start":
            with contextlib.suppress(OSError):  # no clear_refs: peaks are since the start
                Path("/proc/self/clear_refs").write_text("5")
        elif event == "done":
            self.gib[step.id] = round(high_water() / 2**30, 3)


def high_water() -> int:
    """This process's peak RSS in bytes since it started or its mark was last reset."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class Watch:
    """Peak RSS and CPU of a process and its descendants, sampled from ``/proc``."""

    root: int
    peak_rss: int = 0  # bytes
    cpu: dict[int, float] = field(default_factory=dict)  # pid -> last seen user+system s
    done: threading.Event = field(default_factory=threading.Event)

    def tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    stat = Path(f"/proc/{entry.name}/stat").read_text()
                except OSError:
                    continue
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
        found, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo += children.get(pid, [])
        return found

    def sample(self) -> None:
        rss = 0
        for pid in self.tree():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
            except (OSError, IndexError):
                continue
            self.cpu[pid] = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
        self.peak_rss = max(self.peak_rss, rss)

    def run(self) -> None:
        while not self.done.wait(0.2):
            self.sample()
