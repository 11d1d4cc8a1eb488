"""Benchmark: koble's sealed ingest of a registry feed against a plain pre-load of it.

What is compared, and why. A pseudonymous registry (Reseptregisteret) receives its feed with
fødselsnummer; koble loads it by *sealed ingest* (``koble.linkage.steps_ingest.load_feed``):
the sender seals the identifiers to the TTP and the payload to the registry (X25519 and
AES-256-GCM per batch), the TTP opens only the identifiers, validates them, resolves them
through the identity history and pseudonymises them, sealing the pseudonyms to the
registry, and the registry opens both and stores its table keyed by the pseudonym; rejects
go back to the sender with their row in the whole feed. The *plain pre-load* is the same data
work with no parties and no sealing: the payload scanned for person numbers, the identifiers
validated (``validate_column``) and resolved (``IdentityHistory``), pseudonymised with
koble's scheme (``pseudonymise_values``), the good rows written to one Parquet table keyed
by the pseudonym, a million rows at a time. The difference is what sealing and the
three-party hand-over cost. Target: the sealed ingest within 3x of the plain pre-load's
wall time (issue 17).

Each side runs in a fresh child process, so its peak RSS (``ru_maxrss``) and CPU time
(user + system, from ``os.wait4``) are its own. The sealed side runs ``load_feed`` in a
workspace and with keys made as ``koble run`` makes them (``LinkageKeys``, ``Workspace``,
the DuckDB engine), and reports its phases (``load_feed``'s ``timings``). Both sides must
store the same number of rows.

    python benchmarks/bench_ingest.py [--feed FEED] [--history FILE] [--rows N]
                                      [--chunk-rows N] [--repeat R] [--only SIDE]
                                      [--threads T] [--tmp DIR] [--keep]

``--rows N`` runs on the feed's first N rows (copied to the work directory) for a quick run.
The national feed (``koble synth --persons 5500000 --seed 2026``, 42 M rows) needs about
``--tmp`` 1.5 GB of disk.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import inspect
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGET = 3.0
KEK_ENV = "KOBLE_BENCH_KEK"  # hex of a throwaway 32-byte KEK, for the child processes
REGISTRY = "reseptregisteret"
DEFAULT_FEED = Path("/tmp/w55/feeds/reseptregisteret.parquet")
ID_COLUMNS = {"fnr": "fnr", "prescriber_hpr": "hpr"}
CHUNK_ROWS = 1_000_000
TABLE_ROW_GROUP_ROWS = 122_880  # koble.linkage.steps_ingest's, so the writers match


# --- child phases ---------------------------------------------------------------------------


def phase_plain(feed: Path, history_file: Path, out: Path, chunk_rows: int) -> dict[str, Any]:
    """The plain pre-load: the same checks, resolution and pseudonyms, no parties, no sealing."""
    import polars as pl
    import pyarrow.parquet as pq

    from koble.pseudonym.identity import IdentityHistory
    from koble.pseudonym.ingest_feed import feed_domains
    from koble.pseudonym.keys import Keyset
    from koble.pseudonym.pseudonymise import pseudonymise_values
    from koble.registries.identifiers.column import validate_column
    from koble.registries.identifiers.scan import refuse_findings, scan_frame

    timings: dict[str, float] = {}
    cpu = time.process_time()

    def timed(name: str, started: float) -> float:
        nonlocal cpu
        now, cpu_now = time.perf_counter(), time.process_time()
        timings[name] = timings.get(name, 0.0) + now - started
        timings[f"{name} cpu"] = timings.get(f"{name} cpu", 0.0) + cpu_now - cpu
        cpu = cpu_now
        return now

    tick = time.perf_counter()
    history = IdentityHistory.read(history_file)
    keyset = Keyset.create(randbytes=os.urandom, now=lambda: datetime.datetime.now(datetime.UTC))
    domains = feed_domains(REGISTRY, ID_COLUMNS)
    tick = timed("setup", tick)
    source = pq.ParquetFile(feed)
    payload = [c for c in source.schema_arrow.names if c not in ID_COLUMNS]
    writer: pq.ParquetWriter | None = None
    stored = rejected = 0
    for batch in source.iter_batches(batch_size=chunk_rows):
        chunk = pl.from_arrow(batch)
        assert isinstance(chunk, pl.DataFrame)
        tick = timed("read", tick)
        refuse_findings(scan_frame(chunk.select(payload)), what="payload", remedy="", path=feed)
        tick = timed("scan", tick)
        good = pl.repeat(True, chunk.height, eager=True)
        compacts = {}
        for column, scheme in ID_COLUMNS.items():
            checked = validate_column(chunk[column], scheme=scheme)  # type: ignore[arg-type]
            compact = checked["compact"]
            valid = checked["reason"].is_null()
            if scheme == "fnr":
                resolution = history.resolve(compact)
                valid = valid & ~resolution.ambiguous
                compact = resolution.resolved.fill_null(compact)
            good = good & valid
            compacts[column] = compact
        tick = timed("validate+resolve", tick)
        rows = good.arg_true()
        keyed = [
            pseudonymise_values(keyset, domains[c], compacts[c].gather(rows), s).alias(  # type: ignore[arg-type]
                f"{c}_pseudonym"
            )
            for c, s in ID_COLUMNS.items()
        ]
        tick = timed("pseudonymise", tick)
        table = pl.DataFrame(keyed).hstack(chunk.select(payload).filter(good)).to_arrow()
        if writer is None:  # as koble writes the registry's table (steps_ingest)
            writer = pq.ParquetWriter(out, table.schema, compression="zstd")
        writer.write_table(table, row_group_size=TABLE_ROW_GROUP_ROWS)
        stored += table.num_rows
        rejected += chunk.height - table.num_rows
        tick = timed("write", tick)
    assert writer is not None
    writer.close()
    timed("write", tick)
    return {"rows_stored": stored, "rows_rejected": rejected, "timings": timings}


def phase_sealed(feed: Path, world: Path, work: Path, chunk_rows: int) -> dict[str, Any]:
    """koble's sealed ingest (``load_feed``) in a workspace set up as ``koble run`` sets it up."""
    import dataclasses

    import koble.linkage.steps_ingest as steps_ingest
    from koble.linkage.context import Context
    from koble.linkage.engine import engine_named
    from koble.linkage.job import load_job
    from koble.linkage.keys import LinkageKeys
    from koble.linkage.planner import plan_job
    from koble.linkage.sources import synthetic_sources
    from koble.linkage.workspace import Workspace
    from koble.pseudonym.keystore import RawKek
    from koble.registries.catalogue import Catalogue

    kek = RawKek(bytes.fromhex(os.environ[KEK_ENV]))

    def now() -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC)

    sources = synthetic_sources(world)
    source = dataclasses.replace(sources.registries[REGISTRY], file=feed)
    sources = dataclasses.replace(sources, registries={**sources.registries, REGISTRY: source})
    job_path = work / "job.toml"
    job_path.write_text(
        '[project]\nid = "P2026-901"\ntitle = "Benchmark: sealed ingest"\n\n'
        '[population]\nfile = "cohort.parquet"\nid_column = "fnr"\n\n'
        '[recipient]\nname = "Kari Nordmann"\norganisation = "Universitetet i Oslo"\n\n'
        '[delivery]\nformat = "parquet"\n\n'
        '[registries.reseptregisteret]\napproval = { kind = "helsedataservice", '
        'reference = "HDS 26/00042" }\nvariables = ["atc", "ddd", "dispensing_date"]\n'
        "period = { start = 2015, end = 2021 }\n",
        encoding="utf-8",
    )
    catalogue = Catalogue.load()
    job = load_job(job_path, catalogue)
    plan = plan_job(job, catalogue)
    workspace = work / "ws"
    keys = LinkageKeys.open_or_create(work / "keys", kek, randbytes=os.urandom, now=now)
    ws = Workspace.open(workspace, [p.id for p in plan.parties], kek, randbytes=os.urandom)
    ctx = Context(
        job, job_path, "0" * 64, plan, catalogue, sources, keys, ws, engine_named("duckdb"),
        now(), os.urandom,
    )  # fmt: skip
    timings: dict[str, float] = {}
    options: dict[str, Any] = {"chunk_rows": chunk_rows}
    if "timings" in inspect.signature(steps_ingest.load_feed).parameters:
        options["timings"] = timings
    started = time.perf_counter()
    counts = steps_ingest.load_feed(ctx, source, **options)
    seconds = time.perf_counter() - started
    ctx.engine.close()
    table = ws.store(f"registry:{REGISTRY}") / f"{REGISTRY}.parquet"
    return {
        "rows_stored": counts["rows_stored"],
        "rows_rejected": counts["rows_rejected"],
        "seconds": seconds,
        "timings": timings,
        "table_bytes": table.stat().st_size,
    }


# --- parent ---------------------------------------------------------------------------------


def run_child(args: list[str], env: dict[str, str]) -> tuple[dict[str, Any], float, float, float]:
    """A phase in a fresh interpreter: (its JSON result, wall s, CPU s, peak RSS GiB)."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True,
        env={**os.environ, **env},
    )  # fmt: skip
    assert child.stdout is not None
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"phase {args[:2]} failed")
    cpu = usage.ru_utime + usage.ru_stime
    return json.loads(out.strip().splitlines()[-1]), wall, cpu, usage.ru_maxrss / 2**20


def code_state() -> str:
    """The commit, and a digest of koble/ as it is on disk (it may be uncommitted)."""
    import koble

    root = Path(koble.__file__).resolve().parent
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.read_bytes())
    return f"{root}, commit {head or '?'}, koble/**/*.py sha256 {digest.hexdigest()[:12]}"


def first_rows(feed: Path, rows: int, out: Path) -> Path:
    """The feed's first ``rows`` rows, in row groups like the feed's."""
    import pyarrow.parquet as pq

    source = pq.ParquetFile(feed)
    group = source.metadata.row_group(0).num_rows
    with pq.ParquetWriter(out, source.schema_arrow) as writer:
        left = rows
        for batch in source.iter_batches(batch_size=min(group, 1 << 20)):
            writer.write_batch(batch.slice(0, left), row_group_size=group)
            left -= min(left, batch.num_rows)
            if not left:
                break
    return out


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--feed", type=Path, default=DEFAULT_FEED)
    parser.add_argument("--world", type=Path, help="the feed's world (default: its parent's)")
    parser.add_argument("--rows", type=int, help="only the feed's first N rows")
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS)
    parser.add_argument("--repeat", type=int, default=1, help="runs per side (best kept)")
    parser.add_argument("--only", choices=("plain", "sealed"), help="run one side only")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="Polars threads")
    parser.add_argument("--tmp", type=Path, help="where the work directory goes")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--phase", choices=("plain", "sealed"), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def sec(x: float) -> str:
    return f"{x:,.1f}"


def main() -> None:
    args = parse()
    os.environ["POLARS_MAX_THREADS"] = str(args.threads)  # before Polars is imported
    world = args.world or args.feed.resolve().parents[1]
    if args.phase == "plain":
        result = phase_plain(
            args.feed, world / "identity_history.parquet", args.work / "plain.parquet",
            args.chunk_rows,
        )  # fmt: skip
        print(json.dumps(result))
        return
    if args.phase == "sealed":
        print(json.dumps(phase_sealed(args.feed, world, args.work, args.chunk_rows)))
        return

    import pyarrow.parquet as pq

    print(f"# koble sealed-ingest benchmark\n\n```\n{shlex.join(['python', *sys.argv])}\n```\n")
    print(f"Code: {code_state()}\n")
    print(
        f"{platform.node()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, Python "
        f"{platform.python_version()}; load average at start "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}\n"
    )
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-", dir=args.tmp))
    env = {KEK_ENV: os.urandom(32).hex()}
    try:
        feed = args.feed
        if args.rows:
            feed = first_rows(args.feed, args.rows, work / "feed.parquet")
        rows = pq.ParquetFile(feed).metadata.num_rows
        print(f"Feed {args.feed} ({rows:,} rows, {args.chunk_rows:,} per chunk)\n")
        common = ["--feed", str(feed), "--world", str(world), "--chunk-rows", str(args.chunk_rows)]
        sides = ("plain", "sealed") if args.only is None else (args.only,)
        results: dict[str, tuple[dict[str, Any], float, float, float]] = {}
        for side in sides:
            runs = []
            for i in range(args.repeat):
                print(f"running: {side} {i + 1} of {args.repeat} ...", file=sys.stderr)
                run_dir = work / f"{side}-{i}"
                run_dir.mkdir()
                runs.append(run_child(["--phase", side, *common, "--work", str(run_dir)], env))
                shutil.rmtree(run_dir)
            fastest = min(runs, key=lambda r: r[1])
            results[side] = (fastest[0], fastest[1], fastest[2], max(r[3] for r in runs))
        print("| side | wall s | CPU s | peak RSS GiB | rows stored | rows rejected |")
        print("|---|--:|--:|--:|--:|--:|")
        for side, (res, wall, cpu, rss) in results.items():
            print(f"| {side} | {sec(wall)} | {sec(cpu)} | {rss:.2f} | {res['rows_stored']:,} | "
                  f"{res['rows_rejected']:,} |")  # fmt: skip
        for side, (res, wall, cpu, _) in results.items():
            timings = res["timings"]
            if timings:
                print(f"\n{side}'s phases (in-process; the rest of the wall time is start-up; "
                      "CPU is every thread's):\n")  # fmt: skip
                print("| phase | wall s | share | CPU s | share |\n|---|--:|--:|--:|--:|")
                phases = [k for k in timings if not k.endswith(" cpu")]
                for phase in sorted(phases, key=lambda k: -timings[k]):
                    s, c = timings[phase], timings.get(f"{phase} cpu", 0.0)
                    print(f"| {phase} | {sec(s)} | {s / wall:.0%} | {sec(c)} | {c / cpu:.0%} |")
        if len(results) == 2:
            plain, sealed = results["plain"], results["sealed"]
            if plain[0]["rows_stored"] != sealed[0]["rows_stored"]:
                raise SystemExit("the two sides stored different numbers of rows")
            ratio = sealed[1] / plain[1]
            met = "met" if ratio <= TARGET else "NOT met"
            print(f"\nSealed / plain: {ratio:.2f}x wall, {sealed[2] / plain[2]:.2f}x CPU; "
                  f"target <= {TARGET:.0f}x wall: {met}.")  # fmt: skip
    finally:
        if args.keep:
            print(f"\nkept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
