"""``koble resolve``: identity recovery at the trusted third party."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import polars as pl

from koble.errors import UsageError
from koble.path_checks import ensure_distinct
from koble.recovery import model
from koble.recovery.contract import RECORD_SCHEMA
from koble.recovery.decisions import CheckedStage, read_decisions
from koble.recovery.fields import parse_compare, record_fields, register_fields
from koble.recovery.outputs import ResolvePaths, RunSettings, write_resolution
from koble.recovery.records import read_records
from koble.recovery.register import Register
from koble.recovery.resolve import DEFAULT_THRESHOLDS, resolve
from koble.tables import read_table

from ._secrets import ClosingAudit, audit_options, open_audit
from ._values import WholeNumber

EXIT_ALL = 0
EXIT_SOME_UNRESOLVED = 1
PATH = click.Path(dir_okay=False, path_type=Path)
_IDENTIFYING = ("first_name", "middle_name", "last_name", "birth_date", "death_date")


class Thresholds(click.ParamType[tuple[float, float]]):
    """``LOW,HIGH``: two probabilities with 0 < LOW <= HIGH < 1."""

    name = "low,high"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[float, float]:
        if isinstance(value, tuple):
            return value  # type: ignore[return-value]
        parts = str(value).split(",")
        try:
            low, high = (float(p.strip()) for p in parts)
        except ValueError:
            low = high = -1.0
        if not 0.0 < low <= high < 1.0:  # NaN fails here too
            self.fail("must be LOW,HIGH: two probabilities with 0 < LOW <= HIGH < 1", param, ctx)
        return low, high


def _mapping(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, column = pair.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise UsageError("--column must be NAME=COLUMN (a record field = the file's column)")
        out[name.strip()] = column.strip()
    return out


@click.command("resolve")
@click.argument("records", type=PATH)
@click.option(
    "--population",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The population register: a directory of persons, names and addresses "
    "(and identity_history) Parquet files, as koble synth writes in folkeregister/.",
)
@click.option(
    "--out", "out", type=PATH, required=True, help="RESOLVED: the links (Parquet or CSV by suffix)."
)
@click.option(
    "--review",
    type=PATH,
    help="Review table (CSV) for pairs between the thresholds, with an HTML page "
    "beside it [default: RESOLVED.review.csv].",
)
@click.option(
    "--decisions",
    type=PATH,
    help="A reviewer's decisions on an earlier run's review (the filled-in review CSV).",
)
@click.option("--rejects", type=PATH, help="Unresolved records [default: RESOLVED.rejects.SUFFIX].")
@click.option(
    "--parameters", type=PATH, help="Parameters for a re-run [default: RESOLVED.resolution.json]."
)
@click.option(
    "--thresholds",
    type=Thresholds(),
    default=",".join(str(t) for t in DEFAULT_THRESHOLDS),
    show_default=True,
    help="Match probability: below LOW rejected, from HIGH linked, between reviewed.",
)
@click.option(
    "--seed",
    type=WholeNumber(0),
    default=0,
    show_default=True,
    help="Seed of the model's random u-sampling.",
)
@click.option("--test-numbers", is_flag=True, help="Accept synthetic test numbers.")
@click.option(
    "--deterministic-only",
    is_flag=True,
    help="Only the exact and repaired-number stages: no probabilistic model.",
)
@click.option(
    "--column",
    "columns",
    multiple=True,
    metavar="FIELD=COLUMN",
    help=f"Read a record field from a differently named column; repeatable. "
    f"Fields: {', '.join(RECORD_SCHEMA)}.",
)
@click.option(
    "--compare",
    "compare_specs",
    multiple=True,
    metavar="FIELD[:KIND]",
    help="Also compare an extra column (address, street number, postcode, ...) the records "
    "file and the register carry (the register: in compare.parquet, person_id + fields, or "
    "persons.parquet); KIND text (Jaro-Winkler, the default) or exact; repeatable.",
)
@click.option(
    "--block",
    multiple=True,
    metavar="FIELD",
    help="A --compare field selective enough to also pair records and persons; repeatable.",
)
@click.option(
    "--encoding",
    default="utf-8",
    show_default=True,
    help="Encoding of the CSV files read (RECORDS, --decisions), e.g. cp1252.",
)
@audit_options(required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def resolve_command(records: Path, population: Path, out: Path, review: Path | None,
                    decisions: Path | None, rejects: Path | None, parameters: Path | None,
                    thresholds: tuple[float, float], seed: int, test_numbers: bool,
                    deterministic_only: bool, columns: tuple[str, ...],
                    compare_specs: tuple[str, ...], block: tuple[str, ...], actor: str,
                    encoding: str, audit_log: Path | None, audit_key: Path | None,
                    audit_passphrase_env: str, as_json: bool) -> None:  # fmt: skip
    """Resolve each record of RECORDS to a person of the population register.

    In order: exact (a valid number of a registered person whose birth date and sex agree),
    repaired number (one digit or one transposition from exactly one person who agrees),
    probabilistic (a Fellegi-Sunter model on names, birth and death date, sex and places,
    trained on the exact links), clerical (pairs between the thresholds go to the review
    files; run again with --decisions to apply a reviewer's verdicts). Every record ends in
    RESOLVED (with method, match probability and weight) or in the rejects with a reason.
    Names and birth data stay in the review files; nothing printed or audited holds one.
    Exit code 0 when every record was resolved, 1 when some were not (rejected or awaiting
    review), 2 for unusable input.
    """
    paths = ResolvePaths.beside(out, review=review, rejects=rejects, parameters=parameters)
    ensure_distinct(
        {**paths.named(), "--audit-log": audit_log},
        {"RECORDS": records, "--decisions": decisions, "--audit-key": audit_key},
    )
    if decisions is not None and deterministic_only:
        raise UsageError("--decisions decide the probabilistic stage's pairs; "
                         "drop --deterministic-only")  # fmt: skip
    mapping = _mapping(columns)
    register = Register.open(population)
    table = read_records(records, columns=mapping, encoding=encoding)
    compare = parse_compare(compare_specs)
    model.blocking_rules(compare, block)  # a --block field must be a --compare field
    extra = None
    if compare:
        raw = read_table(records, encoding=encoding)
        raw = record_fields(raw, table["record_id"], list(compare), records)
        table = pl.concat([table, raw.drop("record_id")], how="horizontal")
        extra = register_fields(population, list(compare))
    verdicts = None
    if decisions is not None:  # no reviewer may be one of the records' names or dates
        known = [table[c] for c in _IDENTIFYING]
        verdicts = read_decisions(decisions, encoding=encoding, known=known)
    stage = None if deterministic_only else CheckedStage(verdicts)
    log = open_audit(audit_log, audit_key, audit_passphrase_env)
    closing = ClosingAudit(lambda: log, f"{out} was written and recorded in the audit log")
    with closing as audit:
        resolution = resolve(
            table, register, probabilistic=stage, thresholds=thresholds, seed=seed,
            decisions=None if verdicts is None else verdicts.for_resolve(),
            decisions_path=str(decisions), test_numbers=test_numbers,
            compare=compare, register_fields=extra, block=block,
        )  # fmt: skip
        if stage is not None:
            stage.finish()
        settings = RunSettings(records, population, thresholds, seed, test_numbers,
                               not deterministic_only)  # fmt: skip
        summary = write_resolution(resolution, paths, records=table, register=register,
                                   settings=settings, decisions=verdicts, audit=audit,
                                   actor=actor)  # fmt: skip
    _print(summary, as_json)
    closing.finish()
    counts = summary["counts"]
    raise SystemExit(EXIT_ALL if counts["linked"] == counts["records"] else EXIT_SOME_UNRESOLVED)


def _print(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
        return
    counts, where = summary["counts"], summary["outputs"]
    methods = ", ".join(f"{counts[m]:,} {m}" for m in ("exact", "repaired", "probabilistic",
                                                         "clerical"))  # fmt: skip
    lines = [
        f"{counts['records']:,} records: {counts['linked']:,} resolved ({methods}) into "
        f"{where['resolved']}",
        f"{counts['rejected']:,} rejected and {counts['awaiting_review']:,} awaiting review "
        f"into {where['rejects']}; review: {where['review']} and {where['review_html']}",
        f"parameters for a re-run: {where['parameters']}",
        f"counts reconcile: {'yes' if summary['reconciled'] else 'NO'}",
    ]
    if summary["same_person"]["persons"]:
        lines.append(f"{summary['same_person']['persons']:,} persons have several records "
                     f"({summary['same_person']['records']:,} records)")  # fmt: skip
    precision, recall = summary["estimated_precision"], summary["estimated_recall"]
    if precision is not None and recall is not None:
        lines.append(f"model's own estimate at these thresholds: precision {precision:.4f}, "
                     f"recall {recall:.4f}")  # fmt: skip
    for line in lines:
        click.echo(line)
