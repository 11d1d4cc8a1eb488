"""What ``bench_linkage.py`` prints for each world and at the end: whether koble's delivery
and the script's hold the same rows (løpenummer included), the step-by-step comparison of the
two sides' times, the rows and persons per registry, koble's steps, and the summary against
the target."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _jobs import REQUESTS
from _linkage_phases import Run

TARGET = 1.3


def without_ingest(result: dict[str, Any]) -> float:
    """A koble run's in-process total without any sealed ingest (a pre-job load)."""
    ingest = sum(float(v) for k, v in result["seconds"].items() if k.startswith("ingest-"))
    return float(result["total_seconds"]) - ingest


def koble_file(delivery: Path, registry: str) -> Path:
    """koble's delivered extract of ``registry`` (one file, whatever its format)."""
    found = sorted(delivery.glob(f"{registry}_extract.*"))
    if len(found) != 1:
        raise SystemExit(f"no single extract for {registry} in {delivery}: {found}")
    return found[0]


def compare(koble: Path, script: Path, variables: tuple[str, ...]) -> tuple[int, bool | None]:
    """The script's distinct persons, and whether both files hold the same rows (løpenummer
    included) as multisets; ``None`` when koble's file is not Parquet (other formats change
    types: Stata dates, labels), then only the counts are compared."""
    import duckdb

    con = duckdb.connect(":memory:")
    try:
        found = con.execute(f"SELECT count(DISTINCT lopenr) FROM read_parquet('{script}')")
        persons = int(found.fetchone()[0])  # type: ignore[index]
        if koble.suffix != ".parquet":
            return persons, None
        cols = ", ".join(("lopenr", *variables))  # koble delivers them upper case: same names
        k = f"SELECT {cols} FROM read_parquet('{koble}')"
        b = f"SELECT {cols} FROM read_parquet('{script}')"
        diff = con.execute(
            f"SELECT (SELECT count(*) FROM ({k} EXCEPT ALL {b})), "
            f"(SELECT count(*) FROM ({b} EXCEPT ALL {k}))"
        ).fetchone()
    finally:
        con.close()
    return persons, diff == (0, 0)


def ratio(a: float | None, b: float | None) -> str:
    """``a / b`` as a table cell ("1.23x"); "—" when either is missing or ``b`` is zero."""
    return "—" if a is None or not b else f"{a / b:.2f}x"


def sec(x: float | None) -> str:
    """Seconds as a table cell, two decimals; "—" when missing."""
    return "—" if x is None else f"{x:.2f}"


def groups(job: dict[str, Any]) -> list[tuple[str, list[str], str | None]]:
    """(label, koble step ids, script phase) rows of the comparison, in plan order."""
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
    rows: list[tuple[str, list[str], str | None]] = [
        ("cohort → key list (checks, history, løpenummer)", keys, "keys")
    ]
    for r in REQUESTS:
        rows.append((r.id, by_registry[r.id], r.registry))
    rows.append(("delivery: manifest, reports, researcher's check", delivery, None))
    if other:
        rows.append(("other steps", other, None))
    return rows


@dataclass(frozen=True)
class Outcome:
    """One world's result, for the summary."""

    world: Path
    persons: int
    cohort: int
    koble: float
    script: float
    koble_cpu: float
    script_cpu: float
    same: bool

    @property
    def met(self) -> bool:
        return self.same and self.koble <= TARGET * self.script


def report(load: Run, job: Run, base: Run, checks: dict[str, tuple[int, bool | None]]) -> bool:
    """Print one world's tables; True when both sides delivered the same."""
    (lj, _, _, l_rss), (kj, k_wall, k_cpu, k_rss), (bj, b_wall, b_cpu, b_rss) = load, job, base
    ingest_keys = [k for k in lj["seconds"] if k.startswith("ingest-")]
    ingest = sum(lj["seconds"][k] for k in ingest_keys)
    print("\n| step | koble steps | koble s | script s | ratio | koble CPU s | script CPU s "
          "| CPU ratio |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|")

    def row(label: str, ids: str, k: float, b: float | None, kc: float, bc: float | None) -> None:
        print(f"| {label} | {ids} | {sec(k)} | {sec(b)} | {ratio(k, b)} | {sec(kc)} | "
              f"{sec(bc)} | {ratio(kc, bc)} |")  # fmt: skip

    # the start-up: the child's whole time less what it timed inside (imports, interpreter)
    row("process start, imports, keys", "—", k_wall - kj["inside_seconds"],
        b_wall - bj["total_seconds"] + bj["seconds"]["start"], k_cpu - kj["inside_cpu"],
        b_cpu - bj["total_cpu"] + bj["cpu"]["start"])  # fmt: skip
    # what the script has no counterpart for: the parties' sealed transfers (inside the
    # steps), the steps without a script phase (the delivery and the researcher's check, with
    # their own transfers), and the run's own bookkeeping
    sent = kj["transfer_seconds"]
    accounted = accounted_cpu = 0.0
    alone = alone_cpu = 0.0
    for label, ids, phase in groups(kj):
        k = sum(kj["seconds"][i] for i in ids)
        kc = sum(kj["cpu_seconds"][i] for i in ids)
        accounted, accounted_cpu = accounted + k, accounted_cpu + kc
        if phase is None:
            alone, alone_cpu = alone + k, alone_cpu + kc
        else:  # the transfers inside the steps the script does too
            alone += sum(sent[i][0] for i in ids)
            alone_cpu += sum(sent[i][1] for i in ids)
        b = None if phase is None else bj["seconds"][phase]
        bc = None if phase is None else bj["cpu"][phase]
        row(label, ", ".join(ids), k, b, kc, bc)
    overhead = kj["inside_seconds"] - accounted, kj["inside_cpu"] - accounted_cpu
    row("run overhead (plan, keys, workspace, state)", "—", overhead[0], None, overhead[1], None)
    print(f"| **process** | | **{sec(k_wall)}** | **{sec(b_wall)}** | "
          f"**{ratio(k_wall, b_wall)}** | **{sec(k_cpu)}** | **{sec(b_cpu)}** | "
          f"**{ratio(k_cpu, b_cpu)}** |")  # fmt: skip
    row(
        "of which sealed transfers (seal, sign, move, open; inside the steps above)",
        "—",
        sum(w for w, _ in sent.values()),
        None,
        sum(c for _, c in sent.values()),
        None,
    )
    row(
        "process less transfers, delivery and run overhead (the data work)",
        "—",
        k_wall - alone - overhead[0],
        b_wall,
        k_cpu - alone_cpu - overhead[1],
        b_cpu,
    )
    print(f"| peak RSS (GiB) | | {k_rss:.2f} | {b_rss:.2f} | | | | |")
    if ingest_keys:
        print(
            f"\nReseptregisteret's sealed ingest (a pre-job load, in the first run only, "
            f"excluded from the comparison): {sec(ingest)} s, peak RSS of that run "
            f"{l_rss:.2f} GiB; the first run's job without it took "
            f"{sec(without_ingest(lj))} s in-process."
        )
    print("\n| registry | koble rows | script rows | koble persons | script persons | "
          "same rows (løpenummer included) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---|")
    ok = True
    for r in REQUESTS:
        stats = kj["stats"][f"{r.id}-extract"]
        kr, br = int(stats["rows_delivered"]), bj["rows"][r.registry]
        (bp, same), kp = checks[r.registry], int(stats["persons_delivered"])
        shown = "n/a (not parquet)" if same is None else ("yes" if same else "NO")
        print(f"| {r.registry} | {kr:,} | {br:,} | {kp:,} | {bp:,} | {shown} |")
        ok &= kr == br and kp == bp and same is not False
    print("\n| koble step | party | first run (with ingest) | compared run | compared run, CPU |")
    print("|---|---|---:|---:|---:|")
    for key in ingest_keys:
        print(f"| {key} | ttp, {key[7:]} | {sec(lj['seconds'][key])} | (loaded) | |")
    for s in kj["steps"]:
        i = s["id"]
        print(f"| {i} | {s['party']} | {sec(lj['seconds'].get(i))} | "
              f"{sec(kj['seconds'].get(i))} | {sec(kj['cpu_seconds'].get(i))} |")  # fmt: skip
    print(f"| total in-process | | {sec(lj['total_seconds'])} | {sec(kj['total_seconds'])} | "
          f"{sec(kj['inside_cpu'])} |")  # fmt: skip
    if not ok:
        print(
            "\nMISMATCH: koble and the script delivered different rows; the times do not compare."
        )
    return ok


def print_summary(outcomes: list[Outcome], repeat: int) -> None:
    """The summary table, one row per world, and how to read the times."""
    print(f"\n## Summary (best of {repeat} each; target: koble's process ≤ {TARGET:g}x the "
          "script's, wall)\n")  # fmt: skip
    print("| persons | cohort | koble s | script s | ratio | CPU koble s | CPU script s | "
          "CPU ratio | same rows | target |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for o in outcomes:
        print(f"| {o.persons:,} | {o.cohort:,} | {sec(o.koble)} | {sec(o.script)} | "
              f"{ratio(o.koble, o.script)} | {sec(o.koble_cpu)} | {sec(o.script_cpu)} | "
              f"{ratio(o.koble_cpu, o.script_cpu)} | {'yes' if o.same else 'NO'} | "
              f"{'met' if o.met else 'NOT met'} |")  # fmt: skip
    print(
        "\nkoble's step times include sealing, signing, moving and opening the step's "
        "transfers; the script sorts its extracts like koble (løpenummer, then variables). "
        "DuckDB and Polars use every core on both sides; other work on the machine skews the "
        "wall times more than the CPU times."
    )
