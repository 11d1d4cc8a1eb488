"""The world's registries file: which of a synthetic world's tables holds which registry.

Every ``koble synth`` world gets ``registries.toml`` beside its tables, a copy of the
bundled :data:`BUNDLED` (``koble/synth/registries.toml``). It names each registry by its
catalogue id and says which table file holds it, the column it is keyed by, the column a
job's period applies to, and the variables it offers, with the world's own names for it
(``quality_registry`` for ``hoftebruddregisteret``). It is a sources file
(:mod:`koble.linkage.sources`), so the linkage code learns the world's layout from the world,
not from constants of its own, and a job is checked against the variables the world holds.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Final

from koble.files import write_bytes

__all__ = ["BUNDLED", "REGISTRIES_FILE", "write_registries"]

#: The file name of the registries file in a world.
REGISTRIES_FILE: Final = "registries.toml"
#: The registries file every world of this koble version gets.
BUNDLED: Final = Path(str(files("koble.synth") / REGISTRIES_FILE))


def write_registries(out: Path) -> Path:
    """Write the world's registries file into ``out`` (atomically); return its path."""
    target = out / REGISTRIES_FILE
    write_bytes(target, BUNDLED.read_bytes())  # byte for byte
    return target
