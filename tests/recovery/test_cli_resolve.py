"""``koble resolve`` end to end: a records file and a register directory in tmp_path, a first
run that sends pairs to review, a reviewer's decisions read back, the audit log, the
parameters file, the errors (exit 2, naming file, column and row), and leak scans: nothing
printed, audited or written for the auditor holds a name, number or birth date."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner, Result

from koble.cli.main import cli
from koble.recovery.contract import ADDRESS_SCHEMA, LINK_SCHEMA, METHODS
from tests.recovery.conftest import from_persons, make_persons, make_register

ENV = {"KOBLE_AUDIT_PASSPHRASE": "audit staple", "KOBLE_ACTOR": "tove.ttp"}
THRESHOLDS = ["--thresholds", "0.5,0.99"]


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=ENV)


@pytest.fixture(scope="module")
def persons() -> pl.DataFrame:
    return make_persons(300, seed=5)


def _records(persons: pl.DataFrame) -> pl.DataFrame:
    """200 records with their person's number, 100 without: a third of those with another
    first name, a missing sex or a birth year off by one (some go to review)."""
    i = pl.int_range(pl.len())
    rest = i >= 200
    return from_persons(persons).with_columns(
        fnr=pl.when(rest).then(None).otherwise(pl.col("fnr")),
        first_name=pl.when(rest & (i % 4 == 1)).then(pl.lit("Xyz")).otherwise("first_name"),
        sex=pl.when(rest & (i % 4 == 2)).then(None).otherwise("sex"),
        birth_date=pl.when(rest & (i % 4 == 3))
        .then(pl.col("birth_date").dt.offset_by("1y"))
        .otherwise("birth_date"),
    )


@pytest.fixture
def ttp(tmp_path: Path, persons: pl.DataFrame) -> Path:
    """tmp_path holding register/ (persons, names, addresses), records.csv and an audit key."""
    register = make_register(persons)
    where = tmp_path / "register"
    where.mkdir()
    register.persons.write_parquet(where / "persons.parquet")
    register.names.write_parquet(where / "names.parquet")
    pl.DataFrame(schema=ADDRESS_SCHEMA).write_parquet(where / "addresses.parquet")
    _records(persons).write_csv(tmp_path / "records.csv")
    assert run("keys", "create-signer", tmp_path / "audit.pem").exit_code == 0
    return tmp_path


def _audited(ttp: Path) -> list[str | Path]:
    return ["--audit-log", ttp / "audit.log", "--audit-key", ttp / "audit.pem"]


def _resolve(ttp: Path, *extra: str | Path) -> Result:
    return run("resolve", ttp / "records.csv", "--population", ttp / "register",
               "--out", ttp / "out" / "resolved.parquet", "--review", ttp / "out" / "review.csv",
               *THRESHOLDS, "--json", *_audited(ttp), *extra)  # fmt: skip


def _events(log: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line["type"] == "event"]


def test_review_then_decisions_end_to_end(ttp: Path) -> None:
    first = _resolve(ttp)
    assert first.exit_code == 1, first.output  # some records await review or are rejected
    summary = json.loads(first.stdout)
    counts = summary["counts"]
    assert summary["reconciled"] and counts["records"] == 300
    assert counts["linked"] + counts["rejected"] + counts["awaiting_review"] == 300
    assert counts["exact"] == 200 and counts["awaiting_review"] > 0
    assert sum(counts[m] for m in METHODS) == counts["linked"]
    out = ttp / "out"
    links = pl.read_parquet(out / "resolved.parquet")
    rejects = pl.read_parquet(out / "resolved.rejects.parquet")
    assert links.schema == LINK_SCHEMA
    every = pl.concat([links["record_id"], rejects["record_id"]])
    assert every.len() == 300 and every.n_unique() == 300
    review = pl.read_csv(out / "review.csv", separator=";", infer_schema=False)
    assert review["record_id"].n_unique() == counts["awaiting_review"]
    assert {"record_first_name", "person_first_name", "agree_fn", "bits_bd"} <= set(review.columns)
    page = (out / "review.html").read_text(encoding="utf-8")
    assert page.count('<section class="pair">') == review.height
    parameters = json.loads((out / "resolved.resolution.json").read_text(encoding="utf-8"))
    assert parameters["settings"]["thresholds"] == [0.5, 0.99]
    assert parameters["counts"] == counts and parameters["model_sha256"] == summary["model_sha256"]
    assert parameters["model"]["model"]["blocking_rules_to_generate_predictions"]
    assert set(parameters["inputs"]["register"]) == {
        "persons.parquet", "names.parquet", "addresses.parquet"
    }  # fmt: skip

    # the reviewer: the best candidate of each record is a match, for half the records;
    # the others' candidates are all non-matches; one record left undecided
    ids = review["record_id"].unique(maintain_order=True).to_list()
    keep, refuse = set(ids[: len(ids) // 2]), set(ids[len(ids) // 2 : -1])
    filled = review.with_columns(
        decision=pl.when(pl.col("record_id").is_in(keep) & (pl.col("candidate") == "1"))
        .then(pl.lit("match"))
        .when(pl.col("record_id").is_in(refuse))
        .then(pl.lit("non-match"))
        .otherwise(None),
        reviewer=pl.when(pl.col("record_id").is_in(keep)).then(pl.lit("kari.reviewer"))
        .otherwise(pl.lit("ola.reviewer")),
    )  # fmt: skip
    filled.write_csv(ttp / "decisions.csv", separator=";")
    second = _resolve(ttp, "--decisions", ttp / "decisions.csv")
    assert second.exit_code == 1, second.output
    again = json.loads(second.stdout)
    assert again["reconciled"] and again["counts"]["clerical"] == len(keep)
    assert again["counts"]["rejected_in_review"] == len(refuse)
    assert again["counts"]["awaiting_review"] == 1
    assert again["decisions"]["match"] == len(keep)
    clerical = pl.read_parquet(out / "resolved.parquet").filter(pl.col("method") == "clerical")
    best = review.filter(pl.col("record_id").is_in(keep) & (pl.col("candidate") == "1"))
    assert sorted(clerical.select("record_id", "person_id").rows()) == sorted(
        best.select("record_id", "person_id").rows()
    )
    events = _events(ttp / "audit.log")
    assert [e["operation"] for e in events] == [
        "resolve", "resolve-decisions", "resolve-decisions", "resolve"
    ]  # fmt: skip
    by_reviewer = {e["details"]["reviewer"]: e for e in events[1:3]}
    assert by_reviewer["kari.reviewer"]["details"]["match"] == len(keep)
    assert by_reviewer["ola.reviewer"]["details"]["non_match"] == (
        filled.filter(pl.col("decision") == "non-match").height
    )
    assert all(e["actor"] == "tove.ttp" and e["time"] for e in events)
    assert events[-1]["details"]["clerical"] == len(keep)
    assert events[-1]["details"]["threshold_low"] == 0.5
    verified = run("audit", "verify-log", ttp / "audit.log")
    assert verified.exit_code == 0, verified.output


def test_a_rerun_reproduces_every_output_bit_for_bit(ttp: Path) -> None:
    assert _resolve(ttp).exit_code == 1
    out = ttp / "out"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert _resolve(ttp).exit_code == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_nothing_printed_or_audited_holds_a_name_number_or_birth_date(
    ttp: Path, persons: pl.DataFrame
) -> None:
    first = _resolve(ttp)
    review = pl.read_csv(ttp / "out" / "review.csv", separator=";", infer_schema=False)
    filled = review.with_columns(decision=pl.lit("non-match"), reviewer=pl.lit("kari.r"))
    filled.write_csv(ttp / "decisions.csv", separator=";")
    second = _resolve(ttp, "--decisions", ttp / "decisions.csv")
    plain = run("resolve", ttp / "records.csv", "--population", ttp / "register",
                "--out", ttp / "plain" / "r.csv", *THRESHOLDS)  # fmt: skip
    texts = {
        "first stdout": first.stdout, "first stderr": first.stderr,
        "second stdout": second.stdout, "second stderr": second.stderr,
        "plain output": plain.output,
        "audit log": (ttp / "audit.log").read_text(encoding="utf-8"),
        "parameters": (ttp / "out" / "resolved.resolution.json").read_text(encoding="utf-8"),
    }  # fmt: skip
    names = {*persons["first_name"], *persons["last_name"], "Xyz"}
    numbers = set(persons["person_id"])
    dates = {d.isoformat() for d in persons["birth_date"]}
    dates |= {d.strftime("%d.%m.%Y") for d in persons["birth_date"]}
    for what, text in texts.items():
        assert not [n for n in names if n in text], what
        assert not [n for n in numbers if n in text], what
        assert not [d for d in dates if d in text], what


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ("no-column", "column 'journal': no such column"),
        ("duplicate-id", "column 'record_id': row 2: record ids must be unique: rows 2, 5"),
        ("register-column", "persons.parquet: column 'birth_date': missing"),
        ("thresholds-order", "--thresholds"),
        ("thresholds-text", "--thresholds"),
        ("thresholds-one", "--thresholds"),
        ("unknown-pair", "decisions.csv: column 'record_id': row 1: a decision on a pair"),
        ("bad-decision", "decisions.csv: column 'decision': row 1: a decision must be"),
    ],
)
def test_bad_input_is_exit_2_naming_file_column_and_row(ttp: Path, change: str,
                                                        words: str) -> None:  # fmt: skip
    extra: list[str | Path] = []
    records = pl.read_csv(ttp / "records.csv", infer_schema=False)
    if change == "no-column":
        extra = ["--column", "record_id=journal"]
    elif change == "duplicate-id":
        copied = pl.when(pl.col("record_id") == "5").then(pl.lit("2")).otherwise("record_id")
        records.with_columns(record_id=copied).write_csv(ttp / "records.csv")
    elif change == "register-column":
        persons = pl.read_parquet(ttp / "register" / "persons.parquet")
        persons.drop("birth_date").write_parquet(ttp / "register" / "persons.parquet")
    elif change.startswith("thresholds"):
        value = {"order": "0.99,0.5", "text": "low,high", "one": "0.5"}[change.split("-")[1]]
        extra = ["--thresholds", value]
    else:
        decision = "match" if change == "unknown-pair" else "perhaps"
        record = "no-such-record" if change == "unknown-pair" else "201"
        pl.DataFrame({"record_id": [record], "person_id": ["x"], "decision": [decision],
                      "reviewer": ["kari.r"]}).write_csv(ttp / "decisions.csv")  # fmt: skip
        extra = ["--decisions", ttp / "decisions.csv"]
    result = _resolve(ttp, *extra)
    assert result.exit_code == 2, result.output
    # the audit log, opened before the work, is closed and its head printed on any exit
    lines = [ln for ln in result.stderr.strip().splitlines() if not ln.startswith("audit log")]
    assert words in lines[-1], result.stderr
    # a koble error is one line; click's own usage errors end in one
    assert len(lines) == 1 or lines[-1].startswith("Error: Invalid value for '--thresholds'")
    assert not (ttp / "out").exists() or not list((ttp / "out").iterdir())


def test_a_read_only_output_directory_is_exit_2_and_writes_nothing(
    ttp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = ttp / "out"
    out.mkdir()
    real_open = os.open

    def read_only(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if Path(path).parent == out and flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    if os.geteuid() == 0:  # root writes into a chmod 555 directory: emulate the file system
        monkeypatch.setattr(os, "open", read_only)
    else:
        out.chmod(0o555)
    try:
        result = _resolve(ttp)
    finally:
        out.chmod(0o755)
    assert result.exit_code == 2, result.output
    assert "read-only file system" in result.stderr or "permission denied" in result.stderr
    assert list(out.iterdir()) == []
    assert not _events(ttp / "audit.log")  # nothing audited for outputs that never appeared
