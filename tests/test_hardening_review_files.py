"""Issue 12, adversarial review of the hardening work: files, keys and audit logs.

A failed audit append leaves the log valid; a symlinked keyset is changed where it lives;
outputs nested in inputs are refused; a duplicate ingest batch is refused; an infeasible
anonymise leaves a consistent set of outputs with valid JSON; audit logs are distinct from
the files of their command; synth names the file it cannot write; the demo prints its logs.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from koble.cli.main import cli
from koble.errors import OutputError, UsageError
from koble.pseudonym.audit import AuditLog, verify_log
from koble.pseudonym.signing import Ed25519Signer

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    "KOBLE_KEYSET_PASSPHRASE": "pw1",
    "KOBLE_AUDIT_PASSPHRASE": "pw2",
    "KOBLE_ACTOR": "ola",
    "KOBLE_PARTY_PASSPHRASE": "pp",
}
SIGNER = Ed25519Signer(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))


def clock() -> datetime:
    return datetime(2026, 3, 1, 8, 30, tzinfo=UTC)


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=ENV)


def closed_log(path: Path, events: int = 1) -> bytes:
    """A closed log of ``events`` events at ``path``; its bytes."""
    with AuditLog(path, SIGNER, clock) as log:
        for n in range(events):
            log.append(actor="ola", operation=f"op-{n}")
    return path.read_bytes()


# -- 1. a failed audit append leaves the log as it was -------------------------------------------

_APPEND_UNDER_LIMIT = """
import resource, sys
from datetime import UTC, datetime
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from koble.errors import OutputError
from koble.pseudonym.audit import AuditLog
from koble.pseudonym.signing import Ed25519Signer

path, limit = sys.argv[1], int(sys.argv[2])
signer = Ed25519Signer(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
log = AuditLog(path, signer, lambda: datetime(2026, 3, 1, tzinfo=UTC))
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    log.append(actor="ola", operation="rotate")
except OutputError as exc:
    print(exc)
    sys.exit(2)
finally:
    log.close()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_file_size_limit_mid_line_leaves_the_log_valid_and_usable(tmp_path: Path) -> None:
    log_path = tmp_path / "a.log"
    before = closed_log(log_path)
    limit = len(before) + 40  # the next line fits partly
    child = subprocess.run(
        [sys.executable, "-c", _APPEND_UNDER_LIMIT, str(log_path), str(limit)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert child.returncode == 2, child.stderr
    assert f"{log_path}: cannot write the audit log: file too large" in child.stdout
    assert "Traceback" not in child.stderr
    assert log_path.read_bytes() == before
    assert verify_log(log_path, SIGNER.public_key_bytes()).ok
    closed_log(log_path)  # a later command appends as if nothing had happened
    assert verify_log(log_path, SIGNER.public_key_bytes()).entries == 2


def test_a_full_disk_mid_line_cuts_the_log_back_and_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_path = tmp_path / "a.log"
    closed_log(log_path, events=2)
    log = AuditLog(log_path, SIGNER, clock)
    log.append(actor="ola", operation="written")
    good = log_path.read_bytes()
    real_write = os.write
    log_fd = log._handle.fileno()

    def half_then_full(fd: int, data: bytes) -> int:
        if fd != log_fd:
            return real_write(fd, data)
        if not getattr(half_then_full, "done", False):
            half_then_full.done = True  # type: ignore[attr-defined]
            return real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OutputError) as caught:
        log.append(actor="ola", operation="lost")
    monkeypatch.undo()
    assert str(caught.value) == f"{log_path}: cannot write the audit log: no space left on device"
    assert log.close() is None  # closing does not write (nor raise) again
    assert log_path.read_bytes() == good
    report = verify_log(log_path, SIGNER.public_key_bytes(), require_closed=False)
    assert report.ok and report.entries == 3
    closed_log(log_path)
    assert verify_log(log_path, SIGNER.public_key_bytes()).entries == 4


# -- 2. a symlinked keyset is changed where it lives ---------------------------------------------


def test_rotating_through_a_symlinked_keyset_changes_the_target_under_its_lock(
    tmp_path: Path,
) -> None:
    real = tmp_path / "real" / "k.json"
    assert run("keys", "create", real).exit_code == 0
    link = tmp_path / "current.json"
    link.symlink_to(Path("real") / "k.json")
    rotated = run("keys", "rotate", link, "--json")
    assert rotated.exit_code == 0, rotated.output
    assert link.is_symlink()  # not forked into a private copy
    listed = run("keys", "list", real, "--json")
    assert [k["version"] for k in json.loads(listed.stdout)["keys"]] == [1, 2]
    assert (tmp_path / "real" / "k.json.lock").exists()
    assert not (tmp_path / "current.json.lock").exists()


def test_the_lock_of_a_symlinked_keyset_is_its_targets(tmp_path: Path) -> None:
    from koble.locking import file_lock
    from koble.pseudonym.keystore import keyset_lock

    real = tmp_path / "k.json"
    real.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    busy = pytest.raises(UsageError, match="in use by another koble command")
    with keyset_lock(link), busy, file_lock(real, timeout=0):
        pass


# -- 3. an output directory never nests with what the command reads ------------------------------


@pytest.mark.parametrize(
    ("workspace", "against", "keys", "problem"),
    [
        ("d/sub", "d", "k", "--workspace lies inside --against"),
        ("d", "d/researcher/delivery", "k", "--against lies inside --workspace"),
        ("ws2", "d", "ws2/keys", "--keys lies inside --workspace"),
        ("k/ws2", "d", "k", "--workspace lies inside --keys"),
        ("w/ws2", "d", "k", "--workspace lies inside --world"),
    ],
)
def test_reproduce_refuses_a_workspace_nested_with_its_inputs(
    tmp_path: Path, workspace: str, against: str, keys: str, problem: str
) -> None:
    for name in ("d/researcher/delivery", "k", "w"):
        (tmp_path / name).mkdir(parents=True, exist_ok=True)
    job = tmp_path / "job.toml"
    job.write_text("")
    result = run("audit", "reproduce", job, "--workspace", tmp_path / workspace,
                 "--against", tmp_path / against, "--keys", tmp_path / keys,
                 "--world", tmp_path / "w")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert problem in result.stderr
    if not (tmp_path / workspace).exists():
        return
    assert not any((tmp_path / workspace).rglob("*.parquet"))


def test_run_refuses_a_workspace_around_its_world_but_keeps_its_keys_inside(
    tmp_path: Path,
) -> None:
    from koble.path_checks import ensure_apart

    (tmp_path / "w").mkdir()
    job = tmp_path / "job.toml"
    job.write_text("")
    result = run("run", job, "--workspace", tmp_path, "--world", tmp_path / "w")
    assert result.exit_code == 2 and "--world lies inside --workspace" in result.stderr
    ensure_apart({"--workspace": tmp_path}, {"--keys": tmp_path / "keys"}, may_hold=["--keys"])
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "w")
    with pytest.raises(UsageError, match="--workspace and --world name the same directory"):
        ensure_apart({"--workspace": link}, {"--world": tmp_path / "w"})


# -- 4. a forwarded batch given twice is refused -------------------------------------------------


def valid_numbers(count: int) -> list[str]:
    """``count`` valid fødselsnummer (born 1 January 1990), found by trying check digits."""
    from koble.registries.identifiers.fodselsnummer import is_valid

    found: list[str] = []
    for individual in range(100, 500):
        for check in range(100):
            number = f"010190{individual:03d}{check:02d}"
            if is_valid(number):
                found.append(number)
                break
        if len(found) == count:
            return found
    raise AssertionError("not enough numbers")


@pytest.fixture
def forwarded(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    for party in ("ttp", "resept"):
        assert run("ingest", "keygen", party, "--out", keys).exit_code == 0
    assert run("keys", "create", tmp_path / "ttp.keyset").exit_code == 0
    feed = tmp_path / "b.csv"
    feed.write_text("fnr;dose\n" + "".join(f"{n};{i}\n" for i, n in enumerate(valid_numbers(3))))
    sealed = run("ingest", "seal", feed, tmp_path / "b.sealed", "--ttp-public",
                 keys / "ttp.pub.pem", "--registry-public", keys / "resept.pub.pem",
                 "--id-column", "fnr")  # fmt: skip
    assert sealed.exit_code == 0, sealed.output
    ttp = run("ingest", "pseudonymise", tmp_path / "b.sealed", tmp_path / "b.fwd",
              "--ttp-key", keys / "ttp.key.pem", "--keyset", tmp_path / "ttp.keyset",
              "--domain", "fnr=reseptregisteret",
              "--registry-public", keys / "resept.pub.pem")  # fmt: skip
    assert ttp.exit_code == 0, ttp.output
    return tmp_path / "b.fwd"


def test_ingest_open_refuses_a_batch_given_twice(forwarded: Path) -> None:
    d = forwarded.parent
    key = d / "keys" / "resept.key.pem"
    once = run("ingest", "open", forwarded, d / "once.parquet", "--registry-key", key)
    assert once.exit_code == 0 and "3 rows: 3 stored" in once.stdout, once.output
    copy = d / "copy.fwd"
    copy.write_bytes(forwarded.read_bytes())
    hard = d / "hard.fwd"
    os.link(forwarded, hard)
    for again in (Path(f"{d}/./b.fwd"), copy, hard):
        result = run("ingest", "open", forwarded, again, d / "twice.parquet", "--registry-key", key)
        assert result.exit_code == 2, result.output
        assert f"{forwarded} and {again} hold the same batch" in result.stderr
        assert not (d / "twice.parquet").exists()


# -- 5. an infeasible anonymise leaves a consistent set, in valid JSON ---------------------------


def anon_setup(tmp_path: Path, k: int) -> tuple[Path, Path]:
    data = tmp_path / "x.csv"
    data.write_text("sex;dx\n" + "F;a\n" * 6 + "M;b\n" * 5)
    (tmp_path / "sex.csv").write_text("F;*\nM;*\n")
    config = tmp_path / f"anon-{k}.toml"
    config.write_text(f'[requirements]\nk = {k}\nsuppression = 0.0\nmetric = "precision"\n'
                      f'[quasi_identifiers]\nsex = "csv:{tmp_path}/sex.csv"\n')  # fmt: skip
    return data, config


def strict_json(path: Path) -> object:
    def refuse(name: str) -> object:
        raise AssertionError(f"{path.name} holds {name}: not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_an_infeasible_anonymise_removes_the_stale_release_and_writes_valid_json(
    tmp_path: Path,
) -> None:
    out, report = tmp_path / "release.parquet", tmp_path / "report"
    data, feasible = anon_setup(tmp_path, k=5)
    made = run("anonymity", "anonymise", data, "--config", feasible, "--out", out,
               "--report", report)  # fmt: skip
    assert made.exit_code == 0, made.output
    assert out.exists() and (report / "withheld.parquet").exists()
    _, infeasible = anon_setup(tmp_path, k=50)
    failed = run("anonymity", "anonymise", data, "--config", infeasible, "--out", out,
                 "--report", report, "--json")  # fmt: skip
    assert failed.exit_code == 1, failed.output
    certificate = strict_json(report / "certificate.json")
    assert isinstance(certificate, dict)
    assert certificate["figures"]["feasible"] is False and certificate["figures"]["loss"] is None
    assert json.loads(failed.stdout, parse_constant=lambda c: pytest.fail(c)) == certificate
    strict_json(report / "report.json")
    assert not out.exists() and not (report / "withheld.parquet").exists()
    assert "none met the requirements" in (report / "report.md").read_text()


def test_output_set_removes_stale_files_only_when_it_commits(tmp_path: Path) -> None:
    from koble.files import OutputSet

    stale = tmp_path / "stale.parquet"
    stale.write_text("old")
    with pytest.raises(RuntimeError), OutputSet() as outputs:
        outputs.remove(stale)
        raise RuntimeError("failed")
    assert stale.exists()
    with OutputSet() as outputs:
        outputs.remove(stale)
        outputs.remove(tmp_path / "never-there")
        with outputs.file(tmp_path / "new.json") as temp:
            temp.write_text("{}")
    assert not stale.exists() and (tmp_path / "new.json").read_text() == "{}"


# -- 6. an audit log never names another file of its command -------------------------------------


def test_keys_commands_refuse_an_audit_log_that_is_another_of_their_files(tmp_path: Path) -> None:
    signer = tmp_path / "audit.pem"
    assert run("keys", "create-signer", signer).exit_code == 0
    keyset = tmp_path / "K"
    same = run("keys", "create", keyset, "--audit-log", keyset, "--audit-key", signer)
    assert same.exit_code == 2, same.output
    assert "--audit-log and KEYSET name the same file" in same.stderr
    assert not keyset.exists()
    key = run("keys", "create", keyset, "--audit-log", signer, "--audit-key", signer)
    assert key.exit_code == 2 and "--audit-log and --audit-key name the same file" in key.stderr
    made = run("keys", "create", keyset, "--audit-log", tmp_path / "a.log", "--audit-key", signer)
    assert made.exit_code == 0, made.output
    before = keyset.read_bytes()
    os.link(keyset, tmp_path / "hard")
    rotate = run("keys", "rotate", keyset, "--audit-log", tmp_path / "hard", "--audit-key", signer)
    assert rotate.exit_code == 2 and "--audit-log and KEYSET name the same file" in rotate.stderr
    assert keyset.read_bytes() == before
    source = tmp_path / "in.csv"
    source.write_text("fnr\n")
    pseudo = run("pseudonymise", source, tmp_path / "out.csv", "--column", "fnr", "--keyset",
                 keyset, "--domain", "d", "--audit-log", source, "--audit-key", signer)  # fmt: skip
    assert pseudo.exit_code == 2 and "--audit-log and SOURCE name the same file" in pseudo.stderr
    assert source.read_text() == "fnr\n"


# -- 7. synth names the file it cannot write -----------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_synth_under_a_file_size_limit_names_the_file(tmp_path: Path) -> None:
    import resource

    limit = 64 * 1024

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = tmp_path / "world"
    child = subprocess.run(
        [sys.executable, "-m", "koble", "synth", "--persons", "20000", "--out", str(out),
         "--quiet"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        preexec_fn=limited, check=False,
    )  # fmt: skip
    assert child.returncode == 2, child.stderr
    assert "Traceback" not in child.stderr
    message = child.stderr.strip().splitlines()[-1]
    assert message.startswith(f"koble: error: {out}/") and message.endswith(
        ".parquet: cannot write: file too large"
    ), message
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


# -- 8. the demo prints where each of its audit logs ends ----------------------------------------


def test_the_demo_prints_the_head_and_count_of_every_audit_log(tmp_path: Path) -> None:
    import re

    result = run("demo", "--out", tmp_path, "--persons", "2000")
    assert result.exit_code == 0, result.output
    found = re.findall(r"audit log (\S+): (\d+) entr(?:y|ies), head ([0-9a-f]{64})", result.stdout)
    assert len(found) == 4, result.stdout  # one per audited part of the demo
    for path, entries, head in found:
        report = verify_log(Path(path), expect_head=head, expect_entries=int(entries))
        assert report.ok, (path, report.problem)
    assert " 1 entries" not in result.stdout


def test_one_entry_is_one_entry(tmp_path: Path) -> None:
    log_path = tmp_path / "a.log"
    with AuditLog(log_path, SIGNER, clock) as log:
        log.append(actor="ola", operation="only")
    head = log.close()
    assert (
        head is not None and head.describe() == f"audit log {log_path}: 1 entry, head {head.head}"
    )
