"""Job files: the worked example, every validation problem (all at once, each with its line),
variable names (§1.5), schemas (built-in, [schemas], schema_file) and the line lookup."""

from __future__ import annotations

from pathlib import Path

import pytest

from koble.linkage.job import (
    JobError,
    load_job,
    parse_job,
    valid_variable_name,
)
from koble.linkage.sources import synthetic_schemas
from koble.linkage.toml_lines import Lines
from koble.registries.catalogue import Catalogue

EXAMPLE = Path(__file__).parents[2] / "examples" / "job.toml"

GOOD = """\
[project]
id = "P1"
title = "Test"

[population]
file = "population.parquet"
id_column = "fnr"

[recipient]
name = "Kari"
organisation = "UiO"

[delivery]
format = "parquet"

[registries.npr]
approval = { kind = "rek", reference = "REK 1" }
variables = ["icd10_main", "START_DATE"]
period = { start = 2010, end = 2020 }
"""


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load()


def problems(text: str, catalogue: Catalogue) -> list[tuple[int, str]]:
    with pytest.raises(JobError) as info:
        parse_job(text, catalogue, path="job.toml")
    return [(p.line, p.message) for p in info.value.problems]


def test_the_worked_example_is_valid(catalogue: Catalogue) -> None:
    job = load_job(EXAMPLE, catalogue)
    assert job.project_id == "P2026-014"
    assert [r.registry for r in job.requests] == [
        "npr",
        "hoftebruddregisteret",
        "reseptregisteret",
    ]
    assert job.delivery_format == "csv"
    assert all(r.approval.reference for r in job.requests)


def test_a_good_job_keeps_the_schema_spelling(catalogue: Catalogue) -> None:
    job = parse_job(GOOD, catalogue)
    (npr,) = job.requests
    assert npr.variables == ("icd10_main", "start_date")
    assert (npr.start, npr.end) == (2010, 2020)
    assert npr.approval.kind == "rek"
    assert npr.line == 16


BAD = """\
[project]
id = "P1"

[population]
file = "population.parquet"
id_column = "fnr"
colour = "blue"

[recipient]
name = "Kari"
organisation = "UiO"

[delivery]
format = "xlsx"

[registries.npr]
approval = { kind = "rek", reference = "REK 1" }
variables = [
  "icd10_main",
  "no_such_column",
  "1bad",
]
period = { start = 2020, end = 2010 }

[registries.nosuchregistry]
approval = { kind = "rek", reference = "REK 1" }
variables = ["x"]
period = { start = 2010, end = 2020 }

[registries.mfr]
variables = ["birth_date"]
period = { start = 1850, end = 2020 }

[registries.dodsarsaksregisteret]
approval = { kind = "rek-ish", reference = "" }
variables = ["death_date"]
period = "2010-2020"
"""


def test_every_problem_is_reported_at_once_with_its_line(catalogue: Catalogue) -> None:
    found = problems(BAD, catalogue)
    lines = [line for line, _ in found]
    assert lines == sorted(lines)
    expected = [
        (1, "missing project.title"),
        (
            7,
            "unknown key 'population.colour'; use fields, file, id_column, recover, thresholds",
        ),
        (14, "delivery format 'xlsx' is not one of parquet, csv, stata, spss, sas"),
        (20, "registry 'npr': unknown variable 'no_such_column'"),
        (21, "registry 'npr': variable '1bad' is not a valid name"),
        (23, "registry 'npr': period starts (2020) after it ends (2010)"),
        (25, "unknown registry 'nosuchregistry'"),
        (30, "registry 'mfr': no approval"),
        (32, "registry 'mfr': period start must be a year between 1900 and 2100"),
        (35, "registry 'dodsarsaksregisteret': approval kind 'rek-ish' is not one of"),
        (35, "registry 'dodsarsaksregisteret': approval has no reference"),
        (37, "registry 'dodsarsaksregisteret': period must be { start = YYYY, end = YYYY }"),
    ]
    for line, start in expected:
        assert any(ln == line and msg.startswith(start) for ln, msg in found), (line, start, found)
    assert len(found) == len(expected), found


def test_the_error_lists_one_line_per_problem(catalogue: Catalogue) -> None:
    with pytest.raises(JobError) as info:
        parse_job(BAD, catalogue, path="job.toml")
    lines = info.value.lines()
    assert len(lines) == len(info.value.problems)
    assert lines[0].startswith("job.toml:1: ")
    assert info.value.exit_code == 2


def test_unknown_registry_suggests_close_matches(catalogue: Catalogue) -> None:
    text = GOOD.replace("[registries.npr]", "[registries.reseptregistret]")
    ((line, message),) = problems(text, catalogue)
    assert line == 16
    assert "did you mean reseptregisteret" in message


def test_missing_tables_are_reported(catalogue: Catalogue) -> None:
    found = problems('[project]\nid = "P"\ntitle = "T"\nextra = 1\n', catalogue)
    messages = [m for _, m in found]
    for table in ("population", "recipient", "delivery", "registries"):
        assert f"missing table [{table}]" in messages
    assert (4, "unknown key 'project.extra'; use id, title") in found


def test_invalid_toml_names_its_line(catalogue: Catalogue) -> None:
    ((line, message),) = problems('[project]\nid = "P"\ntitle = \n', catalogue)
    assert line == 3
    assert message.startswith("not valid TOML")


def test_the_anonymous_route_needs_anonymity_requirements(catalogue: Catalogue) -> None:
    iplos = (
        '\n[registries.iplos]\napproval = { kind = "helsedataservice", reference = "HDS 1" }\n'
        'variables = ["kommune", "service_type"]\nperiod = { start = 2015, end = 2020 }\n'
    )
    ((line, message),) = problems(GOOD + iplos, catalogue)
    assert line == 21
    assert "iplos may only leave in anonymous form" in message
    bad = GOOD + iplos + '\n[anonymity]\nk = 1\nquasi_identifiers = ["kommune", "height"]\n'
    found = problems(bad, catalogue)
    assert [m.split(" ")[0] for _, m in found] == ["anonymity.k", "quasi-identifier"]
    assert [ln for ln, _ in found] == [27, 28]
    good = GOOD + iplos + '\n[anonymity]\nk = 5\nquasi_identifiers = ["kommune"]\n'
    job = parse_job(good, catalogue)
    assert job.anonymity is not None and job.anonymity.k == 5
    assert (job.anonymity.model, job.anonymity.m) == ("auto", 2)
    chosen = parse_job(good + 'model = "person-km"\nm = 3\n', catalogue)
    assert chosen.anonymity is not None
    assert (chosen.anonymity.model, chosen.anonymity.m) == ("person-km", 3)
    assert "any 3 of a person's rows" in chosen.anonymity.describe()
    found = problems(good + 'model = "persons"\nm = 0\n', catalogue)
    wrong = [(ln, m.split(" ")[0]) for ln, m in found]
    assert wrong == [(29, "anonymity.model"), (30, "anonymity.m")]


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("icd10_main", True),
        ("A", True),
        ("_x", True),
        ("X" * 32, True),
        ("X" * 33, False),
        ("1st", False),
        ("fødsel", False),
        ("a-b", False),
        ("a b", False),
        ("", False),
    ],
)
def test_variable_names_follow_the_delivery_rules(name: str, ok: bool) -> None:
    assert valid_variable_name(name) is ok


def test_variables_need_a_schema(tmp_path: Path, catalogue: Catalogue) -> None:
    text = GOOD.replace("[registries.npr]", "[registries.sysvak]").replace(
        '["icd10_main", "START_DATE"]', '["vaccine"]'
    )
    ((line, message),) = problems(text, catalogue)
    assert line == 18
    assert "no variable schema" in message
    job = parse_job(text + '\n[schemas]\nsysvak = ["vaccine", "dose"]\n', catalogue)
    assert job.requests[0].variables == ("vaccine",)
    (tmp_path / "schemas.toml").write_text('sysvak = ["vaccine"]\n', encoding="utf-8")
    job_file = tmp_path / "job.toml"
    job_file.write_text('schema_file = "schemas.toml"\n' + text, encoding="utf-8")
    assert load_job(job_file, catalogue).requests[0].variables == ("vaccine",)
    job_file.write_text('schema_file = "missing.toml"\n' + text, encoding="utf-8")
    with pytest.raises(JobError) as info:
        load_job(job_file, catalogue)
    assert [p.line for p in info.value.problems] == [1, 19]


def test_duplicate_variables_and_aliases_are_refused(catalogue: Catalogue) -> None:
    text = GOOD.replace('"START_DATE"]', '"START_DATE", "start_date"]')
    ((line, message),) = problems(text, catalogue)
    assert (line, "listed twice" in message) == (18, True)
    twice = GOOD + GOOD[GOOD.index("[registries.npr]") :].replace(
        "registries.npr", "registries.NPR"
    )
    found = problems(twice, catalogue)
    assert any("already requested" in m for _, m in found)


def test_synthetic_schemas_name_catalogue_entries(catalogue: Catalogue) -> None:
    for ident, columns in synthetic_schemas().items():
        assert ident in catalogue
        assert columns and all(valid_variable_name(c) for c in columns)
        assert not {"fnr", "mother_fnr", "child_fnr"} & set(columns)


def test_line_lookup_handles_dotted_keys_and_arrays() -> None:
    text = (
        '# comment\n[a]\nx = 1\ny.z = [\n  "[not a header]",\n  "v",\n]\n'
        '[a."b c"]\nkey = { k = 1 }\n'
    )
    at = Lines(text)
    assert at.line("a") == 2
    assert at.line("a", "x") == 3
    assert at.line("a", "y", "z") == 4
    assert at.value("v", "a", "y", "z") == 6
    assert at.line("a", "b c", "key", "k") == 9
    assert at.line("missing") == 1


def test_missing_job_file(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no such file"):
        load_job(tmp_path / "nope.toml")
