"""Benchmark: safe frequency tables at scale, and reading big CSV files.

Two parts, each printed as a markdown table (the command and the machine's load first):

1. **Cell suppression** (``koble.anonymity.tables.suppress``) on synthetic count tables:
   sex × start date (2 × 3,200), age × start date (100 × 3,300; 1 M persons, most cells
   under 5, and 100 M persons, few cells under 5 and hundreds of bridges), a Zipf-shaped
   1,000 × 1,000 table (5 M persons) and a 1,000 × 1,000 table with a dense core of small
   cells and scattered ones around it. Best-of-N time, primary and secondary cells, the
   bridges (cells the totals reveal) before and after, checked with Tarjan's algorithm
   (``bridge_cells``), independent of the incremental structure ``suppress`` uses. Then
   ``koble anonymity table`` end to end on a 1 M-row Parquet file of age × start date.
   Target: < 5 s each.
2. **Reading a CSV** of ``--csv-rows`` rows (5 M; about 260 MB): peak RSS (``os.wait4``) and
   time of ``koble.tables.read_table`` in UTF-8 and cp1252, against Polars' own
   ``pl.read_csv`` on the same file, each in a fresh process.

    .venv/bin/python benchmarks/bench_tables.py                      # both parts (~2 min)
    .venv/bin/python benchmarks/bench_tables.py --skip-csv           # part 1 only
    .venv/bin/python benchmarks/bench_tables.py --skip-suppress --csv-rows 1000000

To compare with another version of the reader, save its module and name it:
``git show <commit>:koble/tables.py > /tmp/old_tables.py`` and add
``--reader-module /tmp/old_tables.py`` (its ``read_table`` is timed in place of today's).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from _report import best_of, print_table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TARGET_S = 5.0


# ------------------------------------------------------------------------------ tables


def age_by_start_date(persons: int, rows: int = 100, cols: int = 3300, seed: int = 14) -> Any:
    """Counts of age × start date: many more old than young, a weekly and yearly rhythm."""
    rng = np.random.default_rng(seed)
    age = np.exp(np.linspace(0, 5, rows))
    days = np.arange(cols)
    day = 1 + 0.3 * (days % 7 < 5) + 0.2 * np.sin(days / 58)
    return rng.poisson(persons * np.outer(age / age.sum(), day / day.sum())).astype(np.int64)


def zipf(persons: int, size: int = 1000, seed: int = 14) -> Any:
    """A table whose row and column totals fall off like 1/rank (kommune × diagnosis)."""
    rng = np.random.default_rng(seed)
    r = 1 / np.arange(1, size + 1)
    c = 1 / np.arange(1, size + 1) ** 0.8
    return rng.poisson(persons * np.outer(r / r.sum(), c / c.sum())).astype(np.int64)


def dense_core(size: int = 1000, seed: int = 5) -> Any:
    """Large counts around a 600 × 600 core of small ones, with 0.2 % small cells elsewhere."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(5, 100, (size, size))
    counts[:600, :600] = rng.integers(1, 5, (600, 600))
    counts[rng.random((size, size)) < 0.002] = 2
    return counts


def run_suppress(args: argparse.Namespace) -> None:
    from koble.anonymity.bridges import bridge_cells
    from koble.anonymity.tables import suppress

    cases = [
        ("sex × start date, 30 k persons", age_by_start_date(30_000, 2, 3200)),
        ("age × start date, 1 M persons", age_by_start_date(1_000_000)),
        ("age × start date, 100 M persons", age_by_start_date(100_000_000)),
        ("Zipf 1,000 × 1,000, 5 M persons", zipf(5_000_000)),
        ("1,000 × 1,000, dense core of small cells", dense_core()),
    ]
    rows = []
    for name, counts in cases:
        seconds, (hidden, primary) = best_of(args.repeat, partial(suppress, counts))
        rows.append([
            name, f"{counts.shape[0]:,} × {counts.shape[1]:,}", f"{int(primary.sum()):,}",
            f"{len(bridge_cells(primary)):,}", f"{int((hidden & ~primary).sum()):,}",
            len(bridge_cells(hidden)), f"{seconds:.2f}", "met" if seconds < TARGET_S else "MISSED",
        ])  # fmt: skip
        print(f"  {name}: {seconds:.2f} s", file=sys.stderr, flush=True)
    print("### Secondary cell suppression (threshold 5)\n")
    print_table(["table", "shape", "primary", "bridges before", "secondary", "bridges after",
                 "seconds", f"< {TARGET_S:.0f} s"], rows, right=1)  # fmt: skip
    _cli_table(args)


def _cli_table(args: argparse.Namespace) -> None:
    """``koble anonymity table`` on 1 M rows of age × start date, as a user runs it."""
    import polars as pl

    counts = age_by_start_date(1_000_000)
    age, day = np.nonzero(counts)
    reps = counts[age, day]
    frame = pl.DataFrame({"age": np.repeat(age, reps), "day": np.repeat(day, reps)}).select(
        pl.col("age").cast(pl.String).str.zfill(3),
        (pl.date(2015, 1, 1) + pl.duration(days=pl.col("day"))).alias("start"),
    )
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        data = Path(tmp) / "linked.parquet"
        frame.write_parquet(data)
        command = [str(Path(sys.executable).parent / "koble"), "anonymity", "table", str(data)]
        command += ["--rows", "age", "--cols", "start", "--json", "--out", f"{tmp}/table.csv"]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
    report = json.loads(done.stdout) if done.returncode == 0 else {}
    print("### `koble anonymity table` end to end (read, count, suppress, write; one run)\n")
    print_table(["input", "shape", "primary", "secondary", "exit", "seconds",
                 f"< {TARGET_S:.0f} s"],
                [[f"{frame.height:,} rows (Parquet)", f"{counts.shape[0]} × {counts.shape[1]:,}",
                  f"{report.get('primary_suppressed', 0):,}",
                  f"{report.get('secondary_suppressed', 0):,}", done.returncode, f"{seconds:.2f}",
                  "met" if seconds < TARGET_S and not done.returncode else "MISSED"]],
                right=1)  # fmt: skip


# --------------------------------------------------------------------------------- csv


def _write_csv(path: Path, rows: int, encoding: str) -> None:
    """A linked-registry-like CSV: id, age, sex, kommune, start date, diagnosis, note."""
    rng = np.random.default_rng(2026)
    kommuner = np.array(["Bærum", "Tromsø", "Ålesund", "Oslo", "Bø", "Hå", "Ås", "Førde"])
    chunk = 500_000
    with path.open("w", encoding=encoding, newline="") as out:
        out.write("lopenr;alder;kjonn;kommune;start;diagnose;merknad\n")
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            ids = np.arange(start, start + n)
            age = rng.integers(65, 101, n)
            sex = rng.choice(np.array(["K", "M"]), n)
            kommune = rng.choice(kommuner, n)
            day = np.datetime64("2015-01-01") + rng.integers(0, 3300, n)
            dx = rng.integers(0, 1000, n)
            fields = zip(ids, age, sex, kommune, day, dx, strict=True)
            out.write(
                "".join(f"{i:08d};{a};{s};{k};{d};F{x:03d};pleie\n" for i, a, s, k, d, x in fields)
            )


def _reader_worker(spec: dict[str, Any]) -> None:
    """In a fresh process: read the file one way, print seconds and shape as JSON."""
    import polars as pl

    path = Path(spec["path"])
    started = time.perf_counter()
    if spec["how"] == "polars":
        frame = pl.read_csv(path, separator=";", infer_schema=False)
    else:
        if spec.get("module"):
            loader = importlib.util.spec_from_file_location("reader_under_test", spec["module"])
            assert loader is not None and loader.loader is not None
            module = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(module)
            read_table = module.read_table
        else:
            from koble.tables import read_table
        frame = read_table(path, encoding=spec["encoding"])
    print(json.dumps({"seconds": time.perf_counter() - started, "rows": frame.height,
                      "columns": frame.width}))  # fmt: skip


def _child(spec: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Run :func:`_reader_worker` in a fresh process: its report and peak RSS (MB)."""
    child = subprocess.Popen([sys.executable, __file__, "--reader-worker", json.dumps(spec)],
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert child.stdout is not None
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"reader {spec['how']} {spec.get('encoding', '')} failed")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss / 1024


def run_csv(args: argparse.Namespace) -> None:
    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for encoding in ("utf-8", "cp1252"):
            path = Path(tmp) / f"registry-{encoding}.csv"
            _write_csv(path, args.csv_rows, encoding)
            size = path.stat().st_size / 1e6
            hows = [("polars", "pl.read_csv (Polars alone)"), ("koble", "koble read_table")]
            for how, label in hows if encoding == "utf-8" else hows[1:]:
                spec = {"how": how, "path": str(path), "encoding": encoding,
                        "module": args.reader_module}  # fmt: skip
                report, peak = _child(spec)
                if how == "koble" and args.reader_module:
                    label = f"read_table from {Path(args.reader_module).name}"
                rows.append([label, encoding, f"{report['rows']:,}", f"{size:,.0f}",
                             f"{report['seconds']:.2f}", f"{peak:,.0f}"])  # fmt: skip
                print(f"  {label} {encoding}: {peak:,.0f} MB", file=sys.stderr, flush=True)
    print(f"### Reading a {args.csv_rows:,}-row CSV (all columns as text; fresh process each)\n")
    print_table(["reader", "encoding", "rows", "file MB", "seconds", "peak RSS MB"], rows, right=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--skip-suppress", action="store_true", help="skip part 1")
    parser.add_argument("--skip-csv", action="store_true", help="skip part 2")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many (part 1)")
    parser.add_argument("--csv-rows", type=int, default=5_000_000)
    parser.add_argument("--reader-module", help="a file whose read_table to time instead")
    parser.add_argument("--tmp", help="directory for the generated files")
    parser.add_argument("--reader-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reader_worker:
        _reader_worker(json.loads(args.reader_worker))
        return
    if args.reader_module:
        args.reader_module = str(Path(args.reader_module).resolve())
    one, five, fifteen = os.getloadavg()
    print(f"`{shlex.join(['.venv/bin/python', *sys.argv])}`  ")
    print(f"{platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {one:.2f} {five:.2f} {fifteen:.2f}\n")  # fmt: skip
    if not args.skip_suppress:
        run_suppress(args)
    if not args.skip_csv:
        run_csv(args)


if __name__ == "__main__":
    main()
