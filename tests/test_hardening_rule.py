"""Issue 12 review: one rule decides what a person number is, everywhere.

Before, three rules disagreed: the delivery scan knew ``DD.MM.YY NNNNN`` and up to three
separators, the job and audit-log rule and the message redaction did not. A job title, a
re-identification reason, an ``--output-column`` or an option value written that way passed,
and a job failed only at the end of ``koble run``. Also covered here: a person number that
lost its leading zero in a text column (a spreadsheet's CSV), sealed ingest inside ``koble
run`` (whole-feed rows, the feed file named, nothing written), names a user gives (party,
key, actor, column) and an Arrow body with repeated column names.
"""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.cli.main import cli
from koble.errors import ColumnError, FileFormatError, UsageError, redact, sanitise
from koble.linkage.job import JobError, parse_job
from koble.pseudonym.audit import AuditLog
from koble.pseudonym.audit_guard import check_pattern
from koble.registries.catalogue import Catalogue
from koble.registries.identifiers.scan import (
    check_column_name,
    check_name,
    contains_person_number,
    scan_frame,
    scan_text,
)
from tests.identifiers.strategies import Made, person_numbers
from tests.linkage.conftest import World, world  # noqa: F401 - the shared synthetic world

FNR = "24012065260"  # valid fødselsnummer, written below as 24.01.20 65260 and 240120  65260
OTHER = "25124940411"  # valid fødselsnummer
ZERO = "04025523801"  # valid, with a leading zero a spreadsheet drops: 4025523801
WRITTEN = ["24.01.20 65260", "240120  65260", "24.01.20 - 65260", "240120.65260",
           "240120_65260", "240120:65260", "240120/65260"]  # fmt: skip
ENV = {
    "KOBLE_KEYSET_PASSPHRASE": "correct horse battery",
    "KOBLE_AUDIT_PASSPHRASE": "audit staple",
    "KOBLE_PARTY_PASSPHRASE": "party staple battery",
    "KOBLE_ACTOR": "ola.operator",
}


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=ENV)


def digits_of(text: str) -> str:
    return re.sub(r"\D", "", text)


def leaks(text: str, *numbers: str) -> bool:
    """Whether ``text`` holds any of ``numbers``, however it is written (digits compared with
    everything else removed, per line, so a separator cannot hide one)."""
    flat = [digits_of(line) for line in text.splitlines()]
    tails = [n[6:] for n in numbers]
    return any(n in line for line in flat for n in numbers) or any(t in text for t in tails)


@pytest.fixture
def keyset(tmp_path: Path) -> Path:
    assert run("keys", "create", tmp_path / "ks.json").exit_code == 0
    return tmp_path / "ks.json"


# -- 1. one rule ------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(made=person_numbers(), shape=st.integers(0, 5), before=st.sampled_from(["", "pasient "]))
def test_every_check_agrees_on_every_written_shape(made: Made, shape: int, before: str) -> None:
    """The delivery scan, the names/fields rule, column names, hash fields and message
    redaction all find a valid number in each shape people write it in."""
    n = made.number
    written = [
        n,
        f"{n[:6]} {n[6:]}",
        f"{n[:6]}  {n[6:]}",
        f"{n[:6]}-{n[6:]}",
        f"{n[:2]}.{n[2:4]}.{n[4:6]} {n[6:]}",
        f"{n[:2]}.{n[2:4]}.{n[4:6]} - {n[6:]}",
    ][shape]
    text = f"{before}{written} asked"
    assert contains_person_number(text)
    assert contains_person_number(text, standalone=True)
    assert scan_text(text, label="x") is not None
    assert scan_frame(pl.DataFrame({"c": [text]}))
    with pytest.raises(UsageError):
        check_column_name(text, "--output-column")
    with pytest.raises(UsageError):
        check_name(text, "--party")
    for shown in (sanitise(text), redact(text), str(UsageError(f"bad {text}"))):
        assert n[6:] not in shown and n not in digits_of(shown)


@pytest.mark.parametrize(
    "field,value",
    [("title", "24.01.20 65260 Hip"), ("title", "240120  65260"), ("name", "Kari 25.12.49 40411")],
)
def test_job_field_in_a_written_shape_is_refused_at_validation(field: str, value: str) -> None:
    """Before: accepted by validation and ``koble plan``; ``koble run`` did all the work and
    failed at the end (exit 1) with 'person numbers in lines (1 rows, first row 101)'."""
    values = {"title": "Hip fractures", "name": "Kari", field: value}
    with pytest.raises(JobError) as caught:
        parse_job(_job(**values), Catalogue.load(), path="job.toml")
    problems = [(p.line, p.message.split(" holds")[0]) for p in caught.value.problems]
    where = {"title": (3, "project.title"), "name": (10, "recipient.name")}[field]
    assert problems == [where]
    assert not leaks(str(caught.value) + "\n".join(caught.value.lines()), FNR, OTHER)


@pytest.mark.parametrize(
    "extra,line,where",
    [
        (f"\n[x{FNR}]\na = 1\n", 21, "a key in the job"),
        (f"\n[registries.{FNR}]\nb = 2\n", 21, "a key in registries"),
        (f'\n[schemas]\nx{FNR} = ["a"]\n', 22, "a key in schemas"),
    ],
)
def test_a_person_number_in_a_key_points_to_its_line(extra: str, line: int, where: str) -> None:
    """Before: line 1 for ``[x24012065260]`` and ``[registries.24012065260]``."""
    text = _job(title="T", name="Kari") + extra
    with pytest.raises(JobError) as caught:
        parse_job(text, Catalogue.load(), path="job.toml")
    found = [p.line for p in caught.value.problems if p.message.startswith(where)]
    assert found == [line], caught.value.problems


def test_audit_log_refuses_a_reason_in_a_written_shape(tmp_path: Path) -> None:
    """Before: ``koble reidentify --reason "patient 25.12.49 40411 asked"`` exited 0 with the
    number in clear in the audit log."""
    import datetime

    from koble.pseudonym.signing import Ed25519Signer

    signer = Ed25519Signer.generate()
    path = tmp_path / "audit.log"
    clock = lambda: datetime.datetime.now(datetime.UTC)  # noqa: E731
    for reason in ("patient 25.12.49 40411 asked", "patient 251249  40411 asked"):
        with (
            AuditLog(path, signer, clock) as log,
            pytest.raises(UsageError, match="person number"),
        ):
            log.append(actor="ttp", operation="reidentify", details={"reason": reason})
    assert not leaks(path.read_text("utf-8"), OTHER)


def test_reidentify_cli_refuses_a_reason_in_a_written_shape(tmp_path: Path) -> None:
    audited: list[str | Path] = [
        "--audit-log", tmp_path / "audit.log", "--audit-key", tmp_path / "audit.pem"
    ]  # fmt: skip
    assert run("keys", "create-signer", tmp_path / "audit.pem").exit_code == 0
    assert run("keys", "create", tmp_path / "ks.json", *audited).exit_code == 0
    (tmp_path / "in.csv").write_text(f"fnr\n{FNR}\n", encoding="utf-8")
    made = run("pseudonymise", tmp_path / "in.csv", tmp_path / "p.csv", "-c", "fnr",
               "--domain", "d1", "--keyset", tmp_path / "ks.json", *audited)  # fmt: skip
    assert made.exit_code == 0, made.output
    result = run("reidentify", tmp_path / "p.csv", tmp_path / "back.csv", "-c", "fnr",
                 "--domain", "d1", "--keyset", tmp_path / "ks.json", *audited,
                 "--role", "reidentification-officer",
                 "--reason", "patient 25.12.49 40411 asked",
                 "--legal-basis", "helseregisterloven § 19 e")  # fmt: skip
    # refused (exit 4) and recorded, the reason withheld: a refusal is never unaudited
    assert result.exit_code == 4, result.output
    assert not (tmp_path / "back.csv").exists()
    log = (tmp_path / "audit.log").read_text("utf-8")
    assert not leaks(log + result.output, OTHER)
    assert "reidentify-refused" in log and "<withheld: held a person number>" in log


@pytest.mark.parametrize("name", [*WRITTEN, "", " "])
def test_output_column_in_a_written_shape_or_empty_is_refused(
    tmp_path: Path, keyset: Path, name: str
) -> None:
    """Before: exit 0 and a header ``24.01.20 65260`` (or an empty one)."""
    source = tmp_path / "in.csv"
    source.write_text(f"fnr\n{FNR}\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    result = run("pseudonymise", source, out, "-c", "fnr", "--domain", "d1", "--keyset", keyset,
                 "--output-column", name)  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "--output-column" in result.stderr and not leaks(result.output, FNR)
    assert not out.exists()


@pytest.mark.parametrize("value", WRITTEN[:2])
def test_a_bad_option_value_in_a_written_shape_is_not_echoed(tmp_path: Path, value: str) -> None:
    """Before: click's usage error quoted ``'24.01.20 65260' is not one of ...``."""
    source = tmp_path / "one.csv"
    source.write_text("fnr\n1\n", encoding="utf-8")
    result = run("ids", "check", source, "-c", "fnr", "--scheme", value)
    assert result.exit_code == 2 and not leaks(result.output, FNR), result.output


# -- 2. a leading zero lost in a text column ---------------------------------------------------
def test_csv_pass_through_with_a_lost_leading_zero_is_refused(tmp_path: Path, keyset: Path) -> None:
    """Before: exit 0 and ``mor_fnr`` kept in clear (the same value in an Int64 Parquet
    column was refused)."""
    source = tmp_path / "excel.csv"
    source.write_text(f"fnr;mor_fnr\n{FNR};{ZERO[1:]}\n", encoding="utf-8")
    out = tmp_path / "o" / "out.csv"
    result = run("pseudonymise", source, out, "-c", "fnr", "--domain", "d1", "--keyset", keyset)
    assert result.exit_code == 2, result.output
    assert "mor_fnr (1 rows, first row 1)" in result.stderr
    assert not out.exists() and not leaks(result.output, ZERO)


def test_text_cells_of_ten_digits_are_candidates_only_whole() -> None:
    bad_check = ZERO[1:-1] + str((int(ZERO[-1]) + 1) % 10)
    frame = pl.DataFrame(
        {
            "whole": ["x", ZERO[1:], f" {ZERO[1:]} "],
            "inside": [f"tlf {ZERO[1:]}", f"{ZERO[1:]}9", f"a{ZERO[1:]}"],
            "invalid": [bad_check, "1234567890", "0000000000"],
            "category": pl.Series([ZERO[1:], "a", "b"], dtype=pl.Categorical),
        }
    )
    found = {f.column: (f.rows, f.first_row) for f in scan_frame(frame)}
    assert found == {"whole": (2, 2), "category": (1, 1)}


def test_the_auditors_scan_finds_a_lost_zero_in_a_csv_delivery(tmp_path: Path) -> None:
    from koble.linkage.scan import scan_file

    path = tmp_path / "delivery.csv"
    path.write_text(f"LOPENR;MOR\n1;{ZERO[1:]}\n2;x\n", encoding="utf-8")
    assert [(f.column, f.rows, f.first_row) for f in scan_file(path)] == [("MOR", 1, 1)]


# -- 3. sealed ingest inside koble run ---------------------------------------------------------
def test_run_refuses_a_feed_payload_with_whole_feed_rows_and_writes_nothing(
    world: World,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before (FEED_CHUNK_ROWS=1000, a mother's number only at feed row 5001): 'first row 1',
    the registry named instead of the feed file, ``--allow-identifiers`` suggested (which
    ``koble run`` lacks) and 'nothing was written' beside ws/ingest/<reg>/part-* files."""
    import koble.linkage.steps_ingest as steps_ingest

    source = world.sources.get("reseptregisteret")
    feed = pl.read_parquet(source.file)
    row = min(5_001, feed.height)
    assert row > 1_000  # in a later chunk than the first
    mother = pl.Series("mor_fnr", [None] * feed.height, dtype=pl.String)
    feed = feed.with_columns(mother.scatter(row - 1, OTHER))
    feed.write_parquet(tmp_path / "feed.parquet")
    registries = dict(world.sources.registries)
    registries["reseptregisteret"] = dataclasses.replace(source, file=tmp_path / "feed.parquet")
    sources = dataclasses.replace(world.sources, registries=registries)
    monkeypatch.setattr(steps_ingest, "FEED_CHUNK_ROWS", 1_000)
    with pytest.raises(ColumnError) as caught:
        world.run(world.distributed, tmp_path / "ws", sources=sources)
    message = str(caught.value)
    assert f"mor_fnr (1 rows, first row {row})" in message, message
    assert str(tmp_path / "feed.parquet") in message
    assert "--allow-identifiers" not in message and "koble run" in message
    ingest = tmp_path / "ws" / "ingest"
    assert not ingest.exists() or not any(p.is_file() for p in ingest.rglob("*")), list(
        ingest.rglob("*")
    )
    assert not leaks(message, OTHER)


# -- 4. names ----------------------------------------------------------------------------------
def test_ingest_keygen_refuses_a_person_number_as_name(tmp_path: Path) -> None:
    """Before: exit 0, writing 04025523801.key.pem and echoing the number."""
    for name in (ZERO, ""):
        result = run("ingest", "keygen", name, "--out", tmp_path / "keys")
        assert result.exit_code == 2, result.output
        assert "NAME" in result.stderr and not leaks(result.output, ZERO)
    assert not (tmp_path / "keys").exists() or not any((tmp_path / "keys").iterdir())


@pytest.mark.parametrize("party", [OTHER, "p-25.12.49-40411", ""])
def test_serve_token_and_pki_refuse_a_person_number_as_party(tmp_path: Path, party: str) -> None:
    """Before: both accepted ``--party 25124940411``, echoing it and writing it into a
    certificate, though the service config later refuses such a party id."""
    token = run("serve", "token", "--party", party)
    assert token.exit_code == 2 and "--party" in token.stderr, token.output
    pki = run("serve", "pki", "--out", tmp_path / "pki", "--party", party)
    assert pki.exit_code == 2 and "--party" in pki.stderr, pki.output
    assert not (tmp_path / "pki").exists()
    assert not leaks(token.output + pki.output, OTHER)


@pytest.mark.parametrize("actor", [OTHER, "ola 25.12.49 40411", ""])
def test_actor_holding_a_person_number_is_refused_before_any_work(
    tmp_path: Path, keyset: Path, actor: str
) -> None:
    source = tmp_path / "in.csv"
    source.write_text(f"fnr\n{FNR}\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    result = run("pseudonymise", source, out, "-c", "fnr", "--domain", "d1", "--keyset", keyset,
                 "--actor", actor)  # fmt: skip
    assert result.exit_code == 2 and "--actor" in result.stderr, result.output
    assert not out.exists() and not leaks(result.output, OTHER)


def test_domain_errors_never_echo_the_value(tmp_path: Path, keyset: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text(f"fnr\n{FNR}\n", encoding="utf-8")
    for domain in ("Pasient 25.12.49 40411", f"d-{OTHER}"):
        result = run("pseudonymise", source, tmp_path / "o.csv", "-c", "fnr", "--domain", domain,
                     "--keyset", keyset)  # fmt: skip
        assert result.exit_code == 2 and "domain" in result.stderr, result.output
        assert not leaks(result.output, OTHER) and "Pasient" not in result.output


def test_hash_fields_still_pass_digits_inside_a_hash() -> None:
    pattern = re.compile("[0-9a-f]{64}")
    value = f"ab{OTHER}" + "c" * 51
    assert check_pattern("input_sha256", value, pattern, "hex") == value
    with pytest.raises(UsageError):
        check_pattern("key_id", f"{OTHER[:2]}.{OTHER[2:4]}.{OTHER[4:6]} {OTHER[6:]}",
                      re.compile(".*"), "x")  # fmt: skip


# -- 5. service: repeated column names ---------------------------------------------------------
def _arrow(names: list[str]) -> bytes:
    table = pa.table([pa.array(["x"]) for _ in names], names=names)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def test_arrow_body_with_repeated_names_says_so() -> None:
    """Before: 'the request body holds columns that cannot be read'."""
    from koble.pseudonym.service.arrowio import read_table

    with pytest.raises(FileFormatError, match=r"repeated column names \('fnr'\)") as named:
        read_table(_arrow(["fnr", "fnr", "x"]))
    assert named.value.exit_code == 2  # a caller's mistake: HTTP 400
    with pytest.raises(FileFormatError, match="repeated column names") as caught:
        read_table(_arrow([OTHER, OTHER, "note 1", "note 1"]), what="request body")
    shown = str(caught.value)
    assert "request body" in shown and "2 names, withheld" in shown
    assert "note" not in shown and not leaks(shown, OTHER)


# -- helpers -----------------------------------------------------------------------------------
_JOB = """\
[project]
id = "P1"
title = "{title}"

[population]
file = "population.parquet"
id_column = "fnr"

[recipient]
name = "{name}"
organisation = "UiO"

[delivery]
format = "parquet"

[registries.npr]
approval = {{ kind = "rek", reference = "REK 1" }}
variables = ["icd10_main", "start_date"]
period = {{ start = 2010, end = 2020 }}
"""


def _job(*, title: str, name: str) -> str:
    return _JOB.format(title=title, name=name)


@pytest.mark.parametrize("written", ["240120_65260", "240120:65260", "240120/65260"])
def test_underscore_colon_and_slash_separate_a_person_number_everywhere(
    tmp_path: Path, written: str
) -> None:
    """Before: ``project:240120_65260`` was a valid domain, written to the audit log, and a
    re-identification reason or job title in these forms passed (second review of the service)."""
    from koble.pseudonym.keys import check_domain

    with pytest.raises(UsageError):
        check_domain(f"project:{written}")
    assert contains_person_number(f"case {written} per REK")
    assert contains_person_number(f"case {written} per REK", standalone=True)
    assert scan_frame(pl.DataFrame({"note": [f"case {written}", "ok"]}))
    assert not leaks(sanitise(f"domain project:{written}"), FNR)
    with pytest.raises(JobError, match="must never hold an identifier"):
        parse_job(
            f'[project]\nid = "P1"\ntitle = "Hip {written}"\n', Catalogue.load(), path="job.toml"
        )
