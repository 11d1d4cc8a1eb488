"""Benchmark: a complete linkage job at national scale against the same joins in DuckDB SQL.

What is compared, and why. koble runs a distributed linkage job as a protocol between
parties (operator, TTP, one registry per source, researcher): the operator validates the
cohort and gives every person a løpenummer, each registry receives its person list as a
sealed, signed transfer and extracts the approved variables and period with one SQL join
(DuckDB), the pseudonymous registry is reached through the TTP, and the operator signs a
manifest that the researcher checks before keeping the delivery. The practical lower bound
for the *data work* in that job is a hand-written DuckDB script on the same files, with no
parties, no encryption, no reports: read the cohort, dedupe, number the persons in a random
order (``row_number() OVER (ORDER BY random())``), add the persons' older identifiers from
the identity history (koble's key list does, and the registries hold events under them), and
``COPY (SELECT ... FROM read_parquet(registry) JOIN persons ... WHERE year BETWEEN ...)`` to
one Parquet file per registry, sorted like koble's extracts (løpenummer, then the variables).
Both sides deliver the same rows; the benchmark asserts it (row and person counts, and the
multiset of delivered values per registry without the løpenummer). Target: koble's job
within 2x of the direct DuckDB script.

Reseptregisteret is pseudonymous: its feed (with fødselsnummer) goes through koble's sealed
ingest at the TTP into a registry table keyed by a pseudonym. That load is a monthly pre-job
task, not part of a job, so it is timed and reported but left out of the comparison: koble
runs the job once in a fresh workspace (this run includes the ingest, ``ingest-...``), then
again in a second fresh workspace whose registry store already holds the loaded table (a
hard link), with the same long-lived keys; the compared runs (``--repeat``, best kept) are
those. The baseline joins the raw feed on fødselsnummer (what a script with access to the
feed would do); koble joins on the pseudonym after the TTP pseudonymises the cohort, which
is part of its job. For information, the same ``COPY`` on koble's pseudonymised table is
also timed (the TTP route's own lower bound), apart from the totals.

koble's ``load_feed`` ingests the feed a million rows at a time (bounded memory). The
baseline always writes Parquet, so with ``--format`` other than ``parquet`` koble also
pays for the Stata/SPSS/SAS/CSV writer.

Every phase runs in a fresh child process, so each peak RSS (``ru_maxrss``, read with
``os.wait4``) is that phase's alone. The world is made by ``koble synth`` if ``--world`` does
not hold one; the cohort file (``cohort_bench.parquet``), the job file
(``job_bench.toml``) and a work directory (``bench-linkage/``, removed afterwards unless
``--keep``) are written into the world directory.

    python benchmarks/bench_linkage.py [--quick] [--persons 5500000] [--cohort 500000]
                                       [--world DIR] [--format parquet] [--seed 2025]
                                       [--repeat R] [--keep]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGET = 2.0
KEK_ENV = "KOBLE_BENCH_KEK"  # hex of the run's throwaway 32-byte KEK, for the child processes
WORK = "bench-linkage"
COHORT_FILE = "cohort_bench.parquet"
JOB_FILE = "job_bench.toml"
INGESTED = ("reseptregisteret",)


@dataclass(frozen=True)
class Request:
    """One registry of the job: the job's id, the world's file, its id and period columns."""

    registry: str  # as the job names it
    file: str  # relative to the world
    date_column: str
    variables: tuple[str, ...]
    start: int
    end: int
    approval: str
    canonical: str = ""  # the catalogue id koble names its steps and files by, if different

    @property
    def id(self) -> str:
        return self.canonical or self.registry


REQUESTS = (
    Request("npr", "npr.parquet", "start_date",
            ("start_date", "end_date", "care_level", "icd10_main"), 2015, 2024,
            'kind = "rek", reference = "REK 2026/12345"'),
    Request("dar", "dar.parquet", "death_date", ("death_date", "underlying_cause"), 2015, 2025,
            'kind = "rek", reference = "REK 2026/12345"', "dodsarsaksregisteret"),
    Request("kreftregisteret", "kreftregisteret.parquet", "diagnosis_date",
            ("diagnosis_date", "icd10", "stage"), 2015, 2024,
            'kind = "rek", reference = "REK 2026/12345"'),
    Request("reseptregisteret", "feeds/reseptregisteret.parquet", "dispensing_date",
            ("atc", "ddd", "dispensing_date"), 2015, 2021,
            'kind = "helsedataservice", reference = "HDS 26/00042"'),
)  # fmt: skip


# --- set-up ---------------------------------------------------------------------------------


def peak_rss_gib(usage: Any) -> float:
    return float(usage.ru_maxrss) / 2**20  # KiB on Linux


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


def write_cohort(world: Path, n: int, seed: int) -> Path:
    """``n`` current identifiers sampled (seeded) from the population, as column ``fnr``."""
    import polars as pl

    ids = pl.read_parquet(world / "population.parquet", columns=["person_id"])
    if n > ids.height:
        raise SystemExit(f"--cohort {n} is more than the world's {ids.height} persons")
    cohort = ids.sample(n, seed=seed, shuffle=True).select(pl.col("person_id").alias("fnr"))
    path = world / COHORT_FILE
    cohort.write_parquet(path)
    return path


def write_job(world: Path, fmt: str) -> Path:
    """The job, in the format of ``koble.linkage.demo_jobs.DISTRIBUTED``."""
    lines = [
        "[project]",
        'id = "P2026-900"',
        'title = "Benchmark: national cohort linked with NPR, DÅR, Kreftregisteret and '
        'Reseptregisteret"',
        "",
        "[population]",
        f'file = "{COHORT_FILE}"',
        'id_column = "fnr"',
        "",
        "[recipient]",
        'name = "Kari Nordmann"',
        'organisation = "Universitetet i Oslo"',
        "",
        "[delivery]",
        f'format = "{fmt}"',
    ]
    for r in REQUESTS:
        variables = ", ".join(f'"{v}"' for v in r.variables)
        lines += [
            "",
            f"[registries.{r.id}]",  # a job names registries by catalogue id
            f"approval = {{ {r.approval} }}",
            f"variables = [{variables}]",
            f"period = {{ start = {r.start}, end = {r.end} }}",
        ]
    path = world / JOB_FILE
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- child phases ---------------------------------------------------------------------------


def phase_koble(world: Path, work: Path, workspace: Path, preload: Path | None) -> dict[str, Any]:
    """Run the job with koble; ``preload``: a workspace whose ingested tables to reuse."""
    from koble.linkage.executor import run_job
    from koble.linkage.sources import synthetic_sources
    from koble.linkage.workspace import party_dir
    from koble.pseudonym.keystore import RawKek
    from koble.registries.catalogue import Catalogue

    kek = RawKek(bytes.fromhex(os.environ[KEK_ENV]))
    catalogue = Catalogue.load()
    if preload is not None:
        for registry in INGESTED:
            party = party_dir(f"registry:{registry}")
            for name in (f"{registry}.parquet", f"{registry}.ingest.json"):  # table, counts
                source = preload / party / "store" / name
                target = workspace / party / "store" / name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(source, target)
    result = run_job(
        world / JOB_FILE, workspace, keys_dir=work / "keys", kek=kek,
        sources=synthetic_sources(world), catalogue=catalogue,
        now=lambda: datetime.datetime.now(datetime.UTC), randbytes=os.urandom,
    )  # fmt: skip
    state = json.loads((workspace / "run.json").read_text())
    steps = [
        {"id": s.id, "party": s.party, "action": s.action, "registry": s.registry}
        for s in result.plan.steps
    ]
    return {
        "route": result.plan.route,
        "refusals": [r.registry for r in result.plan.refusals],
        "steps": steps,
        "seconds": result.seconds,
        "total_seconds": result.total_seconds,
        "stats": result.stats,
        "setup": state.get("setup", {}),
        "delivery": str(result.delivery),
    }


def _registry_sql(r: Request, world: Path, out: Path, *, sort: bool) -> str:
    variables = ", ".join(f"s.{v}" for v in r.variables)
    order = f"ORDER BY k.lopenr, {variables} NULLS LAST" if sort else ""
    return f"""
        COPY (
            SELECT k.lopenr, {variables}
            FROM read_parquet('{world / r.file}') s JOIN key_list k ON s.fnr = k.fnr
            WHERE year(s.{r.date_column}) BETWEEN {r.start} AND {r.end}
            {order}
        ) TO '{out}' (FORMAT parquet)
    """


def phase_baseline(
    world: Path, out_dir: Path, *, sort: bool, workspace: Path | None = None
) -> dict[str, Any]:
    """The hand-written DuckDB script: key list, then one ``COPY`` per registry.

    With ``workspace`` (a finished koble run), also times, apart from the script, the same
    ``COPY`` for each ingested registry on koble's own pseudonymised table and the person
    list the TTP sent it: the TTP route's extract with nothing but DuckDB.
    """
    import duckdb

    out_dir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    rows: dict[str, int] = {}
    started = time.perf_counter()
    con = duckdb.connect(":memory:")
    tick = time.perf_counter()
    # The cohort, deduplicated; a løpenummer per person in a random order; and every older
    # identifier of those persons (the identity history's chains followed to their end), so
    # events recorded under an earlier number are found, as koble's key list finds them.
    con.execute(f"""
        CREATE TEMP TABLE persons AS
        SELECT fnr, row_number() OVER (ORDER BY r) AS lopenr
        FROM (SELECT fnr, random() AS r FROM (SELECT DISTINCT fnr
              FROM read_parquet('{world / COHORT_FILE}') WHERE fnr IS NOT NULL))
    """)  # fmt: skip
    con.execute(f"""
        CREATE TEMP TABLE key_list AS
        WITH RECURSIVE history AS (
            SELECT old_id, current_id FROM read_parquet('{world / "identity_history.parquet"}')
        ), chain(old_id, current_id, depth) AS (
            SELECT old_id, current_id, 1 FROM history
            UNION ALL
            SELECT c.old_id, h.current_id, c.depth + 1
            FROM chain c JOIN history h ON h.old_id = c.current_id
            WHERE c.depth < 16
        ), final AS (
            SELECT old_id, current_id FROM chain
            WHERE current_id NOT IN (SELECT old_id FROM history)
        )
        SELECT fnr, lopenr FROM persons
        UNION ALL
        SELECT f.old_id AS fnr, p.lopenr FROM final f JOIN persons p ON p.fnr = f.current_id
    """)  # fmt: skip
    seconds["keys"] = time.perf_counter() - tick
    for r in REQUESTS:
        tick = time.perf_counter()
        out = out_dir / f"{r.registry}.parquet"
        fetched = con.execute(_registry_sql(r, world, out, sort=sort)).fetchone()
        seconds[r.registry] = time.perf_counter() - tick
        assert fetched is not None
        rows[r.registry] = int(fetched[0])
    con.close()
    total = time.perf_counter() - started
    persons = {}  # untimed: for the check that both sides deliver the same
    con = duckdb.connect(":memory:")
    for r in REQUESTS:
        counted = con.execute(
            f"SELECT count(DISTINCT lopenr) FROM read_parquet('{out_dir / r.registry}.parquet')"
        ).fetchone()
        assert counted is not None
        persons[r.registry] = int(counted[0])
    pseudonym: dict[str, dict[str, float]] = {}
    for registry in INGESTED if workspace is not None else ():
        assert workspace is not None
        r = next(r for r in REQUESTS if r.id == registry)
        store = workspace / f"registry-{registry}" / "store"
        variables = ", ".join(f"s.{v}" for v in r.variables)
        order = f"ORDER BY p.lopenr, {variables} NULLS LAST" if sort else ""
        tick = time.perf_counter()
        fetched = con.execute(f"""
            COPY (
                SELECT p.lopenr, {variables}
                FROM read_parquet('{store / f"{registry}.parquet"}') s
                JOIN read_parquet('{store / f"{registry}_persons.parquet"}') p
                  ON s.fnr_pseudonym = p.pseudonym_{registry}
                WHERE year(s.{r.date_column}) BETWEEN {r.start} AND {r.end}
                {order}
            ) TO '{out_dir / f"{registry}-pseudonym.parquet"}' (FORMAT parquet)
        """).fetchone()  # fmt: skip
        assert fetched is not None
        pseudonym[r.registry] = {"seconds": time.perf_counter() - tick, "rows": int(fetched[0])}
    con.close()
    return {"seconds": seconds, "total_seconds": total, "rows": rows, "persons": persons,
            "pseudonym": pseudonym}  # fmt: skip


def run_child(args: list[str], env: Mapping[str, str]) -> tuple[dict[str, Any], float, float]:
    """Run a phase in a fresh interpreter: (its JSON result, wall seconds, peak RSS GiB)."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE,
                             text=True, env={**os.environ, **env})  # fmt: skip
    assert child.stdout is not None
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise SystemExit(f"phase {args[:2]} failed (exit {code})")
    return json.loads(out.strip().splitlines()[-1]), wall, peak_rss_gib(usage)


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def progress(what: str) -> None:
    sys.stdout.flush()
    print(f"running: {what} ...", file=sys.stderr, flush=True)


def best(runs: list[tuple[dict[str, Any], float, float]]) -> tuple[dict[str, Any], float, float]:
    """The fastest run (its own step times), with the highest peak RSS of all runs."""
    fastest = min(runs, key=lambda r: job_seconds(r[0]))
    return fastest[0], fastest[1], max(r[2] for r in runs)


def job_seconds(result: dict[str, Any]) -> float:
    """A run's total without any sealed ingest (a pre-job load)."""
    ingest = sum(float(v) for k, v in result["seconds"].items() if k.startswith("ingest-"))
    return float(result["total_seconds"]) - ingest


# --- checks and report ----------------------------------------------------------------------


def koble_file(delivery: Path, registry: str) -> Path:
    found = sorted(delivery.glob(f"{registry}_extract.*"))
    if len(found) != 1:
        raise SystemExit(f"no single extract for {registry} in {delivery}: {found}")
    return found[0]


def same_values(koble: Path, baseline: Path, variables: tuple[str, ...]) -> bool | None:
    """The delivered values (without løpenummer) are the same multiset on both sides."""
    if koble.suffix != ".parquet":
        return None  # other formats change types (Stata dates, labels): counts only
    import duckdb

    cols = ", ".join(variables)
    k = f"SELECT {cols} FROM read_parquet('{koble}')"
    b = f"SELECT {cols} FROM read_parquet('{baseline}')"
    con = duckdb.connect(":memory:")
    try:
        diff = con.execute(
            f"SELECT (SELECT count(*) FROM ({k} EXCEPT ALL {b})), "
            f"(SELECT count(*) FROM ({b} EXCEPT ALL {k}))"
        ).fetchone()
    finally:
        con.close()
    assert diff is not None
    return diff == (0, 0)


def ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or not b else f"{a / b:.2f}x"


def sec(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def code_state() -> str:
    """The commit, and a digest of koble/ as it is on disk (it may be uncommitted)."""
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    digest = hashlib.sha256()
    for path in sorted((REPO / "koble").rglob("*.py")):
        digest.update(path.read_bytes())
    return f"commit {head or '?'}, koble/**/*.py sha256 {digest.hexdigest()[:12]}"


def groups(job: dict[str, Any]) -> list[tuple[str, list[str], str | None]]:
    """(label, koble step ids, baseline phase) rows of the comparison, in plan order."""
    steps = [s for s in job["steps"] if s["id"] in job["seconds"]]
    by_registry: dict[str, list[str]] = {}
    keys, delivery, other = [], [], []
    for s in steps:
        if s["action"] == "assign_serials":
            keys.append(s["id"])
        elif s["action"] in ("deliver", "receive"):
            delivery.append(s["id"])
        elif s["registry"] is not None and s["action"] != "refuse":
            by_registry.setdefault(s["registry"], []).append(s["id"])
        else:
            other.append(s["id"])
    rows: list[tuple[str, list[str], str | None]] = [("cohort → key list", keys, "keys")]
    for r in REQUESTS:
        rows.append((r.id, by_registry[r.id], r.registry))
    rows.append(("delivery: manifest, reports, researcher's check", delivery, None))
    if other:
        rows.append(("other steps", other, None))
    return rows


def report(
    args: argparse.Namespace,
    load: tuple[dict[str, Any], float, float],
    job: tuple[dict[str, Any], float, float],
    base: tuple[dict[str, Any], float, float],
    unsorted: tuple[dict[str, Any], float, float],
    checks: dict[str, bool | None],
) -> bool:
    """Print the tables; True when the target is met."""
    (lj, _, l_rss), (kj, _, k_rss), (bj, _, b_rss), (uj, _, u_rss) = load, job, base, unsorted
    ingest_keys = [k for k in lj["seconds"] if k.startswith("ingest-")]
    ingest = sum(lj["seconds"][k] for k in ingest_keys)
    k_total, b_total = job_seconds(kj), job_seconds(bj)
    print(f"\n## Comparison (koble: a run whose registry tables are already loaded; best of "
          f"{args.repeat} each)\n")  # fmt: skip
    print("| step | koble steps | koble s | DuckDB s | ratio | DuckDB unsorted s |")
    print("|---|---|---:|---:|---:|---:|")
    accounted = 0.0
    for label, ids, phase in groups(kj):
        k = sum(kj["seconds"][i] for i in ids)
        accounted += k
        b = None if phase is None else bj["seconds"][phase]
        u = None if phase is None else uj["seconds"][phase]
        print(f"| {label} | {', '.join(ids)} | {sec(k)} | {sec(b)} | {ratio(k, b)} | {sec(u)} |")
    rest = k_total - accounted
    print(f"| run overhead (plan, keys, workspace, state) | — | {sec(rest)} | — | — | — |")
    print(f"| **total (without ingest)** | | **{sec(k_total)}** | **{sec(b_total)}** | "
          f"**{ratio(k_total, b_total)}** | {sec(uj['total_seconds'])} |")  # fmt: skip
    print(f"| peak RSS (GiB) | | {k_rss:.2f} | {b_rss:.2f} | | {u_rss:.2f} |")
    first = lj["total_seconds"] - ingest
    print(
        f"\nReseptregisteret's sealed ingest (a pre-job load, in the first run only, excluded "
        f"from the comparison; koble's load_feed, a million rows at a time): "
        f"{sec(ingest)} s, peak RSS of that run {l_rss:.2f} GiB; "
        + ", ".join(f"{k.removeprefix('ingest-')}: {json.dumps(lj['setup'].get(k[7:], {}))}"
                    for k in ingest_keys)
        + f". The first run's job without the ingest took {sec(first)} s "
        f"(the compared run: {sec(k_total)} s)."
    )  # fmt: skip
    extract_ok = True
    for registry, found in bj.get("pseudonym", {}).items():
        r = next(r for r in REQUESTS if r.registry == registry)
        k = kj["seconds"][f"{r.id}-extract"]
        delivered = int(kj["stats"][f"{r.id}-extract"]["rows_delivered"])
        extract_ok &= found["rows"] == delivered
        print(
            f"\n{registry} on koble's pseudonymised table (for information; not in the totals): "
            f"the same COPY joined on the pseudonym, with the person list the TTP sent, takes "
            f"DuckDB {sec(found['seconds'])} s for {found['rows']:,} rows; koble's extract step "
            f"{sec(k)} s ({ratio(k, found['seconds'])}). The pseudonymous route joins on a long "
            f"text pseudonym in a larger table, which the comparison above charges to koble."
        )
    pseudonymous = bj.get("pseudonym", {})
    if pseudonymous:
        on_file = b_total + sum(
            found["seconds"] - bj["seconds"][registry] for registry, found in pseudonymous.items()
        )
        print(
            f"\nThe same script with each pseudonymous registry joined on the file that registry "
            f"holds (its pseudonymised table, keyed by the TTP's person list) rather than on the "
            f"raw feed, which the registry may not hold: DuckDB {sec(on_file)} s, koble "
            f"{ratio(k_total, on_file)} of it (for information; the target above is against the "
            f"raw feed)."
        )
    print("\n## Rows delivered (koble = DuckDB asserted)\n")
    print("| registry | koble rows | DuckDB rows | koble persons | DuckDB persons | same values |")
    print("|---|---:|---:|---:|---:|---|")
    ok = True
    for r in REQUESTS:
        stats = kj["stats"][f"{r.id}-extract"]
        kr, br = int(stats["rows_delivered"]), bj["rows"][r.registry]
        kp, bp = int(stats["persons_delivered"]), bj["persons"][r.registry]
        same = checks[r.registry]
        shown = "n/a (not parquet)" if same is None else ("yes" if same else "NO")
        print(f"| {r.registry} | {kr:,} | {br:,} | {kp:,} | {bp:,} | {shown} |")
        ok &= kr == br and kp == bp and same is not False
    print("\n## koble's steps, both runs (seconds)\n")
    print("| step | party | first run (with ingest) | compared run |")
    print("|---|---|---:|---:|")
    for key in ingest_keys:
        print(f"| {key} | ttp, {key[7:]} | {sec(lj['seconds'][key])} | (loaded) |")
    for s in kj["steps"]:
        i = s["id"]
        print(f"| {i} | {s['party']} | {sec(lj['seconds'].get(i))} | {sec(kj['seconds'].get(i))} |")
    print(f"| total | | {sec(lj['total_seconds'])} | {sec(kj['total_seconds'])} |")
    if not ok or not extract_ok:
        print("\nMISMATCH: koble and DuckDB delivered different rows; the times do not compare.")
        return False
    met = k_total <= TARGET * b_total
    print(f"\nTarget (koble ≤ {TARGET:g}x direct DuckDB): "
          f"{'met' if met else 'NOT met'} ({ratio(k_total, b_total)}).")  # fmt: skip
    return met


# --- main -----------------------------------------------------------------------------------


@contextmanager
def world_dir(path: Path | None, tmp: Path | None) -> Iterator[Path]:
    if path is not None:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="koble-bench-linkage-", dir=tmp) as made:
        yield Path(made) / "world"


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--persons", type=int, default=5_500_000)
    p.add_argument("--cohort", type=int, default=500_000)
    p.add_argument("--quick", action="store_true", help="200k persons, 20k cohort")
    p.add_argument("--world", type=Path, help="a `koble synth` world (generated if missing)")
    p.add_argument("--format", default="parquet", help="the delivery format [parquet]")
    p.add_argument("--seed", type=int, default=2025, help="world seed, if generated [2025]")
    p.add_argument("--cohort-seed", type=int, default=1)
    p.add_argument("--tmp", type=Path, help="where a world without --world is generated")
    p.add_argument(
        "--repeat", type=int, help="compared runs of each side, best kept [1; 3 with --quick]"
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--phase", help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--workspace", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--preload", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.persons, args.cohort = 200_000, 20_000
    if args.repeat is None:
        args.repeat = 3 if args.quick else 1
    return args


def main() -> None:
    args = parse()
    if args.phase:
        if args.phase == "koble":
            result = phase_koble(args.world, args.work, args.workspace, args.preload)
        else:
            result = phase_baseline(
                args.world, args.out, sort=args.phase == "baseline", workspace=args.workspace
            )
        print(json.dumps(result))
        return

    import duckdb
    import polars as pl

    command = shlex.join([".venv/bin/python", *sys.argv])
    print(f"# koble linkage-job benchmark\n\n```\n{command}\n```\n")
    print(f"Code: {code_state()}\n")
    print(
        f"{platform.node()}, {platform.processor() or platform.machine()}, {os.cpu_count()} "
        f"cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
        f"Python {platform.python_version()}, DuckDB {duckdb.__version__}, Polars "
        f"{pl.__version__}; load average at start {load_average()}\n"
    )  # fmt: skip
    with world_dir(args.world, args.tmp) as world:
        persons, generated = ensure_world(world, args.persons, args.seed)
        made = f"generated in {generated:.0f} s" if generated is not None else "reused"
        if persons != args.persons:
            print(f"Note: the world at {world} has {persons:,} persons (asked {args.persons:,}).")
        cohort = write_cohort(world, args.cohort, args.cohort_seed)
        write_job(world, args.format)
        rows = {r.registry: pl.scan_parquet(world / r.file).select(pl.len()).collect().item()
                for r in REQUESTS}  # fmt: skip
        print(f"World {world} ({made}): {persons:,} persons, "
              + ", ".join(f"{k} {v:,} rows" for k, v in rows.items())
              + f"; cohort {args.cohort:,} persons ({cohort.name}); "
              f"delivery {args.format}.\n")  # fmt: skip
        work = world / WORK
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        env = {KEK_ENV: os.urandom(32).hex()}
        common = ["--world", str(world), "--work", str(work)]
        try:
            progress("koble, first run (with the ingest)")
            load = run_child(["--phase", "koble", *common,
                              "--workspace", str(work / "ws-load")],
                             env)  # fmt: skip
            jobs, bases, unsorteds = [], [], []
            for i in range(1, args.repeat + 1):
                progress(f"koble, compared run {i} of {args.repeat}")
                jobs.append(run_child(["--phase", "koble", *common, "--workspace",
                                       str(work / f"ws-job-{i}"), "--preload",
                                       str(work / "ws-load")], env))  # fmt: skip
                progress(f"DuckDB, run {i} of {args.repeat}")
                out = work / f"duckdb-{i}"
                bases.append(run_child(["--phase", "baseline", *common, "--out", str(out),
                                        "--workspace", str(work / f"ws-job-{i}")], {}))  # fmt: skip
                out = work / f"duckdb-unsorted-{i}"
                unsorteds.append(
                    run_child(["--phase", "baseline-unsorted", *common, "--out", str(out)], {})
                )
            job, base, unsorted = best(jobs), best(bases), best(unsorteds)
            delivery = Path(job[0]["delivery"])
            checks = {
                r.registry: same_values(koble_file(delivery, r.id),
                                        work / "duckdb-1" / f"{r.registry}.parquet", r.variables)
                for r in REQUESTS
            }  # fmt: skip
            met = report(args, load, job, base, unsorted, checks)
            if args.repeat > 1:
                runs = {"koble": jobs, "DuckDB": bases, "DuckDB unsorted": unsorteds}
                print("\nEvery run's total (s): " + "; ".join(
                    f"{name} " + ", ".join(sec(job_seconds(r[0])) for r in done)
                    for name, done in runs.items()
                ) + ".")  # fmt: skip
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
    print(
        "\nkoble's step times include sealing, signing, moving and opening the step's "
        "transfers; DuckDB sorts its extracts like koble (løpenummer, then variables); the "
        "unsorted column is the same script without ORDER BY, for information. DuckDB and "
        "Polars use every core."
    )
    print(f"Load average at the end: {load_average()} (other work on the machine skews the times).")
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
