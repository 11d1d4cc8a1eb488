"""Issue 12: keysets locked for every read-modify-write (concurrent ``koble keys`` processes
lose nothing), and audit logs that can be checked against a recorded head and entry count
(a log cut back to an earlier closing checkpoint is caught)."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from koble.cli.main import cli
from koble.errors import UsageError
from koble.linkage.demo_jobs import write_demo_jobs
from koble.linkage.executor import AUDIT_LOG
from koble.linkage.keys import LinkageKeys
from koble.locking import directory_lock, file_lock
from koble.pseudonym.audit import AuditLog, verify_log
from koble.pseudonym.keystore import PassphraseKek, RawKek, keyset_lock, load_keyset
from koble.pseudonym.signing import Ed25519Signer
from koble.synth import SynthConfig, generate_world

ENV = {
    "KOBLE_KEYSET_PASSPHRASE": "correct horse battery",
    "KOBLE_AUDIT_PASSPHRASE": "audit staple",
    "KOBLE_ACTOR": "ola.operator",
}
ROOT = Path(__file__).resolve().parents[2]
SIGNER = Ed25519Signer(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
CLOSE_LINE = re.compile(r"audit log (.+): (\d+) entr(?:y|ies), head ([0-9a-f]{64})")


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=ENV)


def koble_process(*args: str | Path) -> subprocess.Popen[str]:
    """``koble ARGS`` as a separate process (its own interpreter, its own file locks)."""
    env = {**os.environ, **ENV, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "koble", *map(str, args)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def ttp(tmp_path: Path) -> Path:
    assert run("keys", "create-signer", tmp_path / "audit.pem").exit_code == 0
    made = run("keys", "create", tmp_path / "ks.json", *audited(tmp_path))
    assert made.exit_code == 0, made.output
    return tmp_path


def audited(ttp: Path) -> list[str | Path]:
    return ["--audit-log", ttp / "audit.log", "--audit-key", ttp / "audit.pem"]


def audit_events(log: Path) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    return [e for e in lines if e["type"] == "event"]


# -- 1. keyset locking -------------------------------------------------------------------------


@pytest.mark.parametrize("with_audit", [True, False], ids=["audited", "unaudited"])
def test_six_concurrent_rotations_all_survive_and_match_the_audit_log(
    ttp: Path, with_audit: bool
) -> None:
    options = audited(ttp) if with_audit else []
    processes = [koble_process("keys", "rotate", ttp / "ks.json", *options) for _ in range(6)]
    results = [(p.wait(timeout=180), *p.communicate()) for p in processes]
    for code, _, err in results:
        assert code == 0, err

    keyset = load_keyset(ttp / "ks.json", PassphraseKek(ENV["KOBLE_KEYSET_PASSPHRASE"].encode()))
    assert [k.version for k in keyset.keys] == list(range(1, 8))
    assert keyset.primary.version == 7
    # every process printed the key it added, and each one is in the keyset
    printed = {re.search(r"\* (v\d+-[0-9a-f]+)", out).group(1) for _, out, _ in results}  # type: ignore[union-attr]
    assert printed == {k.key_id for k in keyset.keys[1:]}
    if with_audit:
        events = audit_events(ttp / "audit.log")
        rotated = [e["key_id"] for e in events if e["operation"] == "keys-rotate"]
        assert sorted(map(str, rotated)) == sorted(k.key_id for k in keyset.keys[1:])
        assert verify_log(ttp / "audit.log", SIGNER_PUBLIC(ttp)).ok


def SIGNER_PUBLIC(ttp: Path) -> bytes:  # noqa: N802 - reads like the constant it stands for
    return (ttp / "audit.pem.pub").read_bytes()


def test_concurrent_changes_of_different_kinds_all_survive(ttp: Path) -> None:
    ks = ttp / "ks.json"
    assert run("keys", "rotate", ks).exit_code == 0  # v2 primary, v1 free to change
    processes = [
        koble_process("keys", "rotate", ks, *audited(ttp)),
        koble_process("keys", "disable", ks, "1", *audited(ttp)),
        koble_process("keys", "rotate", ks, *audited(ttp)),
    ]
    for p in processes:
        assert p.wait(timeout=180) == 0, p.communicate()[1]
    keyset = load_keyset(ks, PassphraseKek(ENV["KOBLE_KEYSET_PASSPHRASE"].encode()))
    assert len(keyset.keys) == 4
    assert keyset.info(1).status.value == "disabled"


@pytest.mark.parametrize("with_audit", [True, False], ids=["audited", "unaudited"])
def test_concurrent_creates_make_one_keyset_and_refuse_the_others(
    tmp_path: Path, with_audit: bool
) -> None:
    assert run("keys", "create-signer", tmp_path / "audit.pem").exit_code == 0
    options = audited(tmp_path) if with_audit else []
    processes = [koble_process("keys", "create", tmp_path / "ks.json", *options) for _ in range(4)]
    results = [(p.wait(timeout=180), *p.communicate()) for p in processes]
    assert sorted(code for code, _, _ in results) == [0, 2, 2, 2]
    for code, _, err in results:
        assert code == 0 or "exists already" in err
    keyset = load_keyset(tmp_path / "ks.json", PassphraseKek(b"correct horse battery"))
    winner = next(out for code, out, _ in results if code == 0)
    assert keyset.primary.key_id in winner
    if with_audit:
        log = tmp_path / "audit.log"
        created = [e for e in audit_events(log) if e["operation"] == "keys-create"]
        assert [e["key_id"] for e in created] == [keyset.primary.key_id]


def test_the_lock_waits_for_the_holder_and_gives_up_with_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "ks.json"
    order: list[str] = []
    with keyset_lock(target):
        waiter = threading.Thread(target=lambda: _take(target, order))
        waiter.start()
        time.sleep(0.3)
        order.append("holder done")
    waiter.join(timeout=10)
    assert order == ["holder done", "waiter got it"]

    busy = pytest.raises(UsageError, match="in use by another koble command")
    with file_lock(target), busy as caught, file_lock(target, timeout=0.2):
        pass
    assert str(target) in str(caught.value)


def _take(target: Path, order: list[str]) -> None:
    with keyset_lock(target):
        order.append("waiter got it")


# -- 2. audit log head and entry count ---------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def test_a_log_cut_back_to_an_earlier_closing_checkpoint_is_caught(tmp_path: Path) -> None:
    log_path = tmp_path / "audit.log"
    clock = Clock()
    with AuditLog(log_path, SIGNER, clock) as log:
        log.append(actor="a", operation="first")
    first_close = log_path.read_bytes()
    log = AuditLog(log_path, SIGNER, clock)
    log.append(actor="a", operation="second")
    log.append(actor="a", operation="third")
    closed = log.close()
    assert closed is not None and closed.entries == 3
    full = verify_log(log_path, SIGNER.public_key_bytes())
    assert (closed.head, closed.entries) == (full.head, full.entries)

    log_path.write_bytes(first_close)  # the rollback: a valid, closed, signed log
    public = tmp_path / "audit.pub"
    public.write_bytes(SIGNER.public_pem())
    plain = run("audit", "verify-log", log_path, "--public-key", public)
    assert plain.exit_code == 0, plain.output  # the file alone cannot tell

    by_head = run("audit", "verify-log", log_path, "--public-key", public,
                  "--expect-head", closed.head)  # fmt: skip
    assert by_head.exit_code == 1
    assert f"expected head {closed.head}" in by_head.output
    assert f"found {verify_log(log_path).head}" in by_head.output

    by_count = run("audit", "verify-log", log_path, "--expect-entries", "3")
    assert by_count.exit_code == 1
    assert "expected 3 entries, found 1" in by_count.output

    both = run("audit", "verify-log", log_path, "--expect-entries", "3",
               "--expect-head", closed.head, "--json")  # fmt: skip
    assert both.exit_code == 1 and json.loads(both.stdout)["ok"] is False

    log_path.write_bytes(b"")
    log_path.unlink()
    # the untouched log passes with its recorded values
    clock2 = Clock()
    with AuditLog(log_path, SIGNER, clock2) as again:
        again.append(actor="a", operation="only")
    head = verify_log(log_path).head
    good = run("audit", "verify-log", log_path, "--expect-head", head.upper(),
               "--expect-entries", "1")  # fmt: skip
    assert good.exit_code == 0, good.output


def test_expectations_are_validated(tmp_path: Path) -> None:
    log_path = tmp_path / "audit.log"
    with AuditLog(log_path, SIGNER, Clock()):
        pass
    bad_head = run("audit", "verify-log", log_path, "--expect-head", "3f2a")
    assert bad_head.exit_code == 2 and "--expect-head" in bad_head.output
    assert "SHA-256" in bad_head.output
    assert "3f2a" not in bad_head.output
    bad_count = run("audit", "verify-log", log_path, "--expect-entries", "-1")
    assert bad_count.exit_code == 2 and "--expect-entries" in bad_count.output


def test_every_cli_command_that_closes_a_log_prints_its_head_and_count(ttp: Path) -> None:
    public = ttp / "audit.pem.pub"
    rotated = run("keys", "rotate", ttp / "ks.json", *audited(ttp))
    assert rotated.exit_code == 0
    found = CLOSE_LINE.search(rotated.stderr)
    assert found is not None, rotated.stderr
    assert found.group(1) == str(ttp / "audit.log") and found.group(2) == "2"
    assert CLOSE_LINE.search(rotated.stdout) is None  # stdout stays for the command's output
    check = run("audit", "verify-log", ttp / "audit.log", "--public-key", public,
                "--expect-head", found.group(3), "--expect-entries", found.group(2))  # fmt: skip
    assert check.exit_code == 0, check.output

    # a command that changes nothing on a closed log prints the same values
    processes = koble_process("keys", "rotate", ttp / "ks.json", *audited(ttp))
    _, err = processes.communicate(timeout=180)
    second = CLOSE_LINE.search(err)
    assert second is not None and second.group(2) == "3"
    assert verify_log(ttp / "audit.log", public.read_bytes()).head == second.group(3)


def test_the_printed_values_of_pseudonymise_match_the_log(ttp: Path, world: Path) -> None:
    done = run("pseudonymise", world / "cohort.parquet", ttp / "p.parquet", "-c", "fnr",
               "--domain", "reseptregisteret", "--keyset", ttp / "ks.json",
               *audited(ttp))  # fmt: skip
    assert done.exit_code in (0, 1), done.output
    found = CLOSE_LINE.search(done.stderr)
    assert found is not None, done.stderr
    report = verify_log(ttp / "audit.log", (ttp / "audit.pem.pub").read_bytes())
    assert (found.group(3), int(found.group(2))) == (report.head, report.entries)


def test_serve_prints_the_head_of_its_log_at_shutdown(tmp_path: Path) -> None:
    from tests.pseudonym.service.test_service_process import (
        AUDIT_PASSPHRASE,
        free_port,
        write_service,
    )

    port, kek = free_port(), os.urandom(32)
    config = write_service(tmp_path, port, "unused-token", kek)
    env = {**os.environ, "KOBLE_TEST_KEK": base64.b64encode(kek).decode(),
           "KOBLE_AUDIT_PASSPHRASE": AUDIT_PASSPHRASE, "PYTHONPATH": str(ROOT)}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "koble", "serve", "--config", str(config),
         "--kek-env", "KOBLE_TEST_KEK"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "audit.log").exists() or not _listening(port):
            assert process.poll() is None, process.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "koble serve did not start"
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    found = CLOSE_LINE.search(err)
    assert found is not None, err[-2000:]
    report = verify_log(tmp_path / "audit.log", (tmp_path / "audit.pem.pub").read_bytes())
    assert report.ok and (found.group(3), int(found.group(2))) == (report.head, report.entries)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


# -- linkage runs: one per workspace, one set of keys per key directory, head printed ----------


@pytest.fixture(scope="module")
def linkage_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("linkage-world")
    generate_world(root, SynthConfig(persons=2_000, seed=5))
    distributed, _ = write_demo_jobs(root, fmt="csv")
    return root, distributed


def koble_run(world: Path, job: Path, workspace: Path) -> Result:
    return CliRunner().invoke(
        cli,
        ["run", str(job), "--workspace", str(workspace), "--world", str(world)],
        env=ENV,
    )  # fmt: skip


def test_koble_run_prints_the_head_of_its_audit_log_and_locks_its_workspace(
    linkage_world: tuple[Path, Path], tmp_path: Path
) -> None:
    world, job = linkage_world
    workspace = tmp_path / "ws"
    with directory_lock(workspace):
        busy = koble_run(world, job, workspace)
    assert busy.exit_code == 2, busy.output
    assert "in use by another koble command" in busy.stderr
    assert not (workspace / "run.json").exists()  # refused before touching anything

    done = koble_run(world, job, workspace)
    assert done.exit_code == 0, done.output
    found = CLOSE_LINE.search(done.stderr)
    assert found is not None, done.stderr
    log = workspace / AUDIT_LOG
    assert found.group(1) == str(log)
    assert verify_log(log, expect_head=found.group(3), expect_entries=int(found.group(2))).ok


def test_runs_sharing_a_new_key_directory_make_one_set_of_keys(tmp_path: Path) -> None:
    script = (
        "import os, sys, datetime\n"
        "from pathlib import Path\n"
        "from koble.linkage.keys import LinkageKeys\n"
        "from koble.pseudonym.keystore import RawKek\n"
        "keys = LinkageKeys.open_or_create(Path(sys.argv[1]), RawKek(bytes(32)),\n"
        "    randbytes=os.urandom, now=lambda: datetime.datetime.now(datetime.UTC))\n"
        "print(keys.signer.key_id, keys.operator.primary.key_id, keys.ttp.primary.key_id)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "keys")], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=120) for p in processes]
    assert all(p.returncode == 0 for p in processes), [err for _, err in outputs]
    seen = {out.strip() for out, _ in outputs}
    assert len(seen) == 1  # every run uses the keys that are on disk
    on_disk = LinkageKeys.load(tmp_path / "keys", RawKek(bytes(32)))
    assert seen == {
        f"{on_disk.signer.key_id} {on_disk.operator.primary.key_id} {on_disk.ttp.primary.key_id}"
    }
