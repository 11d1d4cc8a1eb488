"""What ``bench_service.py`` prints: the machine and the code measured, the table of runs and,
per HTTPS run, what the table leaves out (checks, CPU use, load); and the wait for a quiet
machine before it starts."""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time

from _report import code_state, cpu_name
from _service_runs import Run


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

    cpu = cpu_name()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"machine: {cpu}; {os.cpu_count()} cores ({usable} usable)\n"
        f"Python {platform.python_version()}, polars {pl.__version__}, pyarrow {pa.__version__}, "
        f"uvicorn {uvicorn.__version__} (h11), fastapi {fastapi.__version__}, "
        f"httpx {httpx.__version__}, cryptography {cryptography.__version__}\n"
        f"{code_state('pseudonym')}\n"
        f"server: a spawned process (multiprocessing), Polars threads {args.server_threads}, "
        f"max_concurrent {args.max_concurrent}, {'plain HTTP' if args.plain_http else 'TLS'} "
        f"on loopback, bearer token, audit log "
        f"fsynced per request; clients: threads in this process, Polars threads "
        f"{pl.thread_pool_size()}; in-process rows: one thread"
    )


def print_runs(runs: list[Run], baselines: dict[int, float]) -> None:
    """The table: one row per run, its throughput against the library's at its batch size."""
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
