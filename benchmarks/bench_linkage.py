"""Benchmark: a national linkage job against a hand-written script doing the same data work.

What is compared, and why. koble runs a distributed linkage job as a protocol between
parties (operator, TTP, one registry per source, researcher): the operator validates the
cohort and gives every person a løpenummer, each registry receives its person list as a
sealed, signed transfer and extracts the approved variables and period with one SQL join
(DuckDB), the pseudonymous registry is reached through the TTP, and the operator signs a
manifest that the researcher checks before keeping the delivery. The practical lower bound
for the *data work* in that job is a hand-written script on the same files and the same
keys, with no parties, no sealed transfers and no reports, that still does every piece of
data work honestly (issue 17, part 5):

1. identifier checks: the cohort's column through koble's vectorised ``validate_column``
   (mod-11 check digits, dates, D- and H-numbers, as the operator's step checks them), the
   invalid rows dropped;
2. identity history: the history's chains followed in SQL (a recursive CTE), the cohort
   resolved to current numbers and deduplicated, and every older number of those persons
   added to the key list (registries hold events under them);
3. keyed løpenummer, as koble computes them: each person's number encrypted under the
   operator keyset's project domain (koble's AES scheme, ``DomainCipher``) and numbered in
   ciphertext order: the very løpenummer koble assigns, not ``random()``;
4. AES pseudonyms for the pseudonymous registry (Reseptregisteret): the persons' current
   numbers pseudonymised under the TTP keyset's registry domain, joined to the table that
   registry holds (its feed as sealed ingest loaded it, keyed by pseudonym);
5. one ``COPY (SELECT ... JOIN ... WHERE year BETWEEN ... ORDER BY løpenummer, variables)
   TO '....parquet' (COMPRESSION zstd)`` per registry.

Both sides deliver the same rows with the same løpenummer; the benchmark asserts it (rows,
persons and, for Parquet, every delivered row, løpenummer included, compared both ways with
``EXCEPT ALL``). Target: koble's process within 1.3x of the script's, at every world given
(1 M and 5.5 M persons in one run: ``--world`` twice).

Each side runs in a fresh child process, alternating, ``--repeat`` times, best kept; koble's
modules are compiled to bytecode first, as an installed koble's are
(:func:`_jobs.compile_bytecode`: with ``PYTHONDONTWRITEBYTECODE`` set, each koble child
would otherwise compile its hundred modules from source, the script its thirty), and koble's
child sets its process up as ``koble run`` does (:func:`phase_koble`). The
compared time is the child's wall time from start to exit (interpreter, imports, keys,
work: what an operator waits for); its CPU time (user + system, every thread) and peak RSS
(``ru_maxrss``) come from ``os.wait4``, and on a shared machine the CPU ratio is the
steadier one. Inside, each side times its steps, in wall and in CPU seconds (the
process's, every thread: koble's from :attr:`koble.linkage.executor.RunResult.cpu_seconds`),
so the table also shows where the difference goes, the start-up (interpreter and imports)
included.

Reseptregisteret's sealed ingest is a monthly pre-job load, not part of a job: koble runs
the job once in a fresh workspace (this first run includes the ingest, ``ingest-...``),
then the compared runs start from fresh workspaces whose registry store already holds the
loaded table (a symbolic link to the first run's: the registry's store keeps its table from
job to job, untouched, where a hard link would move the file's change time every run), with
the same long-lived keys, which the script also uses. koble remembers the SHA-256 of a large
table across processes (:func:`koble.digests.sha256_file`: same inode, size, modification and
change time), so a registry's table is hashed once per change, not once per job; the first
run fills that cache, and ``KOBLE_DIGEST_CACHE=off`` measures every run with the hashing.
``--reuse`` keeps that first run (``bench-linkage/`` in the world directory) and starts
from it next time. With ``--format`` other than ``parquet``, koble also pays for the
Stata/SPSS/SAS/CSV writer while the script writes Parquet.

The world is made by ``koble synth`` if ``--world`` does not hold one; the cohort
(``cohort_bench.parquet``, ``--cohort`` persons, default one in eleven of the world's: 500 k
of 5.5 M), the job file (``job_bench.toml``) and a work directory (``bench-linkage/``,
removed afterwards unless ``--keep`` or ``--reuse``) are written into the world directory:
point it at a copy made of hard links (``cp -al``) of a world that must stay untouched.

    python benchmarks/bench_linkage.py [--world DIR ...] [--persons N ...] [--cohort N]
                                       [--quick] [--format parquet] [--seed 2025]
                                       [--repeat R] [--keep] [--reuse]
"""

from __future__ import annotations

import argparse
import contextlib
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _jobs import (
    REQUESTS,
    code_state,
    compile_bytecode,
    load_average,
    progress,
    write_cohort,
    write_job,
)
from _linkage_phases import KEK_ENV, Run, best, phase_baseline, phase_koble, run_child
from _linkage_report import Outcome, compare, koble_file, print_summary, report, sec

KEK_FILE = "kek.hex"  # the same, kept in the work directory for --reuse
LOAD_FILE = "load.json"  # the first run's result, kept for --reuse
WORK = "bench-linkage"
COHORT_SHARE = 11  # the default cohort: one person in eleven (500 k of 5.5 M)


def ensure_world(world: Path, persons: int, seed: int) -> tuple[int, float | None]:
    """Generate the world with ``koble synth`` in a child unless ``world`` holds one."""
    manifest = world / "manifest.json"
    if manifest.is_file():
        return int(json.loads(manifest.read_text())["config"]["persons"]), None
    world.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "koble", "synth", "--persons", str(persons), "--seed",
           str(seed), "--out", str(world)]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return persons, time.perf_counter() - started


def parse() -> argparse.Namespace:
    """The options, with ``--quick``'s world and the defaults that depend on it filled in."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--world", type=Path, action="append",
                   help="a `koble synth` world (made if missing); repeat for several")  # fmt: skip
    p.add_argument("--persons", type=int, action="append",
                   help="persons of each world generated [5500000]")  # fmt: skip
    p.add_argument("--cohort", type=int, help="cohort size [one in eleven of the persons]")
    p.add_argument("--quick", action="store_true", help="one world of 200k persons")
    p.add_argument("--format", default="parquet", help="the delivery format [parquet]")
    p.add_argument("--seed", type=int, default=2025, help="world seed, if generated [2025]")
    p.add_argument("--cohort-seed", type=int, default=1)
    p.add_argument("--tmp", type=Path, help="where worlds without --world are generated")
    p.add_argument(
        "--repeat", type=int, help="compared runs of each side, best kept [3; 5 with --quick]"
    )
    p.add_argument("--keep", action="store_true", help="keep the work directories")
    p.add_argument("--reuse", action="store_true",
                   help="keep the first run (ingest, keys) and start from a kept one")  # fmt: skip
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--phase", help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--workspace", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--preload", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.persons = [200_000]
    args.persons = args.persons or [5_500_000]
    args.world = args.world or []
    if args.world and len(args.persons) not in (1, len(args.world)):
        p.error("give --persons once, or once per --world")
    if args.repeat is None:
        args.repeat = 5 if args.quick else 3
    return args


def bench_world(args: argparse.Namespace, world: Path, persons_asked: int) -> Outcome:
    """Both sides on one world, ``--repeat`` times each, alternating; prints the tables."""
    import polars as pl

    persons, generated = ensure_world(world, persons_asked, args.seed)
    made = f"generated in {generated:.0f} s" if generated is not None else "reused"
    n = args.cohort or persons // COHORT_SHARE
    cohort = write_cohort(world, n, args.cohort_seed)
    write_job(world, args.format)
    rows = {r.registry: pl.scan_parquet(world / r.file).select(pl.len()).collect().item()
            for r in REQUESTS}  # fmt: skip
    print(f"\n## {persons:,} persons, cohort {n:,}\n")
    print(f"World {world} ({made}): " + ", ".join(f"{k} {v:,} rows" for k, v in rows.items())
          + f"; cohort {n:,} persons ({cohort.name}); delivery {args.format}; load average "
          f"{load_average()}.")  # fmt: skip
    work = world / WORK
    kept = work / KEK_FILE
    reuse = args.reuse and kept.is_file() and (work / LOAD_FILE).is_file()
    if not reuse:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        kept.write_text(os.urandom(32).hex())  # a throwaway KEK for this work directory
        kept.chmod(0o600)
    for old in work.glob("ws-job-*"):
        shutil.rmtree(old)
    env = {KEK_ENV: kept.read_text().strip()}
    common = ["--world", str(world), "--work", str(work)]
    load_ws = work / "ws-load"
    try:
        if reuse:
            load: Run = tuple(json.loads((work / LOAD_FILE).read_text()))
        else:
            progress(f"{world.name}: koble, first run (with the ingest)")
            load = run_child(["--phase", "koble", *common, "--workspace", str(load_ws)], env)
            (work / LOAD_FILE).write_text(json.dumps(load))
        jobs: list[Run] = []
        bases: list[Run] = []
        for i in range(1, args.repeat + 1):
            progress(f"{world.name}: koble, compared run {i} of {args.repeat}")
            jobs.append(run_child(["--phase", "koble", *common, "--workspace",
                                   str(work / f"ws-job-{i}"), "--preload", str(load_ws)],
                                  env))  # fmt: skip
            progress(f"{world.name}: script, run {i} of {args.repeat}")
            bases.append(run_child(["--phase", "baseline", *common, "--out",
                                    str(work / f"script-{i}"), "--preload", str(load_ws)],
                                   env))  # fmt: skip
        job, base = best(jobs), best(bases)
        delivery = Path(job[0]["delivery"])
        checks = {
            r.registry: compare(koble_file(delivery, r.id),
                                work / "script-1" / f"{r.registry}.parquet", r.variables)
            for r in REQUESTS
        }  # fmt: skip
        same = report(load, job, base, checks)
        print("\nEvery run, wall (CPU) s: " + "; ".join(
            f"{name} " + ", ".join(f"{sec(r[1])} ({sec(r[2])})" for r in done)
            for name, done in (("koble", jobs), ("script", bases))
        ) + f". Load average at the end: {load_average()}.")  # fmt: skip
    finally:
        if not (args.keep or args.reuse):
            shutil.rmtree(work, ignore_errors=True)
        else:
            for old in [*work.glob("ws-job-*"), *work.glob("script-*")]:
                shutil.rmtree(old, ignore_errors=True)
    return Outcome(world, persons, n, job[1], base[1], job[2], base[2], same)


def main() -> None:
    """Do a child's phase and print its JSON, or run both sides on every world and print the
    tables; exit 1 unless every world meets the target."""
    args = parse()
    if args.phase:
        if args.phase == "koble":
            result = phase_koble(args.world[0], args.work, args.workspace, args.preload)
        else:
            result = phase_baseline(args.world[0], args.out, args.work, args.preload)
        print(json.dumps(result))
        return

    import duckdb
    import polars as pl

    from koble.digests import digest_cache_path

    command = shlex.join([".venv/bin/python", *sys.argv])
    print(f"# koble linkage-job benchmark\n\n```\n{command}\n```\n")
    print(f"Code: {code_state()}; {compile_bytecode()}\n")
    print(
        f"{platform.node()}, {platform.processor() or platform.machine()}, {os.cpu_count()} "
        f"cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
        f"Python {platform.python_version()}, DuckDB {duckdb.__version__}, Polars "
        f"{pl.__version__}; load average at start {load_average()}; koble's digest cache "
        f"{digest_cache_path() or 'off'}"
    )  # fmt: skip
    outcomes = []
    with contextlib.ExitStack() as stack:
        if args.world:
            sizes = args.persons * len(args.world) if len(args.persons) == 1 else args.persons
            worlds = list(zip(args.world, sizes, strict=True))
        else:
            temporary = tempfile.TemporaryDirectory(prefix="koble-bench-linkage-", dir=args.tmp)
            made = Path(stack.enter_context(temporary))
            worlds = [(made / f"world-{n}", n) for n in args.persons]
        for world, persons in worlds:
            outcomes.append(bench_world(args, world, persons))
    print_summary(outcomes, args.repeat)
    sys.exit(0 if all(o.met for o in outcomes) else 1)


if __name__ == "__main__":
    main()
