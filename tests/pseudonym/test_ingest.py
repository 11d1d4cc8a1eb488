"""Sealed ingest of a feed: the three parties on a synthetic world, what each ends up
holding, row conservation and the pseudonyms in the registry table."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest

from koble.errors import UsageError
from koble.pseudonym import ingest_feed as ingest_module
from koble.pseudonym.ingest import REJECT_COLUMNS
from koble.pseudonym.ingest_feed import by_month, ingest_feed
from koble.pseudonym.pseudonymise import pseudonymise_values
from koble.pseudonym.sealed import PartyKey
from koble.registries.identifiers.column import validate_column
from tests.pseudonym._ingest_helpers import (
    PARTIES,
    RESEPT_DOMAINS,
    RESEPT_IDS,
    World,
    expected_registry,
    files,
    inject_dirt,
    needles_in_bytes,
    payload_needles,
    rand,
    record_decryptions,
    valid_fnr_in_bytes,
    valid_fnr_in_frame,
    values_in_frame,
    world_fixture,  # noqa: F401  (the fixture world)
)


# -- the scanners' positive control ---------------------------------------------------
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
