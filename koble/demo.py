"""The demo job: what ``make demo`` runs.

1. Generate a synthetic registry world and check every identifier column in it the way an
   operator checks incoming files: each check must reconcile (rows in = valid + rejected),
   and what it finds must match what the generator says it put there (the cohort's injected
   dirt, a clean population, no fødselsnummer at all in the de-identified registry).
2. Run the three demo linkage jobs on it (:mod:`koble.linkage.demo_run`): every route, every
   party in its own workspace, each delivery verified as an auditor would and the
   distributed one reproduced byte for byte. The distributed job's cohort recovers its
   dirty numbers at the TTP, and the Helsearkivregisteret job its number-less journals;
   the summary gives the records linked by each method and the model's estimated
   precision and recall.

The result is data; the CLI only prints it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from koble.files import write_text
from koble.linkage.demo_run import JobOutcome, run_linkage_demo
from koble.linkage.executor import StepEvent
from koble.pseudonym.keys import Clock, RandBytes
from koble.pseudonym.keystore import KeyWrapper
from koble.registries.identifiers.check import CheckReport, check_frame
from koble.registries.identifiers.column import Scheme
from koble.registries.identifiers.scan import scan_frame
from koble.synth import SynthConfig, generate_world
from koble.tables import write_table

__all__ = ["DemoResult", "Expectation", "run_demo"]


@dataclass(frozen=True)
class Expectation:
    """What one identifier column should hold, from the generator's ``truth``."""

    table: str
    column: str
    scheme: Scheme = "fnr"
    rejected: int | None = 0
    duplicate_rows: int | None = None


@dataclass
class DemoResult:
    """Everything the demo found, with timings. Holds counts, never identifiers."""

    world: Path
    persons: int
    checks: list[tuple[Expectation, CheckReport]] = field(default_factory=list)
    leaks: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    linkage: list[JobOutcome] = field(default_factory=list)

    def failures(self) -> list[str]:
        """Every expectation that did not hold, as a sentence."""
        out = []
        for expected, report in self.checks:
            where = f"{expected.table}.{expected.column}"
            if not report.reconciled:
                out.append(f"{where}: counts do not reconcile")
            if expected.rejected is not None and report.rejected != expected.rejected:
                out.append(f"{where}: {report.rejected} rejected, expected {expected.rejected}")
            dup = expected.duplicate_rows
            if dup is not None and report.duplicate_rows != dup:
                out.append(f"{where}: {report.duplicate_rows} duplicate rows, expected {dup}")
        out.extend(f"{name}: {n} valid fødselsnummer found" for name, n in self.leaks.items() if n)
        for outcome in self.linkage:
            out.extend(outcome.failures())
        return out

    @property
    def ok(self) -> bool:
        return not self.failures()

    @property
    def identifiers_checked(self) -> int:
        return sum(report.rows for _, report in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "world": str(self.world),
            "persons": self.persons,
            "ok": self.ok,
            "failures": self.failures(),
            "identifiers_checked": self.identifiers_checked,
            "checks": [
                {
                    "expected_rejected": e.rejected,
                    "expected_duplicate_rows": e.duplicate_rows,
                    **r.to_dict(),
                }
                for e, r in self.checks
            ],
            "deidentified_scan": self.leaks,
            "linkage": [outcome.to_dict() for outcome in self.linkage],
            "seconds": self.seconds,
        }


def _expectations(truth: dict[str, Any]) -> list[Expectation]:
    cohort = truth["cohort"]
    person_keyed = [
        ("npr.parquet", "fnr"), ("dar.parquet", "fnr"), ("mfr.parquet", "mother_fnr"),
        ("mfr.parquet", "child_fnr"), ("kreftregisteret.parquet", "fnr"),
        ("quality_registry.parquet", "fnr"), ("ssb_education.parquet", "fnr"),
        ("ssb_income.parquet", "fnr"), ("feeds/reseptregisteret.parquet", "fnr"),
        ("feeds/iplos.parquet", "fnr"),
    ]  # fmt: skip
    return [
        Expectation("population.parquet", "person_id", duplicate_rows=0),
        Expectation("identity_history.parquet", "old_id", duplicate_rows=0),
        Expectation("identity_history.parquet", "current_id"),
        Expectation(
            "cohort.parquet",
            "fnr",
            rejected=cohort["wrong_check_digit"] + cohort["missing"],
            duplicate_rows=cohort["duplicate_rows"],
        ),
        *(Expectation(table, column) for table, column in person_keyed),
        Expectation("npr.parquet", "institution_orgnr", scheme="orgnr"),
        Expectation("feeds/reseptregisteret.parquet", "prescriber_hpr", scheme="hpr"),
        Expectation("feeds/reseptregisteret.parquet", "pharmacy_id", scheme="orgnr"),
    ]


def _scan_for_fnr(frame: pl.DataFrame) -> int:
    """Rows holding a valid fødselsnummer-family number, summed over every column of
    ``frame`` (inside text, in number columns that lost a leading zero, and in names): the
    auditor's scan (:func:`~koble.registries.identifiers.scan.scan_frame`)."""
    return sum(finding.rows for finding in scan_frame(frame))


def run_demo(
    out: Path,
    *,
    persons: int = 50_000,
    seed: int = 2025,
    progress: Callable[[str, int, int], None] | None = None,
    kek: KeyWrapper,
    now: Clock,
    randbytes: RandBytes,
    fmt: str = "stata",
    on_step: StepEvent | None = None,
) -> DemoResult:
    """Generate a world in ``out/world``, check it (rejects and summary in ``out/checks``),
    then run, verify and reproduce the linkage jobs (workspaces in ``out/linkage``)."""
    world, checks_dir = out / "world", out / "checks"
    result = DemoResult(world=world, persons=persons)
    started = time.perf_counter()
    manifest = generate_world(world, SynthConfig(persons=persons, seed=seed), progress)
    result.seconds["generate"] = time.perf_counter() - started

    started = time.perf_counter()
    frames: dict[str, pl.DataFrame] = {}
    for expected in _expectations(manifest["truth"]):
        if expected.table not in frames:
            frames[expected.table] = pl.read_parquet(world / expected.table)
        report, rejects = check_frame(
            frames[expected.table], expected.column, path=expected.table, scheme=expected.scheme
        )
        if rejects.height:
            name = f"{Path(expected.table).stem}.{expected.column}.rejects.csv"
            write_table(rejects.with_columns(pl.col("reason").cast(pl.String)), checks_dir / name)
        result.checks.append((expected, report))
    result.seconds["check"] = time.perf_counter() - started
    deidentified = pl.read_parquet(world / "abortregisteret.parquet")
    result.leaks["abortregisteret.parquet"] = _scan_for_fnr(deidentified)
    started = time.perf_counter()
    result.linkage = run_linkage_demo(
        world, out / "linkage", kek=kek, now=now, randbytes=randbytes, fmt=fmt, on_step=on_step
    )
    result.seconds["linkage"] = time.perf_counter() - started
    write_text(checks_dir / "summary.json",
               json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n")  # fmt: skip
    return result
