"""Issue 12, second adversarial review: audit integrity and identifier leaks.

1. Sealed ingest refuses an identifier column whose *name* is a person number (a header-less
   CSV makes its first fødselsnummer the column name), at the sender and at the TTP.
2. A refused re-identification is recorded even when its reason or legal basis holds a
   person number: the offending field is withheld from the log.
3. An append whose periodic checkpoint fails is cut back with its event: the log never
   records a keyset change that was not saved.
4. A closing checkpoint that fails after the change was saved says so, and the command
   still prints its result.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from click.testing import CliRunner, Result

from koble.cli.main import cli
from koble.errors import KobleError
from koble.pseudonym.audit import AuditLog, AuditNotClosedError, verify_log
from koble.pseudonym.auditing import MemoryAudit
from koble.pseudonym.ingest import SCHEME_KEY, seal, ttp_pseudonymise
from koble.pseudonym.keys import Keyset
from koble.pseudonym.reverse import REIDENTIFICATION_ROLE, Authorisation, reidentify
from koble.pseudonym.sealed import PartyKey, SealedBatch, seal_table
from koble.pseudonym.signing import Ed25519Signer
from tests.pseudonym.service.conftest import (
    ARROW_HEADERS,
    Service,
    arrow_stream,
    build_service,
    identifiers_in_audit_log,
    running,
)

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    "KOBLE_KEYSET_PASSPHRASE": "pw1",
    "KOBLE_AUDIT_PASSPHRASE": "pw2",
    "KOBLE_ACTOR": "ola.operator",
    "KOBLE_PARTY_PASSPHRASE": "pw3",
}
FNR = "28109811698"  # a valid fødselsnummer
OTHER = "16088035430"
REASON = "follow-up of adverse reaction case 7"
BASIS = "helseregisterloven paragraf 19 e"
WITHHELD = "<withheld: held a person number>"


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=ENV)


def clock() -> datetime:
    return datetime(2026, 3, 1, 8, 30, tzinfo=UTC)


def log_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def keyset() -> Keyset:
    return Keyset.create(randbytes=os.urandom, now=clock)


# -- 1. a person number as the identifier column's name -------------------------------------------


@pytest.fixture
def party_keys(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    for name in ("ttp", "reg"):
        made = run("ingest", "keygen", name, "--out", keys)
        assert made.exit_code == 0, made.output
    return keys


def test_seal_refuses_an_identifier_column_named_by_a_person_number(
    tmp_path: Path, party_keys: Path
) -> None:
    headerless = tmp_path / "nh.csv"
    headerless.write_text(f"{FNR},2.5\n{OTHER},3.1\n", encoding="utf-8")
    out = tmp_path / "b.sealed"
    result = run("ingest", "seal", headerless, out, "--ttp-public", party_keys / "ttp.pub.pem",
                 "--registry-public", party_keys / "reg.pub.pem", "--id-column", FNR,
                 "--json")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "--id-column" in result.stderr
    assert FNR not in result.output and FNR not in result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()


def test_the_ttp_refuses_a_batch_whose_identifier_column_name_is_a_person_number(
    party_keys: Path, keyset: Keyset
) -> None:
    """A batch sealed by another sender (not koble's seal) still cannot carry one through."""
    passphrase = ENV["KOBLE_PARTY_PASSPHRASE"].encode()
    ttp = PartyKey.from_pem((party_keys / "ttp.key.pem").read_bytes(), passphrase)
    reg = PartyKey.from_pem((party_keys / "reg.key.pem").read_bytes(), passphrase)
    # A well-formed batch from koble's seal, then its identifiers part replaced by one whose
    # column is named by a person number.
    good = seal(
        pl.DataFrame({"fnr": [OTHER], "dose": ["1"]}), {"fnr": "fnr"},
        ttp_public=ttp.public, registry_public=reg.public, randbytes=os.urandom,
    )  # fmt: skip
    schema = pa.schema([pa.field(FNR, pa.large_string(), metadata={SCHEME_KEY: b"fnr"})])
    ids = pa.Table.from_arrays([pa.array([OTHER], pa.large_string())], schema=schema)
    part = seal_table(ids, name="identifiers", batch_id=good.batch_id, recipient=ttp.public,
                      randbytes=os.urandom)  # fmt: skip
    hostile = SealedBatch(good.batch_id, good.rows, (part, good.payload))
    with pytest.raises(KobleError) as refused:
        ttp_pseudonymise(
            hostile, ttp_key=ttp, keyset=keyset, domains={FNR: "resept"},
            registry_public=reg.public, randbytes=os.urandom,
        )  # fmt: skip
    assert FNR not in str(refused.value)
    assert refused.value.exit_code == 2
    assert "identifier column" in str(refused.value)


def test_the_ttp_refuses_a_batch_whose_payload_column_name_is_a_person_number(
    party_keys: Path, keyset: Keyset
) -> None:
    """The payload stays sealed to the registry, but its column names are in the clear."""
    passphrase = ENV["KOBLE_PARTY_PASSPHRASE"].encode()
    ttp = PartyKey.from_pem((party_keys / "ttp.key.pem").read_bytes(), passphrase)
    reg = PartyKey.from_pem((party_keys / "reg.key.pem").read_bytes(), passphrase)
    good = seal(
        pl.DataFrame({"fnr": [OTHER], "dose": ["1"]}), {"fnr": "fnr"},
        ttp_public=ttp.public, registry_public=reg.public, randbytes=os.urandom,
    )  # fmt: skip
    payload = pa.table({FNR: pa.array(["1"], pa.large_string())})
    part = seal_table(payload, name="payload", batch_id=good.batch_id, recipient=reg.public,
                      randbytes=os.urandom)  # fmt: skip
    hostile = SealedBatch(good.batch_id, good.rows, (good.identifiers, part))
    with pytest.raises(KobleError) as refused:
        ttp_pseudonymise(
            hostile, ttp_key=ttp, keyset=keyset, domains={"fnr": "resept"},
            registry_public=reg.public, randbytes=os.urandom,
        )  # fmt: skip
    assert FNR not in str(refused.value)
    assert "payload column #1" in str(refused.value)


# -- 2. a refused re-identification is always recorded --------------------------------------------


@pytest.fixture
def ttp(tmp_path: Path) -> Path:
    """A keyset, an audit signer and a closed audit log with the keyset's creation."""
    assert run("keys", "create-signer", tmp_path / "audit.pem").exit_code == 0
    made = run("keys", "create", tmp_path / "keys.json", "--audit-log", tmp_path / "audit.log",
               "--audit-key", tmp_path / "audit.pem")  # fmt: skip
    assert made.exit_code == 0, made.output
    (tmp_path / "ps.csv").write_text("fnr\nnot-a-pseudonym\n", encoding="utf-8")
    return tmp_path


def reidentify_cli(ttp: Path, role: str, reason: str, basis: str) -> Result:
    return run("reidentify", ttp / "ps.csv", ttp / "back.csv", "-c", "fnr", "--domain", "d",
               "--keyset", ttp / "keys.json", "--audit-log", ttp / "audit.log",
               "--audit-key", ttp / "audit.pem", "--role", role, "--reason", reason,
               "--legal-basis", basis)  # fmt: skip


@pytest.mark.parametrize("role", ["nobody", REIDENTIFICATION_ROLE])
@pytest.mark.parametrize("field", ["reason", "legal_basis"])
def test_a_refused_reidentification_with_a_person_number_is_still_recorded(
    ttp: Path, role: str, field: str
) -> None:
    texts = {"reason": REASON, "legal_basis": BASIS, field: f"lookup of {FNR} please"}
    result = reidentify_cli(ttp, role, texts["reason"], texts["legal_basis"])
    assert result.exit_code == 4, result.output
    assert "re-identification refused" in result.stderr
    assert FNR not in result.output and FNR not in result.stderr
    assert not (ttp / "back.csv").exists()
    log = ttp / "audit.log"
    assert FNR not in log.read_text(encoding="utf-8")
    report = verify_log(log)
    assert report.ok, report.problem
    refused = [e for e in log_lines(log) if e.get("operation") == "reidentify-refused"]
    assert len(refused) == 1
    details = refused[0]["details"]
    assert isinstance(details, dict)
    assert details[field] == WITHHELD
    other = "legal_basis" if field == "reason" else "reason"
    assert details[other] == texts[other]
    assert "person number" in str(details["problems"])


def test_an_unauthorised_reidentification_is_recorded_as_before(ttp: Path) -> None:
    result = reidentify_cli(ttp, "nobody", REASON, BASIS)
    assert result.exit_code == 4, result.output
    log = log_lines(ttp / "audit.log")
    (refused,) = [e for e in log if e.get("operation") == "reidentify-refused"]
    assert refused["details"]["reason"] == REASON  # type: ignore[index]


def test_library_reidentify_withholds_an_actor_or_field_the_log_refuses(keyset: Keyset) -> None:
    audit = MemoryAudit()
    authorisation = Authorisation(f"ola{FNR}", REIDENTIFICATION_ROLE, REASON, f"{BASIS} {OTHER}")
    with pytest.raises(KobleError) as refused:
        reidentify(keyset, "d", pl.Series(["x"]), authorisation, audit)
    assert refused.value.exit_code == 4
    assert FNR not in str(refused.value) and OTHER not in str(refused.value)
    (entry,) = audit.entries
    assert entry["operation"] == "reidentify-refused"
    assert entry["actor"] == WITHHELD
    assert entry["details"]["legal_basis"] == WITHHELD
    assert entry["details"]["reason"] == REASON
    assert FNR not in json.dumps(entry) and OTHER not in json.dumps(entry)


def test_an_unauthorised_reidentification_naming_an_invalid_domain_is_recorded(
    ttp: Path,
) -> None:
    result = run("reidentify", ttp / "ps.csv", ttp / "back.csv", "-c", "fnr",
                 "--domain", f"d{FNR}", "--keyset", ttp / "keys.json",
                 "--audit-log", ttp / "audit.log", "--audit-key", ttp / "audit.pem",
                 "--role", FNR, "--reason", REASON, "--legal-basis", BASIS)  # fmt: skip
    assert result.exit_code == 4, result.output
    assert FNR not in result.output and FNR not in result.stderr
    log = ttp / "audit.log"
    assert FNR not in log.read_text(encoding="utf-8")
    (refused,) = [e for e in log_lines(log) if e.get("operation") == "reidentify-refused"]
    assert refused["domain"] is None
    assert refused["details"]["role"] == WITHHELD  # type: ignore[index]
    assert "invalid domain" in refused["details"]["problems"]  # type: ignore[index]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running(build_service(tmp_path_factory.mktemp("desk"))) as live:
        yield live


@pytest.mark.parametrize("party", ["analyst", "operator"])
def test_the_service_records_an_unauthorised_request_whose_reason_holds_a_person_number(
    service: Service, party: str
) -> None:
    """The desk's check: a caller who may not re-identify is refused (403) before the reason
    is looked at, and the attempt is recorded without it."""
    before = service.audit_seq()
    with service.client(token=service.tokens[party]) as http:
        response = http.post(
            "/v1/reidentify",
            params={"domain": "project:p2026-014", "reason": f"lookup of {FNR}",
                    "legal_basis": BASIS},
            content=arrow_stream(pl.DataFrame({"pseudonym": ["x"]})),
            headers=ARROW_HEADERS,
        )  # fmt: skip
    assert response.status_code == 403, response.text
    assert FNR not in response.text
    (event,) = service.audit_events(before)
    assert (event["actor"], event["operation"]) == (party, "http.reidentify")
    assert event["details"]["status"] == 403
    assert service.audit_path is not None
    assert identifiers_in_audit_log(service.audit_path) == []


# -- 3 and 4. checkpoints under a file-size limit -------------------------------------------------

_FILL = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from koble.pseudonym.audit import AuditLog
from koble.pseudonym.signing import Ed25519Signer

path, events = sys.argv[1], int(sys.argv[2])
signer = Ed25519Signer.from_pem(Path(sys.argv[3]).read_bytes(), b"pw2")
with AuditLog(path, signer, lambda: datetime.now(UTC)) as log:
    while log.events < events:
        log.append(actor="filler", operation="noop")
"""

_LIMITED = """
import resource, subprocess, sys
limit = int(sys.argv[1])
def limited():
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
child = subprocess.run(sys.argv[2:], preexec_fn=limited, capture_output=True, text=True)
sys.stdout.write(child.stdout)
sys.stderr.write(child.stderr)
sys.exit(child.returncode)
"""


def koble_env() -> dict[str, str]:
    return {**os.environ, **ENV, "PYTHONPATH": str(ROOT)}


def fill(ttp: Path, events: int) -> None:
    subprocess.run(
        [sys.executable, "-c", _FILL, str(ttp / "audit.log"), str(events), str(ttp / "audit.pem")],
        env=koble_env(), check=True,
    )  # fmt: skip


def rotate_event_bytes(ttp: Path) -> int:
    """How many bytes a ``keys-rotate`` event adds to the log (measured on a copy)."""
    copy = ttp / "copy.log"
    copy.write_bytes((ttp / "audit.log").read_bytes())
    signer = Ed25519Signer.from_pem((ttp / "audit.pem").read_bytes(), b"pw2")
    log = AuditLog(copy, signer, clock, checkpoint_every=10**9)
    before = copy.stat().st_size
    log.append(actor=ENV["KOBLE_ACTOR"], operation="keys-rotate", key_id=keys_ids(ttp)[0])
    grown = copy.stat().st_size - before
    copy.unlink()
    return grown


def keys_ids(ttp: Path) -> list[str]:
    listed = run("keys", "list", ttp / "keys.json", "--json")
    assert listed.exit_code == 0, listed.output
    return [k["key_id"] for k in json.loads(listed.stdout)["keys"]]


def rotate_limited(ttp: Path, limit: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _LIMITED, str(limit), sys.executable, "-m", "koble", "keys",
         "rotate", str(ttp / "keys.json"), "--audit-log", str(ttp / "audit.log"),
         "--audit-key", str(ttp / "audit.pem")],
        env=koble_env(), capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_failed_checkpoint_cuts_its_event_back_and_the_change_is_not_saved(ttp: Path) -> None:
    fill(ttp, 99)  # the rotation is the 100th event: its checkpoint is due with it
    log = ttp / "audit.log"
    before = log.read_bytes()
    keys_before = (ttp / "keys.json").read_bytes()
    limit = len(before) + rotate_event_bytes(ttp) + 50  # the event fits, its checkpoint not
    child = rotate_limited(ttp, limit)
    assert child.returncode == 2, (child.stdout, child.stderr)
    assert "Traceback" not in child.stderr
    assert "cannot write the audit log: file too large" in child.stderr
    assert log.read_bytes() == before  # no record of a change that did not happen
    assert (ttp / "keys.json").read_bytes() == keys_before
    assert len(keys_ids(ttp)) == 1
    report = verify_log(log)
    assert report.ok and report.entries == 99, report.problem
    assert not [p for p in ttp.iterdir() if ".tmp" in p.name]


class DiskFullsOnSigning:
    """A signer after whose signature the next write to ``fd`` fails as on a full disk: the
    checkpoint that signature is for cannot be written."""

    def __init__(self, signer: Ed25519Signer, monkeypatch: pytest.MonkeyPatch) -> None:
        self._signer, self._monkeypatch = signer, monkeypatch
        self.fd = -1

    @property
    def key_id(self) -> str:
        return self._signer.key_id

    def public_key_bytes(self) -> bytes:
        return self._signer.public_key_bytes()

    def sign(self, data: bytes) -> bytes:
        real_write = os.write

        def full(target: int, chunk: bytes) -> int:
            if target == self.fd:
                self._monkeypatch.setattr(os, "write", real_write)
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(target, chunk)

        self._monkeypatch.setattr(os, "write", full)
        return self._signer.sign(data)


def test_an_append_whose_checkpoint_fails_writes_neither(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same in-process: the checkpoint's write fails, and the event goes with it."""
    assert run("keys", "create-signer", tmp_path / "s.pem").exit_code == 0
    signer = Ed25519Signer.from_pem((tmp_path / "s.pem").read_bytes(), b"pw2")
    path = tmp_path / "a.log"
    with AuditLog(path, signer, clock, checkpoint_every=3) as log:
        log.append(actor="ola", operation="one")
        log.append(actor="ola", operation="two")
    before = path.read_bytes()
    failing = DiskFullsOnSigning(signer, monkeypatch)
    log = AuditLog(path, failing, clock, checkpoint_every=3)
    failing.fd = log._handle.fileno()
    with pytest.raises(KobleError, match="cannot write the audit log: no space left"):
        log.append(actor="ola", operation="three")
    assert log.close() is None
    assert path.read_bytes() == before
    assert verify_log(path, signer.public_key_bytes()).entries == 2


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_failed_closing_checkpoint_says_the_change_was_saved(ttp: Path) -> None:
    fill(ttp, 50)  # no periodic checkpoint is due with the rotation
    log = ttp / "audit.log"
    limit = len(log.read_bytes()) + rotate_event_bytes(ttp) + 50  # the event fits, not the close
    child = rotate_limited(ttp, limit)
    assert child.returncode == 2, (child.stdout, child.stderr)
    assert "Traceback" not in child.stderr
    ids = keys_ids(ttp)
    assert len(ids) == 2  # the rotation was saved
    assert ids[1] in child.stdout  # and the command printed its result, the new key
    message = child.stderr.strip().splitlines()[-1]
    assert message.startswith(f"koble: error: {log}: "), message
    assert "the keyset change was saved and recorded in the audit log" in message
    assert "closing checkpoint could not be written (file too large)" in message
    assert "do not repeat the command" in message
    assert "koble audit verify-log" in message
    report = verify_log(log, require_closed=False)
    assert report.ok and report.entries == 51, report.problem
    tail = log_lines(log)[-1]
    assert (tail["operation"], tail["key_id"]) == ("keys-rotate", ids[1])
    assert not verify_log(log).ok  # not closed; the next command closes it
    again = run("keys", "list", ttp / "keys.json")
    assert again.exit_code == 0


def test_a_failed_close_never_hides_the_error_of_the_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run("keys", "create-signer", tmp_path / "s.pem").exit_code == 0
    signer = Ed25519Signer.from_pem((tmp_path / "s.pem").read_bytes(), b"pw2")
    path = tmp_path / "a.log"
    failing = DiskFullsOnSigning(signer, monkeypatch)
    with (
        pytest.raises(ValueError, match="the block's own error"),
        AuditLog(path, failing, clock) as log,
    ):
        failing.fd = log._handle.fileno()
        log.append(actor="ola", operation="one")
        raise ValueError("the block's own error")
    assert verify_log(path, signer.public_key_bytes(), require_closed=False).entries == 1
    # Without an error in the block, the failed close is the error, and says what is kept.
    log = AuditLog(path, failing, clock)
    failing.fd = log._handle.fileno()
    with pytest.raises(AuditNotClosedError) as failed:
        log.close()
    assert "closing checkpoint could not be written (no space left on device)" in str(failed.value)
    assert "--allow-open" in str(failed.value)
