"""Shared by the sealed ingest tests (test_ingest*.py): the three parties' keys, a small
synthetic world (built once per test module), dirty identifiers, scanners for identifiers
and payload values in tables and bytes, the registry table as it should come out, and one
batch sealed and pseudonymised."""

from __future__ import annotations

import datetime
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from koble.pseudonym.hazmat import primitives
from koble.pseudonym.identity import IdentityHistory
from koble.pseudonym.ingest import PSEUDONYM_SUFFIX, seal, ttp_pseudonymise
from koble.pseudonym.keys import Keyset
from koble.pseudonym.pseudonymise import pseudonymise_values
from koble.pseudonym.sealed import PartyKey, SealedBatch
from koble.registries.identifiers.column import validate_column
from koble.synth import SynthConfig, generate_world

RESEPT_IDS: dict[str, Any] = {"fnr": "fnr", "prescriber_hpr": "hpr"}
RESEPT_DOMAINS = {"fnr": "reseptregisteret", "prescriber_hpr": "reseptregisteret-hpr"}
GENERIC = "cryptographic operation failed"


def now() -> datetime.datetime:
    return datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def rand(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


@dataclass(frozen=True)
class Parties:
    ttp: PartyKey
    registry: PartyKey
    keyset: Keyset


PARTIES = Parties(
    ttp=PartyKey.generate(rand(101)),
    registry=PartyKey.generate(rand(102)),
    keyset=Keyset.create(randbytes=rand(103), now=now),
)


@dataclass(frozen=True)
class World:
    path: Path
    resept: pl.DataFrame
    iplos: pl.DataFrame
    history: IdentityHistory


@pytest.fixture(scope="module", name="world")
def world_fixture(tmp_path_factory: pytest.TempPathFactory) -> World:
    """Reseptregisteret and IPLOS feeds and the identity history of 1500 synthetic persons,
    one per test module that imports this fixture (it stands in for the directory's
    session ``world``, a plain synthetic world)."""
    path = tmp_path_factory.mktemp("ingest-world")
    generate_world(path, SynthConfig(persons=1500, seed=11, share_history=0.05))
    return World(
        path,
        pl.read_parquet(path / "feeds" / "reseptregisteret.parquet"),
        pl.read_parquet(path / "feeds" / "iplos.parquet"),
        IdentityHistory.read(path / "identity_history.parquet"),
    )


def inject_dirt(feed: pl.DataFrame) -> tuple[pl.DataFrame, dict[int, set[str]]]:
    """Break identifiers in a few rows; return the feed and {feed row (1-based): columns}."""
    fnr, hpr = feed["fnr"].to_list(), feed["prescriber_hpr"].to_list()
    broken: dict[int, set[str]] = {}

    def last_digit(value: str) -> str:
        return value[:-1] + str((int(value[-1]) + 1) % 10)

    for index, column, value in [
        (0, "fnr", last_digit(fnr[0])),
        (5, "fnr", None),
        (9, "fnr", "12a45678901"),
        (14, "prescriber_hpr", None),
        (20, "prescriber_hpr", last_digit(hpr[20])),
        (25, "fnr", fnr[25][:10]),
        (25, "prescriber_hpr", ""),
    ]:
        (fnr if column == "fnr" else hpr)[index] = value
        broken.setdefault(index + 1, set()).add(column)
    return feed.with_columns(pl.Series("fnr", fnr), pl.Series("prescriber_hpr", hpr)), broken


# -- scanners (each has a positive control in test_ingest.py) ------------------------
_ELEVEN = re.compile(rb"(?<![0-9A-Za-z])[0-9]{11}(?![0-9A-Za-z])")


def valid_fnr_in_frame(frame: pl.DataFrame) -> int:
    """Valid person numbers (test numbers included) in any column of ``frame``."""
    return sum(
        int(validate_column(frame[c].cast(pl.String), test_numbers=True)["valid"].sum())
        for c in frame.columns
    )


def valid_fnr_in_bytes(data: bytes) -> int:
    runs = [m.decode() for m in _ELEVEN.findall(data)]
    if not runs:
        return 0
    return int(validate_column(pl.Series(runs), test_numbers=True)["valid"].sum())


def values_in_frame(frame: pl.DataFrame, values: set[str]) -> int:
    wanted = pl.Series(sorted(values), dtype=pl.String).implode()
    return sum(int(frame[c].cast(pl.String).is_in(wanted).sum()) for c in frame.columns)


def needles_in_bytes(data: bytes, needles: set[bytes]) -> set[bytes]:
    return {n for n in needles if n in data}


def payload_needles(feed: pl.DataFrame) -> set[bytes]:
    """Payload values of a Reseptregisteret feed as they would appear in clear bytes."""
    atc = set(feed["atc"].unique().to_list())
    pharmacy = set(feed["pharmacy_id"].unique().to_list())
    dates = set(feed["dispensing_date"].cast(pl.String).unique().to_list())
    return {v.encode() for v in atc | pharmacy | dates}


def files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def expected_registry(
    feed: pl.DataFrame,
    keyset: Keyset,
    ids: dict[str, Any],
    domains: dict[str, str],
    history: IdentityHistory | None,
) -> tuple[pl.DataFrame, pl.Series]:
    """The registry table computed directly with pseudonymise_values, in feed order."""
    good = pl.Series([True] * feed.height, dtype=pl.Boolean)
    compact: dict[str, pl.Series] = {}
    for column, scheme in ids.items():
        checked = validate_column(feed[column], scheme=scheme)
        good &= checked["valid"]
        compact[column] = checked["compact"]
        if history is not None and scheme == "fnr":
            resolution = history.resolve(checked["compact"])
            good &= ~resolution.ambiguous
            compact[column] = resolution.resolved.fill_null(checked["compact"])
    columns = [
        pseudonymise_values(keyset, domains[c], compact[c].filter(good), ids[c]).alias(
            f"{c}{PSEUDONYM_SUFFIX}"
        )
        for c in ids
    ]
    payload = feed.drop(*ids).filter(good)
    return pl.concat([pl.DataFrame(columns), payload], how="horizontal"), good


def sealed_batch(frame: pl.DataFrame, seed: int = 7) -> SealedBatch:
    return seal(
        frame, RESEPT_IDS, ttp_public=PARTIES.ttp.public,
        registry_public=PARTIES.registry.public, randbytes=rand(seed),
    )  # fmt: skip


def run_ttp(batch: SealedBatch, **overrides: Any) -> Any:
    options: dict[str, Any] = {
        "ttp_key": PARTIES.ttp, "keyset": PARTIES.keyset, "domains": RESEPT_DOMAINS,
        "registry_public": PARTIES.registry.public, "randbytes": rand(8),
    }  # fmt: skip
    return ttp_pseudonymise(batch, **{**options, **overrides})


def record_decryptions(patch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Record, in order, every X25519 exchange (``("shared", key fingerprint)``) and every
    AEAD opening (``("open", part)``) while ``patch`` is active: who opened which part."""
    events: list[tuple[str, str]] = []
    real_open, real_shared = primitives.aead_open, PartyKey._shared

    def recording_open(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        events.append(("open", json.loads(aad)["part"]))
        return real_open(key, nonce, ciphertext, aad)

    def recording_shared(self: PartyKey, ephemeral: bytes) -> bytes:
        events.append(("shared", self.fingerprint))
        return real_shared(self, ephemeral)

    patch.setattr(primitives, "aead_open", recording_open)
    patch.setattr(PartyKey, "_shared", recording_shared)
    return events
