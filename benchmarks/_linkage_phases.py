"""The two sides of ``bench_linkage.py``, each a phase run in a fresh child process of the
script (``--phase koble`` / ``--phase baseline``): koble's job as ``koble run`` runs it, and
the hand-written script doing the same data work (the script's docstring, steps 1-5); and
running a phase, its wall and CPU time and peak RSS measured from outside."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from _jobs import COHORT_FILE, INGESTED, JOB_FILE, PROJECT, REQUESTS, Request

#: The script every child runs (with ``--phase``)
SCRIPT = Path(__file__).with_name("bench_linkage.py")
KEK_ENV = "KOBLE_BENCH_KEK"  # hex of the run's throwaway 32-byte KEK, for the child processes
PSEUDONYM_KEY = "fnr_pseudonym"  # the ingested table's key: its feed's fnr, pseudonymised


#: One child's outcome: its JSON result, wall seconds, CPU seconds, peak RSS GiB.
Run = tuple[dict[str, Any], float, float, float]


def loaded_table(workspace: Path, registry: str) -> Path:
    """The registry's table as sealed ingest loaded it, in ``workspace``'s registry store."""
    return workspace / f"registry-{registry}" / "store" / f"{registry}.parquet"


def phase_koble(world: Path, work: Path, workspace: Path, preload: Path | None) -> dict[str, Any]:
    """Run the job with koble; ``preload``: a workspace whose ingested tables to reuse.

    The process is set up as ``koble run``'s: :mod:`koble.cli` imported first (its
    process-wide settings), and what is imported frozen before the work
    (:func:`koble.cli.freeze_imports`)."""
    import koble.cli
    from koble.linkage.executor import run_job
    from koble.linkage.sources import synthetic_sources
    from koble.pseudonym.keystore import RawKek
    from koble.registries.catalogue import Catalogue

    started, cpu = time.perf_counter(), time.process_time()
    kek = RawKek(bytes.fromhex(os.environ[KEK_ENV]))
    catalogue = Catalogue.load()
    if preload is not None:
        for registry in INGESTED:
            table = loaded_table(preload, registry)
            for source in (table, table.with_name(f"{registry}.ingest.json")):  # table, counts
                target = workspace / source.relative_to(preload)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(source.resolve())
    koble.cli.freeze_imports()  # as `koble run` does in its own process
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
        "inside_seconds": time.perf_counter() - started,
        "cpu_seconds": result.cpu_seconds,
        "transfer_seconds": result.transfer_seconds,
        "inside_cpu": time.process_time() - cpu,
        "stats": result.stats,
        "setup": state.get("setup", {}),
        "delivery": str(result.delivery),
    }


def _copy_sql(r: Request, source: str, key: str, persons: str, out: Path) -> str:
    variables = ", ".join(f"s.{v}" for v in r.variables)
    return f"""
        COPY (
            SELECT p.lopenr, {variables}
            FROM {source} s JOIN {persons} p ON s.{key} = p.fnr
            WHERE year(s.{r.date_column}) BETWEEN {r.start} AND {r.end}
            ORDER BY p.lopenr, {variables} NULLS LAST
        ) TO '{out}' (FORMAT parquet, COMPRESSION zstd)
    """


def phase_baseline(world: Path, out_dir: Path, work: Path, preload: Path) -> dict[str, Any]:
    """The hand-written script (``bench_linkage.py``'s docstring, steps 1-5), on koble's keys
    in ``work`` and the table sealed ingest loaded into ``preload``'s registry store."""
    import duckdb
    import polars as pl

    from koble.linkage.keys import LinkageKeys
    from koble.pseudonym.domain_cipher import domain_cipher
    from koble.pseudonym.keys import check_domain
    from koble.pseudonym.keystore import RawKek
    from koble.pseudonym.serials import project_domain
    from koble.registries.identifiers.column import validate_column

    started, cpu_started = time.perf_counter(), time.process_time()
    out_dir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    rows: dict[str, int] = {}
    keys = LinkageKeys.load(work / "keys", RawKek(bytes.fromhex(os.environ[KEK_ENV])))
    con = duckdb.connect(":memory:")
    seconds["start"] = time.perf_counter() - started
    cpu["start"] = time.process_time() - cpu_started
    tick, cpu_tick = time.perf_counter(), time.process_time()
    # 1. identifier checks; 2. the cohort resolved through the identity history, deduplicated
    cohort = pl.read_parquet(world / COHORT_FILE, columns=["fnr"])["fnr"].cast(pl.String)
    checked = validate_column(cohort, scheme="fnr")
    valid = checked.filter(pl.col("valid")).select(pl.col("compact").alias("fnr")).to_arrow()
    con.register("cohort", valid)
    con.execute(f"""
        CREATE TEMP TABLE final AS
        WITH RECURSIVE history AS (
            SELECT old_id, current_id FROM read_parquet('{world / "identity_history.parquet"}')
        ), chain(old_id, current_id, depth) AS (
            SELECT old_id, current_id, 1 FROM history
            UNION ALL
            SELECT c.old_id, h.current_id, c.depth + 1
            FROM chain c JOIN history h ON h.old_id = c.current_id
            WHERE c.depth < 16
        )
        SELECT old_id, current_id FROM chain
        WHERE current_id NOT IN (SELECT old_id FROM history)
    """)  # fmt: skip
    current = con.sql("""
        SELECT DISTINCT COALESCE(f.current_id, c.fnr) AS fnr
        FROM cohort c LEFT JOIN final f ON f.old_id = c.fnr
    """).pl()  # fmt: skip
    # 3. keyed løpenummer: numbered in the order of the numbers' AES blocks under the
    # project's domain (hex of the same version: text order is block order)
    blocks = domain_cipher(keys.operator, project_domain(PROJECT)).pseudonymise(
        current["fnr"].to_arrow()
    )
    persons = current.with_columns(
        pl.Series("block", blocks).rank("ordinal").cast(pl.Int64).alias("lopenr")
    )
    con.register("persons", persons.to_arrow())
    con.execute("""
        CREATE TEMP TABLE key_list AS
        SELECT fnr, lopenr FROM persons
        UNION ALL
        SELECT f.old_id AS fnr, p.lopenr FROM final f JOIN persons p ON p.fnr = f.current_id
    """)  # fmt: skip
    seconds["keys"] = time.perf_counter() - tick
    cpu["keys"] = time.process_time() - cpu_tick
    for r in REQUESTS:
        tick, cpu_tick = time.perf_counter(), time.process_time()
        out = out_dir / f"{r.registry}.parquet"
        if r.id in INGESTED:  # 4. the TTP's pseudonyms, joined to the table the registry holds
            ttp = domain_cipher(keys.ttp, check_domain(f"registry:{r.id}"))
            pseudonyms = pl.Series(ttp.pseudonymise(persons["fnr"].to_arrow()))
            sent = persons.select(pseudonyms.alias("fnr"), "lopenr").to_arrow()
            con.register("sent", sent)
            table = str(loaded_table(preload, r.id)).replace("'", "''")
            sql = _copy_sql(r, f"read_parquet('{table}')", PSEUDONYM_KEY, "sent", out)
        else:  # 5. a registry keyed by fødselsnummer, with every number of each person
            table = str(world / r.file).replace("'", "''")
            sql = _copy_sql(r, f"read_parquet('{table}')", "fnr", "key_list", out)
        fetched = con.execute(sql).fetchone()
        seconds[r.registry] = time.perf_counter() - tick
        cpu[r.registry] = time.process_time() - cpu_tick
        assert fetched is not None
        rows[r.registry] = int(fetched[0])
    con.close()
    return {
        "seconds": seconds,
        "total_seconds": time.perf_counter() - started,
        "cpu": cpu,
        "total_cpu": time.process_time() - cpu_started,
        "rows": rows,
    }


def run_child(args: list[str], env: Mapping[str, str]) -> Run:
    """Run a phase in a fresh interpreter: (its JSON result, wall s, CPU s, peak RSS GiB)."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE,
                             text=True, env={**os.environ, **env})  # fmt: skip
    assert child.stdout is not None
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise SystemExit(f"phase {args[:2]} failed (exit {code})")
    cpu = usage.ru_utime + usage.ru_stime
    return json.loads(out.strip().splitlines()[-1]), wall, cpu, usage.ru_maxrss / 2**20


def best(runs: list[Run]) -> Run:
    """The fastest run by wall time (its own step times and CPU), with the highest peak RSS."""
    fastest = min(runs, key=lambda r: r[1])
    return fastest[0], fastest[1], fastest[2], max(r[3] for r in runs)
