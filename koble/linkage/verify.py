"""The auditor's check of a delivery: signature, hashes, counts, and no fødselsnummer.

:func:`verify_delivery` checks a delivery directory against its ``manifest.json``:

* the manifest's Ed25519 signature (and, when given, that it is by the expected key);
* every output the manifest lists: present, the same SHA-256, the same number of rows;
* no file in the directory that the manifest does not list;
* the manifest's own reconciliation checks all passed, and no delivered data file is empty
  when the population was not;
* every column of every data file holds no valid fødselsnummer, D- or H-number, and no
  koble pseudonym (the researcher may receive neither);
* every other file, the manifest, quality report and codebook included, read as text, holds
  no valid person number standing alone (a digit run inside a hash does not count);
* with a workspace: the same identifier scans over every file a pseudonymous registry
  holds (its store and opened transfers).

A failed scan names the file, the column or line and how many, never the value. A Parquet
data file is hashed and scanned from one read of its bytes, column by column
(:mod:`koble.linkage.received`); other formats are read whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from koble.digests import sha256_file
from koble.errors import InputError, sanitise
from koble.linkage.delivery_records import ManifestBody, ManifestOutput
from koble.linkage.formats import count_rows, read_delivery
from koble.linkage.manifest import read_manifest, signature_ok
from koble.linkage.received import Scanned, read_bytes, scan_parquet
from koble.linkage.scan import scan_file, scan_pseudonyms
from koble.registries.identifiers.scan import Finding, describe, scan_frame, scan_text

__all__ = ["Check", "VerifyReport", "verify_delivery"]

MANIFEST = "manifest.json"
_DATA = {".parquet", ".csv", ".dta", ".sav", ".xpt"}


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail}


@dataclass
class VerifyReport:
    directory: str
    checks: list[Check] = field(default_factory=list)
    project: str = ""
    key_id: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> None:
        """Record a check; file names come from the delivery, so both texts are sanitised."""
        self.checks.append(Check(sanitise(name), ok, sanitise(detail)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "project": self.project,
            "key_id": self.key_id,
            "ok": self.ok,
            "checks": [c.to_dict() for c in self.checks],
        }

    def to_text(self) -> str:
        lines = [f"Delivery {self.directory} (project {self.project or '?'})"]
        lines += [f"  {'ok  ' if c.ok else 'FAIL'}  {c.name}: {c.detail}" for c in self.checks]
        verdict = "VERIFIED" if self.ok else "NOT VERIFIED"
        lines.append(f"{verdict}: {sum(c.ok for c in self.checks)}/{len(self.checks)} checks pass")
        return "\n".join(lines) + "\n"


def _scan(report: VerifyReport, path: Path, label: str) -> None:
    try:
        findings = scan_file(path)
    except InputError as exc:
        report.add(f"identifier scan {label}", False, f"cannot read: {exc}")
        return
    _identifier_check(report, findings, label)


def _identifier_check(report: VerifyReport, findings: list[Finding], label: str) -> None:
    if findings:
        where = describe(findings)
        report.add(f"identifier scan {label}", False, f"fødselsnummer-like values in {where}")
    else:
        report.add(f"identifier scan {label}", True, "no fødselsnummer, D- or H-number")


def _scan_text(report: VerifyReport, path: Path, label: str) -> None:
    """Scan a file that is not a data table (JSON, Markdown, anything) as text, line by line.
    Its bytes are read as latin-1: every byte decodes, and digits are ASCII in any encoding."""
    try:
        text = path.read_bytes().decode("latin-1")
    except OSError as exc:
        report.add(f"identifier scan {label}", False, f"cannot read: {exc.strerror}")
        return
    found = scan_text(text, label="lines")
    if found is not None:
        report.add(f"identifier scan {label}", False, f"person numbers in {describe([found])}")
    else:
        report.add(f"identifier scan {label}", True, "no fødselsnummer, D- or H-number")


def _scan_any(report: VerifyReport, path: Path, label: str) -> None:
    """A data table column by column (:func:`_scan`), any other file as text."""
    if path.suffix in _DATA:
        _scan(report, path, label)
    else:
        _scan_text(report, path, label)


def verify_delivery(
    directory: Path, *, key_id: str | None = None, workspace: Path | None = None
) -> VerifyReport:
    """Check ``directory`` against its manifest; see the module docstring for what is checked."""
    report = VerifyReport(str(directory))
    document = read_manifest(directory / MANIFEST)  # the signature is over the body as read
    body = ManifestBody.from_json(document["manifest"], directory / MANIFEST)
    # Shown to whoever runs the check: a forged or careless manifest may hold a person number
    # or terminal control characters here, and the report must not repeat them.
    report.project = sanitise(str(body.project.id))
    report.key_id = sanitise(str(document["signature"].get("key_id", "")))
    ok, detail = signature_ok(document, key_id=key_id)
    report.add("signature", ok, detail)
    report.add(
        "signing key pinned",
        key_id is not None,
        f"the manifest must be signed by key {key_id}"
        if key_id is not None
        else "no key given: the signature was checked against the key the manifest carries, "
        "which anyone who alters the delivery can replace; pin the operator's key "
        "(--key-id or --public-key)",
    )
    listed = {str(o.file): o for o in body.outputs}
    scanned: dict[str, Scanned | None] = {}  # the Parquet files' scans, from the bytes hashed
    for name, entry in sorted(listed.items()):
        path = directory / name
        if not path.is_file():
            report.add(f"file {name}", False, "listed in the manifest but missing")
            continue
        if path.suffix == ".parquet":  # read once: hashed, then scanned below
            data, digest = read_bytes(path)
            scanned[name] = scan_parquet(data)
            del data
        else:
            digest = sha256_file(path)
        if digest != entry.sha256:
            report.add(f"file {name}", False, "SHA-256 differs from the manifest")
            continue
        if entry.rows is not None:
            try:
                rows = count_rows(path) if path.suffix in _DATA else None
            except InputError as exc:
                report.add(f"file {name}", False, f"cannot count its rows: {exc}")
                continue
            if rows != entry.rows:
                report.add(f"file {name}", False, f"{rows} rows, the manifest says {entry.rows}")
                continue
        rows_text = "" if entry.rows is None else f", {entry.rows} rows"
        report.add(f"file {name}", True, f"SHA-256 matches{rows_text}")
    extra = sorted(
        p.name for p in directory.iterdir() if p.name not in listed and p.name != MANIFEST
    )
    report.add("no unlisted files", not extra, ", ".join(extra) if extra else "none")
    failed = [c.check for c in body.reconciliation if not c.ok]
    report.add(
        "counts reconcile",
        not failed,
        "; ".join(failed) if failed else f"{len(body.reconciliation)} checks pass",
    )
    _empty_check(report, body, listed)
    for name in sorted(listed):
        path = directory / name
        if path.suffix in _DATA and path.is_file():
            _scan_data(report, path, name, scanned.get(name))
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        name = path.relative_to(directory).as_posix()
        if not (name in listed and path.suffix in _DATA):  # those were scanned above
            _scan_any(report, path, name)
    if workspace is not None:
        _scan_workspace(report, workspace, body)
    return report


def _scan_data(report: VerifyReport, path: Path, name: str, scanned: Scanned | None) -> None:
    """Both scans of a delivered data file: from its bytes as hashed when a Parquet file was
    scanned so (:func:`koble.linkage.received.scan_parquet`), else read whole here."""
    if scanned is None:
        try:  # read once for both scans (a national Stata file takes seconds to read)
            frame = read_delivery(path)
        except InputError as exc:
            report.add(f"identifier scan {name}", False, f"cannot read: {exc}")
            report.add(f"pseudonym scan {name}", False, f"cannot read: {exc}")
            return
        distinct = _distinct_text(frame)  # both scans read each text column's values
        findings = scan_frame(frame, distinct=distinct)
        columns = [c for c, values in distinct.items() if scan_pseudonyms(values.to_frame())]
    else:
        findings, columns = scanned
    _identifier_check(report, findings, name)
    report.add(
        f"pseudonym scan {name}",
        not columns,
        f"pseudonym-like columns: {', '.join(columns)}" if columns else "none",
    )


def _distinct_text(frame: pl.DataFrame) -> dict[str, pl.Series]:
    """Each text column's distinct values (null among them if it holds one), in the frame's
    order: what both scans of a delivered file judge a text column by. The identifier scan
    reads a column's rows only when one of these holds a person number (then it counts the
    rows); a column is a pseudonym column when its distinct non-null values all look like
    pseudonyms, which is when all its values do. A national extract's text columns are codes
    (ICD-10, ATC) with a few thousand distinct values among millions of rows, so the
    pseudonym pattern is tried on those, not on every row."""
    text = (pl.String, pl.Categorical, pl.Enum)
    return {n: frame[n].unique() for n, dtype in frame.schema.items() if dtype in text}


def _empty_check(
    report: VerifyReport, body: ManifestBody, listed: dict[str, ManifestOutput]
) -> None:
    """No delivered data file is empty when the population was not: checked from the
    manifest itself, so a delivery signed before the reconciliation had this check (or
    assembled by hand) fails too. An empty result is never verified."""
    population = next((i.rows for i in body.inputs if i.party == "operator"), None)
    empty = sorted(
        name for name, entry in listed.items() if Path(name).suffix in _DATA and entry.rows == 0
    )
    if not population:
        report.add("no empty delivery", True, "the population has no rows to compare with")
    elif empty:
        report.add(
            "no empty delivery",
            False,
            f"0 rows in {', '.join(empty)} for a population of {population} rows",
        )
    else:
        report.add("no empty delivery", True, "every delivered data file has rows")


def _scan_workspace(report: VerifyReport, workspace: Path, body: ManifestBody) -> None:
    """Scan what every pseudonymous registry (and the researcher) holds in the workspace."""
    parties = {t.target for t in body.transfers}
    pseudonymous = {
        t.target
        for t in body.transfers
        if t.target.startswith("registry:") and any(c.startswith("pseudonym_") for c in t.columns)
    }
    for party in sorted(pseudonymous | ({"researcher"} & parties)):
        store = workspace / party.replace(":", "-") / "store"
        files = sorted(p for p in store.rglob("*") if p.is_file()) if store.is_dir() else []
        for path in files:
            _scan_any(report, path, f"{party}:{path.relative_to(store)}")
