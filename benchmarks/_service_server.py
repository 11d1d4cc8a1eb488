"""The service under test in ``bench_service.py``: its files (keyset, test PKI, bearer token,
config TOML, audit log path) and ``koble serve``'s app in a spawned process, with that
process's CPU time and the machine's read from ``/proc``.

Nothing heavy is imported at module level: the spawned server imports this module (and the
script) before :func:`serve_child` sets ``POLARS_MAX_THREADS``, which must come before Polars.
"""

from __future__ import annotations

import datetime
import multiprocessing
import os
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from koble.pseudonym.keys import Keyset

PARTY = "bench"
START_TIMEOUT = 60.0


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class Service:
    """Everything written for the service in the temporary directory."""

    config: Path
    kek: bytes
    token: str
    ca: Path
    audit_log: Path
    tls: bool


def build_service(directory: Path, keyset: Keyset, max_concurrent: int, tls: bool) -> Service:
    """Keyset file, test PKI, token, config TOML and audit log path under ``directory``.

    ``tls=False`` sets ``insecure_http`` (loopback only): for measuring what TLS costs.
    """
    from koble.pseudonym.keystore import RawKek, save_keyset
    from koble.pseudonym.service import auth
    from koble.pseudonym.service.pki import create_test_pki

    kek = os.urandom(32)
    save_keyset(keyset, directory / "ttp.keyset", RawKek(kek), randbytes=os.urandom)
    pki = create_test_pki(
        directory / "pki", [], now=utc_now() - datetime.timedelta(minutes=1), days=1
    )
    token = auth.new_token(os.urandom)
    expires = (utc_now() + datetime.timedelta(days=1)).replace(microsecond=0).isoformat()
    config = directory / "service.toml"
    security = (
        'certificate = "pki/server.pem"\nprivate_key = "pki/server.key"'
        if tls
        else "insecure_http = true"
    )
    config.write_text(
        f"""[server]
host = "127.0.0.1"
port = 0
{security}
max_concurrent = {max_concurrent}

[keys]
keyset = "ttp.keyset"

[audit]
log = "audit.log"

[[party]]
id = "{PARTY}"
tokens = [{{ sha256 = "{auth.hash_token(token)}", expires = {expires} }}]
roles = ["operator"]
allow = [{{ operation = "pseudonymise", domains = ["project:*"] }}]
""",
        encoding="utf-8",
    )
    return Service(config, kek, token, pki.ca_cert, directory / "audit.log", tls)


# --- the server process ----------------------------------------------------------------------


def serve_child(config_path: str, kek: bytes, threads: int, conn: Connection) -> None:
    """Child process (spawned): open the service from its config and serve until told to stop.

    Sends ``("port", n)`` once listening, then ``("stopped", audit_events)`` after a
    graceful shutdown (which seals the audit log), or ``("failed", message)``.
    """
    os.environ["POLARS_MAX_THREADS"] = str(threads)  # before Polars is imported here
    from koble.pseudonym.audit import AuditLog
    from koble.pseudonym.keystore import RawKek
    from koble.pseudonym.service.config import load_config
    from koble.pseudonym.service.server import make_server, open_state
    from koble.pseudonym.signing import Ed25519Signer

    try:
        config = load_config(Path(config_path))
        assert config.audit_log is not None
        audit = AuditLog(config.audit_log, Ed25519Signer.generate(), utc_now)
        state = open_state(config, kek=RawKek(kek), audit=audit, now=utc_now, randbytes=os.urandom)
        server = make_server(state)
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    done = threading.Event()

    def control() -> None:
        while not server.started:
            if done.wait(0.01):
                return
        conn.send(("port", server.servers[0].sockets[0].getsockname()[1]))
        conn.recv()  # any message: stop
        server.should_exit = True

    threading.Thread(target=control, name="bench-control", daemon=True).start()
    try:
        server.run()
    finally:
        done.set()
        audit.close()  # the lifespan has normally sealed it already; closing twice is a no-op
    conn.send(("stopped", audit.events))


def process_cpu_seconds(pid: int, thread: int | None = None) -> float | None:
    """User + system CPU seconds of process ``pid`` (all threads) or of one of its threads,
    from /proc; None where there is no /proc."""
    where = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    try:
        fields = Path(where).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float | None:
    """CPU seconds all processes on the machine have used (every core), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    """The service in a spawned process; ``url`` once started, ``stop()`` for audit events."""

    def __init__(self, service: Service, threads: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(
            target=serve_child,
            args=(str(service.config), service.kek, threads, child),
            name="koble-serve-bench",
        )
        self.process.start()
        child.close()
        if not self._conn.poll(START_TIMEOUT):
            self.process.kill()
            raise RuntimeError(f"the server did not start within {START_TIMEOUT:.0f} s")
        try:
            kind, value = self._conn.recv()
        except EOFError:
            kind, value = "failed", f"the server process exited ({self.process.exitcode})"
        if kind != "port":
            self.process.join(10)
            raise RuntimeError(f"the server did not start: {value}")
        self.url = f"{'https' if service.tls else 'http'}://127.0.0.1:{value}"

    def cpu_seconds(self) -> tuple[float | None, float | None]:
        """CPU seconds of the server process, and of its main thread (the event loop)."""
        pid = self.process.pid
        if pid is None:
            return None, None
        return process_cpu_seconds(pid), process_cpu_seconds(pid, pid)

    def stop(self) -> int | None:
        """Stop gracefully; the number of audit events the log holds, or None."""
        try:
            self._conn.send("stop")
            if self._conn.poll(60):
                kind, value = self._conn.recv()
                if kind == "stopped":
                    return int(value)
        except (EOFError, OSError):
            pass
        finally:
            self.process.join(10)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
        return None
