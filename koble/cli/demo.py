"""``koble demo``: the main job on a generated synthetic world (placeholder until synth lands)."""

from __future__ import annotations

import click


@click.command()
def demo() -> None:
    """Generate a synthetic world and check its identifiers."""
