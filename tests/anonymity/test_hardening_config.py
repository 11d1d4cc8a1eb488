"""Issue 12 §3: every parameter of ``anonymity check``/``anonymise``/``table``, of ANON.toml and of
the library's config and criteria objects is validated: exit 2 naming the parameter (never an
internal error, never silently accepted), and an ANON.toml reports all its problems at once."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.anonymity.checks import (
    DistinctLDiversity,
    EntropyLDiversity,
    KAnonymity,
    KPersons,
    TCloseness,
)
from koble.anonymity.config import AnonymiseConfig
from koble.anonymity.release import check_frame
from koble.anonymity.risk import assess_risk
from koble.cli.main import cli
from koble.errors import ColumnError, UsageError

FNR = "25124940411"  # a valid fødselsnummer typed into the wrong option


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "t.parquet"
    pl.DataFrame(
        {
            "age": [30, 30, 40, 40, 50, 50],
            "sex": ["m", "m", "f", "f", "m", "m"],
            "dx": ["a", "b", "a", "b", "c", "c"],
            "tags": [[1], [2], [1], [2], [3], [3]],
            "blob": [b"a", b"b", b"a", b"b", b"c", b"c"],
            "info": [{"x": 1}] * 6,
        }
    ).write_parquet(path)
    return path


def _refused(result: Result, *names: str) -> str:
    """Exit 2, no internal error, and the message names every one of ``names``."""
    text = result.output
    assert result.exit_code == 2, text
    assert "internal error" not in text and "Traceback" not in text
    for name in names:
        assert name in text, (name, text)
    return text


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--qi", "age,age", "--k", "2"], ["--qi", "more than once", "'age'"]),
        (["--qi", "age", "--k", "-1"], ["--k", "at least 1"]),
        (["--qi", "age", "--k", "0"], ["--k", "at least 1"]),
        (["--qi", "", "--k", "2"], ["--qi", "at least one column"]),
        (["--qi", " , ", "--k", "2"], ["--qi", "at least one column"]),
        (["--qi", "age", "--k", "2", "--risk-threshold", "-1"], ["--risk-threshold", "(0, 1]"]),
        (["--qi", "age", "--k", "2", "--risk-threshold", "nan"], ["--risk-threshold"]),
        (["--qi", "age", "--k", "2", "--risk-threshold", "inf"], ["--risk-threshold"]),
        (["--qi", "age", "--k", "2", "--risk-threshold", "0"], ["--risk-threshold"]),
        (["--qi", "age", "--k", "2", "--risk-threshold", "1.5"], ["--risk-threshold"]),
        (["--qi", "age", "--k", "2", "--sensitive", "dx", "--l", "0"], ["--l", "at least 1"]),
        (["--qi", "age", "--k", "2", "--l", "2"], ["l needs a sensitive attribute"]),
        (["--qi", "age", "--k", "2", "--sensitive", "age"], ["sensitive", "quasi-identifier"]),
        (["--qi", "age,nope,gone", "--k", "2"], ["'nope'", "'gone'"]),
    ],
)
def test_check_refuses_bad_parameters(table: Path, args: list[str], names: list[str]) -> None:
    _refused(run("anonymity", "check", table, *args), *names)


def test_check_never_echoes_a_value_typed_into_a_number_option(table: Path) -> None:
    for option in ("--k", "--risk-threshold", "--l"):
        args = ["--qi", "age", "--k", "2", "--sensitive", "dx", option, FNR + "x"]
        text = _refused(run("anonymity", "check", table, *args), option)
        assert FNR not in text


@pytest.mark.parametrize(
    ("qi", "shown"),
    [("tags", "'tags' (List)"), ("blob", "'blob' (Binary)"), ("info,age", "'info' (Struct)")],
)
def test_check_names_unsupported_column_types(table: Path, qi: str, shown: str) -> None:
    _refused(run("anonymity", "check", table, "--qi", qi, "--k", "2"), shown)


def test_check_names_an_unsupported_sensitive_column(table: Path) -> None:
    args = ["--qi", "age", "--k", "2", "--sensitive", "tags", "--l", "1"]
    _refused(run("anonymity", "check", table, *args), "'tags' (List)")


def test_check_accepts_k_above_the_row_count_and_reports_it(table: Path) -> None:
    result = run("anonymity", "check", table, "--qi", "age", "--k", "100")
    assert result.exit_code == 1, result.output  # runs, and says it does not meet k
    assert "k = 100" in result.output and "does NOT meet" in result.output


def test_table_refuses_same_column_twice_and_unsupported_types(table: Path) -> None:
    _refused(run("anonymity", "table", table, "--rows", "age", "--cols", "age"), "different")
    _refused(run("anonymity", "table", table, "--rows", "tags", "--cols", "sex"), "(List)")


# --- the library: check_frame, assess_risk, criteria and config objects ----------------------


def test_check_frame_reports_every_parameter_problem_at_once() -> None:
    frame = pl.DataFrame({"age": [1, 2], "dx": ["a", "b"]})
    with pytest.raises(UsageError) as info:
        check_frame(frame, ["age", "age"], k=0, l=0, risk_threshold=math.nan)
    message = str(info.value)
    for part in ("more than once", "k must", "l must", "l needs", "risk_threshold"):
        assert part in message, message


def test_check_frame_refuses_list_columns_with_a_column_error() -> None:
    frame = pl.DataFrame({"age": [1, 2], "tags": [[1], [2]]})
    with pytest.raises(ColumnError, match=r"'tags' \(List\)"):
        check_frame(frame, ["age", "tags"], k=2, path="x.parquet")


@pytest.mark.parametrize("threshold", [0.0, -0.5, 1.01, math.nan, math.inf])
def test_assess_risk_refuses_a_threshold_outside_0_1(threshold: float) -> None:
    with pytest.raises(UsageError, match="threshold"):
        assess_risk(pl.DataFrame({"age": [1]}), ["age"], threshold=threshold)


@pytest.mark.parametrize(
    "make",
    [
        lambda: KAnonymity(0),
        lambda: KPersons(-3),
        lambda: DistinctLDiversity(0),
        lambda: EntropyLDiversity(math.inf),
        lambda: EntropyLDiversity(0.5),
        lambda: TCloseness(math.nan),
        lambda: TCloseness(1.5),
    ],
)
def test_criteria_refuse_out_of_range_parameters(make: object) -> None:
    with pytest.raises(UsageError):
        make()  # type: ignore[operator]


def test_config_built_directly_is_validated() -> None:
    with pytest.raises(UsageError) as info:
        AnonymiseConfig(k=0, quasi_identifiers={}, suppression=math.nan, risk_threshold=2.0)
    message = str(info.value)
    for part in ("requirements.k", "requirements.suppression", "[quasi_identifiers]",
                 "risk.threshold"):  # fmt: skip
        assert part in message, message


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(min_value=-5, max_value=10),
    risk=st.floats(allow_nan=True, allow_infinity=True),
)
def test_check_frame_accepts_exactly_the_valid_parameters(k: int, risk: float) -> None:
    frame = pl.DataFrame({"age": [1, 1, 2]})
    valid = k >= 1 and math.isfinite(risk) and 0 < risk <= 1
    try:
        check_frame(frame, ["age"], k=k, risk_threshold=risk)
    except UsageError:
        assert not valid
    else:
        assert valid


# --- ANON.toml: every problem at once ----------------------------------------------------------


def _anonymise(tmp_path: Path, table: Path, toml: str) -> Result:
    config = tmp_path / "anon.toml"
    config.write_text(toml)
    return run("anonymity", "anonymise", table, "--config", config,
               "--out", tmp_path / "out.parquet", "--report", tmp_path / "report")  # fmt: skip


def test_anon_toml_reports_two_hierarchy_mistakes_and_a_bad_k_at_once(
    tmp_path: Path, table: Path
) -> None:
    toml = '[requirements]\nk = 0\n[quasi_identifiers]\nage = "nosuch"\nsex = "alsonot"\n'
    text = _refused(_anonymise(tmp_path, table, toml), "requirements.k",
                    "quasi_identifiers.age", "quasi_identifiers.sex")  # fmt: skip
    assert "'nosuch'" in text and "'alsonot'" in text
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.parametrize(
    ("toml", "names"),
    [
        ('requirements = 5\n[quasi_identifiers]\nage = "age"\n', ["[requirements] must be"]),
        (
            '[requirements]\nk = 2\nl = inf\n[sensitive]\ncolumn = "dx"\n'
            '[quasi_identifiers]\nage = "age"\n',
            ["requirements.l"],
        ),
        (
            '[requirements]\nk = 2\nl = 2.5\n[sensitive]\ncolumn = "dx"\n'
            '[quasi_identifiers]\nage = "age"\n',
            ["requirements.l must be a whole number"],
        ),
        (
            '[requirements]\nk = 2\nl = nan\nt = nan\n[sensitive]\ncolumn = "dx"\n'
            '[quasi_identifiers]\nage = "age"\n',
            ["requirements.l", "requirements.t"],
        ),
        (
            '[requirements]\nk = 2\n[sensitive]\ncolumn = "age"\n'
            '[quasi_identifiers]\nage = "age"\n',
            ["sensitive.column cannot also be a quasi-identifier"],
        ),
        (
            '[requirements]\nk = 2\nt_ordered = "yes"\nsuppression = true\n'
            '[quasi_identifiers]\nage = "age"\n[risk]\npopulation = 5\nthreshold = nan\n',
            [
                "requirements.t_ordered",
                "requirements.suppression",
                "risk.population",
                "risk.threshold",
            ],
        ),
        (
            '[requirements]\nk = 2\n[sensitive]\ncolumn = 5\n[quasi_identifiers]\nage = "age"\n'
            '[risk]\npopulation = "missing.parquet"\n',
            ["sensitive.column must name a column", "risk.population: no such file"],
        ),
        (
            '[requirements]\nk = 2\n[quasi_identifiers]\nage = "csv:none.csv"\n'
            'sex = { type = "age", bogus = 1 }\n',
            ["quasi_identifiers.age", "quasi_identifiers.sex", "bogus"],
        ),
    ],
)
def test_anon_toml_mistakes_are_exit_2_naming_each_key(
    tmp_path: Path, table: Path, toml: str, names: list[str]
) -> None:
    _refused(_anonymise(tmp_path, table, toml), *names)


def test_anonymise_names_every_missing_or_unsupported_column_at_once(
    tmp_path: Path, table: Path
) -> None:
    toml = (
        '[requirements]\nk = 2\n[quasi_identifiers]\nage = "age"\nnope = "categorical"\n'
        'gone = "categorical"\ntags = "categorical"\n'
    )
    _refused(_anonymise(tmp_path, table, toml), "'nope'", "'gone'", "'tags' (List)")
