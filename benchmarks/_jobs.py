"""The national benchmark job, shared by the benchmarks that run it.

The job links a cohort (sampled from a ``koble synth`` world's population) with NPR,
Dødsårsaksregisteret, Kreftregisteret and the pseudonymous Reseptregisteret, whose feed goes
through sealed ingest at the TTP. ``bench_linkage.py`` and
``bench_scale.py`` both import it, so they agree on what "the national job" is.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COHORT_FILE = "cohort_bench.parquet"
JOB_FILE = "job_bench.toml"
INGESTED = ("reseptregisteret",)
PROJECT = "P2026-900"


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
        f'id = "{PROJECT}"',
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


def world_persons(world: Path) -> int:
    """The persons of the ``koble synth`` world at ``world``, from its manifest."""
    return int(json.loads((world / "manifest.json").read_text())["config"]["persons"])


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def progress(what: str) -> None:
    sys.stdout.flush()
    print(f"running: {what} ...", file=sys.stderr, flush=True)


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


def compile_bytecode() -> str:
    """Compile koble's modules to bytecode (``__pycache__``, ignored by git) before any
    measured child starts, and say so for the report.

    An installed koble is compiled when pip installs it, and Python reads the bytecode of
    the site-packages it imports (DuckDB, Polars, pyarrow) either way; a source checkout
    run with ``PYTHONDONTWRITEBYTECODE`` set (as some shells and CI images set it) instead
    compiles every koble module it imports in every process: about 0.09 s of CPU for a
    linkage job's hundred modules, against a third of that for the hand-written script's
    thirty. A module changed after this (stale bytecode) is compiled from its source as usual.
    """
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "koble")], check=True)
    return "koble compiled to bytecode first (compileall), as an installed koble is"


def machine() -> str:
    """Host, CPU, cores, memory, Python and the engines' versions, and the load average."""
    import duckdb
    import polars as pl

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    line = (
        f"{platform.node()}, {platform.processor() or platform.machine()}, {os.cpu_count()} "
        f"cores, {memory:.0f} GiB, Python {platform.python_version()}, DuckDB "
        f"{duckdb.__version__}, Polars {pl.__version__}"
    )
    try:
        import pyspark

        line += f", pyspark {pyspark.__version__}"
    except ImportError:
        pass
    return f"{line}; load average at start {load_average()}"
