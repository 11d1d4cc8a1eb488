"""Benchmark the synthetic world generator: time, throughput and peak memory per world size.

Each world is generated in a fresh child process (so peak RSS is that world's alone, read
with ``os.wait4``) into a temporary directory that is removed afterwards.

    python benchmarks/bench_synth.py                # 100k and 1M persons
    python benchmarks/bench_synth.py --national     # also 5.5M (Norway)
    python benchmarks/bench_synth.py --persons 20000 50000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NATIONAL = 5_500_000


def _worker(persons: int, seed: int, out: Path) -> None:
    from koble.synth import SynthConfig, generate_world

    started = time.perf_counter()
    manifest = generate_world(out, SynthConfig(persons=persons, seed=seed))
    elapsed = time.perf_counter() - started
    rows = {f["path"]: f["rows"] for f in manifest["files"]}
    print(json.dumps({"seconds": elapsed, "rows": rows}))


def _run(persons: int, seed: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="koble-bench-") as tmp:
        out = Path(tmp) / "world"
        cmd = [sys.executable, __file__, "--worker", str(persons), "--seed", str(seed), str(out)]
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        report = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            raise SystemExit(f"worker for {persons} persons failed ({child.returncode})")
        disk = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    result = json.loads(report.strip().splitlines()[-1])
    rows = result["rows"]
    total = sum(rows.values())
    events = total - rows["population.parquet"]
    return {
        "persons": persons,
        "seconds": result["seconds"],
        "rows": total,
        "events": events,
        "npr": rows["npr.parquet"],
        "resept": rows["feeds/reseptregisteret.parquet"],
        "rss_mb": usage.ru_maxrss / 1024,
        "disk_mb": disk / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--national", action="store_true", help=f"also {NATIONAL:,} persons")
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("out", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker, args.seed, Path(args.out))
        return
    sizes = list(args.persons) + ([NATIONAL] if args.national else [])
    header = (
        f"{'persons':>10} {'seconds':>8} {'persons/s':>10} {'events/s':>10} {'rows':>12} "
        f"{'npr':>11} {'resept':>11} {'peak RSS MB':>12} {'disk MB':>8}"
    )
    print(header)
    print("-" * len(header))
    for persons in sizes:
        r = _run(persons, args.seed)
        print(
            f"{persons:>10,} {r['seconds']:>8.1f} {persons / r['seconds']:>10,.0f} "
            f"{r['events'] / r['seconds']:>10,.0f} {r['rows']:>12,} {r['npr']:>11,} "
            f"{r['resept']:>11,} {r['rss_mb']:>12,.0f} {r['disk_mb']:>8,.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
