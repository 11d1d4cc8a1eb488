"""``koble audit``: checks an auditor runs on the trusted third party's records."""

from __future__ import annotations

import json
from pathlib import Path

import click

from koble.errors import FileFormatError
from koble.pseudonym.audit import VerifyReport, verify_log

EXIT_OK = 0
EXIT_BAD_LOG = 1


@click.group()
def audit() -> None:
    """Verify audit logs and deliveries."""


@audit.command("verify-log")
@click.argument("log", type=click.Path(path_type=Path))
@click.option(
    "--public-key",
    type=click.Path(path_type=Path),
    help="Ed25519 public key (PEM) of the log's signer; without it signatures are not checked.",
)
@click.option("--allow-open", is_flag=True, help="Accept a log without a closing checkpoint.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_log_command(log: Path, public_key: Path | None, allow_open: bool, as_json: bool) -> None:
    """Verify the hash chain and signed checkpoints of audit log LOG.

    Names the first bad line: an edited, deleted, inserted or reordered entry, a forged
    checkpoint, or a log cut short. Exit code 0 when the log verifies, 1 when it does not,
    2 for unusable input (missing file, unreadable key).
    """
    key = None if public_key is None else _read(public_key)
    report = verify_log(log, key, require_closed=not allow_open)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        click.echo(_verdict(report))
    raise SystemExit(EXIT_OK if report.ok else EXIT_BAD_LOG)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FileFormatError(f"cannot read the public key: {exc.strerror}", path=path) from None


def _verdict(report: VerifyReport) -> str:
    if not report.ok:
        return f"FAILED at line {report.first_bad_line}: {report.problem}"
    signatures = (
        "signatures verified"
        if report.signatures_checked
        else "signatures NOT checked (no public key given)"
    )
    state = "" if report.closed else ", log still open (no closing checkpoint)"
    return f"ok: {report.entries} entries, {report.checkpoints} checkpoints, {signatures}{state}"
