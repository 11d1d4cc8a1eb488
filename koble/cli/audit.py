"""``koble audit``: checks an auditor runs on the trusted third party's records."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from koble.cli.run import common_run_options, resolve_run
from koble.errors import FileFormatError, UsageError
from koble.path_checks import ensure_distinct
from koble.pseudonym.audit import VerifyReport, verify_log
from koble.pseudonym.public_keys import read_signing_public_key

EXIT_OK = 0
EXIT_BAD_LOG = 1
_HASH = re.compile(r"[0-9a-fA-F]{64}")


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
@click.option(
    "--expect-head",
    metavar="HASH",
    callback=lambda _ctx, _param, value: _hash(value),
    help="The head the log must end with, as printed when it was last closed.",
)
@click.option(
    "--expect-entries",
    metavar="N",
    type=click.IntRange(min=0),
    help="The number of entries the log must hold, as printed when it was last closed.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_log_command(
    log: Path,
    public_key: Path | None,
    allow_open: bool,
    expect_head: str | None,
    expect_entries: int | None,
    as_json: bool,
) -> None:
    """Verify the hash chain and signed checkpoints of audit log LOG.

    Names the first bad line: an edited, deleted, inserted or reordered entry, a forged
    checkpoint, or a log cut short. A log cut back to an earlier closing checkpoint verifies
    on its own: give the head and entry count printed when it was last closed
    (--expect-head, --expect-entries) to catch that. Exit code 0 when the log verifies, 1
    when it does not, 2 for unusable input (missing file, unreadable key).
    """
    key = None if public_key is None else read_signing_public_key(public_key, "--public-key")
    report = verify_log(
        log,
        key,
        require_closed=not allow_open,
        expect_head=expect_head,
        expect_entries=expect_entries,
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        click.echo(_verdict(report))
    raise SystemExit(EXIT_OK if report.ok else EXIT_BAD_LOG)


def _hash(value: str | None) -> str | None:
    """``--expect-head`` as 64 lower-case hex digits; the value is never echoed back."""
    if value is None:
        return None
    if _HASH.fullmatch(value.strip()) is None:
        raise click.BadParameter("must be a SHA-256 hash (64 hex digits)")
    return value.strip().lower()


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


@audit.command("verify")
@click.argument("delivery", metavar="DELIVERY_DIR", type=click.Path(path_type=Path))
@click.option("--key-id", help="The operator signing key id the manifest must be signed with.")
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The operator's Ed25519 public key (PEM, e.g. KEYS/operator.signing.pub.pem) the "
    "manifest must be signed with.",
)
@click.option(
    "--workspace",
    type=click.Path(file_okay=False, path_type=Path),
    help="The run's workspace: also scan what every pseudonymous registry holds.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_delivery_command(
    delivery: Path,
    key_id: str | None,
    public_key: Path | None,
    workspace: Path | None,
    as_json: bool,
) -> None:
    """Verify a delivery: signature, every hash and row count, and no fødselsnummer.

    The operator's key must be pinned (--key-id or --public-key): a signature checked only
    against the key the manifest carries proves nothing. Exit 0 when every check passes,
    1 when one fails, 2 for unusable input.
    """
    from koble.linkage.verify import verify_delivery
    from koble.pseudonym.signing import key_id_of

    if not delivery.is_dir():
        raise FileFormatError("no such delivery directory", path=delivery)
    if public_key is not None:
        pinned = key_id_of(read_signing_public_key(public_key, "--public-key"))
        if key_id is not None and key_id != pinned:
            raise UsageError(f"--key-id {key_id} is not the key in {public_key} ({pinned})")
        key_id = pinned
    report = verify_delivery(delivery, key_id=key_id, workspace=workspace)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True, ensure_ascii=False))
    else:
        click.echo(report.to_text(), nl=False)
    raise SystemExit(EXIT_OK if report.ok else EXIT_BAD_LOG)


@audit.command("reproduce")
@click.argument("job_file", metavar="JOB.toml", type=click.Path(path_type=Path))
@click.option(
    "--workspace",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="A new workspace for the reproduction.",
)
@click.option(
    "--against",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The delivery directory to compare with.",
)
@common_run_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def reproduce_command(
    job_file: Path,
    workspace: Path,
    against: Path,
    keys_dir: Path | None,
    sources: Path | None,
    world: Path | None,
    extra: Path | None,
    test_numbers: bool,
    engine: str,
    spark_master: str | None,
    spark_remote: str | None,
    passphrase_env: str,
    kek_file: Path | None,
    kek_env: str | None,
    as_json: bool,
) -> None:
    """Re-run JOB.toml from the same inputs and keys; report whether every output is
    byte-identical to the delivery in --against. Exit 0 if all are, 1 if not."""
    from koble.linkage.reproduce import reproduce_job

    if keys_dir is None:
        raise UsageError("give --keys: the directory of the original run's keys")
    ensure_distinct({"--workspace": workspace}, {"--against": against, "--keys": keys_dir})
    kwargs = resolve_run(
        job_file, workspace, keys_dir, sources, world, extra, passphrase_env, kek_file, kek_env,
        against=against, engine=engine, spark_master=spark_master, spark_remote=spark_remote,
    )  # fmt: skip
    report = reproduce_job(job_file, workspace, against, test_numbers=test_numbers, **kwargs)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True, ensure_ascii=False))
    else:
        click.echo(report.to_text(), nl=False)
    raise SystemExit(EXIT_OK if report.identical else EXIT_BAD_LOG)
