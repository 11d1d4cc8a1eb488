"""Reproduce a delivery: run its job again from the same inputs and keys, compare every byte.

The original manifest gives the run's clock value; the job, the inputs and the long-lived
keys (operator and TTP keysets, signing key) must be the same. Transport keys are new (they
protect files in transit only), so transfer files differ while every delivered file, and
the signed manifest itself, must be byte-identical.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from koble.errors import UsageError
from koble.files import sha256_file
from koble.linkage.executor import RunResult, run_job
from koble.linkage.manifest import read_manifest

__all__ = ["Comparison", "ReproduceReport", "reproduce_job"]


@dataclass(frozen=True)
class Comparison:
    file: str
    identical: bool
    detail: str


@dataclass
class ReproduceReport:
    against: str
    delivery: str
    files: list[Comparison] = field(default_factory=list)
    run: RunResult | None = None

    @property
    def identical(self) -> bool:
        return bool(self.files) and all(c.identical for c in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "against": self.against,
            "delivery": self.delivery,
            "identical": self.identical,
            "files": [
                {"file": c.file, "identical": c.identical, "detail": c.detail} for c in self.files
            ],
        }

    def to_text(self) -> str:
        lines = [f"Reproduced {self.against} as {self.delivery}"]
        lines += [
            f"  {'same' if c.identical else 'DIFF'}  {c.file}: {c.detail}" for c in self.files
        ]
        same = sum(c.identical for c in self.files)
        verdict = "BYTE-IDENTICAL" if self.identical else "NOT IDENTICAL"
        lines.append(f"{verdict}: {same}/{len(self.files)} files")
        return "\n".join(lines) + "\n"


def reproduce_job(job_path: Path, workspace: Path, against: Path, **run: Any) -> ReproduceReport:
    """Run ``job_path`` in ``workspace`` (``run`` as for :func:`run_job`) and compare."""
    if workspace.exists() and any(workspace.iterdir()):
        # an existing workspace would be resumed, not re-run: nothing would be reproduced
        raise UsageError(
            "a reproduction needs a new, empty workspace (this one holds a run, which would "
            "only be resumed)",
            path=workspace,
        )
    document = read_manifest(against / "manifest.json")
    created = datetime.datetime.fromisoformat(document["manifest"]["created"])
    result = run_job(job_path, workspace, created=created, **run)
    report = ReproduceReport(str(against), str(result.delivery), run=result)
    names = [str(o["file"]) for o in document["manifest"]["outputs"]] + ["manifest.json"]
    for name in names:
        old, new = against / name, result.delivery / name
        if not new.is_file():
            report.files.append(Comparison(name, False, "not produced by the reproduction"))
        elif not old.is_file():
            report.files.append(Comparison(name, False, "missing from the original delivery"))
        elif old.read_bytes() == new.read_bytes():
            report.files.append(Comparison(name, True, f"sha256 {sha256_file(new)[:16]}…"))
        else:
            report.files.append(
                Comparison(
                    name, False, f"sha256 {sha256_file(old)[:16]}… ≠ {sha256_file(new)[:16]}…"
                )
            )
    return report
