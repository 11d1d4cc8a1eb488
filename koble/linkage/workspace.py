"""A run's workspace: one directory per party, each with an inbox, an outbox and a store.

design.md §2.2. Layout under the workspace root::

    run.json                  the run's state: job hash, start time, completed steps
    directory.json            every party's public transport keys (the run's "PKI")
    <party>/keys.json         the party's private transport keys, wrapped under the KEK
    <party>/inbox/            transfers addressed to the party (encrypted, signed)
    <party>/outbox/           transfers the party has sealed for others
    <party>/store/            the party's own files: its data, opened transfers, results

    restarted/<UTC time>/     the records of a run set aside by ``koble run --restart``

A run that fails before it has done anything (no step completed, no feed loaded, no audit
event) leaves nothing behind (:func:`undone_on_failure`). One that did something is kept: it
resumes, or, with ``--restart``, is moved aside (:func:`move_aside`) while the audit log
continues across both.

Party ids map to directory names (``registry:npr`` → ``registry-npr``). A step reads only
its own party's store; the executor moves files between parties only through
:mod:`koble.linkage.transfer`, so the same plan could run with each party on its own machine.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from koble.errors import UsageError
from koble.files import OutputSet
from koble.linkage.keys import read_json
from koble.pseudonym.keys import RandBytes
from koble.pseudonym.keystore import KeyWrapper
from koble.pseudonym.sealed import PartyKey, PartyPublicKey, load_public
from koble.pseudonym.signing import Ed25519Signer
from koble.pseudonym.wrapping import WrappingKey, unwrap_keys, wrap_keys

__all__ = [
    "RESTARTED",
    "PartyKeys",
    "Workspace",
    "json_text",
    "move_aside",
    "party_dir",
    "restart_dir",
    "run_did_nothing",
    "undone_on_failure",
]

STATE = "run.json"
DIRECTORY = "directory.json"
#: Where ``--restart`` sets earlier runs' records aside, one directory per restart.
RESTARTED = "restarted"


def json_text(document: object) -> str:
    """As :func:`koble.linkage.keys.write_json` writes it: sorted, indented, one last newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _has_events(log: Path) -> bool:
    """Whether the audit log ``log`` records any event (a line that cannot be read counts:
    a log nobody can read is never thrown away)."""
    try:
        with log.open("rb") as handle:
            for line in handle:
                if line.strip() and json.loads(line).get("type") != "checkpoint":
                    return True
    except (OSError, ValueError, AttributeError):
        return True
    return False


def run_did_nothing(root: Path, audit_log: str) -> bool:
    """Whether the run recorded in ``root`` did nothing: no step completed, no feed loaded
    and no event in its audit log (``root / audit_log``)."""
    state = root / STATE
    if state.is_file():
        try:
            recorded: dict[str, Any] = read_json(state)
        except (OSError, ValueError):
            return False
        if recorded.get("done") or recorded.get("setup"):
            return False
    log = root / audit_log
    return not (log.is_file() and _has_events(log))


@contextmanager
def undone_on_failure(root: Path, *, existed: bool, audit_log: str) -> Iterator[None]:
    """Run the block; if it fails having started no run in ``root`` before (no ``run.json``)
    and done nothing (:func:`run_did_nothing`), remove everything it created there (the
    directory itself when it did not exist, ``existed``), so the next run starts afresh
    instead of finding a workspace that "holds a run of another job"."""
    before = set(os.listdir(root)) if existed and root.is_dir() else set()
    fresh = not (root / STATE).exists()
    try:
        yield
    except BaseException:
        if fresh and run_did_nothing(root, audit_log):
            for name in sorted(set(os.listdir(root)) - before):
                path = root / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            if not existed:
                with suppress(OSError):  # something else appeared in it meanwhile: leave it
                    root.rmdir()
        raise


def restart_dir(root: Path, now: datetime.datetime) -> Path:
    """A new directory name under ``root/restarted/`` for the records of the run in
    ``root``: the UTC time (``20261206T014213Z``), with ``-2``, ``-3`` … if taken."""
    stamp = now.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    target = root / RESTARTED / stamp
    n = 1
    while target.exists():
        n += 1
        target = root / RESTARTED / f"{stamp}-{n}"
    return target


def move_aside(root: Path, target: Path, *, keep: tuple[str, ...]) -> None:
    """Move the records of the run in ``root`` (``run.json`` first, then ``directory.json``,
    the parties' directories, the ingest work) into ``target`` (:func:`restart_dir`).
    ``keep`` names the entries that stay (the audit log, which continues, and a key
    directory inside the workspace); earlier restarts stay where they are."""
    target.mkdir(parents=True)
    names = sorted(os.listdir(root), key=lambda name: name != STATE)  # never resumed half-moved
    for name in names:
        if name not in {*keep, RESTARTED}:
            (root / name).rename(target / name)


def party_dir(party: str) -> str:
    return party.replace(":", "-")


@dataclass(frozen=True, repr=False)
class PartyKeys:
    """A party's transport keys: X25519 to open what is sent to it, Ed25519 to sign."""

    party: str
    receive: PartyKey
    sign: Ed25519Signer

    def __repr__(self) -> str:
        return f"PartyKeys({self.party!r}, {self.receive.fingerprint}, {self.sign.key_id})"


class Workspace:
    """The directories and transport keys of every party in a run."""

    def __init__(self, root: Path, keys: dict[str, PartyKeys]) -> None:
        self.root = root
        self._keys = keys
        self._directory: dict[str, Any] = read_json(root / DIRECTORY)

    @classmethod
    def open(
        cls, root: Path, parties: list[str], kek: KeyWrapper, *, randbytes: RandBytes
    ) -> Workspace:
        """Open ``root``, creating the parties' directories and keys that do not exist yet.

        The KEK is asked for one key per workspace (its parameters are kept in
        ``directory.json``), which then wraps every party's keys.
        """
        root.mkdir(parents=True, exist_ok=True)
        path = root / DIRECTORY
        directory: dict[str, Any] = read_json(path) if path.is_file() else {"parties": {}}
        if "kek" not in directory:
            directory["kek"] = kek.params(randbytes)
        wrapping = WrappingKey.derive(kek, directory["kek"])  # once for every party's keys
        keys: dict[str, PartyKeys] = {}
        new: dict[Path, dict[str, Any]] = {}  # key files to write, with directory.json
        for party in parties:
            folder = root / party_dir(party)
            for sub in ("inbox", "outbox", "store"):
                (folder / sub).mkdir(parents=True, exist_ok=True)
            key_file = folder / "keys.json"
            if key_file.is_file():
                secret = unwrap_keys(read_json(key_file), kek, wrapping=wrapping)
                receive, signer = secret.party_key("x25519"), secret.signer("ed25519")
            else:
                receive = PartyKey.generate(randbytes)
                signer = Ed25519Signer.generate(randbytes)
                public = {
                    "x25519": receive.public.raw.hex(),
                    "ed25519": signer.public_key_bytes().hex(),
                }
                document = wrap_keys(
                    {"x25519": receive, "ed25519": signer},
                    wrapping,
                    randbytes=randbytes,
                    public=public,
                )
                new[key_file] = document
            keys[party] = PartyKeys(party, receive, signer)
            directory["parties"][party] = {
                "x25519": receive.public.raw.hex(),
                "ed25519": signer.public_key_bytes().hex(),
                "x25519_fingerprint": receive.fingerprint,
                "ed25519_key_id": signer.key_id,
            }
        # one set, fsynced together (a fresh workspace: a wait for the disk, not one a party);
        # directory.json last, after the keys it lists
        with OutputSet(together=True) as outputs:
            for key_file, document in new.items():
                with outputs.file(key_file, mode=0o600) as temp:
                    temp.write_text(json_text(document), encoding="utf-8")
            with outputs.file(path, last=True) as temp:
                temp.write_text(json_text(directory), encoding="utf-8")
        return cls(root, keys)

    # --- places ---------------------------------------------------------------------------
    def party_root(self, party: str) -> Path:
        return self.root / party_dir(party)

    def store(self, party: str) -> Path:
        return self.party_root(party) / "store"

    def inbox(self, party: str) -> Path:
        return self.party_root(party) / "inbox"

    def outbox(self, party: str) -> Path:
        return self.party_root(party) / "outbox"

    # --- keys -----------------------------------------------------------------------------
    def keys(self, party: str) -> PartyKeys:
        try:
            return self._keys[party]
        except KeyError:
            raise UsageError(f"no keys for party {party!r} in this workspace") from None

    def public_receive(self, party: str) -> PartyPublicKey:
        return load_public(bytes.fromhex(self._directory["parties"][party]["x25519"]))

    def public_sign(self, party: str) -> bytes:
        return bytes.fromhex(self._directory["parties"][party]["ed25519"])

    def fingerprints(self) -> dict[str, dict[str, str]]:
        """Every party's public key ids, for the manifest."""
        return {
            party: {"x25519": v["x25519_fingerprint"], "ed25519": v["ed25519_key_id"]}
            for party, v in sorted(self._directory["parties"].items())
        }
