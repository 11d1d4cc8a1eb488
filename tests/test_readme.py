"""README.md works as written: every ```sh block runs, in order, in one fresh directory.

The blocks are read from README.md itself, so the README cannot drift from the code. They run
as a new user runs them after cloning the repository and ``make demo``: in one directory
holding a copy of ``examples/``, the package (for ``--catalogue koble/linkage/data/...``)
and the ``.venv``, with the venv's ``bin`` first on PATH and the shell's exported variables
carried from one block to the next (one terminal). Each block runs under ``set -euo
pipefail`` and must exit 0; a failure names the block's line and first line.

The quick start's ``make demo`` / ``make test`` block is skipped (:data:`SKIPPED`): it is
what runs this test.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: First lines of the blocks the runner skips, and why.
SKIPPED = {"make demo": "the quick start's make demo / make test is what runs this test"}
#: Placeholders that cannot run as written; README blocks must use real names instead.
PLACEHOLDERS = ("[--", "...", "JOB.toml", "<", "FILE", " DIR")
BLOCK_TIMEOUT_S = 300

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```sh[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S
)


@dataclass(frozen=True)
class Block:
    """One ```sh block: the README line of its fence and its text, dedented."""

    line: int
    text: str

    @property
    def first(self) -> str:
        return next(line for line in self.text.splitlines() if line.strip()).strip()

    @property
    def skipped(self) -> bool:
        return any(self.first.startswith(prefix) for prefix in SKIPPED)


def sh_blocks(markdown: str) -> list[Block]:
    """Every ```sh block of ``markdown`` (indented ones in lists too), in order."""
    blocks = []
    for match in _FENCE.finditer(markdown):
        indent = len(match["indent"])
        lines = [line[indent:] if line[:indent].isspace() else line.lstrip()
                 for line in match["body"].splitlines()]  # fmt: skip
        blocks.append(Block(markdown.count("\n", 0, match.start()) + 1, "\n".join(lines) + "\n"))
    return blocks


def test_extracts_every_sh_block_and_skips_only_the_quick_start() -> None:
    text = README.read_text(encoding="utf-8")
    blocks = sh_blocks(text)
    assert len(blocks) == len(re.findall(r"^[ \t]*```sh[ \t]*$", text, re.M))
    assert [b.first for b in blocks if b.skipped] == [
        "make demo    # generate a synthetic registry world and run the main job on it"
    ]
    assert blocks[1].first.startswith(". .venv/bin/activate"), "PATH set right after quick start"


def test_no_block_holds_a_placeholder() -> None:
    found = [
        f"README.md line {block.line + 1 + n}: {line.strip()!r} holds {mark!r}"
        for block in sh_blocks(README.read_text(encoding="utf-8"))
        if not block.skipped
        for n, line in enumerate(block.text.splitlines())
        for mark in PLACEHOLDERS
        if mark in line.split(" #")[0] and "<<" not in line
    ]
    assert not found, "\n".join(found)


def _clone(where: Path) -> dict[str, str]:
    """A directory as a user's clone after ``make demo``; the environment to run in."""
    shutil.copytree(ROOT / "examples", where / "examples")  # blocks write beside its files
    (where / "koble").symlink_to(ROOT / "koble", target_is_directory=True)
    venv = ROOT / ".venv" if (ROOT / ".venv" / "bin" / "activate").is_file() else Path(sys.prefix)
    (where / ".venv").symlink_to(venv, target_is_directory=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KOBLE_", "VIRTUAL_ENV", "PYTEST_", "COV_"))}  # fmt: skip
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(where)
    return env


def _end_leftovers(where: Path) -> None:
    """End what a failed block left running in the background (a server started with
    ``&`` that its block did not get to stop): every process whose working directory is
    ``where``, this test's own directory, so nothing else is touched."""
    where = where.resolve()
    for proc in Path("/proc").glob("[0-9]*"):  # Linux; elsewhere nothing to look at
        try:
            if Path(os.readlink(proc / "cwd")) == where and int(proc.name) != os.getpid():
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


@pytest.mark.slow
def test_readme_sh_blocks_run_in_order(tmp_path: Path) -> None:
    env = _clone(tmp_path)
    state = tmp_path.parent / f"{tmp_path.name}.shell-state"  # exported variables, block to block
    timings = []
    for block in sh_blocks(README.read_text(encoding="utf-8")):
        if block.skipped:
            continue
        script = (
            "set -euo pipefail\n"
            f"if [ -f '{state}' ]; then . '{state}'; fi\n"
            f"{block.text}"
            f"export -p > '{state}'\n"
        )
        started = time.perf_counter()
        try:
            done = subprocess.run(
                ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                timeout=BLOCK_TIMEOUT_S, start_new_session=True,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            pytest.fail(f"README.md line {block.line} ({block.first!r}): over {BLOCK_TIMEOUT_S} s")
        finally:
            _end_leftovers(tmp_path)
        timings.append((time.perf_counter() - started, block.line))
        assert done.returncode == 0, (
            f"README.md line {block.line} ({block.first!r}) exited {done.returncode}\n"
            f"--- stdout (end)\n{done.stdout[-3000:]}\n--- stderr (end)\n{done.stderr[-3000:]}"
        )
    print("README blocks, slowest first:", sorted(timings, reverse=True)[:5])
