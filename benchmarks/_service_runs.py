"""The measured runs of ``bench_service.py``, each a row of its table: the in-process library
and service path (one thread, a timed loop), and HTTPS clients (threads in this process, each
with its own client) against the spawned server; with their inputs, valid synthetic
fødselsnummer taken batch by batch in a rotation, and every HTTPS answer checked against the
library's pseudonyms."""

from __future__ import annotations

import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from _service_server import START_TIMEOUT, ServerProcess, Service, machine_busy_seconds, utc_now

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import polars as pl

    from koble.pseudonym.keys import Keyset

DOMAIN = "project:bench"


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
