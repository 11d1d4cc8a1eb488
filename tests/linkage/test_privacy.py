"""What every party holds after a run: the privacy properties of the routes, as tested facts.

Every file in every party's workspace is listed and opened: data files are read and scanned
(every column) for fødselsnummer, D- and H-numbers; transfers in inboxes are checked to be
sealed to that party by a sender the plan names. design.md §1.4 has the operator send
(fnr, løpenummer) to each identifiable registry in the distributed route, so those registries
do hold both for their own persons; the operator and the TTP are the only other parties that
ever do. A pseudonymous registry and the researcher never hold a fødselsnummer.

Every test runs on both engines (DuckDB, and Spark under the slow marker). Spark's own files
are checked too: its scratch directory, read after every step of every Spark run, never
holds key material, and the runs leave no warehouse, metastore or event log.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import polars as pl
import pytest

from koble.linkage.context import registry_domain
from koble.linkage.engine_spark import SparkEngine
from koble.linkage.executor import RunResult
from koble.linkage.formats import read_delivery
from koble.linkage.keys import LinkageKeys, read_json
from koble.linkage.plan import OPERATOR, RESEARCHER, SERIAL, TTP
from koble.linkage.scan import scan_frame, scan_pseudonyms
from koble.linkage.transfer import read_header
from koble.linkage.workspace import party_dir
from koble.pseudonym.domain_cipher import domain_cipher
from koble.recovery.contract import RECORD_SCHEMA
from tests.linkage.conftest import DEMO_JOBS, EngineRuns, World, key_needles

DATA = {".parquet", ".csv", ".dta", ".sav", ".xpt"}


def holdings(run: RunResult, party: str) -> dict[str, pl.DataFrame]:
    """Every data file a party holds (store and delivery), by path relative to its root."""
    root = run.workspace / party_dir(party)
    return {
        str(p.relative_to(root)): read_delivery(p)
        for p in sorted(root.rglob("*"))
        if p.suffix in DATA and "inbox" not in p.parts and "outbox" not in p.parts
    }


def holds_fnr(frame: pl.DataFrame) -> bool:
    return bool(scan_frame(frame))


def has_serial(frame: pl.DataFrame) -> bool:
    return any(c.lower() == SERIAL for c in frame.columns)


def check_run(run: RunResult) -> None:
    plan = run.plan
    identifiable = {p.id for p in plan.parties if p.kind == "registry" and not p.pseudonymous}
    for party in plan.parties:
        files = holdings(run, party.id)
        with_fnr = {name for name, frame in files.items() if holds_fnr(frame)}
        both = {name for name in with_fnr if has_serial(files[name])}
        if party.id in (RESEARCHER,) or party.pseudonymous:
            assert not with_fnr, f"{party.id} holds fødselsnummer in {sorted(with_fnr)}"
        if both:
            assert party.id in {OPERATOR, TTP} | identifiable, party.id
        if party.kind == "registry":
            registry = party.id.removeprefix("registry:")
            assert all(Path(name).name.startswith(registry) for name in files), files.keys()
        _check_inbox(run, party.id)


def _check_inbox(run: RunResult, party: str) -> None:
    """Every transfer a party received is sealed to it and signed by a sender the plan names."""
    directory = read_json(run.workspace / "directory.json")["parties"]
    senders = {t.source for t in run.plan.received_by(party)}
    signers = {directory[s]["ed25519_key_id"] for s in senders}
    inbox = run.workspace / party_dir(party) / "inbox"
    received = sorted(inbox.iterdir())
    assert len(received) == len(run.plan.received_by(party))
    for path in received:
        header = read_header(path)
        assert header.recipient == directory[party]["x25519_fingerprint"]
        assert header.sender in signers
        # sealed: the plaintext's Parquet magic or CSV header is not in the file
        assert b"PAR1" not in path.read_bytes()[:4096]


@pytest.fixture
def distributed_run(engine_runs: EngineRuns, engine: str) -> RunResult:
    """The demo's distributed job, run on each engine."""
    return engine_runs.get("distributed", engine)


@pytest.fixture
def central_run(engine_runs: EngineRuns, engine: str) -> RunResult:
    """The demo's central job, run on each engine."""
    return engine_runs.get("central", engine)


def test_distributed_run_privacy(distributed_run: RunResult) -> None:
    check_run(distributed_run)


def test_central_run_privacy(central_run: RunResult) -> None:
    check_run(central_run)


def test_researcher_never_receives_a_registry_pseudonym(distributed_run: RunResult) -> None:
    ttp_store = distributed_run.workspace / "ttp" / "store"
    pseudonyms = pl.read_parquet(ttp_store / "reseptregisteret_persons.parquet")[
        "pseudonym_reseptregisteret"
    ]
    assert pseudonyms.len() > 0
    for name, frame in holdings(distributed_run, RESEARCHER).items():
        assert not scan_pseudonyms(frame), name
        for column in frame.columns:
            values = frame[column].cast(pl.String)
            assert not values.is_in(pseudonyms.implode()).any(), (name, column)


def test_pseudonymous_registry_only_ever_saw_its_own_pseudonyms(
    distributed_run: RunResult,
) -> None:
    files = holdings(distributed_run, "registry:reseptregisteret")
    persons = files["store/reseptregisteret_persons.parquet"]
    assert persons.columns == ["pseudonym_reseptregisteret", SERIAL]
    assert not holds_fnr(persons)


def test_ttp_never_sees_registry_variables(distributed_run: RunResult) -> None:
    allowed = {"fnr", SERIAL, "pseudonym_reseptregisteret"}
    # identity recovery: the population's own record fields, and what the TTP made of them
    recovery = {*RECORD_SCHEMA, "link_method", "match_probability", "reason",
                "person_id", "match_weight", "review_reason"}  # fmt: skip
    for name, frame in holdings(distributed_run, TTP).items():
        if Path(name).name.startswith("population_"):
            columns = {c for c in frame.columns if not c.startswith("gamma_")}
            assert columns <= recovery, name
            continue
        assert set(frame.columns) <= allowed, name


def test_operator_never_sees_extracts_in_the_distributed_route(distributed_run: RunResult) -> None:
    own = {"fnr", SERIAL, "current", "row", "reason", "message"}
    delivered = {"LOPENR", "LINK_METHOD", "MATCH_PROBABILITY", "MATCH_WEIGHT"}  # linkage.csv
    # identity recovery: its own rows' record fields, and how each row and person was linked
    recovery = {*RECORD_SCHEMA, "link_method", "match_probability", "match_weight"}
    population = set(pl.read_parquet(distributed_run.workspace / "operator" / "store" /
                                     "population_rejects.parquet").columns)  # fmt: skip
    for name, frame in holdings(distributed_run, OPERATOR).items():
        assert set(frame.columns) <= own | recovery | population | delivered, name


#: What Spark could leave behind: a Hive warehouse or metastore, an event log.
SPARK_FILES = {"spark-warehouse", "metastore_db", "derby.log", "spark-events", "eventlog"}


@pytest.mark.slow
@pytest.mark.parametrize("job", DEMO_JOBS)
def test_spark_files_hold_no_key_and_no_data_outside_its_shuffle_store(
    spark: SparkEngine, engine_runs: EngineRuns, world: World, job: str
) -> None:
    """After every step of a Spark run (the TTP's pseudonymisation in Spark included) every
    file in Spark's private scratch directory was read (compression off, so the bytes are
    plain): no key of either keyset and no TTP registry key, raw, hex or base64, is ever
    there; identifiers only in the shuffle blocks (``blockmgr-*``: the rows a join or an
    aggregate exchanges, removed when the engine closes); no warehouse or event log; and the
    run leaves none of Spark's files in its workspace or the working directory."""
    run = engine_runs.get(job, "spark")
    keys_dir = run.workspace.parent / f"{run.workspace.name}-keys"
    # the scan would see what Spark's workers are sent: the TTP's cipher, pickled
    cipher = domain_cipher(LinkageKeys.load(keys_dir, world.kek).ttp, registry_domain("iplos"))
    needles = key_needles(keys_dir, world)
    assert [k for k, forms in needles.items() if any(f in pickle.dumps(cipher) for f in forms)]
    seen = engine_runs.scratch[job]
    assert seen, "the scan read Spark's scratch directory after the steps"
    keys = sorted({(s.step, s.path, k) for s in seen for k in s.found if "key" in k})
    assert not keys, keys[:5]
    with_numbers = {s.path for s in seen if "11-digit number" in s.found}
    assert all(Path(p).parts[1].startswith("blockmgr-") for p in with_numbers), with_numbers
    assert {Path(s.path).parts[0] for s in seen} <= {"local"}  # no warehouse, no event log
    left = {p.name for p in run.workspace.parent.rglob("*")} | {p.name for p in Path().iterdir()}
    assert not left & SPARK_FILES
    assert spark.scratch is not None and spark.scratch.stat().st_mode & 0o077 == 0
