"""Writing what ``koble resolve`` made: all outputs together or none, and the audit events.

One run writes, through one :class:`koble.files.OutputSet` (so they appear together or not
at all, the resolved file last):

- RESOLVED (Parquet or CSV by suffix): one row per resolved record, the links with
  ``method``, ``match_probability`` and ``match_weight``
  (:data:`~koble.recovery.contract.LINK_SCHEMA`);
- the rejects beside it (``RESOLVED.rejects.SUFFIX``): every record not resolved, with its
  reason, pairs awaiting review included, so links and rejects together hold every record;
- the review CSV and its HTML page (:mod:`koble.recovery.review`);
- the parameters file (``RESOLVED.resolution.json``): the command's settings, the hashes of
  every input and output, the counts, and the trained model (settings, m and u, λ,
  thresholds, blocking rules, seed) with its digest: what an auditor needs to re-run the
  resolution and compare bit for bit. It holds no name, number or birth date.

With an audit log, the run is one ``resolve`` event (counts per method and reason,
thresholds, seed, digests of the model and the register; never a name, number or date), and
a decisions read-back adds one ``resolve-decisions`` event per reviewer (who decided, how
many of each kind; the log line's time says when).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import polars as pl

from koble import __version__
from koble.digests import sha256_file
from koble.errors import UsageError
from koble.files import OutputSet
from koble.pseudonym.auditing import AuditSink
from koble.recovery.contract import METHODS, REASONS, REGISTER_FILES
from koble.recovery.decisions import Decisions
from koble.recovery.register import Register
from koble.recovery.resolve import Resolution
from koble.recovery.review import review_html, review_table
from koble.tables import write_table

__all__ = ["FORMAT", "ResolvePaths", "RunSettings", "model_digest", "write_resolution"]

#: the parameters file's format tag
FORMAT = "koble-resolution/1"
_TABLES = (".csv", ".tsv", ".parquet")


@dataclasses.dataclass(frozen=True)
class ResolvePaths:
    """Where one run's outputs go (see the module docstring)."""

    resolved: Path
    rejects: Path
    review: Path
    review_html: Path
    parameters: Path

    @classmethod
    def beside(
        cls,
        resolved: str | Path,
        *,
        review: str | Path | None = None,
        rejects: str | Path | None = None,
        parameters: str | Path | None = None,
    ) -> ResolvePaths:
        """The paths for RESOLVED, the others beside it unless given: the HTML page is
        always beside the review table, with the suffix ``.html``."""
        out = Path(resolved)
        for name, path in (("--out", out), ("--review", review), ("--rejects", rejects)):
            if path is not None and Path(path).suffix.lower() not in _TABLES:
                raise UsageError(f"{name} must end in .csv, .tsv or .parquet", path=path)
        stem = out.stem
        review_path = Path(review) if review else out.with_name(f"{stem}.review.csv")
        return cls(
            resolved=out,
            rejects=Path(rejects) if rejects else out.with_name(f"{stem}.rejects{out.suffix}"),
            review=review_path,
            review_html=review_path.with_suffix(".html"),
            parameters=Path(parameters) if parameters else out.with_name(f"{stem}.resolution.json"),
        )

    def named(self) -> dict[str, Path]:
        """The outputs as the user names them (for :func:`koble.path_checks.ensure_distinct`)."""
        return {"--out": self.resolved, "--rejects": self.rejects, "--review": self.review,
                "--review (HTML page)": self.review_html,
                "--parameters": self.parameters}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """How the run was asked for: what the parameters file records for a re-run."""

    records: Path
    register: Path
    thresholds: tuple[float, float]
    seed: int
    test_numbers: bool
    probabilistic: bool


def model_digest(model: object | None) -> str | None:
    """SHA-256 (hex) of the trained model's deterministic JSON, or None without a model."""
    to_json = getattr(model, "to_json", None)
    if not callable(to_json):
        return None
    return hashlib.sha256(str(to_json()).encode("utf-8")).hexdigest()


def _model_dict(model: object | None) -> dict[str, Any] | None:
    to_dict = getattr(model, "to_dict", None)
    if not callable(to_dict):
        return None
    found = to_dict()
    return found if isinstance(found, dict) else None


def _register_hashes(register: Path) -> dict[str, str]:
    """SHA-256 of each register file there is, by file name."""
    found = (register / name for name in REGISTER_FILES.values())
    return {path.name: sha256_file(path) for path in found if path.is_file()}


def _estimate(model: object | None, name: str) -> float | None:
    value = getattr(model, name, None)
    return float(value) if isinstance(value, int | float) else None


def write_resolution(
    resolution: Resolution,
    paths: ResolvePaths,
    *,
    records: pl.DataFrame,
    register: Register,
    settings: RunSettings,
    decisions: Decisions | None = None,
    audit: AuditSink | None = None,
    actor: str = "",
) -> dict[str, Any]:
    """Write every output of ``resolution`` to ``paths`` together (or none), append the
    audit events (before the outputs appear; a refused event writes nothing), and return
    the summary the CLI prints (counts, paths, hashes; never a name or number)."""
    table = review_table(resolution.review, records, register, resolution.model)
    page = review_html(table, thresholds=settings.thresholds, model=resolution.model,
                       csv_name=paths.review.name)  # fmt: skip
    unresolved = resolution.unresolved()
    counts = dict(resolution.counts)
    reconciled = resolution.links.height + unresolved.height == counts["records"]
    same = resolution.same_person
    same_counts = {"persons": same.height,
                   "records": int(same["records"].sum()) if same.height else 0}  # fmt: skip
    inputs: dict[str, Any] = {
        "records": {"file": settings.records.name, "sha256": sha256_file(settings.records)},
        "register": _register_hashes(settings.register),
        "decisions": None,
    }
    if decisions is not None:
        inputs["decisions"] = {"file": decisions.path.name, "sha256": decisions.sha256,
                               **decisions.counts()}  # fmt: skip
    digest = model_digest(resolution.model)
    with OutputSet() as outputs:
        write_table(unresolved, paths.rejects, outputs=outputs)
        write_table(table, paths.review, outputs=outputs)
        with outputs.file(paths.review_html) as temp:
            temp.write_text(page, encoding="utf-8")
        write_table(resolution.links, paths.resolved, outputs=outputs, last=True)
        hashes = {
            key: {"file": path.name, "sha256": sha256_file(outputs.current(path))}
            for key, path in (("resolved", paths.resolved), ("rejects", paths.rejects),
                              ("review", paths.review), ("review_html", paths.review_html))
        }  # fmt: skip
        document = {
            "format": FORMAT,
            "koble_version": __version__,
            "settings": {
                "thresholds": list(settings.thresholds), "seed": settings.seed,
                "test_numbers": settings.test_numbers,
                "probabilistic": settings.probabilistic, "stages": list(METHODS),
            },
            "inputs": inputs,
            "outputs": hashes,
            "counts": counts,
            "same_person": same_counts,
            "model_sha256": digest,
            "model": _model_dict(resolution.model),
        }  # fmt: skip
        text = json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
        with outputs.file(paths.parameters) as temp:
            temp.write_bytes(text.encode("utf-8"))
        if audit is not None:
            _audit(audit, actor, resolution, settings, decisions, inputs, hashes, digest)
    return {
        "records": counts["records"],
        "counts": counts,
        "reconciled": reconciled,
        "same_person": same_counts,
        "thresholds": list(settings.thresholds),
        "estimated_precision": _estimate(resolution.model, "estimated_precision"),
        "estimated_recall": _estimate(resolution.model, "estimated_recall"),
        "comparisons": getattr(resolution.model, "n_comparisons", None),
        "model_sha256": digest,
        "decisions": None if decisions is None else decisions.counts(),
        "outputs": {key: str(path) for key, path in dataclasses.asdict(paths).items()},
    }


def _audit(
    audit: AuditSink, actor: str, resolution: Resolution, settings: RunSettings,
    decisions: Decisions | None, inputs: dict[str, Any], hashes: dict[str, Any],
    digest: str | None,
) -> None:  # fmt: skip
    """The decisions events (one per reviewer) and the resolve event."""
    counts = resolution.counts
    if decisions is not None:
        totals = decisions.counts()
        # one event per reviewer: a handful of people, not a loop over records
        for reviewer, matches, non_matches in decisions.by_reviewer().iter_rows():
            audit.append(
                actor=actor, operation="resolve-decisions", rows_in=matches + non_matches,
                input_sha256=decisions.sha256,
                details={"reviewer": reviewer, "match": matches, "non_match": non_matches,
                         "file_decisions": totals["decisions"],
                         "file_undecided": totals["undecided"],
                         "applied": counts["decisions_applied"]},
            )  # fmt: skip
    register = "".join(f"{k}{v}" for k, v in sorted(inputs["register"].items()))
    details: dict[str, str | int | float | bool | None] = {
        **{m: counts[m] for m in METHODS},
        **{r: counts[r] for r in REASONS if r in counts},
        "awaiting_review": counts["awaiting_review"],
        "same_person": resolution.same_person.height,
        "threshold_low": settings.thresholds[0], "threshold_high": settings.thresholds[1],
        "seed": settings.seed, "model_used": settings.probabilistic,
        # 16-digit prefixes: the log refuses hex runs of key length outside its hash fields
        "model_digest": None if digest is None else digest[:16],
        "register_digest": hashlib.sha256(register.encode()).hexdigest()[:16],
        "estimated_precision": _estimate(resolution.model, "estimated_precision"),
        "estimated_recall": _estimate(resolution.model, "estimated_recall"),
    }  # fmt: skip
    audit.append(
        actor=actor, operation="resolve", rows_in=counts["records"], rows_out=counts["linked"],
        rejected=counts["rejected"] + counts["awaiting_review"],
        input_sha256=inputs["records"]["sha256"], output_sha256=hashes["resolved"]["sha256"],
        details=details,
    )  # fmt: skip
