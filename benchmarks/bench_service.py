"""Benchmark: bulk pseudonymisation through the pseudonym service over HTTPS, on loopback.

Compares, for batches of the same size and the same valid synthetic fødselsnummer:

1. **in-process library**: ``pseudonymise_frame`` (validate + pseudonymise, the work the
   ``/v1/pseudonymise`` endpoint does per request) called in a loop on one thread. This is
   the baseline of the target;
2. **in-process service path** (for information): what the endpoint does apart from the
   network, still in one thread: the client's Arrow IPC encoding, the server's decoding,
   ``koble.pseudonym.service.operations.pseudonymise`` (which adds the row/reason table),
   the response's encoding and the client's decoding. The gap between 1 and 2 is the cost of
   the wire format and the response shape; the gap between 2 and 3 is HTTP, TLS, asyncio,
   threads and the audit log;
3. **HTTPS**: ``koble serve``'s app (``open_state`` + ``make_server``: TLS 1.2+, bearer token,
   audit log fsynced per request, at most ``max_concurrent`` bulk operations at once) in a
   separate process started with ``multiprocessing`` (spawn), so the clients do not share the
   server's GIL; ``--clients`` threads in this process, each with its own
   :class:`~koble.pseudonym.client.ServiceClient`, send batches in a loop for ``--seconds``.

Every HTTPS response is checked: one pseudonym per input, in order, no reason, and equal to
the library's pseudonym of the same identifier under the same keyset; clients start half a
batch apart in the same rotation through the identifiers, so most identifiers are
pseudonymised by several clients, and equality with the reference is equality across clients.
Any exception, non-200 answer or mismatch is an error; the script exits 1 if there is one.
After the run the server is stopped gracefully and its audit log must hold one event per
request.

Target (issue): bulk pseudonymisation over HTTP within 3x of the in-process library's
throughput, i.e. HTTPS identifiers/s ≥ in-process identifiers/s / 3.

Server and clients share the machine's cores; the header prints the load average before and
after and the CPU time each side used, so a number can be placed.

    python benchmarks/bench_service.py [--clients 4] [--seconds 20] [--batch 100000]
        [--max-concurrent 2] [--sweep] [--server-threads T] [--lib-seconds 5]
        [--plain-http] [--max-wait 600] [--tmp DIR]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import math
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import polars as pl

    from koble.pseudonym.keys import Keyset

DOMAIN = "project:bench"
PARTY = "bench"
TARGET_RATIO = 3.0
SWEEP = (10_000, 1_000_000)
QUIET_LOAD = 1.5
START_TIMEOUT = 60.0


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# --- results ---------------------------------------------------------------------------------


@dataclass
class Run:
    """One row of the table: a mode at one batch size."""

    mode: str
    clients: int
    batch: int
    identifiers: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    cpu_server: float | None = None  # CPU seconds of the server process (HTTP rows)
    cpu_loop: float | None = None  # of its main thread alone: the event loop
    cpu_clients: float | None = None  # of this process (clients; or the in-process loop)
    cpu_machine: float | None = None  # of every process on the machine
    overlap: int = 0  # identifiers pseudonymised by at least two clients
    load: float = 0.0  # 1-minute load average when the run ended

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.identifiers / self.seconds if self.seconds else 0.0

    def quantile_ms(self, q: float) -> float:
        """Nearest-rank quantile of the latencies, in milliseconds."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return 1000 * ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# --- inputs ----------------------------------------------------------------------------------


def make_identifiers(n: int, seed: int) -> pl.Series:
    """``n`` distinct valid fødselsnummer (births 1925-2024, classic rule) from koble.synth."""
    import numpy as np
    import polars as pl

    from koble.synth.numbers import KIND_FNR, format_ids, person_numbers

    rng = np.random.default_rng(seed)
    first = np.datetime64("1925-01-01", "D").astype(np.int64)
    last = np.datetime64("2025-01-01", "D").astype(np.int64)
    days = rng.integers(first, last, n).astype(np.int32)
    male = rng.random(n) < 0.5
    kind = np.full(n, KIND_FNR, dtype=np.int8)
    numbers = person_numbers(rng, days, male, kind, np.zeros(n, dtype=np.bool_))
    series = pl.from_arrow(format_ids(numbers))
    assert isinstance(series, pl.Series)
    return series.alias("id")


def rotating_slice(series: pl.Series, start: int, length: int) -> pl.Series:
    """``length`` values of ``series`` from ``start``, wrapping around its end."""
    import polars as pl

    start %= len(series)
    head = series.slice(start, length)
    if head.len() == length:
        return head
    return pl.concat([head, series.slice(0, length - head.len())], rechunk=False)


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


# --- measurements ----------------------------------------------------------------------------


def run_library(keyset: Keyset, pool: pl.Series, batch: int, seconds: float) -> Run:
    """``pseudonymise_frame`` on consecutive batches, one thread, for about ``seconds``."""
    import polars as pl

    from koble.pseudonym.pseudonymise import pseudonymise_frame

    def call(values: pl.Series) -> None:
        done = pseudonymise_frame(
            pl.DataFrame({"id": values}), "id", keyset=keyset, domain=DOMAIN,
            output_column="pseudonym", path="<bench>",
        )  # fmt: skip
        if done.rejects.height or done.table.height != batch:
            raise RuntimeError("the library rejected a synthetic identifier")

    return timed_loop("in-process library", pool, batch, seconds, call)


def run_service_path(keyset: Keyset, config: Path, pool: pl.Series, batch: int,
                     seconds: float) -> Run:  # fmt: skip
    """The endpoint's work without the network (see the module docstring), one thread."""
    import polars as pl

    from koble.pseudonym.auditing import MemoryAudit
    from koble.pseudonym.service import operations as ops
    from koble.pseudonym.service.arrowio import arrow_bytes, read_table
    from koble.pseudonym.service.config import load_config

    state = ops.ServiceState(load_config(config), keyset, MemoryAudit(), utc_now, os.urandom)

    def call(values: pl.Series) -> None:
        request = read_table(arrow_bytes(pl.DataFrame({"id": values})))
        outcome = ops.pseudonymise(
            state, request, column="id", domain=DOMAIN, id_scheme="fnr", partial=False,
            test_numbers=False,
        )  # fmt: skip
        answer = read_table(arrow_bytes(outcome.frame))
        if not outcome.ok or answer.height != batch:
            raise RuntimeError("the service operation rejected a synthetic identifier")

    return timed_loop("in-process service path", pool, batch, seconds, call)


def timed_loop(
    mode: str, pool: pl.Series, batch: int, seconds: float, call: Callable[[pl.Series], None]
) -> Run:
    """Call ``call`` on consecutive batches (one warm-up first) for ``seconds``, at least 3x."""
    import gc

    run = Run(mode, 1, batch)
    call(rotating_slice(pool, 0, batch))
    gc.collect()
    i = 0
    cpu = time.process_time()
    start = time.perf_counter()
    while i < 3 or time.perf_counter() - start < seconds:
        i += 1
        values = rotating_slice(pool, i * batch, batch)
        t0 = time.perf_counter()
        call(values)
        run.latencies.append(time.perf_counter() - t0)
        run.identifiers += batch
    run.seconds = time.perf_counter() - start
    run.cpu_clients = time.process_time() - cpu
    return run


@dataclass
class ClientStats:
    latencies: list[float] = field(default_factory=list)
    identifiers: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    finished: float = 0.0
    seen: npt.NDArray[np.bool_] | None = None


@dataclass
class Load:
    """What the client threads share: where to send what, and when to start and stop."""

    url: str
    service: Service
    pool: pl.Series
    reference: pl.Series  # the library's pseudonym of each identifier in ``pool``
    batch: int
    clients: int
    seconds: float
    ready: threading.Barrier
    go: threading.Event = field(default_factory=threading.Event)
    start: float = 0.0  # set just before ``go``


def client_loop(index: int, load: Load, stats: ClientStats) -> None:
    """One client: its own ServiceClient, a warm-up request, then batches until the deadline."""
    import numpy as np

    from koble.pseudonym.client import ServiceClient, ServiceError

    pool, batch = load.pool, load.batch
    stats.seen = np.zeros(len(pool), dtype=np.bool_)
    offset = index * batch // load.clients  # clients run 1/clients of a batch apart

    def request(i: int) -> float | None:
        start = (offset + i * batch) % len(pool)
        values = rotating_slice(pool, start, batch)
        t0 = time.perf_counter()
        try:
            result = client.pseudonymise(values, domain=DOMAIN)
        except ServiceError as exc:
            stats.errors[f"HTTP {exc.status}"] += 1
            return None
        except Exception as exc:  # noqa: BLE001 - every failure is counted, by kind
            stats.errors[type(exc).__name__] += 1
            return None
        elapsed = time.perf_counter() - t0
        expected = rotating_slice(load.reference, start, batch)
        if (
            result.columns != ["row", "pseudonym", "reason"]
            or result.height != batch
            or result["reason"].null_count() != batch
            or not result["pseudonym"].equals(expected, check_names=False)
        ):
            stats.errors["wrong or inconsistent pseudonyms"] += 1
            return None
        assert stats.seen is not None
        end = start + batch
        stats.seen[start : min(end, len(pool))] = True
        stats.seen[: max(0, end - len(pool))] = True
        return elapsed

    with ServiceClient(load.url, token=load.service.token, ca=load.service.ca) as client:
        request(-1)  # warm-up: TLS handshake, first-call costs; counted only if it fails
        load.ready.wait()
        load.go.wait()
        deadline = load.start + load.seconds
        i = 0
        while time.perf_counter() < deadline:
            elapsed = request(i)
            i += 1
            if elapsed is not None:
                stats.latencies.append(elapsed)
                stats.identifiers += batch
        stats.finished = time.perf_counter()


def run_http(server: ServerProcess, service: Service, pool: pl.Series, reference: pl.Series,
             batch: int, clients: int, seconds: float) -> Run:  # fmt: skip
    """``clients`` threads for ``seconds``; wall time runs until the last request returned."""
    import numpy as np

    ready = threading.Barrier(clients + 1, timeout=START_TIMEOUT)
    load = Load(server.url, service, pool, reference, batch, clients, seconds, ready)
    stats = [ClientStats() for _ in range(clients)]
    threads = [
        threading.Thread(target=client_loop, args=(i, load, stats[i]), name=f"bench-client-{i}")
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    ready.wait()
    (cpu_server0, cpu_loop0), cpu_clients0 = server.cpu_seconds(), time.process_time()
    machine0 = machine_busy_seconds()
    load.start = time.perf_counter()
    load.go.set()
    for thread in threads:
        thread.join()
    (cpu_server1, cpu_loop1), cpu_clients1 = server.cpu_seconds(), time.process_time()
    machine1 = machine_busy_seconds()
    run = Run("HTTPS" if service.tls else "HTTP (no TLS)", clients, batch)
    run.seconds = max(s.finished for s in stats) - load.start
    for s in stats:
        run.latencies += s.latencies
        run.identifiers += s.identifiers
        run.errors += s.errors
    if cpu_server0 is not None and cpu_server1 is not None:
        run.cpu_server = cpu_server1 - cpu_server0
    if machine0 is not None and machine1 is not None:
        run.cpu_machine = machine1 - machine0
    if cpu_loop0 is not None and cpu_loop1 is not None:
        run.cpu_loop = cpu_loop1 - cpu_loop0
    run.cpu_clients = cpu_clients1 - cpu_clients0
    seen = np.sum([s.seen for s in stats if s.seen is not None], axis=0)
    run.overlap = int(np.count_nonzero(seen >= 2))
    run.load = os.getloadavg()[0]
    return run


# --- reporting -------------------------------------------------------------------------------


def wait_for_quiet(limit: float, max_wait: float, poll: float = 30.0) -> str:
    """Wait (polling) until the 1-minute load average is below ``limit``; say what happened."""
    start = time.monotonic()
    while True:
        load = os.getloadavg()[0]
        waited = time.monotonic() - start
        if load < limit:
            return f"load average {load:.2f} after waiting {waited:.0f} s"
        if waited >= max_wait:
            return f"NOT QUIET: load average still {load:.2f} after {waited:.0f} s; ran anyway"
        print(f"load average {load:.2f} ≥ {limit}; waiting {poll:.0f} s", file=sys.stderr)
        time.sleep(poll)


def machine_info(args: argparse.Namespace) -> str:
    import cryptography
    import fastapi
    import httpx
    import polars as pl
    import pyarrow as pa
    import uvicorn

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    digest = hashlib.sha256()
    for path in sorted((root / "koble" / "pseudonym").rglob("*.py")):
        digest.update(path.read_bytes())
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"machine: {cpu}; {os.cpu_count()} cores ({usable} usable)\n"
        f"Python {platform.python_version()}, polars {pl.__version__}, pyarrow {pa.__version__}, "
        f"uvicorn {uvicorn.__version__} (h11), fastapi {fastapi.__version__}, "
        f"httpx {httpx.__version__}, cryptography {cryptography.__version__}\n"
        f"commit {commit}, koble/pseudonym/**/*.py sha256 {digest.hexdigest()[:12]}\n"
        f"server: a spawned process (multiprocessing), Polars threads {args.server_threads}, "
        f"max_concurrent {args.max_concurrent}, {'plain HTTP' if args.plain_http else 'TLS'} "
        f"on loopback, bearer token, audit log "
        f"fsynced per request; clients: threads in this process, Polars threads "
        f"{pl.thread_pool_size()}; in-process rows: one thread"
    )


def print_table(runs: list[Run], baselines: dict[int, float]) -> None:
    print(
        "| mode | clients | batch | requests | identifiers/s | p50 ms | p99 ms | errors "
        "| in-process ÷ this |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for run in runs:
        ratio = baselines[run.batch] / run.rate if run.rate else math.inf
        errors = sum(run.errors.values())
        print(
            f"| {run.mode} | {run.clients} | {run.batch:,} | {run.requests:,} | "
            f"{run.rate:,.0f} | {run.quantile_ms(0.5):,.1f} | {run.quantile_ms(0.99):,.1f} | "
            f"{errors} | {ratio:.2f}x |"
        )


def per_million(seconds: float | None, identifiers: int) -> str:
    return "?" if seconds is None or not identifiers else f"{1e6 * seconds / identifiers:.2f} s"


def describe(run: Run, library: Run, wall_cores: int) -> str:
    """What the table leaves out: checks, CPU use (total and per million identifiers), load."""
    cpu = ""
    if run.cpu_server is not None and run.cpu_clients is not None:
        used = (run.cpu_server + run.cpu_clients) / run.seconds
        loop = "?" if run.cpu_loop is None else f"{run.cpu_loop:.1f} s"
        busy = "?" if run.cpu_machine is None else f"{run.cpu_machine / run.seconds:.2f}"
        cpu = (
            f"; CPU: server {run.cpu_server:.1f} s (event loop thread {loop}), clients "
            f"{run.cpu_clients:.1f} s over {run.seconds:.1f} s wall ({used:.2f} of "
            f"{wall_cores} cores busy; all processes on the machine: {busy}); "
            f"CPU per million identifiers: server "
            f"{per_million(run.cpu_server, run.identifiers)} (event loop "
            f"{per_million(run.cpu_loop, run.identifiers)}), clients "
            f"{per_million(run.cpu_clients, run.identifiers)}, the library in-process "
            f"{per_million(library.cpu_clients, library.identifiers)}"
        )
    kinds = ", ".join(f"{k}: {v}" for k, v in run.errors.most_common()) or "none"
    consistent = "all" if not run.errors else "the others"
    return (
        f"  batch {run.batch:,}: {run.identifiers:,} identifiers in {run.seconds:.1f} s; "
        f"{run.overlap:,} distinct identifiers pseudonymised by ≥ 2 clients, {consistent} "
        f"equal to the library's pseudonyms{cpu}; 1-minute load at the end {run.load:.2f}; "
        f"errors: {kinds}"
    )


# --- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    parser.add_argument("--seconds", type=float, default=20.0, help="load duration per batch")
    parser.add_argument("--batch", type=int, default=100_000, help="identifiers per request")
    parser.add_argument("--sweep", action="store_true", help=f"also batches {SWEEP}")
    parser.add_argument("--max-concurrent", type=int, default=2, help="server max_concurrent")
    parser.add_argument(
        "--server-threads", type=int, default=os.cpu_count() or 1, help="server Polars threads"
    )
    parser.add_argument(
        "--lib-seconds", type=float, default=5.0, help="duration of each in-process loop"
    )
    parser.add_argument(
        "--plain-http",
        action="store_true",
        help="serve without TLS (insecure_http on loopback), to see what TLS costs",
    )
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--tmp", type=Path, default=None, help="directory for keys, PKI, audit")
    parser.add_argument(
        "--max-wait", type=float, default=600.0, help="seconds to wait for a quiet machine"
    )
    args = parser.parse_args()
    if args.clients < 1 or args.batch < 1 or args.max_concurrent < 1:
        parser.error("--clients, --batch and --max-concurrent must be positive")
    os.environ["POLARS_MAX_THREADS"] = "1"  # this process: one-thread baseline, light clients

    from koble.pseudonym.keys import Keyset
    from koble.pseudonym.pseudonymise import pseudonymise_values

    batches = sorted({args.batch, *SWEEP}) if args.sweep else [args.batch]
    quiet = wait_for_quiet(QUIET_LOAD, args.max_wait)
    print(f"before: {quiet}", file=sys.stderr)
    pool = make_identifiers(max(2 * max(batches), 200_000), args.seed)
    keyset = Keyset.create(randbytes=os.urandom, now=utc_now)
    reference = pseudonymise_values(keyset, DOMAIN, pool).alias("pseudonym")
    library: list[Run] = []
    https: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="koble-bench-service-", dir=args.tmp) as tmp:
        service = build_service(Path(tmp), keyset, args.max_concurrent, not args.plain_http)
        server = ServerProcess(service, args.server_threads)  # idle until the HTTP rows
        try:
            # Each batch size's rows run back to back, so a change in the machine's load
            # between sizes does not skew the ratio.
            for batch in batches:
                print(f"in-process, batch {batch:,}", file=sys.stderr)
                library.append(run_library(keyset, pool, batch, args.lib_seconds))
                library.append(run_service_path(keyset, service.config, pool, batch,
                                                args.lib_seconds))  # fmt: skip
                print(f"{server.url}, batch {batch:,}, {args.clients} clients", file=sys.stderr)
                https.append(
                    run_http(server, service, pool, reference, batch, args.clients, args.seconds)
                )
        finally:
            audit_events = server.stop()
    after = os.getloadavg()[0]

    print(f"\n{machine_info(args)}")
    print(f"load average: before the run {quiet}; after {after:.2f}\n")
    baselines = {r.batch: r.rate for r in library if r.mode == "in-process library"}
    runs = [r for b in batches for r in library + https if r.batch == b]
    print_table(runs, baselines)
    print()
    for run in https:
        library_run = next(r for r in library if r.batch == run.batch)  # the library's row
        print(describe(run, library_run, os.cpu_count() or 1))
    requests = sum(r.requests + sum(r.errors.values()) + r.clients for r in https)
    audited = audit_events == requests
    print(
        f"  audit log: {audit_events} events for {requests} requests (including one warm-up "
        f"per client per batch): {'complete' if audited else 'INCOMPLETE'}"
    )
    errors = sum(sum(r.errors.values()) for r in library + https)
    print()
    for run in https:
        ratio = baselines[run.batch] / run.rate if run.rate else math.inf
        verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
        print(
            f"target: {run.mode} within {TARGET_RATIO:.0f}x of the in-process library, batch "
            f"{run.batch:,}, {run.clients} clients: {verdict} ({ratio:.2f}x: "
            f"{run.rate:,.0f} vs {baselines[run.batch]:,.0f} identifiers/s)"
        )
    print(f"errors: {errors}" + ("" if errors == 0 else " (none are allowed)"))
    return 0 if errors == 0 and audited else 1


if __name__ == "__main__":
    sys.exit(main())
