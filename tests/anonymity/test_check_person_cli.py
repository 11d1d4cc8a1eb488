"""``koble anonymity check --person/--model/--m`` end to end: person-level figures, the
failed requirements in words, exit codes 0/1/2, and no person id anywhere in the output."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result

from koble.cli.main import cli
from koble.registries.identifiers import fodselsnummer

#: Person ids shaped like fødselsnumre and like plain codes: neither may be shown.
IDS = ["01018012345", "02029054321", "PID-SECRET-3"]


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, ["anonymity", "check", *(str(a) for a in args)])


@pytest.fixture
def attack(tmp_path: Path) -> Path:
    """Three persons, services A, B, C: every row class holds two persons, but every
    person's set of services is unique; education is constant within each person."""
    path = tmp_path / "iplos.csv"
    pl.DataFrame({
        "lopenr": [IDS[0], IDS[0], IDS[1], IDS[1], IDS[2], IDS[2]],
        "svc": ["A", "B", "A", "C", "B", "C"],
        "edu": ["1", "1", "2", "2", "1", "1"],
    }).write_csv(path)  # fmt: skip
    return path


def _no_ids(result: Result) -> None:
    for value in IDS:
        assert value not in result.output
        assert value not in result.stderr


def test_person_set_is_the_default_and_says_which_requirement_fails(attack: Path) -> None:
    result = run(attack, "--qi", "svc", "--k", "2", "--person", "lopenr")
    assert result.exit_code == 1, result.output
    out = result.stdout
    assert "person level (model person-set):" in out
    assert "3 persons in 6 rows, 3 with 2 or more rows (person column lopenr, k = 2)" in out
    assert "person-constant columns: edu" in out
    assert "persons by set of QI tuples: 3 unique, 3 in groups under k" in out
    assert "persons by multiset of QI tuples: 3 unique" in out
    assert "persons by set with person-constant columns (edu): 3 unique" in out
    assert "k^m (m = 2)" in out and ": 3; with person-constant columns: 3" in out
    assert (
        "does NOT meet them: 3 persons are in person-level classes under k = 2 "
        "(person-set, with person-constant columns)" in out
    )
    _no_ids(result)


def test_row_model_meets_and_person_km_counts_person_constant_columns(attack: Path) -> None:
    base: list[str | Path] = [attack, "--qi", "svc", "--k", "2", "--person", "lopenr"]
    row = run(*base, "--model", "row")
    assert row.exit_code == 0, row.output
    assert "meets the requirements" in row.stdout and "model row" in row.stdout
    # single rows: each service is held by two persons, but education adds a unique tuple
    km1 = run(*base, "--model", "person-km", "--m", "1")
    assert km1.exit_code == 1
    assert "(person-km, m = 1)" in km1.stdout
    same_edu = run(attack, "--qi", "svc,edu", "--k", "1", "--person", "lopenr",
                   "--model", "person-km", "--m", "3")  # fmt: skip
    assert same_edu.exit_code == 0, same_edu.output
    for result in (row, km1, same_edu):
        _no_ids(result)


def test_json_holds_the_person_level_figures_model_and_failures(attack: Path) -> None:
    result = run(attack, "--qi", "svc", "--k", "2", "--person", "lopenr", "--model",
                 "person-km", "--json")  # fmt: skip
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["model"] == "person-km" and data["meets"] is False
    level = data["person_level"]
    assert level["person"] == "lopenr" and level["persons"] == 3 and level["m"] == 2
    assert level["constant_columns"] == ["edu"] and level["added_columns"] == ["edu"]
    assert level["by_set"] == {"groups": 3, "unique": 3, "under_k": 3, "smallest": 1}
    assert level["km_failing"] == 3 and level["km_failing_with_constant"] == 3
    assert data["failures"] == [
        "3 persons have 2 or fewer rows held by fewer than k = 2 persons (person-km, m = 2)"
    ]
    _no_ids(result)


def test_without_person_the_output_is_unchanged_in_kind(attack: Path) -> None:
    result = run(attack, "--qi", "svc", "--k", "2", "--json")
    data = json.loads(result.stdout)
    assert result.exit_code == 0 and data["person_level"] is None and data["model"] is None
    assert data["failures"] == []


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--person", "lopenr", "--model", "01018012345"], "model must be one of row, "
         "person-set, person-km"),
        (["--person", "nope"], "column 'nope'"),
        (["--model", "person-set"], "a person-level model needs a person column"),
        (["--person", "svc"], "the person column cannot also be a quasi-identifier"),
        (["--person", "lopenr", "--m", "0"], "'--m': must be a whole number of at least 1"),
    ],
)  # fmt: skip
def test_bad_person_options_are_exit_2_naming_the_parameter(
    attack: Path, extra: list[str], named: str
) -> None:
    result = run(attack, "--qi", "svc", "--k", "2", *extra)
    assert result.exit_code == 2, result.output
    assert named in result.output
    assert "internal error" not in result.output and "Traceback" not in result.output
    _no_ids(result)


def test_column_names_that_look_like_console_markup_are_printed_not_parsed(
    tmp_path: Path,
) -> None:
    # A column called "[/]" once made rich raise MarkupError: exit 3 instead of a verdict.
    numbers = [f"010180{i:05d}" for i in range(200)]
    valid = [n for n in numbers if fodselsnummer.is_valid(n)][:4]
    path = tmp_path / "m.csv"
    pl.DataFrame({"[/]": valid, "[red]p": ["a", "a", "b", "b"], "age": ["30"] * 4}).write_csv(path)
    check = run(path, "--qi", "age", "--k", "2", "--person", "[red]p")
    assert check.exit_code == 1, check.output
    assert "in [/] (4 rows" in check.stdout and "person column [red]p" in check.stdout
    toml = tmp_path / "anon.toml"
    toml.write_text('[requirements]\nk = 1\nsuppression = 0\n[quasi_identifiers]\n"[/b]" = '
                    '"categorical"\n')  # fmt: skip
    pl.DataFrame({"[/b]": ["x", "y"]}).write_csv(tmp_path / "a.csv")
    released = CliRunner().invoke(cli, ["anonymity", "anonymise", str(tmp_path / "a.csv"),
                                        "--config", str(toml), "--out", str(tmp_path / "r.csv"),
                                        "--report", str(tmp_path / "rep")])  # fmt: skip
    assert released.exit_code == 0, released.output
    assert "levels: [/b]=" in released.stdout
