"""Synthetic population and registries for the demo, tests and benchmarks.

A deterministic, vectorised generator of a Norwegian registry world: a population with
fødselsnummer, D- and H-numbers (some valid only under the 2032 rule), an identity history,
a dirty health-survey cohort, identifiable registries keyed by fnr (NPR, DÅR, MFR,
Kreftregisteret, a consent-based quality registry, SSB education and income), feeds of the
pseudonymous registries before pseudonymisation (Reseptregisteret, IPLOS) and a de-identified
Abortregisteret. Same seed and config give byte-identical files.

    from koble.synth import SynthConfig, generate_world
    manifest = generate_world(Path("world"), SynthConfig(persons=100_000, seed=1))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from koble.synth.config import SynthConfig
    from koble.synth.world import GENERATOR_VERSION, Progress, generate_world

__all__ = ["GENERATOR_VERSION", "Progress", "SynthConfig", "generate_world"]

#: Imported when first asked for: ``koble run`` reads a submodule (the bundled sources file
#: of :mod:`koble.synth.registries`) and need not load the generator with it.
_LAZY = {"SynthConfig": "koble.synth.config", "GENERATOR_VERSION": "koble.synth.world",
         "Progress": "koble.synth.world", "generate_world": "koble.synth.world"}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
