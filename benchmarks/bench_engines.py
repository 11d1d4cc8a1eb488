"""Benchmark: the DuckDB and Spark (local mode) engines on the same work (issue 17).

Three measurements, printed as one markdown table:

* start: a fresh process makes the engine and runs one query (``SELECT 1``); the time from
  the engine's construction to the answer (the Spark JVM's start included), and the whole
  process's wall time with its imports.
* extract: an extraction-like join, as ``steps_registry.extract_step`` writes it, of a
  registry table of ``--rows`` rows (default 1 million; 11-digit keys, a date, a code, an
  integer, a consent flag) with a person list of a fifth as many persons, in two Parquet
  files: flag the rows inside the period, keep the consented ones, sort by the flag,
  løpenummer and every variable. Timed as ``query`` (to Arrow) and ``write_parquet``; best of
  ``--repeat`` after one warm-up run; both engines must give equal results.
* pseudonymise: ``--rows`` identifiers pseudonymised inside Spark (``mapInArrow``), against
  ``pseudonymise_values`` in this process.

Wall seconds, and CPU seconds of this process plus, for Spark, of its JVM (from
``/proc/PID/stat``, the JVM's own threads and the Python workers it waited for): the machine
is shared, so CPU time is the steadier number.

    python benchmarks/bench_engines.py [--rows 1000000] [--repeat 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from _report import cpu_name

from koble.linkage.engine import DuckDBEngine, Engine, quote
from koble.linkage.engine_spark import SparkEngine
from koble.linkage.engine_spark_pseudonym import pseudonymise_query
from koble.pseudonym.insecure_cleartext import keyset_from_key
from koble.pseudonym.pseudonymise import pseudonymise_values

START = """
import json, time
t0 = time.perf_counter()
from koble.linkage.engine import engine_named
eng = engine_named({name!r})
eng.query("SELECT 1 AS one", {{}})
t1 = time.perf_counter()
eng.close()
print(json.dumps({{"engine_and_query": t1 - t0}}))
"""


def start_time(name: str) -> tuple[float, float]:
    """(engine made and one query answered, whole process) in a fresh process, seconds."""
    began = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", START.format(name=name)], check=True, capture_output=True, text=True
    ).stdout
    whole = time.perf_counter() - began
    return float(json.loads(out.splitlines()[-1])["engine_and_query"]), whole


def jvm_cpu() -> float:
    """CPU seconds of the Spark JVM of this process (0 when there is none)."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    proc = getattr(gateway, "proc", None) if gateway is not None else None
    if proc is None:
        return 0.0
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def timed(fn: Callable[[], Any], repeat: int, spark: bool) -> tuple[float, float, Any]:
    """Best wall seconds and its CPU seconds (process + JVM) over ``repeat`` runs."""
    best: tuple[float, float, Any] | None = None
    for _ in range(repeat):
        cpu0, jvm0, wall0 = time.process_time(), jvm_cpu() if spark else 0.0, time.perf_counter()
        result = fn()
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0 + ((jvm_cpu() - jvm0) if spark else 0.0)
        if best is None or wall < best[0]:
            best = (wall, cpu, result)
    assert best is not None
    return best


def make_data(rows: int, directory: Path, seed: int = 2025) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    persons = rows // 5
    keys = pl.Series(rng.choice(10**11, size=persons * 3 // 2, replace=False)).cast(pl.String)
    keys = keys.str.zfill(11)
    sent = keys.head(persons)
    person_table = pa.table(
        {"key": sent.to_arrow().cast(pa.string()), "lopenr": rng.permutation(persons) + 1}
    )
    start = np.datetime64("2012-01-01")
    days = start + rng.integers(0, 13 * 365, rows).astype("timedelta64[D]")
    source = pa.table(
        {
            "fnr": keys.gather(rng.integers(0, len(keys), rows)).to_arrow().cast(pa.string()),
            "day": pa.array(days.astype("datetime64[D]")),
            "code": pa.array(
                np.array(["C50", "I21", "S72", "K35", "F32"])[rng.integers(0, 5, rows)]
            ),
            "value": pa.array(rng.integers(0, 1000, rows).astype(np.int32)),
            "consent": pa.array(rng.random(rows) < 0.95),
        }
    )
    paths = directory / "persons.parquet", directory / "source.parquet"
    pq.write_table(person_table, paths[0])
    pq.write_table(source, paths[1])
    return paths


def extract_sql() -> str:
    variables = ["code", "value", "day"]
    selected = ", ".join(f"s.{quote(v)}" for v in variables)
    order = ", ".join(f"{quote(c)} NULLS LAST" for c in ["lopenr", *variables])
    return f"""
        SELECT p."lopenr" AS "lopenr", {selected},
               COALESCE(EXTRACT(YEAR FROM s."day") BETWEEN 2016 AND 2021, FALSE) AS _in_period
        FROM source s JOIN persons p ON s."fnr" = p."key"
        WHERE COALESCE(s."consent", FALSE)
        ORDER BY _in_period DESC, {order}
    """


def machine_info() -> str:
    import duckdb
    import pyspark

    cpu = cpu_name()
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {cpu}; {os.cpu_count()} cores; load average at start {load}\n"
        f"Python {platform.python_version()}, duckdb {duckdb.__version__}, pyspark "
        f"{pyspark.__version__}, pyarrow {pa.__version__}, {java.splitlines()[0]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads")
    args = parser.parse_args()
    print(machine_info(), flush=True)
    lines: list[tuple[str, str, float, float | None, str]] = []
    for name in ("duckdb", "spark"):
        inner, whole = start_time(name)
        lines.append(
            ("start + SELECT 1 (fresh process)", name, inner, None, f"process {whole:.1f} s")
        )
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp:
        persons, source = make_data(args.rows, Path(tmp))
        tables = {"persons": persons, "source": source}
        sql = extract_sql()
        spark = SparkEngine()
        duck = DuckDBEngine(threads=args.threads)
        engines: list[tuple[Engine, bool]] = [(duck, False), (spark, True)]
        results: dict[str, pa.Table] = {}
        try:
            for engine, is_spark in engines:
                engine.query("SELECT 1 AS one", {})  # warm
                engine.query(sql, tables)
                wall, cpu, result = timed(
                    lambda e=engine: e.query(sql, tables), args.repeat, is_spark
                )
                results[engine.name] = result
                lines.append(
                    (
                        f"extract {args.rows:,} rows: query → Arrow",
                        engine.name,
                        wall,
                        cpu,
                        f"{result.num_rows:,} rows",
                    )
                )
                out = Path(tmp) / f"out-{engine.name}.parquet"
                wall, cpu, n = timed(
                    lambda e=engine, o=out: e.write_parquet(sql, tables, o), args.repeat, is_spark
                )
                size = out.stat().st_size / 1e6
                lines.append(
                    (
                        f"extract {args.rows:,} rows: write_parquet",
                        engine.name,
                        wall,
                        cpu,
                        f"{n:,} rows, {size:.0f} MB",
                    )
                )
            assert results["spark"].equals(results["duckdb"]), "the engines disagree"
            keyset = keyset_from_key(bytes(range(32)))
            ids = pq.read_table(source, columns=["fnr"])
            wall, cpu, made = timed(
                lambda: pseudonymise_query(
                    spark,
                    "SELECT fnr FROM t",
                    {"t": source},
                    column="fnr",
                    keyset=keyset,
                    domain="npr",
                ),
                args.repeat,
                True,
            )
            lines.append(
                (f"pseudonymise {args.rows:,} identifiers", "spark (mapInArrow)", wall, cpu, "")
            )
            column = pl.from_arrow(ids.column("fnr"))
            assert isinstance(column, pl.Series)
            wall, cpu, local = timed(
                lambda: pseudonymise_values(keyset, "npr", column), args.repeat, False
            )
            lines.append(
                (
                    f"pseudonymise {args.rows:,} identifiers",
                    "local pseudonymise_values",
                    wall,
                    cpu,
                    "",
                )
            )
            assert made.column("fnr").to_pylist()[:1000] == local.to_list()[:1000]
        finally:
            spark.close()
            duck.close()
    print(f"\n{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC\n")
    print("| work | engine | wall s | CPU s | notes |")
    print("|---|---|---:|---:|---|")
    for work, engine_name, wall, cpu, note in lines:
        shown = "" if cpu is None else f"{cpu:.2f}"
        print(f"| {work} | {engine_name} | {wall:.2f} | {shown} | {note} |")


if __name__ == "__main__":
    main()
