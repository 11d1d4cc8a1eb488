"""What every party holds after a run: the privacy properties of the routes, as tested facts.

Every file in every party's workspace is listed and opened: data files are read and scanned
(every column) for fødselsnummer, D- and H-numbers; transfers in inboxes are checked to be
sealed to that party by a sender the plan names. design.md §1.4 has the operator send
(fnr, løpenummer) to each identifiable registry in the distributed route, so those registries
do hold both for their own persons; the operator and the TTP are the only other parties that
ever do. A pseudonymous registry and the researcher never hold a fødselsnummer.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from koble.linkage.executor import RunResult
from koble.linkage.formats import read_delivery
from koble.linkage.keys import read_json
from koble.linkage.plan import OPERATOR, RESEARCHER, SERIAL, TTP
from koble.linkage.scan import scan_frame, scan_pseudonyms
from koble.linkage.transfer import read_header
from koble.linkage.workspace import party_dir
from koble.recovery.contract import RECORD_SCHEMA

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
