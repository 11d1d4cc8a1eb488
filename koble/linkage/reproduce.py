"""Reproduce a delivery: run its job again from the same inputs and keys, compare every byte.

The original manifest gives the run's clock value; the job, the inputs and the long-lived
keys (operator and TTP keysets, signing key) must be the same. Transport keys are new (they
protect files in transit only), so transfer files differ while every delivered file, and
the signed manifest itself, must be byte-identical. A reproduction on another engine (a
Spark run reproduced on DuckDB) delivers the same bytes too; its manifest names the engine
that ran it, so that one field, and the signature over the manifest, are all that may differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from koble.digests import sha256_file
from koble.errors import UsageError
from koble.linkage.delivery_records import ManifestBody
from koble.linkage.executor import RunResult, run_job
from koble.linkage.manifest import read_manifest

__all__ = ["Comparison", "ReproduceReport", "reproduce_job"]

MANIFEST = "manifest.json"
#: How a manifest that differs only in the engine named in it is reported.
OTHER_ENGINE = "the same but for the engine that ran it"


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
        engine = any(c.identical and c.detail.startswith(OTHER_ENGINE) for c in self.files)
        note = " (the manifest but for the engine named in it)" if self.identical and engine else ""
        lines.append(f"{verdict}: {same}/{len(self.files)} files{note}")
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
    document = read_manifest(against / MANIFEST)
    original = ManifestBody.from_json(document["manifest"], against / MANIFEST)
    result = run_job(job_path, workspace, created=original.created_at, **run)
    report = ReproduceReport(str(against), str(result.delivery), run=result)
    names = [o.file for o in original.outputs] + [MANIFEST]
    for name in names:
        old, new = against / name, result.delivery / name
        if not new.is_file():
            report.files.append(Comparison(name, False, "not produced by the reproduction"))
        elif not old.is_file():
            report.files.append(Comparison(name, False, "missing from the original delivery"))
        elif old.read_bytes() == new.read_bytes():
            report.files.append(Comparison(name, True, f"sha256 {sha256_file(new)[:16]}…"))
        elif name == MANIFEST and (engines := _engine_only(document, read_manifest(new))):
            report.files.append(
                Comparison(name, True, f"{OTHER_ENGINE}: {engines[0]} there, {engines[1]} here")
            )
        else:
            report.files.append(
                Comparison(
                    name, False, f"sha256 {sha256_file(old)[:16]}… ≠ {sha256_file(new)[:16]}…"
                )
            )
    return report


def _engine_only(original: dict[str, Any], reproduced: dict[str, Any]) -> tuple[str, str] | None:
    """The two engines' names, when the manifests differ in the engine named and nothing else
    (their bodies otherwise equal, both signed by the same key); else None."""
    body, again = dict(original["manifest"]), dict(reproduced["manifest"])
    engines = (str(body.pop("engine", "")), str(again.pop("engine", "")))
    signers = [d["signature"].get("public_key") for d in (original, reproduced)]
    if engines[0] == engines[1] or body != again or signers[0] != signers[1]:
        return None
    return engines
