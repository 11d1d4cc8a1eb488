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
import math
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import verdict
from _service_report import describe, machine_info, print_runs, wait_for_quiet
from _service_runs import DOMAIN, Run, make_identifiers, run_http, run_library, run_service_path
from _service_server import ServerProcess, build_service, utc_now

TARGET_RATIO = 3.0
SWEEP = (10_000, 1_000_000)
QUIET_LOAD = 1.5


def main() -> int:
    """Run every row (library, service path, HTTPS) per batch size, print the tables and the
    targets; 0 when there was no error and the audit log holds every request, else 1."""
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
    print_runs(runs, baselines)
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
        print(
            f"target: {run.mode} within {TARGET_RATIO:.0f}x of the in-process library, batch "
            f"{run.batch:,}, {run.clients} clients: {verdict(ratio <= TARGET_RATIO)} "
            f"({ratio:.2f}x: {run.rate:,.0f} vs {baselines[run.batch]:,.0f} identifiers/s)"
        )
    print(f"errors: {errors}" + ("" if errors == 0 else " (none are allowed)"))
    return 0 if errors == 0 and audited else 1


if __name__ == "__main__":
    sys.exit(main())
