"""koble's CLI run in-process for the service tests (test_service_lifecycle.py,
test_service_config.py, test_service_remote.py), and the project domain they use."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from click.testing import CliRunner, Result

from koble.cli.main import cli

DOMAIN = "project:cli-test"


def run(*args: str | Path, env: Mapping[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)
