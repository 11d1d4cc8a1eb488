"""Benchmark: the national job at 1x, 4x and 16x its registry rows, on DuckDB and on Spark.

What is run. The national job of ``bench_linkage.py`` (``_jobs.REQUESTS``: a cohort of
``--cohort`` persons sampled from a ``koble synth`` world, linked with NPR,
Dødsårsaksregisteret, Kreftregisteret and the pseudonymous Reseptregisteret) on every
engine of ``--engines`` (DuckDB embedded; Spark in local mode, ``local[2]``, as ``koble run
--engine spark`` makes it) and, with ``--out-of-core SIZE``, on DuckDB capped at ``SIZE``
(``koble run --memory-limit``; DuckDB spills what does not fit to disk). Each run is one
fresh child process calling ``run_job`` in a fresh workspace.

How the rows are scaled. A world ``xK`` is a hard-linked copy (``cp -al``) of ``--world``
whose four registries hold ``K`` replicas of every event row: replica ``j`` (0 to K-1)
moves the row's period date (the column the job's period applies to) ``j`` days later,
wrapped back 365 days where that would cross into the next year, and the row's other dates
(NPR's end date) by the same number of days. A row keeps its year, so it is in the job's
period exactly when its original is, and the delivery grows with the registry rows (K times
the rows, the same persons); the rows stay distinct, so the work is real joins and sorts,
not repeated values. Replica 0 is the original, so x1 is the world itself. Reseptregisteret
arrives as a feed that the TTP's sealed ingest loads before a job (a monthly pre-job task,
about 2 minutes at x1, timed apart by ``bench_linkage.py``): it is ingested once, on DuckDB,
from the x1 feed, and its loaded table (keyed by pseudonym) is replicated the same way and
placed in each run's registry store with its ingest counts multiplied by K; the runs time
the job, not the ingest. The feed file itself is not scaled.

Same job, same bytes. Every run uses the same long-lived keys, a fixed clock and the same
seeded randomness, so a run is a function of its inputs: at each scale the delivered data
files (every file but ``manifest.json`` and ``quality.json``, which name the engine and hash
the engine's own intermediate files) must have the same SHA-256 on every engine and under
the memory cap; a difference is a failure (exit 1).

What is measured, per run: wall seconds of the child process; CPU seconds (user + system)
of the child and every process under it (the Spark JVM and its Python workers), sampled
from ``/proc`` every 0.2 s and at least what ``os.wait4`` reports; peak RSS, the largest sum
of the RSS of that process tree seen (shared pages counted once per process) and at least
the child's ``ru_maxrss``; the load average before and after (the machine is shared).
Growth is each number divided by the same engine's at x1. And the child's own peak RSS in
each step of the job (:class:`_memory.StepPeaks`), which shows where the memory goes: for a run
under ``--out-of-core``, whether it stays near its cap and which step does not.

    python benchmarks/bench_scale.py --world DIR [--scales 1 4 16] [--engines duckdb spark]
        [--spark-scales 1 4] [--out-of-core 4GB] [--cohort 500000] [--tmp DIR] [--keep]

``--engines`` with no engine and ``--out-of-core SIZE`` runs only the capped DuckDB.

Scaled worlds, the loaded table and workspaces go under ``--tmp`` (default: a temporary
directory); with ``--keep`` they stay, and a later run with the same ``--tmp`` reuses the
scaled worlds and the loaded table (not the workspaces).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _jobs import (
    INGESTED,
    JOB_FILE,
    REQUESTS,
    code_state,
    load_average,
    machine,
    progress,
    world_persons,
    write_cohort,
    write_job,
)
from _memory import StepPeaks, Watch

#: Each registry's period column first, then the other dates that move with it.
SHIFTED = {
    "npr": ("start_date", "end_date"),
    "dodsarsaksregisteret": ("death_date",),
    "kreftregisteret": ("diagnosis_date",),
    "reseptregisteret": ("dispensing_date",),
}
NOW = datetime.datetime(2026, 3, 2, 9, 0, tzinfo=datetime.UTC)  # every run's fixed clock
SEED = 17  # every run's randomness (serial numbers, transfers' nonces, workspace keys)
KEK = bytes(32)  # the benchmark's throwaway key-wrapping key, for a synthetic world only
SKIPPED = ("manifest.json", "quality.json")  # name the engine, hash engine-written files


# --- the scaled worlds ----------------------------------------------------------------------


def replicate_sql(source: Path, dates: tuple[str, ...], k: int) -> str:
    """The rows of ``source`` ``k`` times, replica ``j`` with its dates ``j`` days later
    within the period date's year (see the module docstring)."""
    period = dates[0]
    moved = f"s.{period} + r.j"
    shift = f"coalesce(CASE WHEN year({moved}) = year(s.{period}) THEN r.j ELSE r.j - 365 END, 0)"
    replaced = ", ".join(f"s.{c} + {shift} AS {c}" for c in dates)
    literal = str(source).replace("'", "''")
    return (
        f"SELECT s.* REPLACE ({replaced}) FROM read_parquet('{literal}') s "
        f"CROSS JOIN (SELECT CAST(range AS INTEGER) AS j FROM range({k})) r"
    )


def write_replicated(source: Path, target: Path, dates: tuple[str, ...], k: int) -> None:
    """``target`` (a new file, never one shared through a hard link) from ``source``."""
    import duckdb

    partial = target.with_name(target.name + ".partial")
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET preserve_insertion_order = false")
        con.execute("SET enable_progress_bar = false")
        literal = str(partial).replace("'", "''")
        con.execute(
            f"COPY ({replicate_sql(source, dates, k)}) TO '{literal}' "
            "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1000000)"
        )
    finally:
        con.close()
    target.unlink(missing_ok=True)  # a hard link to the source world: unlinked, not written
    partial.rename(target)


def scaled_world(source: Path, dest: Path, k: int, cohort: int, cohort_seed: int) -> float:
    """The world ``xk`` at ``dest`` (reused when made before); seconds taken to make it."""
    marker = dest / ".bench-scale.json"
    wanted = {"source": str(source.resolve()), "k": k, "cohort": cohort, "seed": cohort_seed}
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        return 0.0
    started = time.perf_counter()
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-al", str(source), str(dest)], check=True)
    for name in (JOB_FILE, "cohort_bench.parquet", marker.name):  # written below: not linked
        (dest / name).unlink(missing_ok=True)
    for r in REQUESTS:
        if r.id not in INGESTED and k > 1:
            write_replicated(source / r.file, dest / r.file, SHIFTED[r.id], k)
    write_cohort(dest, cohort, cohort_seed)
    write_job(dest, "parquet")
    marker.write_text(json.dumps(wanted))
    return time.perf_counter() - started


def scaled_table(loaded: Path, dest: Path, k: int) -> None:
    """Each ingested registry's loaded table (in ``loaded``) replicated ``k`` times into
    ``dest``, with its ingest counts multiplied and its table hash recomputed."""
    from koble.digests import sha256_file
    from koble.linkage import names

    if (dest / "done").is_file():
        return
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for registry in INGESTED:
        table, counts_file = names.ingested(registry), names.ingest_counts(registry)
        if k == 1:
            os.link(loaded / table, dest / table)
        else:
            write_replicated(loaded / table, dest / table, SHIFTED[registry], k)
        counts = json.loads((loaded / counts_file).read_text())
        for key in ("rows_sent", "rows_stored", "rows_rejected"):
            counts[key] *= k
        counts["by_reason"] = {reason: n * k for reason, n in counts["by_reason"].items()}
        counts["table_sha256"] = sha256_file(dest / table)
        (dest / counts_file).write_text(json.dumps(counts, indent=2))
    (dest / "done").touch()


def registry_rows(world: Path, tables: Path) -> tuple[int, float]:
    """Rows and Parquet GiB of the job's registries in a scaled world."""
    import pyarrow.parquet as pq

    from koble.linkage import names

    files = [world / r.file for r in REQUESTS if r.id not in INGESTED]
    files += [tables / names.ingested(registry) for registry in INGESTED]
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return rows, sum(f.stat().st_size for f in files) / 2**30


# --- child phases ---------------------------------------------------------------------------


def phase_load(world: Path, work: Path, workspace: Path) -> dict[str, Any]:
    """The job once on DuckDB with Reseptregisteret's sealed ingest: the loaded table."""
    from koble.linkage.executor import run_job
    from koble.linkage.sources import synthetic_sources
    from koble.linkage.workspace import party_dir
    from koble.pseudonym.keystore import RawKek

    result = run_job(
        world / JOB_FILE, workspace, keys_dir=work / "keys", kek=RawKek(KEK),
        sources=synthetic_sources(world), now=lambda: NOW, randbytes=os.urandom,
    )  # fmt: skip
    stores = {r: str(workspace / party_dir(f"registry:{r}") / "store") for r in INGESTED}
    return {"seconds": result.seconds, "stores": stores}


def phase_job(
    world: Path, work: Path, workspace: Path, tables: Path, engine: str, memory: str | None
) -> dict[str, Any]:
    """The job on ``engine`` with the ingested tables of ``tables`` already loaded."""
    from koble.linkage import names
    from koble.linkage.executor import run_job
    from koble.linkage.sources import synthetic_sources
    from koble.linkage.workspace import party_dir
    from koble.pseudonym.keystore import RawKek

    for registry in INGESTED:
        store = workspace / party_dir(f"registry:{registry}") / "store"
        store.mkdir(parents=True, exist_ok=True)
        for name in (names.ingested(registry), names.ingest_counts(registry)):
            os.link(tables / name, store / name)
    peaks = StepPeaks()
    result = run_job(
        world / JOB_FILE, workspace, keys_dir=work / "keys", kek=RawKek(KEK),
        sources=synthetic_sources(world), now=lambda: NOW,
        randbytes=random.Random(SEED).randbytes, engine=engine, memory_limit=memory,
        on_step=peaks.on_step,
    )  # fmt: skip
    hashes = {
        p.relative_to(result.delivery).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(result.delivery.rglob("*"))
        if p.is_file() and p.name not in SKIPPED
    }
    rows = {r.id: int(result.stats[f"{r.id}-extract"]["rows_delivered"]) for r in REQUESTS}
    kept = work / "hashes" / f"{workspace.name}.json"  # outlives the workspace, for a later check
    kept.parent.mkdir(exist_ok=True)
    kept.write_text(json.dumps({"rows": rows, "hashes": hashes}, indent=1, sort_keys=True))
    return {"total_seconds": result.total_seconds, "seconds": result.seconds, "rows": rows,
            "hashes": hashes, "peaks": peaks.gib}  # fmt: skip


# --- running a child and watching its process tree ------------------------------------------


@dataclass(frozen=True)
class Measured:
    result: dict[str, Any]
    wall: float
    cpu: float
    rss_gib: float
    load: tuple[float, float]  # 1-minute load average before, after


def run_child(args: list[str], cwd: Path) -> Measured:
    """A phase in a fresh interpreter (working directory ``cwd``: DuckDB spills there)."""
    before = os.getloadavg()[0]
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *args],
                             stdout=subprocess.PIPE, text=True, cwd=cwd)  # fmt: skip
    watch = Watch(child.pid)
    sampler = threading.Thread(target=watch.run, daemon=True)
    sampler.start()
    assert child.stdout is not None
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    watch.done.set()
    sampler.join()
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise SystemExit(f"phase {' '.join(args[:4])} failed (exit {code})")
    cpu = max(usage.ru_utime + usage.ru_stime, sum(watch.cpu.values()))
    rss = max(watch.peak_rss, usage.ru_maxrss * 1024) / 2**30
    result = json.loads(out.strip().splitlines()[-1])
    return Measured(result, wall, cpu, rss, (before, os.getloadavg()[0]))


# --- main -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    engine: str  # "duckdb", "spark", or "duckdb ≤ 4GB"
    scale: int
    registry_rows: int
    registry_gib: float
    measured: Measured

    @property
    def delivered(self) -> int:
        return sum(self.measured.result["rows"].values())


def table(rows: list[Row], same: dict[tuple[str, int], bool]) -> None:
    """The markdown table; growth is against the same engine's smallest scale."""
    print("| engine | scale | registry rows | registry Parquet GiB | rows delivered | wall s "
          "| CPU s | peak RSS GiB | wall growth | CPU growth | RSS growth "
          "| load 1 min before → after | same data files as DuckDB |")  # fmt: skip
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|")
    first: dict[str, Row] = {}
    for r in sorted(rows, key=lambda r: r.scale):
        first.setdefault(r.engine, r)
    for r in rows:
        m, base = r.measured, first[r.engine].measured
        wall = f"{m.wall / base.wall:.2f}x"
        cpu = f"{m.cpu / base.cpu:.2f}x"
        rss = f"{m.rss_gib / base.rss_gib:.2f}x"
        equal = "yes" if same[(r.engine, r.scale)] else "NO"
        if r.engine == "duckdb":
            equal = "(reference)"
        print(f"| {r.engine} | x{r.scale} | {r.registry_rows:,} | {r.registry_gib:.2f} | "
              f"{r.delivered:,} | {m.wall:.1f} | {m.cpu:.1f} | {m.rss_gib:.2f} | {wall} "
              f"| {cpu} | {rss} | {m.load[0]:.2f} → {m.load[1]:.2f} | {equal} |")  # fmt: skip


def step_table(rows: list[Row]) -> None:
    """Each step's peak RSS (GiB) in each run: where the memory goes, and whether a capped
    DuckDB stays near its cap."""
    labels = [f"{r.engine} x{r.scale}" for r in rows]
    steps = list(dict.fromkeys(s for r in rows for s in r.measured.result.get("peaks", {})))
    print("| step | " + " | ".join(labels) + " |")
    print("|---|" + "--:|" * len(rows))
    for step in steps:
        peaks = [r.measured.result.get("peaks", {}).get(step) for r in rows]
        print(f"| {step} | " + " | ".join("" if g is None else f"{g:.2f}" for g in peaks) + " |")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--world", type=Path, required=True, help="a `koble synth` world (read only)")
    p.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--engines", nargs="*", choices=["duckdb", "spark"],
                   default=["duckdb", "spark"],
                   help="none with --out-of-core: only the capped DuckDB")  # fmt: skip
    p.add_argument("--spark-scales", type=int, nargs="+",
                   help="the scales Spark runs at [all of --scales]")  # fmt: skip
    p.add_argument("--out-of-core", metavar="SIZE", help="also DuckDB capped at SIZE, e.g. 4GB")
    p.add_argument("--cohort", type=int, default=500_000)
    p.add_argument("--cohort-seed", type=int, default=1)
    p.add_argument("--tmp", type=Path, help="where scaled worlds and workspaces go")
    p.add_argument("--keep", action="store_true", help="keep scaled worlds and workspaces")
    p.add_argument("--phase", help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--workspace", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--tables", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--engine", help=argparse.SUPPRESS)
    p.add_argument("--memory", help=argparse.SUPPRESS)
    return p.parse_args()


def main() -> None:
    args = parse()
    if args.phase == "load":
        print(json.dumps(phase_load(args.world, args.work, args.workspace)))
        return
    if args.phase == "job":
        print(json.dumps(phase_job(args.world, args.work, args.workspace, args.tables,
                                   args.engine, args.memory)))  # fmt: skip
        return
    if args.scales[0] != 1 and 1 not in args.scales:
        print("Note: without x1 there is no growth to show.", file=sys.stderr)
    command = shlex.join([".venv/bin/python", *sys.argv])
    print(f"# koble scale benchmark\n\n```\n{command}\n```\n")
    print(f"Code: {code_state()}\n")
    print(f"{machine()}\n")
    tmp = args.tmp or Path(tempfile.mkdtemp(prefix="koble-bench-scale-"))
    tmp.mkdir(parents=True, exist_ok=True)
    work = tmp / "work"
    print(f"World {args.world}: {world_persons(args.world):,} persons; cohort "
          f"{args.cohort:,}; delivery parquet; scaled worlds under {tmp}.\n")  # fmt: skip
    engines = sorted(set(args.engines), key=lambda e: e != "duckdb")  # DuckDB is the reference
    runs: list[tuple[str, str | None]] = [(e, None) for e in engines]
    if args.out_of_core:
        runs.append(("duckdb", args.out_of_core))
    rows: list[Row] = []
    same: dict[tuple[str, int], bool] = {}
    try:
        world1 = tmp / "x1"
        progress("the x1 world")
        scaled_world(args.world, world1, 1, args.cohort, args.cohort_seed)
        loaded = tmp / "loaded"
        if not (loaded / "done").is_file():
            progress("Reseptregisteret's sealed ingest (once, on DuckDB)")
            shutil.rmtree(work / "ws-load", ignore_errors=True)
            shutil.rmtree(work / "keys", ignore_errors=True)
            work.mkdir(parents=True, exist_ok=True)
            load = run_child(["--phase", "load", "--world", str(world1), "--work", str(work),
                              "--workspace", str(work / "ws-load")], work)  # fmt: skip
            shutil.rmtree(loaded, ignore_errors=True)
            loaded.mkdir()
            for store in load.result["stores"].values():
                for f in Path(store).iterdir():
                    os.link(f, loaded / f.name)
            (loaded / "done").touch()
            shutil.rmtree(work / "ws-load", ignore_errors=True)
            took = {k: round(v, 1) for k, v in load.result["seconds"].items()
                    if k.startswith("ingest-")}  # fmt: skip
            print(
                f"Sealed ingest of the x1 feed (not in the table): {took} s, the whole "
                f"first run {load.wall:.0f} s, peak RSS {load.rss_gib:.1f} GiB.\n"
            )
        for k in sorted(args.scales):
            world = tmp / f"x{k}"
            if k != 1:
                progress(f"the x{k} world")
            made = scaled_world(args.world, world, k, args.cohort, args.cohort_seed)
            tables = tmp / f"tables-x{k}"
            scaled_table(loaded, tables, k)
            n, gib = registry_rows(world, tables)
            if made:
                print(f"x{k}: world made in {made:.0f} s ({n:,} registry rows).\n")
            reference: dict[str, str] | None = None
            for engine, memory in runs:
                if engine == "spark" and k not in (args.spark_scales or args.scales):
                    continue
                label = engine if memory is None else f"{engine} ≤ {memory}"
                progress(f"x{k} on {label}")
                workspace = work / f"ws-x{k}-{engine}{'-' + memory if memory else ''}"
                shutil.rmtree(workspace, ignore_errors=True)
                argv = ["--phase", "job", "--world", str(world), "--work", str(work),
                        "--workspace", str(workspace), "--tables", str(tables),
                        "--engine", engine]  # fmt: skip
                measured = run_child(argv + (["--memory", memory] if memory else []), work)
                hashes = measured.result["hashes"]
                if reference is None:
                    reference = hashes
                same[(label, k)] = hashes == reference
                rows.append(Row(label, k, n, gib, measured))
                print(f"<!-- x{k} {label}: {measured.wall:.1f} s wall, {measured.cpu:.1f} s "
                      f"CPU, {measured.rss_gib:.2f} GiB, {n:,} registry rows, "
                      f"{rows[-1].delivered:,} delivered, same data files as the first run "
                      f"at x{k}: {same[(label, k)]}, steps "
                      + json.dumps({s: round(t, 1) for s, t in
                                    measured.result["seconds"].items()})
                      + ", peak RSS GiB by step " + json.dumps(measured.result["peaks"])
                      + " -->",
                      flush=True)  # fmt: skip
                if not args.keep:
                    shutil.rmtree(workspace, ignore_errors=True)
            if not args.keep and k != 1:
                shutil.rmtree(world, ignore_errors=True)
                shutil.rmtree(tables, ignore_errors=True)
    finally:
        shutil.rmtree(work / ".tmp", ignore_errors=True)
        if not args.keep and args.tmp is None:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    table(rows, same)
    print("\nPeak RSS GiB of the child process in each step (its high-water mark reset as the "
          "step starts; a Spark JVM is not in it):\n")  # fmt: skip
    step_table(rows)
    failed = [f"{e} x{k}" for (e, k), ok in same.items() if not ok]
    print(f"\nLoad average at the end: {load_average()} (other work on the machine skews the "
          "times; CPU seconds are less affected).")  # fmt: skip
    if failed:
        print(f"\nMISMATCH: the delivered data files differ from DuckDB's at: {', '.join(failed)}")
        sys.exit(1)
    print("\nEvery engine delivered byte-identical data files at every scale.")


if __name__ == "__main__":
    main()
