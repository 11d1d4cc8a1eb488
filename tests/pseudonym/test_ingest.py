"""Sealed ingest: the three parties on a synthetic world, what each ends up holding, row
conservation, alignment (hypothesis), tampering, and ``koble ingest`` end to end."""

from __future__ import annotations

import datetime
import json
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import polars as pl
import pyarrow as pa
import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.cli.ingest import ingest
from koble.cli.main import KobleGroup
from koble.errors import ColumnError, CryptoError, FileFormatError, UsageError
from koble.pseudonym import ingest_feed as ingest_module
from koble.pseudonym.hazmat import primitives
from koble.pseudonym.identity import IdentityHistory
from koble.pseudonym.ingest import (
    PSEUDONYM_SUFFIX,
    REJECT_COLUMNS,
    registry_open,
    seal,
    ttp_pseudonymise,
)
from koble.pseudonym.ingest_feed import by_month, ingest_feed
from koble.pseudonym.keys import Keyset
from koble.pseudonym.keystore import PassphraseKek, save_keyset
from koble.pseudonym.pseudonymise import pseudonymise_values
from koble.pseudonym.sealed import ForwardedBatch, PartyKey, SealedBatch, part_key
from koble.registries.identifiers._rules import Kind
from koble.registries.identifiers.column import validate_column
from koble.synth import SynthConfig, generate_world
from tests.identifiers.strategies import mod11_numbers, person_numbers

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


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
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


# -- scanners (each has a positive control below) -------------------------------------
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


def test_scanners_find_what_they_look_for(world: World) -> None:
    feed = world.resept
    assert valid_fnr_in_frame(feed.select("fnr")) == feed.height
    assert valid_fnr_in_bytes(b"\x00" + feed["fnr"][0].encode() + b"\x00") == 1
    assert values_in_frame(feed, set(feed["prescriber_hpr"].to_list())) == feed.height
    sink = pa.BufferOutputStream()
    table = feed.drop("fnr", "prescriber_hpr").to_arrow()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    clear_ipc = sink.getvalue().to_pybytes()
    atc = {v.encode() for v in feed["atc"].unique().to_list()}
    assert needles_in_bytes(clear_ipc, atc) == atc


# -- the three parties ----------------------------------------------------------------
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


@pytest.fixture(scope="module")
def resept_run(world: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Reseptregisteret with dirty identifiers, monthly batches, recording every decryption."""
    feed, broken = inject_dirt(world.resept)
    out = tmp_path_factory.mktemp("resept-ingest")
    ttp_calls: list[dict[str, Any]] = []
    real_ttp = ingest_module.ttp_pseudonymise

    def spy(*args: Any, **kwargs: Any) -> Any:
        result = real_ttp(*args, **kwargs)
        ttp_calls.append({"args": args, "kwargs": kwargs, "result": result})
        return result

    with pytest.MonkeyPatch.context() as patch:
        events = record_decryptions(patch)
        patch.setattr(ingest_module, "ttp_pseudonymise", spy)
        report = ingest_feed(
            feed, name="reseptregisteret", id_columns=RESEPT_IDS, out_dir=out,
            ttp_key=PARTIES.ttp, registry_key=PARTIES.registry, keyset=PARTIES.keyset,
            domains=RESEPT_DOMAINS, history=world.history,
            batch_by=by_month("dispensing_date"), randbytes=rand(104),
        )  # fmt: skip
    return {
        "feed": feed, "broken": broken, "out": out, "report": report, "events": events,
        "ttp_calls": ttp_calls,
    }  # fmt: skip


def test_each_party_decrypts_only_its_own_parts(resept_run: dict[str, Any]) -> None:
    events = resept_run["events"]
    pairs = list(zip(events[::2], events[1::2], strict=True))
    opened: dict[str, set[str]] = {}
    for (kind_a, fingerprint), (kind_b, part) in pairs:
        assert (kind_a, kind_b) == ("shared", "open")
        opened.setdefault(part, set()).add(fingerprint)
    assert opened == {
        "identifiers": {PARTIES.ttp.fingerprint},
        "payload": {PARTIES.registry.fingerprint},
        "pseudonyms": {PARTIES.registry.fingerprint},
    }
    batches = resept_run["report"].batches
    assert batches == 24
    assert [p for _, (_, p) in pairs].count("identifiers") == batches


def test_ttp_is_never_given_the_registry_private_key(resept_run: dict[str, Any]) -> None:
    calls = resept_run["ttp_calls"]
    assert len(calls) == resept_run["report"].batches
    for call in calls:
        given_values = [*call["args"], *call["kwargs"].values()]
        assert not any(v is PARTIES.registry for v in given_values)
        assert [v for v in given_values if isinstance(v, PartyKey)] == [PARTIES.ttp]


def test_ttp_never_holds_a_payload_value_in_clear(resept_run: dict[str, Any]) -> None:
    needles = payload_needles(resept_run["feed"])
    ttp_dir = resept_run["out"] / "ttp"
    assert files(ttp_dir)
    for path in files(ttp_dir):
        assert needles_in_bytes(path.read_bytes(), needles) == set(), path
    for call in resept_run["ttp_calls"]:
        forwarded, rejects, report = call["result"]
        (sealed,) = call["args"]
        assert forwarded.payload == sealed.payload  # forwarded byte for byte
        assert rejects.columns == REJECT_COLUMNS
        held = [
            forwarded.to_bytes(),
            rejects.write_csv().encode(),
            json.dumps(report.to_dict()).encode(),
        ]
        for data in held:
            assert needles_in_bytes(data, needles) == set()


def test_registry_never_holds_an_fnr_or_hpr(resept_run: dict[str, Any]) -> None:
    feed = resept_run["feed"]
    checked = validate_column(feed["prescriber_hpr"], scheme="hpr")
    hprs = set(checked.filter(pl.col("valid"))["compact"].to_list())
    registry_dir = resept_run["out"] / "registry"
    tables = [p for p in files(registry_dir) if p.suffix == ".parquet"]
    assert [p.name for p in tables] == ["reseptregisteret.parquet"]
    for path in files(registry_dir):
        data = path.read_bytes()
        assert valid_fnr_in_bytes(data) == 0, path
        runs = {m.decode() for m in re.findall(rb"(?<![0-9])[0-9]{6,9}(?![0-9])", data)}
        assert runs.isdisjoint(hprs), path
    for path in tables:
        frame = pl.read_parquet(path)
        assert valid_fnr_in_frame(frame) == 0
        assert values_in_frame(frame, hprs) == 0
        assert valid_fnr_in_bytes(frame.write_csv().encode()) == 0
    # nor does the sender put one in clear into what it sends
    for path in files(resept_run["out"] / "sender" / "outbox"):
        assert valid_fnr_in_bytes(path.read_bytes()) == 0


def test_rows_are_conserved_and_rejects_name_row_and_reason(
    resept_run: dict[str, Any], world: World
) -> None:
    report, feed, broken = resept_run["report"], resept_run["feed"], resept_run["broken"]
    assert report.reconciled
    assert report.rows_sent == feed.height == report.rows_stored + report.rows_rejected
    assert report.rows_rejected == report.rejected_by_ttp == len(broken)
    rejects = pl.read_parquet(report.sender_rejects)
    found: dict[int, set[str]] = {}
    for row in rejects.iter_rows(named=True):
        found.setdefault(row["feed_row"], set()).add(row["column"])
        scheme = RESEPT_IDS[row["column"]]
        value = feed[row["column"]][row["feed_row"] - 1]
        assert row["identifier"] == value
        expected = validate_column(pl.Series([value], dtype=pl.String), scheme=scheme)["reason"]
        assert row["reason"] == expected.cast(pl.String)[0]
        assert row["message"]
    assert found == broken
    assert sum(report.by_reason.values()) == len(rejects)
    stored = pl.read_parquet(report.registry_table)
    assert stored.height == report.rows_stored


def test_registry_rows_carry_the_right_pseudonyms(resept_run: dict[str, Any], world: World) -> None:
    feed = resept_run["feed"]
    expected, good = expected_registry(
        feed, PARTIES.keyset, RESEPT_IDS, RESEPT_DOMAINS, world.history
    )
    month = feed.filter(good)["dispensing_date"].dt.strftime("%Y-%m")
    expected = expected.with_columns(month.alias("_m")).sort("_m", maintain_order=True).drop("_m")
    stored = pl.read_parquet(resept_run["report"].registry_table)
    assert stored.columns == [
        "fnr_pseudonym", "prescriber_hpr_pseudonym", "atc", "ddd", "quantity",
        "dispensing_date", "pharmacy_id",
    ]  # fmt: skip
    assert stored.equals(expected)
    # the identity history was exercised: some rows were resolved to a newer number
    resolved = world.history.resolve(validate_column(feed["fnr"])["compact"]).changed & good
    assert resolved.sum() > 0


def test_same_person_same_pseudonym_across_batches(resept_run: dict[str, Any]) -> None:
    feed = resept_run["feed"]
    stored = pl.read_parquet(resept_run["report"].registry_table)
    per_person = stored.group_by("fnr_pseudonym").agg(
        pl.col("dispensing_date").dt.strftime("%Y-%m").n_unique().alias("months")
    )
    assert int(per_person["months"].max()) > 1  # type: ignore[arg-type]  # pseudonyms recur across monthly batches
    direct = pseudonymise_values(PARTIES.keyset, "reseptregisteret", feed["fnr"].slice(30, 50))
    assert set(direct.to_list()) <= set(stored["fnr_pseudonym"].to_list())


def test_prescriber_pseudonyms_are_in_their_own_domain(resept_run: dict[str, Any]) -> None:
    stored = pl.read_parquet(resept_run["report"].registry_table)
    digits = validate_column(resept_run["feed"]["prescriber_hpr"], scheme="hpr")
    hprs = digits.filter(pl.col("valid"))["compact"].unique()
    ours = set(stored["prescriber_hpr_pseudonym"].to_list())
    assert ours == set(pseudonymise_values(PARTIES.keyset, "reseptregisteret-hpr", hprs, "hpr"))
    schemes: list[Any] = ["hpr", "fnr"]
    for scheme in schemes:
        other = pseudonymise_values(PARTIES.keyset, "reseptregisteret", hprs, scheme)
        assert ours.isdisjoint(other.to_list())
    assert ours.isdisjoint(stored["fnr_pseudonym"].to_list())


def test_iplos_feed_becomes_a_pseudonymous_registry(
    world: World, tmp_path: Path, resept_run: dict[str, Any]
) -> None:
    feed = world.iplos
    report = ingest_feed(
        feed, name="iplos", id_columns={"fnr": "fnr"}, out_dir=tmp_path,
        ttp_key=PARTIES.ttp, registry_key=PARTIES.registry, keyset=PARTIES.keyset,
        domains={"fnr": "iplos"}, history=world.history, batch_rows=100, randbytes=rand(105),
    )  # fmt: skip
    assert report.reconciled and report.rows_stored == feed.height and report.rows_rejected == 0
    assert report.batches == -(-feed.height // 100)
    stored = pl.read_parquet(tmp_path / "registry" / "iplos.parquet")
    expected, _ = expected_registry(
        feed, PARTIES.keyset, {"fnr": "fnr"}, {"fnr": "iplos"}, world.history
    )
    assert stored.equals(expected)
    assert valid_fnr_in_frame(stored) == 0
    for path in files(tmp_path / "registry"):
        assert valid_fnr_in_bytes(path.read_bytes()) == 0
    resept = set(pl.read_parquet(resept_run["report"].registry_table)["fnr_pseudonym"].to_list())
    assert resept.isdisjoint(stored["fnr_pseudonym"].to_list())  # domains are unlinkable
    with pytest.raises(UsageError, match="exists already"):
        ingest_feed(
            feed, name="iplos", id_columns={"fnr": "fnr"}, out_dir=tmp_path,
            ttp_key=PARTIES.ttp, registry_key=PARTIES.registry, keyset=PARTIES.keyset,
            domains={"fnr": "iplos"},
        )  # fmt: skip


# -- single batches -------------------------------------------------------------------
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


def test_ttp_step_decrypts_only_with_its_own_key(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = sealed_batch(world.resept.head(40))
    keys: list[bytes] = []
    real_open = primitives.aead_open

    def recording_open(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        keys.append(key)
        return real_open(key, nonce, ciphertext, aad)

    monkeypatch.setattr(primitives, "aead_open", recording_open)
    run_ttp(batch)
    monkeypatch.undo()
    ids, payload = batch.identifiers, batch.payload
    own = part_key(PARTIES.ttp._shared(ids.ephemeral), PARTIES.ttp.public.raw, ids.ephemeral)
    registry_key = part_key(
        PARTIES.registry._shared(payload.ephemeral), PARTIES.registry.public.raw, payload.ephemeral
    )
    assert keys == [own]
    assert registry_key not in keys


def test_ttp_refuses_to_send_pseudonyms_elsewhere(world: World) -> None:
    batch = sealed_batch(world.resept.head(5))
    with pytest.raises(UsageError, match="same registry"):
        run_ttp(batch, registry_public=PARTIES.ttp.public)
    with pytest.raises(UsageError, match="exactly the identifier columns"):
        run_ttp(batch, domains={"fnr": "reseptregisteret"})
    with pytest.raises(UsageError, match="invalid domain"):
        run_ttp(batch, domains={"fnr": "Resept", "prescriber_hpr": "x"})
    with pytest.raises(CryptoError) as info:
        run_ttp(batch, ttp_key=PARTIES.registry)
    assert str(info.value) == GENERIC


def test_ambiguous_history_rejects_the_row(world: World) -> None:
    frame = world.resept.head(6)
    fnrs = frame["fnr"].unique(maintain_order=True).to_list()
    unique = world.resept.select(pl.col("fnr").unique(maintain_order=True))
    others = unique.filter(~pl.col("fnr").is_in(fnrs)).head(2)["fnr"].to_list()
    history = IdentityHistory.from_frame(
        pl.DataFrame({"old_id": [fnrs[0], fnrs[0]], "current_id": others, "version": [1, 1]})
    )
    result = run_ttp(sealed_batch(frame), history=history)
    ambiguous = int((frame["fnr"] == fnrs[0]).sum())
    assert result.report.rejected == ambiguous
    assert set(result.rejects["reason"].to_list()) == {"ambiguous_identity"}
    table, report = registry_open(result.forwarded, PARTIES.registry)
    assert report.by_reason == {"fnr:ambiguous_identity": ambiguous}
    assert table.height == frame.height - ambiguous == report.stored


def test_ttp_rejects_say_where_a_spreadsheet_dropped_a_leading_zero(world: World) -> None:
    frame = world.resept.head(4).with_columns(
        pl.Series("fnr", ["1019012345", "123", *world.resept["fnr"].slice(2, 2).to_list()])
    )
    result = run_ttp(sealed_batch(frame))
    messages = dict(zip(result.rejects["row"], result.rejects["message"], strict=True))
    assert messages[1].endswith(
        "(10 digits: a leading zero may have been dropped by a spreadsheet)"
    )
    assert "spreadsheet" not in messages[2]
    assert set(result.rejects["reason"].to_list()) == {"wrong_length"}
    assert result.report.warnings == [
        "fnr: 1 row has 10 digits: a leading zero may have been dropped by a spreadsheet; "
        "store the identifiers as text"
    ]
    assert run_ttp(sealed_batch(world.resept.head(4))).report.warnings == []


def test_registry_refuses_wrong_key_and_swapped_payload(world: World) -> None:
    first = run_ttp(sealed_batch(world.resept.slice(0, 8), seed=1)).forwarded
    second = run_ttp(sealed_batch(world.resept.slice(8, 8), seed=2)).forwarded
    with pytest.raises(CryptoError) as info:
        registry_open(first, PARTIES.ttp)
    assert str(info.value) == GENERIC
    swapped = ForwardedBatch(first.batch_id, first.rows, (first.pseudonyms, second.payload))
    with pytest.raises(CryptoError):
        registry_open(ForwardedBatch.from_bytes(swapped.to_bytes()), PARTIES.registry)
    data = first.to_bytes()
    for position in range(0, len(data), 7):
        tampered = bytearray(data)
        tampered[position] ^= 0x20
        with pytest.raises((CryptoError, FileFormatError)):
            registry_open(ForwardedBatch.from_bytes(bytes(tampered)), PARTIES.registry)
    with pytest.raises(FileFormatError, match="expected a forwarded batch"):
        ForwardedBatch.from_bytes(sealed_batch(world.resept.head(3)).to_bytes())


def test_sender_checks_shape_but_not_identifiers(world: World) -> None:
    frame = world.resept.head(3)
    garbage = frame.with_columns(pl.lit("not a number").alias("fnr"))
    assert sealed_batch(garbage).rows == 3  # validation is the TTP's job
    with pytest.raises(ColumnError, match="no such column"):
        seal(frame, {"person": "fnr"}, ttp_public=PARTIES.ttp.public,
             registry_public=PARTIES.registry.public, randbytes=os.urandom)  # fmt: skip
    with pytest.raises(ColumnError, match="must be text"):
        sealed_batch(frame.with_columns(pl.col("fnr").cast(pl.Int64)))
    with pytest.raises(UsageError, match="no payload"):
        sealed_batch(frame.select("fnr", "prescriber_hpr"))
    with pytest.raises(ColumnError, match="clash"):
        sealed_batch(frame.with_columns(pl.lit("x").alias("fnr_pseudonym")))
    with pytest.raises(UsageError, match="scheme"):
        seal(frame, {"fnr": "ssn"}, ttp_public=PARTIES.ttp.public,  # type: ignore[dict-item]
             registry_public=PARTIES.registry.public, randbytes=os.urandom)  # fmt: skip


# -- alignment, for arbitrary tables --------------------------------------------------
PERSON = st.one_of(
    person_numbers(kinds=(Kind.FNR, Kind.DNR, Kind.HNR, Kind.FHNR)).map(lambda m: m.number),
    st.none(),
    st.text(alphabet="0123456789 -x", max_size=12),
)
PRESCRIBER = st.one_of(
    mod11_numbers(range(6, 10)), st.none(), st.text(alphabet="0123456789", max_size=10)
)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        # a payload count: wide, but never 10 or 11 digits, which would be a person number
        # (a fødselsnummer that lost its leading zero) the payload scan rightly refuses
        st.tuples(PERSON, PRESCRIBER, st.integers(-(10**9) + 1, 10**9 - 1), st.text(max_size=6)),
        max_size=40,
    ),
    seed=st.integers(0, 2**32),
)
def test_round_trip_keeps_every_payload_row_with_its_pseudonym(
    rows: list[tuple[str | None, str | None, int, str]], seed: int
) -> None:
    frame = pl.DataFrame(
        rows,
        schema={"fnr": pl.String, "prescriber_hpr": pl.String, "n": pl.Int64, "s": pl.String},
        orient="row",
    )
    batch = SealedBatch.from_bytes(sealed_batch(frame, seed=seed).to_bytes())
    result = run_ttp(batch, randbytes=rand(seed + 1))
    forwarded = ForwardedBatch.from_bytes(result.forwarded.to_bytes())
    table, report = registry_open(forwarded, PARTIES.registry)
    expected, good = expected_registry(frame, PARTIES.keyset, RESEPT_IDS, RESEPT_DOMAINS, None)
    assert table.equals(expected)
    assert report.rows == frame.height == report.stored + report.rejected
    assert result.report.reconciled and result.report.rejected == report.rejected
    rejected_rows = set(result.rejects["row"].to_list())
    assert rejected_rows == {i + 1 for i, ok in enumerate(good.to_list()) if not ok}


# -- the CLI --------------------------------------------------------------------------
@click.group(cls=KobleGroup)
def root() -> None:
    """The main group's error handling around ``ingest`` (the lead registers it for real)."""


root.add_command(ingest)
ENV = {"KOBLE_PARTY_PASSPHRASE": "party pass", "KOBLE_KEYSET_PASSPHRASE": "keyset pass"}


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(root, ["ingest", *args], env=ENV if env is None else env)


@pytest.fixture
def cli_setup(tmp_path: Path, world: World) -> dict[str, Path]:
    for name in ("ttp", "registry"):
        result = run("keygen", name, "--out", str(tmp_path / "keys"), "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["public"].endswith(f"{name}.pub.pem")
    keyset = tmp_path / "ttp.keyset.json"
    save_keyset(PARTIES.keyset, keyset, PassphraseKek(b"keyset pass"), randbytes=os.urandom)
    feed, _ = inject_dirt(world.resept.head(30))
    source = tmp_path / "feed.csv"
    feed.write_csv(source, separator=";")
    return {
        "dir": tmp_path, "keys": tmp_path / "keys", "keyset": keyset, "feed": source,
        "history": world.path / "identity_history.parquet",
    }  # fmt: skip


def test_cli_end_to_end(cli_setup: dict[str, Path]) -> None:
    d, keys = cli_setup["dir"], cli_setup["keys"]
    private = (keys / "ttp.key.pem").read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in private
    assert (keys / "ttp.key.pem").stat().st_mode & 0o777 == 0o600
    sealed = run(
        "seal", str(cli_setup["feed"]), str(d / "b.sealed"),
        "--ttp-public", str(keys / "ttp.pub.pem"),
        "--registry-public", str(keys / "registry.pub.pem"),
        "--id-column", "fnr", "--id-column", "prescriber_hpr:hpr", "--json",
    )  # fmt: skip
    assert sealed.exit_code == 0, sealed.output
    summary = json.loads(sealed.stdout)
    assert summary["rows"] == 30 and summary["identifiers"] == ["fnr", "prescriber_hpr"]
    forwarded = run(
        "pseudonymise", str(d / "b.sealed"), str(d / "b.forwarded"),
        "--ttp-key", str(keys / "ttp.key.pem"), "--keyset", str(cli_setup["keyset"]),
        "--domain", "fnr=reseptregisteret", "--domain", "prescriber_hpr=reseptregisteret-hpr",
        "--registry-public", str(keys / "registry.pub.pem"),
        "--rejects", str(d / "rejects.csv"), "--history", str(cli_setup["history"]), "--json",
    )  # fmt: skip
    assert forwarded.exit_code == 1, forwarded.output  # some rows were rejected
    ttp_report = json.loads(forwarded.stdout)
    assert ttp_report["rows"] == 30 and ttp_report["rejected"] == 6 and ttp_report["reconciled"]
    rejects = pl.read_csv(d / "rejects.csv", separator=";", infer_schema=False)
    assert sorted(set(rejects["row"].cast(pl.Int64).to_list())) == [1, 6, 10, 15, 21, 26]
    opened = run(
        "open", str(d / "b.forwarded"), str(d / "registry.parquet"),
        "--registry-key", str(keys / "registry.key.pem"), "--json",
    )  # fmt: skip
    assert opened.exit_code == 0, opened.output
    registry_report = json.loads(opened.stdout)
    assert registry_report["stored"] == 24 and registry_report["rejected"] == 6
    assert registry_report["reconciled"]
    table = pl.read_parquet(d / "registry.parquet")
    assert table.height == 24 and valid_fnr_in_frame(table) == 0
    assert table.columns[:2] == ["fnr_pseudonym", "prescriber_hpr_pseudonym"]
    plain = run(
        "open", str(d / "b.forwarded"), str(d / "plain.csv"),
        "--registry-key", str(keys / "registry.key.pem"),
    )  # fmt: skip
    assert plain.exit_code == 0 and "24 stored" in plain.stdout
    twice = run(
        "open", str(d / "b.forwarded"), str(d / "b.forwarded"), str(d / "twice.csv"),
        "--registry-key", str(keys / "registry.key.pem"),
    )  # fmt: skip
    assert twice.exit_code == 2 and "hold the same batch" in twice.stderr


def test_cli_errors_are_one_line_koble_errors(cli_setup: dict[str, Path]) -> None:
    d, keys = cli_setup["dir"], cli_setup["keys"]
    again = run("keygen", "ttp", "--out", str(keys))
    assert again.exit_code == 2 and "refusing to overwrite" in again.stderr
    no_env = run("keygen", "x", "--out", str(keys), env={})
    assert no_env.exit_code == 2 and "KOBLE_PARTY_PASSPHRASE" in no_env.stderr
    seal_args = [
        "seal", str(cli_setup["feed"]), str(d / "b.sealed"),
        "--ttp-public", str(keys / "ttp.pub.pem"),
        "--registry-public", str(keys / "registry.pub.pem"),
        "--id-column", "fnr", "--id-column", "prescriber_hpr:hpr",
    ]  # fmt: skip
    assert run(*seal_args).exit_code == 0
    bad_spec = run(*seal_args[:-1], "prescriber_hpr:ssn")
    assert bad_spec.exit_code == 2 and "COLUMN:SCHEME" in bad_spec.stderr
    wrong = run(
        "open", str(d / "b.sealed"), str(d / "out.parquet"),
        "--registry-key", str(keys / "registry.key.pem"),
    )  # fmt: skip
    assert wrong.exit_code == 2 and "expected a forwarded batch" in wrong.stderr
    ttp_args = [
        "--ttp-key", str(keys / "ttp.key.pem"), "--keyset", str(cli_setup["keyset"]),
        "--domain", "fnr=reseptregisteret", "--domain", "prescriber_hpr=reseptregisteret-hpr",
        "--registry-public", str(keys / "registry.pub.pem"),
    ]  # fmt: skip
    sealed, forwarded = str(d / "b.sealed"), str(d / "b.forwarded")
    bad = run(
        "pseudonymise", sealed, forwarded, *ttp_args,
        env={**ENV, "KOBLE_PARTY_PASSPHRASE": "nope"},
    )  # fmt: skip
    assert bad.exit_code == 2 and bad.stderr.strip() == (
        f"koble: error: cannot open party key {keys / 'ttp.key.pem'} with the passphrase from "
        f"KOBLE_PARTY_PASSPHRASE: {GENERIC}"
    )
    missing_domain = run("pseudonymise", sealed, forwarded, *ttp_args[:-4], *ttp_args[-2:])
    assert (
        missing_domain.exit_code == 2 and "exactly the identifier columns" in missing_domain.stderr
    )
    data = bytearray((d / "b.sealed").read_bytes())
    (d / "cut.sealed").write_bytes(bytes(data[: len(data) // 2]))
    cut = run("pseudonymise", str(d / "cut.sealed"), forwarded, *ttp_args)
    assert cut.exit_code == 2 and "cut.sealed" in cut.stderr and "Traceback" not in cut.output
    data[-5] ^= 1  # inside the payload: the TTP cannot tell, the registry can
    (d / "flip.sealed").write_bytes(bytes(data))
    assert run("pseudonymise", str(d / "flip.sealed"), str(d / "f.fwd"), *ttp_args).exit_code == 1
    broken = run(
        "open", str(d / "f.fwd"), str(d / "o.parquet"),
        "--registry-key", str(keys / "registry.key.pem"),
    )  # fmt: skip
    assert broken.exit_code == 2 and broken.stderr.strip() == f"koble: error: {GENERIC}"
    assert not (d / "o.parquet").exists()


def test_the_feed_registry_step_refuses_a_batch_found_twice(world: World, tmp_path: Path) -> None:
    """The monthly feed's registry step opens its inbox as `koble ingest open` does: a batch
    found twice (here a byte copy) would store its rows twice and still reconcile."""
    forwarded = run_ttp(sealed_batch(world.resept.head(10))).forwarded
    first, copy = tmp_path / "a.forwarded", tmp_path / "b.forwarded"
    first.write_bytes(forwarded.to_bytes())
    copy.write_bytes(forwarded.to_bytes())
    stored, _ = ingest_module._registry_step([first], registry_key=PARTIES.registry)
    assert stored.height == 10
    with pytest.raises(UsageError, match="hold the same batch"):
        ingest_module._registry_step([first, copy], registry_key=PARTIES.registry)
