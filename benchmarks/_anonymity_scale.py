"""Part 3 of ``bench_anonymity.py``: ``find_optimal`` on a 5 M-row adult-like and a 5.5 M-row
IPLOS-like table, each generated and searched in a fresh process (time and peak RSS)."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from _anonymity_base import LIMITS, QIS8, QIS9, REPO, K, fmt_levels, fmt_loss, run_child
from _report import load, print_table, verdict

IPLOS_QIS = ("age", "sex", "kommune", "service_start", "service_end", "diagnosis")
TARGET_SCALE_S, TARGET_SCALE_GB = 30.0, 4.0  # at 2 % on 5 million rows
ADULT_ROWS, IPLOS_ROWS = 5_000_000, 5_500_000
SWAP = 0.30

# Diagnoses of home-care and nursing-home users (IPLOS), most frequent first.
DIAGNOSES = (
    "F03", "G30.1", "I63.9", "I50.9", "J44.9", "E11.9", "M80.0", "S72.0", "I48.9", "N39.0",
    "R26.8", "M17.9", "G20", "F32.9", "I10", "C34.9", "C50.9", "C61", "M81.9", "R54",
    "Z74.1", "H35.3", "I25.1", "N18.5", "E10.9", "G35", "F01.9", "I69.3", "L89.1", "Z99.3",
)  # fmt: skip


def generate(kind: str, rows: int, seed: int, adult_dir: Path, out: Path) -> None:
    """Write a synthetic table of ``rows`` rows to ``out`` (Parquet)."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    if kind == "adult":
        adult = pl.read_csv(adult_dir / "adult.csv", separator=";", infer_schema=False)
        base = rng.integers(0, adult.height, rows)
        columns = []
        for name in QIS9:
            index = base.copy()
            moved = np.flatnonzero(rng.random(rows) < SWAP)
            index[moved] = index[rng.permutation(moved)]
            columns.append(adult.get_column(name).gather(index))
        pl.DataFrame(columns).write_parquet(out)
        return
    kommuner = pl.read_csv(
        REPO / "koble" / "registries" / "data" / "kommuner_2024.csv",
        schema_overrides={"code": pl.String},
    )
    weights = kommuner.get_column("population").to_numpy().astype(np.float64)
    kommune = rng.choice(len(weights), rows, p=weights / weights.sum())
    ages = np.arange(65, 101)
    age_w = np.exp(-0.5 * ((ages - 85) / 7.0) ** 2)  # most users 78-92
    age = rng.choice(ages, rows, p=age_w / age_w.sum())
    sex = np.where(rng.random(rows) < 0.62, "K", "M")
    first, last = np.datetime64("2015-01-01"), np.datetime64("2025-12-31")
    span = int((last - first).astype(int))
    start = first + rng.integers(0, span + 1, rows).astype("timedelta64[D]")
    length = rng.exponential(300.0, rows).astype(np.int64).astype("timedelta64[D]")
    end = np.minimum(start + length, last)
    diag_w = 1.0 / np.arange(1, len(DIAGNOSES) + 1)
    diagnosis = rng.choice(len(DIAGNOSES), rows, p=diag_w / diag_w.sum())
    pl.DataFrame(
        {
            "age": age.astype(np.int16),
            "sex": pl.Series(sex, dtype=pl.String),
            "kommune": kommuner.get_column("code").gather(kommune),
            "service_start": start,
            "service_end": end,
            "diagnosis": pl.Series(DIAGNOSES).gather(diagnosis),
        }
    ).write_parquet(out)


def _iplos_hierarchies() -> list[Any]:
    from koble.anonymity.hierarchies import (
        AgeHierarchy,
        DateHierarchy,
        Icd10Hierarchy,
        KommuneHierarchy,
        SexHierarchy,
    )

    return [
        AgeHierarchy(),
        SexHierarchy(),
        KommuneHierarchy(),
        DateHierarchy(),
        DateHierarchy(),
        Icd10Hierarchy(),
    ]


def scale_worker(spec: dict[str, Any]) -> None:
    """One scale case in a fresh process: read, generalise, search; stage times and peaks."""
    import resource

    import polars as pl

    from koble.anonymity.hierarchies import hierarchy_for
    from koble.anonymity.search import find_optimal

    def peak_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    report: dict[str, Any] = {}
    start = time.perf_counter()
    frame = pl.read_parquet(spec["path"])
    report["read_s"], report["read_peak_mb"] = time.perf_counter() - start, peak_mb()
    start = time.perf_counter()
    if spec["kind"] == "adult":
        adult_dir = Path(spec["adult_dir"])
        qis = list(QIS8)
        hierarchies = [hierarchy_for(f"csv:{adult_dir / f'adult_hierarchy_{q}.csv'}") for q in qis]
    else:
        qis = list(IPLOS_QIS)
        hierarchies = _iplos_hierarchies()
    gens = [h.apply(frame.get_column(q)) for h, q in zip(hierarchies, qis, strict=True)]
    del frame
    report["hierarchy_s"], report["hierarchy_peak_mb"] = time.perf_counter() - start, peak_mb()
    if spec.get("profile"):
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
    r = find_optimal(gens, k=K, suppression_limit=spec["limit"], metric=spec["metric"])
    if spec.get("profile"):
        profiler.disable()
        with open(spec["profile"], "w") as sink:
            pstats.Stats(profiler, stream=sink).sort_stats("cumulative").print_stats(40)
    report.update(
        search_s=r.seconds,
        levels=list(r.levels),
        loss=r.loss,
        suppressed=r.suppressed,
        classes=r.classes,
        evaluated=r.evaluated,
        lattice=r.lattice_size,
        feasible=r.feasible,
        search_peak_mb=peak_mb(),
    )
    print(json.dumps(report))


def run_scale(args: argparse.Namespace) -> None:
    """Part 3: synthetic 5M adult-like and 5.5M IPLOS-like tables, each case in a child."""
    sizes = {"adult": args.rows or ADULT_ROWS, "iplos": args.rows or IPLOS_ROWS}
    print(f"## 3. Scale: find_optimal at k = {K}, metric {args.scale_metric} ({load()})\n")
    rows = []
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="koble-bench-anon-", dir=args.tmp) as tmp:
        for kind in ("adult", "iplos"):
            path = Path(tmp) / f"{kind}.parquet"
            start = time.perf_counter()
            run_child(["--generate", kind, str(sizes[kind]), str(args.seed), str(path)])
            made = time.perf_counter() - start
            for limit in LIMITS:
                spec = {
                    "kind": kind,
                    "path": str(path),
                    "adult_dir": str(args.adult_dir),
                    "limit": limit,
                    "metric": args.scale_metric,
                }
                if args.profile_dir:
                    spec["profile"] = str(Path(args.profile_dir) / f"{kind}_{int(limit * 100)}.txt")
                line, rss = run_child(["--scale-worker", json.dumps(spec)])
                r = json.loads(line)
                name = (
                    f"adult-like, 8 QIs ({sizes[kind]:,} rows)"
                    if kind == "adult"
                    else f"IPLOS-like, 6 QIs ({sizes[kind]:,} rows)"
                )
                target = "—"
                if limit == 0.02:
                    ok = r["search_s"] < TARGET_SCALE_S and rss / 1024 < TARGET_SCALE_GB
                    target = verdict(ok) if sizes[kind] >= ADULT_ROWS else "(too few rows)"
                    verdicts.append((name, ok))
                rows.append(
                    (
                        name,
                        f"{limit:.0%}",
                        f"{r['search_s']:.2f}",
                        f"{rss / 1024:.2f}",
                        target,
                        fmt_levels(r["levels"]),
                        fmt_loss(r["loss"]),
                        f"{r['suppressed']:,}",
                        f"{r['classes']:,}",
                        f"{r['evaluated']:,} / {r['lattice']:,}",
                        f"{r['read_s']:.2f}",
                        f"{r['hierarchy_s']:.2f}",
                        f"{r['hierarchy_peak_mb'] / 1024:.2f}",
                        f"{made:.1f}",
                    )
                )
                print(f"  {name}, {limit:.0%}: {r['search_s']:.2f} s ({load()})", flush=True)
    print()
    print_table(
        ("table", "supp.", "search s", "peak RSS GB", "target", "levels", "loss", "suppressed",
         "classes", "evaluated / lattice", "read s", "hierarchies s", "RSS before search GB",
         "generate s"),
        rows,
        right=2,
    )  # fmt: skip
    print(
        "Each case is a fresh process: it reads the Parquet file, builds the hierarchies "
        "(adult-like: ARX's CSV files; IPLOS-like: age 5/10/20 top 90, sex, kommune → fylke "
        "→ helseregion, date → month → quarter → year → 5-year period ×2, ICD-10 → category "
        "→ block → chapter) and searches. Peak RSS is the process's high-water mark (`ru_maxrss`"
        "), so it includes the table and its generalisation; 'RSS before search' is the mark "
        f"when the search started. Target: < {TARGET_SCALE_S:.0f} s and < {TARGET_SCALE_GB:.0f} "
        "GB at 2 % on 5 million rows.\n"
    )
