"""Part 2 of ``bench_resolve.py`` (``--speed``, issue 16 item 5): the repair and probabilistic
stages at national scale, each case in a fresh process (the script again, with
``--speed-worker``) so that its peak RSS is its own."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _report import load, print_table, verdict
from _resolve_cases import synth_world
from _resolve_score import score

if TYPE_CHECKING:
    import polars as pl

#: The script every child runs (with ``--speed-worker``)
SCRIPT = Path(__file__).with_name("bench_resolve.py")
TARGET_REPAIR_S, TARGET_100K_S, TARGET_1M_S, TARGET_GB = 10.0, 120.0, 900.0, 8.0


def typo_records(persons: pl.DataFrame, n: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``n`` records of random persons (without replacement when there are enough), each
    number with one random digit substituted or two adjacent different digits swapped, with
    the person's name, birth date and sex; and the truth (``record_id``, ``person_id``)."""
    import numpy as np
    import polars as pl

    from koble.recovery.contract import RECORD_SCHEMA

    rng = np.random.default_rng(seed)
    numeric = persons.filter(pl.col("person_id").str.contains(r"^[0-9]{11}$"))
    pick = rng.choice(numeric.height, n, replace=n > numeric.height)
    chosen = numeric[pick]
    true = chosen["person_id"].cast(pl.Int64).to_numpy()
    power = 10 ** np.arange(10, -1, -1, dtype=np.int64)
    digits = (true[:, None] // power) % 10
    swap = rng.random(n) < 0.5
    pos = np.where(swap, rng.integers(0, 10, n), rng.integers(0, 11, n))
    rows = np.arange(n)
    new = digits.copy()
    nxt = np.minimum(pos + 1, 10)
    other = (digits[rows, pos] + rng.integers(1, 10, n)) % 10
    new[rows, pos] = np.where(swap, digits[rows, nxt], other)
    new[rows[swap], pos[swap] + 1] = digits[rows[swap], pos[swap]]
    typo = new @ power
    records = chosen.select(
        pl.int_range(pl.len()).cast(pl.String).alias("record_id"),
        pl.Series("fnr", typo).cast(pl.String).str.zfill(11),
        "first_name", "middle_name", "last_name", "birth_date", "sex", "death_date",
        pl.lit(None, pl.String).alias("kommune"),
    ).filter(pl.Series(typo != true)).select(RECORD_SCHEMA.names())  # fmt: skip
    truth = records.select("record_id").join(
        chosen.select(pl.int_range(pl.len()).cast(pl.String).alias("record_id"), "person_id"),
        on="record_id",
    )
    return records, truth


def speed_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One speed case, in this (fresh) process: ``repair`` or ``probabilistic``."""
    import polars as pl

    from koble.recovery.exact import exact
    from koble.recovery.probabilistic import probabilistic
    from koble.recovery.records import prepare_records
    from koble.recovery.register import Register
    from koble.recovery.repair import repair
    from koble.recovery.resolve import DEFAULT_THRESHOLDS

    world, n, seed = Path(spec["world"]), int(spec["n"]), int(spec["seed"])
    start = time.perf_counter()
    register = Register.open(world / "folkeregister")
    persons = register.persons
    out: dict[str, Any] = {"persons": persons.height, "load_s": time.perf_counter() - start}
    if spec["kind"] == "repair":
        records, truth = typo_records(persons, n, seed)
        start = time.perf_counter()
        _ = register.ids
        out["index_s"] = time.perf_counter() - start
        start = time.perf_counter()
        result = repair(records, register)
        out["stage_s"] = time.perf_counter() - start
        linked = result.linked
    else:
        journals = pl.read_parquet(world / "helsearkiv.parquet")
        sample = journals.sample(n, with_replacement=n > journals.height, seed=seed)
        sample = sample.with_columns(
            (pl.col("journal_id") + "/" + pl.int_range(pl.len()).cast(pl.String)).alias("rid")
        )
        records = prepare_records(sample.drop("journal_id"), columns={"record_id": "rid"})
        first = exact(records, register)
        training = first.linked.select("record_id", "person_id").join(records, on="record_id")
        records = records.with_columns(pl.lit(None, pl.String).alias("fnr"))
        start = time.perf_counter()
        result, report = probabilistic(records, register, training=training,
                                       thresholds=DEFAULT_THRESHOLDS, seed=seed)  # fmt: skip
        out["stage_s"] = time.perf_counter() - start
        out["comparisons"] = report.n_comparisons
        out["training"] = training.height
        truth = pl.read_parquet(world / "truth" / "helsearkiv.parquet").select(
            "journal_id", "person_id"
        )
        truth = (
            sample.select(pl.col("rid").alias("record_id"), "journal_id")
            .join(truth, on="journal_id")
            .drop("journal_id")
        )
        linked = result.linked
    s = score(linked, truth)
    out.update(records=records.height, links=s.links, right=s.true_links, wrong=s.false_links,
               recall=s.recall)  # fmt: skip
    return out


def _child(spec: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Run one speed case in a fresh process: (its result, its peak RSS in GB)."""
    with tempfile.NamedTemporaryFile("r", suffix=".json") as result:
        spec = {**spec, "out": result.name}
        command = [sys.executable, str(SCRIPT), "--speed-worker", json.dumps(spec)]
        child = subprocess.Popen(command)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            return {"error": f"exit code {child.returncode}"}, usage.ru_maxrss / 1e6
        return json.loads(Path(result.name).read_text()), usage.ru_maxrss / 1e6


def run_speed(args: argparse.Namespace, tmp: Path) -> bool:
    """Part 2: the repair stage and the probabilistic stage at national scale (a national
    world made for the run goes to ``tmp``)."""
    print(f"## 2. Speed at national scale ({load()})\n")
    world = args.national
    if world is None:
        world = tmp / "national"
        start = time.perf_counter()
        synth_world(world, 5_500_000, args.seed)
        print(f"National world generated in {time.perf_counter() - start:.0f} s.\n")
    rows, met = [], True
    cases = [("repair", args.repair_records, TARGET_REPAIR_S)] if args.repair_records else []
    cases += [("probabilistic", n, TARGET_100K_S if n <= 100_000 else TARGET_1M_S)
              for n in args.journals]  # fmt: skip
    timed: dict[int, float] = {}
    for kind, n, target in cases:
        result, rss = _child({"kind": kind, "world": str(world), "n": n, "seed": args.seed})
        if "error" in result:
            rows.append((kind, f"{n:,}", "—", "—", "—", "—", f"{rss:.1f}", result["error"]))
            met = False
            continue
        seconds = result["stage_s"]
        ok = seconds < target and (kind == "repair" or rss < TARGET_GB)
        met &= ok
        if kind == "probabilistic":
            timed[n] = seconds
        per_s = result.get("comparisons", result["records"]) / seconds
        rows.append((
            kind, f"{result['records']:,}", f"{result['persons']:,}", f"{seconds:.1f}",
            f"{per_s:,.0f} {'comparisons' if kind != 'repair' else 'records'}/s",
            f"{result['right']:,} right, {result['wrong']:,} wrong ({result['recall']:.2%})",
            f"{rss:.1f}", f"< {target:.0f} s: {verdict(ok)}",
        ))  # fmt: skip
        print(f"  {kind} {n:,}: {seconds:.1f} s, {rss:.1f} GB ({load()})", flush=True)
    print()
    print_table(["stage", "records", "persons", "seconds", "throughput", "links",
                 "peak RSS GB", "target"], rows, right=1)  # fmt: skip
    if len(timed) >= 2:
        (n0, t0), (n1, t1) = sorted(timed.items())[0], sorted(timed.items())[-1]
        print(f"Growth: {n1 / n0:.0f}x the journals took {t1 / t0:.1f}x the time.\n")
    return met
