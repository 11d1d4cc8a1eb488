"""The process-wide setting the ``koble`` command makes before its libraries load
(:mod:`koble.cli`): NumPy's transparent huge pages off unless the user chose."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = (
    "import sys; import koble.cli.main; "
    "assert 'numpy' not in sys.modules or sys.argv[1] == 'late'; "
    "import numpy; print(numpy._core.multiarray._get_madvise_hugepage())"
)


def _probe(env_value: str | None, *, numpy_first: bool = False) -> str:
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if env_value is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = env_value
    code = ("import numpy; " if numpy_first else "") + PROBE
    out = subprocess.run(
        [sys.executable, "-c", code, "late" if numpy_first else "early"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def test_the_command_turns_numpys_huge_pages_off_before_numpy_loads() -> None:
    assert _probe(None) == "False"


@pytest.mark.parametrize("chosen", ["0", "1"])
def test_a_users_own_choice_is_kept(chosen: str) -> None:
    assert _probe(chosen) == str(chosen == "1")


def test_numpy_loaded_before_the_command_keeps_its_own_default() -> None:
    """A program that loaded NumPy before koble keeps NumPy's default (on: the kernels
    this runs on are newer than 4.6)."""
    assert _probe(None, numpy_first=True) == "True"
