"""Issue 12, second adversarial review: files, keys and the one rule.

A key directory is created as one set; replacing an output keeps its permissions; FIFOs and
devices are never replaced by outputs; anonymise never writes over a file its config reads;
odd column types give clear errors, never exit 3; full-width digits count in the data scan as
they do everywhere else; paths are shown whole unless they hold a valid person number.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.cli.main import cli
from koble.errors import FileFormatError, UsageError, sanitise
from koble.files import OutputSet, write_text
from koble.linkage.keys import LinkageKeys
from koble.pseudonym.keystore import RawKek
from koble.registries.identifiers.scan import contains_person_number, scan_frame
from tests.identifiers.strategies import Made, person_numbers
from tests.test_hardening_files_cli import ENV, VALID, make_cohort, pseudonymise, run

KEK = RawKek(bytes(32))


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    return make_cohort(tmp_path)


def now() -> dt.datetime:
    return dt.datetime(2024, 12, 5, tzinfo=dt.UTC)


# --- 1. a key directory is created as one set ------------------------------------------------


def test_keys_failing_midway_leave_no_key_file_and_the_next_run_creates_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys_dir = tmp_path / "K3"
    real_file = OutputSet.file

    def failing(self: OutputSet, path: str | Path, **kwargs: object):  # type: ignore[no-untyped-def]
        if Path(path).name == LinkageKeys.PUBLIC_FILE:
            raise OSError(28, os.strerror(28))
        return real_file(self, path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(OutputSet, "file", failing)
    with pytest.raises(OSError, match="No space"):
        LinkageKeys.open_or_create(keys_dir, KEK, randbytes=os.urandom, now=now)
    monkeypatch.undo()
    assert not [f for f in LinkageKeys.FILES if (keys_dir / f).exists()]
    keys = LinkageKeys.open_or_create(keys_dir, KEK, randbytes=os.urandom, now=now)
    assert all((keys_dir / f).is_file() for f in LinkageKeys.FILES)
    assert LinkageKeys.load(keys_dir, KEK).fingerprints() == keys.fingerprints()


def test_keys_killed_while_created_leave_no_key_file(tmp_path: Path) -> None:
    """A kill between two files: simulated by a process that exits hard in the middle."""
    import subprocess
    import sys

    script = (
        "import os, sys, datetime\n"
        "from pathlib import Path\n"
        "from koble import files\n"
        "from koble.linkage.keys import LinkageKeys\n"
        "from koble.pseudonym.keystore import RawKek\n"
        "real = files._staged.__wrapped__\n"
        "count = [0]\n"
        "def dying(path, mode):\n"
        "    count[0] += 1\n"
        "    if count[0] == 3:\n"
        "        os._exit(9)\n"
        "    return real(path, mode)\n"
        "files._staged = files.contextlib.contextmanager(dying)\n"
        "LinkageKeys.open_or_create(Path(sys.argv[1]), RawKek(bytes(32)),\n"
        "    randbytes=os.urandom, now=lambda: datetime.datetime.now(datetime.UTC))\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "K3")], env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 9, done.stderr
    assert not [f for f in LinkageKeys.FILES if (tmp_path / "K3" / f).exists()]
    keys = LinkageKeys.open_or_create(tmp_path / "K3", KEK, randbytes=os.urandom, now=now)
    assert LinkageKeys.load(tmp_path / "K3", KEK).fingerprints() == keys.fingerprints()


@pytest.mark.parametrize("lost", [LinkageKeys.SIGNER_FILE, LinkageKeys.TTP_FILE])
def test_a_half_present_key_directory_names_what_is_missing(tmp_path: Path, lost: str) -> None:
    LinkageKeys.create(tmp_path / "K", KEK, randbytes=os.urandom, now=now)
    (tmp_path / "K" / lost).unlink()
    with pytest.raises(FileFormatError) as caught:
        LinkageKeys.open_or_create(tmp_path / "K", KEK, randbytes=os.urandom, now=now)
    assert f"{lost} is missing" in str(caught.value)
    assert "passphrase" not in str(caught.value)


def test_a_key_directory_without_the_operator_keyset_is_not_silently_replaced(
    tmp_path: Path,
) -> None:
    LinkageKeys.create(tmp_path / "K", KEK, randbytes=os.urandom, now=now)
    (tmp_path / "K" / LinkageKeys.OPERATOR_FILE).unlink()
    ttp = (tmp_path / "K" / LinkageKeys.TTP_FILE).read_bytes()
    with pytest.raises(UsageError, match=r"operator\.keyset is missing"):
        LinkageKeys.open_or_create(tmp_path / "K", KEK, randbytes=os.urandom, now=now)
    assert (tmp_path / "K" / LinkageKeys.TTP_FILE).read_bytes() == ttp


def test_a_missing_public_key_is_written_again(tmp_path: Path) -> None:
    keys = LinkageKeys.create(tmp_path / "K", KEK, randbytes=os.urandom, now=now)
    (tmp_path / "K" / LinkageKeys.PUBLIC_FILE).unlink()
    LinkageKeys.open_or_create(tmp_path / "K", KEK, randbytes=os.urandom, now=now)
    assert (tmp_path / "K" / LinkageKeys.PUBLIC_FILE).read_bytes() == keys.signer.public_pem()


# --- 2. replacing an output keeps its permissions --------------------------------------------


def test_replacing_an_output_keeps_its_mode(tmp_path: Path) -> None:
    out = tmp_path / "kl.txt"
    write_text(out, "one\n")
    out.chmod(0o600)
    write_text(out, "two\n")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    out.chmod(0o640)
    with OutputSet() as outputs, outputs.file(out) as temp:
        temp.write_text("three\n")
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert out.read_text() == "three\n"


def test_pseudonymise_again_keeps_a_private_output_private(cohort: Path) -> None:
    out = cohort.parent / "out.csv"
    assert pseudonymise(cohort, out).exit_code == 1  # 1: a row was rejected
    out.chmod(0o600)
    assert pseudonymise(cohort, out).exit_code == 1
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


# --- 7. FIFOs and devices are not outputs ----------------------------------------------------


def test_a_fifo_given_as_rejects_is_refused_and_kept(cohort: Path) -> None:
    fifo = cohort.parent / "fifo.csv"
    os.mkfifo(fifo)
    result = pseudonymise(cohort, cohort.parent / "out.csv", "--rejects", fifo)
    assert result.exit_code == 2, result.output
    assert "fifo.csv: is a FIFO, device or socket, not a regular file" in result.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert not (cohort.parent / "out.csv").exists()


def test_a_directory_or_fifo_is_never_replaced_by_write_text(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "f")
    (tmp_path / "d").mkdir()
    with pytest.raises(UsageError, match="not a regular file"):
        write_text(tmp_path / "f", "x")
    with pytest.raises(UsageError, match="is a directory"):
        write_text(tmp_path / "d", "x")
    assert stat.S_ISFIFO((tmp_path / "f").lstat().st_mode)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_symlink_output_is_still_replaced_itself(tmp_path: Path) -> None:
    target = tmp_path / "target.txt"
    target.write_text("keep\n")
    (tmp_path / "link.txt").symlink_to(target)
    write_text(tmp_path / "link.txt", "new\n")
    assert target.read_text() == "keep\n"
    assert not (tmp_path / "link.txt").is_symlink()


# --- 3. anonymise never writes over a file its config reads ---------------------------------


@pytest.mark.parametrize("output", ["--out", "withheld.parquet"])
def test_anonymise_refuses_an_output_over_a_csv_hierarchy(tmp_path: Path, output: str) -> None:
    data = tmp_path / "data.csv"
    data.write_text("dx,age\n" + "a,30\nb,30\nc,40\na,40\n" * 3)
    hierarchy = tmp_path / ("occ.csv" if output == "--out" else "report/withheld.parquet")
    hierarchy.parent.mkdir(exist_ok=True)
    hierarchy.write_text("a;ab;*\nb;ab;*\nc;c;*\n")
    before = hierarchy.read_bytes()
    config = tmp_path / "anon.toml"
    config.write_text(
        f'[requirements]\nk = 2\n[quasi_identifiers]\ndx = "csv:{hierarchy.name}"\n'
        if output == "--out"
        else '[requirements]\nk = 2\n[quasi_identifiers]\ndx = "csv:report/withheld.parquet"\n'
    )
    out = hierarchy if output == "--out" else tmp_path / "out.csv"
    result = run("anonymity", "anonymise", data, "--config", config, "--out", out,
                 "--report", tmp_path / "report")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "quasi_identifiers.dx name the same file" in result.stderr
    assert hierarchy.read_bytes() == before


def test_config_input_files_name_hierarchies_and_population(tmp_path: Path) -> None:
    from koble.anonymity.config import AnonymiseConfig

    (tmp_path / "occ.csv").write_text("a;ab;*\nb;ab;*\n")
    (tmp_path / "pop.parquet").write_bytes(b"")
    config = tmp_path / "anon.toml"
    config.write_text(
        '[requirements]\nk = 2\n[quasi_identifiers]\nsex = "sex"\n'
        'occ = { type = "csv", path = "occ.csv" }\n[risk]\npopulation = "pop.parquet"\n'
    )
    assert AnonymiseConfig.read(config).input_files() == {
        "quasi_identifiers.occ": tmp_path / "occ.csv",
        "risk.population": tmp_path / "pop.parquet",
    }


# --- 4. odd column types: exit 0, 1 or a clear 2, never an internal error --------------------

AUDIT_ENV = {**ENV, "KOBLE_AUDIT_PASSPHRASE": "audit staple"}
OFFICER = ["--role", "reidentification-officer", "--reason", "adverse reaction follow-up",
           "--legal-basis", "helseregisterloven § 19 e"]  # fmt: skip
ODD = {
    "n": pl.Series([None] * 4, dtype=pl.Null),
    "l": pl.Series([[1], [2], [1], [2]]),
    "s": pl.Series([{"x": 1}, {"x": 2}, {"x": 1}, {"x": 2}]),
    "b": pl.Series([b"\xff", b"b", b"\xff", b"b"]),  # not UTF-8: a cast to text fails
    "t": pl.Series([True, False, True, False]),
    "f": pl.Series([1.5, 2.5, 1.5, 2.5]),
    "d": pl.Series([dt.date(2020, 1, 1)] * 4),
    "m": pl.Series([Decimal("1.10"), Decimal("2.20"), Decimal("1.10"), Decimal("2.20")]),
    "c": pl.Series(["a", "b", "a", "b"], dtype=pl.Categorical),
    "u": pl.Series([dt.timedelta(1)] * 4),
}
COMMANDS = ["pseudonymise", "pseudonymise-population", "rekey", "reidentify", "ids-check",
            "serials", "check-qi", "check-sensitive", "table", "anonymise-qi",
            "anonymise-sensitive", "anonymise-person"]  # fmt: skip


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A keyset, an audit key, odd.parquet with one column of each odd type (and "sex"), and
    a cohort of valid numbers (no odd data may stop a command before the column is used)."""
    folder = tmp_path_factory.mktemp("odd")
    runner = CliRunner()
    audited = ["--audit-log", folder / "audit.log", "--audit-key", folder / "audit.pem"]
    for args in (["keys", "create-signer", folder / "audit.pem"],
                 ["keys", "create", folder / "ks.json", *audited]):  # fmt: skip
        assert runner.invoke(cli, [str(a) for a in args], env=AUDIT_ENV).exit_code == 0
    pl.DataFrame({"sex": ["m", "f", "m", "f"], **ODD}).write_parquet(folder / "odd.parquet")
    pl.DataFrame({"fnr": VALID * 2}).write_parquet(folder / "cohort.parquet")
    return folder


def _odd_command(folder: Path, command: str, column: str) -> list[str | Path]:
    source, out = folder / "odd.parquet", folder / f"{command}-{column}.parquet"
    keyset: list[str | Path] = ["--keyset", folder / "ks.json", "--domain", "npr"]
    audited: list[str | Path] = ["--audit-log", folder / "audit.log",
                                 "--audit-key", folder / "audit.pem"]  # fmt: skip
    config = folder / f"{command}-{column}.toml"
    config.write_text({
        "anonymise-qi": f'[requirements]\nk = 2\n[quasi_identifiers]\n{column} = "categorical"\n',
        "anonymise-sensitive": '[requirements]\nk = 2\nl = 2\n[quasi_identifiers]\nsex = "sex"\n'
                               f'[sensitive]\ncolumn = "{column}"\n',
        "anonymise-person": f'[requirements]\nk = 1\nperson = "{column}"\n'
                            '[quasi_identifiers]\nsex = "sex"\n',
    }.get(command, ""))  # fmt: skip
    report = folder / f"report-{command}-{column}"
    anonymise: list[str | Path] = ["anonymity", "anonymise", source, "--config", config,
                                   "--out", out, "--report", report]  # fmt: skip
    commands: dict[str, list[str | Path]] = {
        "pseudonymise": ["pseudonymise", source, out, "-c", column, *keyset],
        "pseudonymise-population": ["pseudonymise", folder / "cohort.parquet", out,
                                    "-c", "fnr", *keyset,
                                    "--population", source, "--population-column", column],
        "rekey": ["rekey", source, out, "-c", column, *keyset],
        "reidentify": ["reidentify", source, out, "-c", column, *keyset, *audited, *OFFICER],
        "ids-check": ["ids", "check", source, "-c", column],
        "serials": ["serials", source, out, "-c", column, "--project", "p1",
                    "--keyset", folder / "ks.json"],
        "check-qi": ["anonymity", "check", source, "--qi", column, "--k", "2"],
        "check-sensitive": ["anonymity", "check", source, "--qi", "sex", "--k", "1",
                            "--sensitive", column, "--l", "2"],
        "table": ["anonymity", "table", source, "--rows", column, "--cols", "sex"],
        "anonymise-qi": anonymise,
        "anonymise-sensitive": anonymise,
        "anonymise-person": anonymise,
    }  # fmt: skip
    return commands[command]


@pytest.mark.parametrize("column", list(ODD))
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_gives_a_clear_answer_for_every_odd_column_type(
    odd: Path, command: str, column: str
) -> None:
    args = _odd_command(odd, command, column)
    result = CliRunner().invoke(cli, [str(a) for a in args], env=AUDIT_ENV)
    assert result.exit_code in (0, 1, 2), result.output
    assert "internal error" not in result.output
    if result.exit_code == 2:
        assert "koble: error:" in result.stderr or "Error:" in result.stderr, result.stderr


@pytest.mark.parametrize("name", ["n", "len", "distinct", "persons", "_sample_size"])
def test_a_quasi_identifier_may_have_any_name(tmp_path: Path, name: str) -> None:
    from koble.anonymity.release import check_frame

    frame = pl.DataFrame({name: ["a", "b", "a", "b"], "sex": ["m", "m", "f", "f"],
                          "dx": ["x", "y", "z", "x"]})  # fmt: skip
    result = check_frame(frame, [name, "sex"], k=1, sensitive="dx", l=1, population=frame)
    assert result.rows == 4 and result.classes == 4


# --- 5. the one rule: Unicode digits count in the data scan too ------------------------------

#: Zero of some Unicode decimal digit families: fullwidth, Arabic-Indic, Devanagari, math bold.
ZEROS = ["\uff10", "\u0660", "\u0966", "\U0001d7ce"]


def _in_family(number: str, zero: str) -> str:
    return "".join(chr(ord(zero) + int(d)) for d in number)


@settings(max_examples=60, deadline=None)
@given(made=person_numbers(), zero=st.sampled_from(ZEROS), prefix=st.sampled_from(["", "id "]))
def test_unicode_digits_count_alike_in_data_names_and_messages(
    made: Made, zero: str, prefix: str
) -> None:
    written = prefix + _in_family(made.number, zero)
    assert contains_person_number(written)
    assert "<redacted>" in sanitise(written)
    found = scan_frame(pl.DataFrame({"note": [written, "x"], "cat": [written, "y"]}).with_columns(
        pl.col("cat").cast(pl.Categorical)))  # fmt: skip
    assert [(f.column, f.rows, f.first_row) for f in found] == [("note", 1, 1), ("cat", 1, 1)]


def test_every_unicode_digit_python_knows_is_made_ascii_in_the_scan() -> None:
    """The scan skips its digit table for non-ASCII text without a non-ASCII digit (found by
    the engine's Unicode ``\\d``): every digit ``str.isdecimal`` knows must be one it finds,
    beside Norwegian letters too."""
    from koble.registries.identifiers.scan import _unicode_digits, _with_ascii_digits

    digits, plain = _unicode_digits()
    assert len(digits) > 600
    values = pl.Series([f"ø{d}å" for d in digits])
    assert _with_ascii_digits(values).to_list() == [f"ø{p}å" for p in plain]
    assert _with_ascii_digits(pl.Series(["Ålesund 12", "blåbær"])).to_list() == [
        "Ålesund 12", "blåbær"]  # fmt: skip


def test_pseudonymise_refuses_a_pass_through_column_of_fullwidth_numbers(cohort: Path) -> None:
    source = cohort.parent / "wide.csv"
    fullwidth = _in_family(VALID[1], ZEROS[0])
    source.write_text(f"fnr;note\n{VALID[0]};{fullwidth}\n", encoding="utf-8")
    out = cohort.parent / "out.csv"
    result = run("pseudonymise", source, out, "-c", "fnr", "--domain", "npr",
                 "--keyset", cohort.parent / "ks.json")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "note (1 rows, first row 1)" in result.stderr
    assert not out.exists()


# --- 6. paths are shown whole, unless they hold a valid person number ------------------------


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        (
            "export_20241205235959.csv",
            "export_20241205235959.csv: column 'fnr': no such column; the file has: x",
        ),
        ("missing_20241205-235959.csv", "missing_20241205-235959.csv: no such file"),
        (f"missing_{VALID[0]}.csv", "missing_<redacted>.csv: no such file"),
        ("missing_150810 00042.csv", "missing_150810 00042.csv: no such file"),
        (f"missing_{VALID[1][:6]}-{VALID[1][6:]}.csv", "missing_<redacted>.csv: no such file"),
    ],
)
def test_a_path_is_shown_whole_unless_it_holds_a_valid_person_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, shown: str
) -> None:
    monkeypatch.chdir(tmp_path)
    if name.startswith("export"):
        Path(name).write_text("x\n1\n")
    result = run("ids", "check", name, "--column", "fnr")
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"koble: error: {shown}"


def test_a_message_quoting_data_is_still_redacted_broadly() -> None:
    error = FileFormatError(
        "bad value 20241205235959 in the file", path="export_20241205235959.csv"
    )
    assert str(error) == "export_20241205235959.csv: bad value <redacted> in the file"
    assert str(FileFormatError("x", path="a\rb.csv")) == "a\\rb.csv: x"
