"""The linkage half of ``make demo``: the demo jobs run, verified and reproduced.

For each job (:mod:`koble.linkage.demo_jobs`: distributed, with the survey cohort's dirty
numbers recovered at the TTP; central anonymous; Helsearkivregisteret, whose journals the
TTP recovers): run it with every party in its own workspace,
verify the delivery as an auditor would (signature, hashes, counts, identifier scans of the
researcher's and the pseudonymous registries' files), and, for the distributed job,
reproduce it in a fresh workspace and compare every delivered byte. Keys and the KEK are
passed in; a demo makes new ones each time.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from koble.linkage.demo_jobs import write_demo_jobs, write_helsearkiv_job
from koble.linkage.executor import RunResult, StepEvent, run_job
from koble.linkage.quality import read_quality_report
from koble.linkage.reproduce import ReproduceReport, reproduce_job
from koble.linkage.sources import synthetic_sources
from koble.linkage.verify import VerifyReport, verify_delivery
from koble.pseudonym.audit import AuditHead
from koble.pseudonym.keys import Clock, RandBytes
from koble.pseudonym.keystore import KeyWrapper
from koble.pseudonym.signing import key_id_of
from koble.registries.catalogue import Catalogue

__all__ = ["JobOutcome", "run_linkage_demo"]


@dataclass
class JobOutcome:
    name: str
    run: RunResult
    verify: VerifyReport
    reproduce: ReproduceReport | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    #: Where each audit log the job's run (and reproduction) closed ends, in closing order.
    audit_logs: list[AuditHead] = field(default_factory=list)
    #: Central route: persons the row model alone would let an attacker single out by
    #: their set of rows (``persons``, ``unique``, ``under_k``), for the summary.
    row_model: dict[str, int] | None = None
    #: Identity recovery, per set of records resolved at the TTP (the quality report's
    #: linkage sections, without the bias tables): records by method, estimated precision
    #: and recall.
    recovery: list[dict[str, Any]] = field(default_factory=list)

    def recovery_lines(self) -> list[str]:
        """One line per recovery, for the demo's summary."""
        out = []
        for r in self.recovery:
            linked = ", ".join(f"{m} {n:,}" for m, n in r["by_outcome"].items() if n)
            precision, recall = r.get("estimated_precision"), r.get("estimated_recall")
            model = (
                "no probabilistic model needed"
                if precision is None
                else f"model's estimate at {r['thresholds'][0]}/{r['thresholds'][1]}: "
                f"precision {precision:.4f}, recall {recall or 0:.4f}"
            )
            out.append(
                f"recovery ({r['scope']}): {r['rows']:,} records: {linked}; "
                f"{r['sent_to_ttp']:,} sent to the TTP; {model}"
            )
        return out

    @property
    def ok(self) -> bool:
        return self.verify.ok and (self.reproduce is None or self.reproduce.identical)

    def failures(self) -> list[str]:
        out = [f"{self.name}: {c.name}: {c.detail}" for c in self.verify.checks if not c.ok]
        if self.reproduce is not None:
            out += [
                f"{self.name}: reproduction differs for {c.file}"
                for c in self.reproduce.files
                if not c.identical
            ]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "run": self.run.to_dict(),
            "verify": self.verify.to_dict(),
            "reproduce": None if self.reproduce is None else self.reproduce.to_dict(),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "audit_logs": [
                {"path": str(h.path), "entries": h.entries, "head": h.head} for h in self.audit_logs
            ],
            "row_model": self.row_model,
            "recovery": self.recovery,
        }


def run_linkage_demo(
    world: Path,
    out: Path,
    *,
    kek: KeyWrapper,
    now: Clock,
    randbytes: RandBytes,
    fmt: str = "stata",
    on_step: StepEvent | None = None,
) -> list[JobOutcome]:
    """Run, verify and reproduce the demo jobs on ``world``; workspaces go under ``out``."""
    if out.exists():
        shutil.rmtree(out)
    distributed, central = write_demo_jobs(world, fmt=fmt)
    helsearkiv = write_helsearkiv_job(world, fmt=fmt)
    catalogue = Catalogue.load()
    common: dict[str, Any] = {
        "keys_dir": out / "keys", "kek": kek, "sources": synthetic_sources(world),
        "catalogue": catalogue, "now": now, "randbytes": randbytes, "on_step": on_step,
    }  # fmt: skip
    outcomes = []
    jobs = [("distributed", distributed), ("central", central), ("helsearkiv", helsearkiv)]
    for name, job in jobs:
        workspace = out / name
        heads: list[AuditHead] = []
        common["on_audit_close"] = heads.append
        tick = time.perf_counter()
        result = run_job(job, workspace, **common)
        seconds = {"run": time.perf_counter() - tick}
        tick = time.perf_counter()
        # the auditor pins the operator's published key, never the manifest's own
        pinned = key_id_of((out / "keys" / "operator.signing.pub.pem").read_bytes())
        report = verify_delivery(result.delivery, key_id=pinned, workspace=workspace)
        seconds["verify"] = time.perf_counter() - tick
        outcome = JobOutcome(name, result, report, seconds=seconds, audit_logs=heads)
        if name == "distributed":
            tick = time.perf_counter()
            outcome.reproduce = reproduce_job(
                job, out / f"{name}-reproduced", result.delivery, **common
            )
            seconds["reproduce"] = time.perf_counter() - tick
        if name == "central":
            outcome.row_model = row_model_exposure(job, workspace)
        outcome.recovery = recovery_summary(result.delivery / "quality.json")
        outcomes.append(outcome)
    return outcomes


def recovery_summary(quality: Path) -> list[dict[str, Any]]:
    """The figures of each linkage section of a delivered quality report: records by how
    they were linked, how many went to the TTP, and the model's estimated precision and
    recall at the thresholds."""
    sections = read_quality_report(quality).linkage or [] if quality.is_file() else []
    out = []
    for s in sections:
        model = s.model or {}
        sent = s.sent_to_ttp if s.sent_to_ttp is not None else s.records
        out.append({
            "scope": s.scope, "rows": s.rows, "by_outcome": dict(s.by_outcome),
            "sent_to_ttp": sent or 0, "thresholds": s.thresholds,
            "estimated_precision": model.get("estimated_precision"),
            "estimated_recall": model.get("estimated_recall"),
        })  # fmt: skip
    return out


def row_model_exposure(job: Path, workspace: Path) -> dict[str, int] | None:
    """What the central job's release would expose under the row model alone (every row
    class holds k persons): the operator's linked file anonymised again with ``model =
    "row"`` in a temporary directory (removed after), and the persons whose set of released
    rows, with the person-constant columns, fewer than k persons share. The demo prints it
    beside the person-set release's figure."""
    from koble.anonymity.release import anonymise_file  # the demo only
    from koble.linkage.job import load_job
    from koble.linkage.steps_central import LINKED, gate_config, person_figures

    catalogue = Catalogue.load()
    anonymity = load_job(job, catalogue).anonymity
    linked = workspace / "operator" / "store" / LINKED
    if anonymity is None or not linked.is_file():
        return None
    config = gate_config(anonymity, linked, job.parent, model="row")
    with tempfile.TemporaryDirectory() as scratch:
        release = anonymise_file(linked, config, Path(scratch) / "row_model.parquet",
                                 Path(scratch) / "row_model_withheld.parquet")  # fmt: skip
    return None if release.after is None else person_figures(release.after)
