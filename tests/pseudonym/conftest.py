"""Fixtures for the pseudonym tests: fixed clocks, seeded randomness, a small world."""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from koble.pseudonym.keys import Keyset
from koble.synth import SynthConfig, generate_world

FIXED = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def clock() -> datetime.datetime:
    return FIXED


def seeded(seed: int) -> Callable[[int], bytes]:
    rng = random.Random(seed)
    return rng.randbytes


@pytest.fixture
def keyset() -> Keyset:
    return Keyset.create(randbytes=seeded(1), now=clock)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(out, SynthConfig(persons=4_000, seed=11))
    return out
