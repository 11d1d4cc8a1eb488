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

from koble.synth.config import SynthConfig
from koble.synth.world import GENERATOR_VERSION, Progress, generate_world

__all__ = ["GENERATOR_VERSION", "Progress", "SynthConfig", "generate_world"]
