"""Issue 12 §1: identifiers stay where the tool says they stay.

A repeated column name (``fnr,fnr``) is refused by every reader instead of passing the copy
through in clear; ``pseudonymise`` (local and remote) and sealed ingest refuse to write a
pass-through column holding person numbers unless it is declared (``--allow-identifiers``);
a column parameter that holds an identifier is never echoed and ``--output-column`` refuses
one; every error message is one line without control characters.
"""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st

from koble.cli.main import cli
from koble.errors import ColumnError, InputError, KobleError, UsageError

FNR = "15108695088"  # valid fødselsnummer
OTHER = "25124940411"  # valid fødselsnummer
LEADING_ZERO = "01019000008"  # valid fødselsnummer
ENV = {
    "KOBLE_KEYSET_PASSPHRASE": "correct horse battery",
    "KOBLE_PARTY_PASSPHRASE": "party staple battery",
    "KOBLE_ACTOR": "ola.operator",
}


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=ENV)


def no_number(text: str) -> bool:
    """No 11-digit run (with or without a separator after the sixth) anywhere in ``text``."""
    return re.search(r"\d{6}[ \-]?\d{5}", text) is None


@pytest.fixture
def keyset(tmp_path: Path) -> Path:
    assert run("keys", "create", tmp_path / "ks.json").exit_code == 0
    return tmp_path / "ks.json"


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- 1. duplicate column names ---------------------------------------------------------------
def test_pseudonymise_refuses_a_repeated_id_column(tmp_path: Path, keyset: Path) -> None:
    """Before: exit 0 and ``fnr_duplicated_0`` in the output with the fødselsnummer in clear."""
    source = write_csv(tmp_path / "dup.csv", f"fnr,fnr\n{FNR},{FNR}\n")
    out = tmp_path / "out.csv"
    result = run("pseudonymise", source, out, "-c", "fnr", "--domain", "d", "--keyset", keyset)
    assert result.exit_code == 2, result.output
    assert "duplicate column names 'fnr'" in result.stderr
    assert not out.exists() and not (tmp_path / "out.rejects.csv").exists()


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_ids_check_refuses_repeated_names_and_redacts_them(tmp_path: Path, kind: str) -> None:
    names = ["a", FNR, FNR, "b", "b"]
    if kind == "csv":
        source = write_csv(tmp_path / "dup.csv", ";".join(names) + "\n1;2;3;4;5\n")
    else:
        source = tmp_path / "dup.parquet"
        pq.write_table(pa.table([pa.array(["1"])] * 5, names=names), source)
    result = run("ids", "check", source, "-c", "a")
    assert result.exit_code == 2, result.output
    assert "duplicate column names '<redacted>', 'b'" in result.stderr
    assert no_number(result.output)


def test_every_reader_refuses_repeated_names(tmp_path: Path) -> None:
    """Linkage sources, feeds, deliveries and sealed batches, not only read_table."""
    from koble.linkage.formats import read_delivery
    from koble.linkage.sources import require_columns
    from koble.pseudonym.ingest import seal
    from koble.pseudonym.sealed import PartyKey

    table = pa.table([pa.array([FNR]), pa.array([FNR]), pa.array(["x"])], ["fnr", "fnr", "v"])
    pq.write_table(table, tmp_path / "registry.parquet")
    with pytest.raises(ColumnError, match="duplicate column names 'fnr'"):
        require_columns(tmp_path / "registry.parquet", ["fnr"])
    delivery = write_csv(tmp_path / "delivery.csv", "lopenr;x;x\n1;2;3\n")
    with pytest.raises(ColumnError, match="duplicate column names 'x'"):
        read_delivery(delivery)
    party = PartyKey.generate(lambda n: b"\x01" * n)
    with pytest.raises(ColumnError, match="duplicate column names 'fnr'"):
        seal(table, {"fnr": "fnr"}, ttp_public=party.public, registry_public=party.public,
             randbytes=lambda n: b"\x02" * n)  # fmt: skip


# -- 2. output scan --------------------------------------------------------------------------
def test_pseudonymise_refuses_a_pass_through_column_with_person_numbers(
    tmp_path: Path, keyset: Path
) -> None:
    source = write_csv(tmp_path / "in.csv", f"fnr;mother;note\n{FNR};{OTHER};x\n{OTHER};;y\n")
    out = tmp_path / "out.parquet"
    args: list[str | Path] = ["pseudonymise", source, out, "-c", "fnr", "--domain", "d",
                              "--keyset", keyset]  # fmt: skip
    refused = run(*args)
    assert refused.exit_code == 2, refused.output
    assert (
        "mother (1 rows, first row 1)" in refused.stderr and "nothing was written" in refused.stderr
    )
    assert no_number(refused.output)
    assert not out.exists() and not (tmp_path / "out.rejects.parquet").exists()
    allowed = run(*args, "--allow-identifiers", "mother")
    assert allowed.exit_code == 0, allowed.output
    assert pl.read_parquet(out)["mother"].to_list() == [OTHER, None]


def test_a_column_name_holding_a_number_is_refused_even_when_allowed(
    tmp_path: Path, keyset: Path
) -> None:
    source = write_csv(tmp_path / "in.csv", f"fnr;{OTHER}\n{FNR};x\n")
    out = tmp_path / "out.csv"
    result = run("pseudonymise", source, out, "-c", "fnr", "--domain", "d", "--keyset", keyset,
                 "--allow-identifiers", OTHER)  # fmt: skip
    assert result.exit_code == 2 and "#2 (name withheld)" in result.stderr, result.output
    assert no_number(result.output) and not out.exists()


def test_pseudonymise_refuses_numbers_written_without_their_leading_zero(
    tmp_path: Path, keyset: Path
) -> None:
    """A spreadsheet export turned a number with a leading zero into a 10-digit integer."""
    source = tmp_path / "in.parquet"
    pl.DataFrame({"fnr": [FNR], "kin": [int(LEADING_ZERO)]}).write_parquet(source)
    out = tmp_path / "out.parquet"
    result = run("pseudonymise", source, out, "-c", "fnr", "--domain", "d", "--keyset", keyset)
    assert result.exit_code == 2 and "kin (1 rows" in result.stderr, result.output
    assert not out.exists()


class _NoService:
    """A service client that must never be called: the refusal comes first."""

    def pseudonymise(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("nothing may be sent")


def test_remote_pseudonymise_refuses_before_sending(tmp_path: Path) -> None:
    from koble.pseudonym.client import pseudonymise_file_remote

    source = write_csv(tmp_path / "in.csv", f"fnr;note\n{FNR};see {OTHER[:6]} {OTHER[6:]}\n")
    out = tmp_path / "out.csv"
    with pytest.raises(ColumnError, match=r"note \(1 rows, first row 1\)") as info:
        pseudonymise_file_remote(_NoService(), source, out, column="fnr", domain="d")  # type: ignore[arg-type]
    assert no_number(str(info.value)) and not out.exists()
    with pytest.raises(UsageError, match="--output-column"):
        pseudonymise_file_remote(_NoService(), source, out, column="fnr", domain="d",  # type: ignore[arg-type]
                                 output_column=FNR, allow_identifiers=["note"])  # fmt: skip


@pytest.fixture
def party_keys(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    for name in ("ttp", "resept"):
        assert run("ingest", "keygen", name, "--out", keys).exit_code == 0
    return keys


def test_sealed_ingest_refuses_an_undeclared_identifier_payload(
    tmp_path: Path, party_keys: Path
) -> None:
    source = write_csv(tmp_path / "feed.csv", f"fnr;prescriber;atc\n{FNR};{OTHER};N02\n")
    sealed = tmp_path / "batch.sealed"
    args: list[str | Path] = [
        "ingest", "seal", source, sealed, "--ttp-public", party_keys / "ttp.pub.pem",
        "--registry-public", party_keys / "resept.pub.pem", "--id-column", "fnr",
    ]  # fmt: skip
    refused = run(*args)
    assert refused.exit_code == 2, refused.output
    assert "the payload would hold" in refused.stderr and "prescriber" in refused.stderr
    assert no_number(refused.output) and not sealed.exists()
    assert run(*args, "--allow-identifiers", "prescriber").exit_code == 0
    assert sealed.is_file()


def _now() -> datetime.datetime:
    return datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def test_feed_ingest_refuses_before_sealing_any_batch(tmp_path: Path) -> None:
    from koble.pseudonym.ingest_feed import ingest_feed
    from koble.pseudonym.keys import Keyset
    from koble.pseudonym.sealed import PartyKey

    feed = pl.DataFrame({"fnr": [FNR, OTHER], "atc": ["N02", f"x {FNR}"]})
    party = PartyKey.generate(lambda n: b"\x03" * n)
    with pytest.raises(ColumnError, match=r"atc \(1 rows, first row 2\)"):
        ingest_feed(feed, name="feed", id_columns={"fnr": "fnr"}, out_dir=tmp_path / "out",
                    ttp_key=party, registry_key=party,
                    keyset=Keyset.create(randbytes=lambda n: b"\x04" * n, now=_now),
                    domains={"fnr": "reseptregisteret"}, batch_rows=1)  # fmt: skip
    assert not (tmp_path / "out").exists()


# -- 4. column parameters --------------------------------------------------------------------
@pytest.mark.parametrize(
    "command",
    [
        ["ids", "check", "{src}", "-c", OTHER],
        ["pseudonymise", "{src}", "{out}", "-c", OTHER, "--domain", "d", "--keyset", "{ks}"],
        ["rekey", "{src}", "{out}", "-c", OTHER, "--domain", "d", "--keyset", "{ks}"],
        ["serials", "{src}", "{out}", "-c", OTHER, "--project", "p1", "--keyset", "{ks}"],
        ["anonymity", "check", "{src}", "--qi", OTHER, "--k", "2"],
    ],
    ids=lambda c: f"{c[0]}-{c[1]}" if c[0] in ("ids", "anonymity") else c[0],
)
def test_a_column_parameter_is_never_echoed(
    tmp_path: Path, keyset: Path, command: list[str]
) -> None:
    """Before: ``column '25124940411': no such column``."""
    source = write_csv(tmp_path / "in.csv", f"fnr;x\n{FNR};1\n")
    paths = {"src": str(source), "out": str(tmp_path / "out.csv"), "ks": str(keyset)}
    result = run(*(part.format(**paths) for part in command))
    assert result.exit_code == 2, result.output
    assert "no such column" in result.stderr or "not in" in result.stderr, result.stderr
    assert no_number(result.output)


@pytest.mark.parametrize("name", [OTHER, f"fnr_{OTHER}", "pid 151086 95088", "00000000000"])
def test_output_column_refuses_a_number(tmp_path: Path, keyset: Path, name: str) -> None:
    """Before: exit 0 and a pseudonym column named by a fødselsnummer."""
    source = write_csv(tmp_path / "in.csv", f"fnr\n{FNR}\n")
    out = tmp_path / "out.csv"
    result = run("pseudonymise", source, out, "-c", "fnr", "--domain", "d", "--keyset", keyset,
                 "--output-column", name)  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "--output-column" in result.stderr and no_number(result.output)
    assert not out.exists()


def test_output_column_of_reidentify_refuses_a_number(tmp_path: Path) -> None:
    from koble.pseudonym.operations import reidentify_file

    source = write_csv(tmp_path / "in.csv", "p\nabc\n")
    with pytest.raises(UsageError, match="--output-column"):
        reidentify_file(source, tmp_path / "out.csv", column="p", keyset=None, domain="d",  # type: ignore[arg-type]
                        authorisation=None, audit=None, output_column=OTHER)  # type: ignore[arg-type]  # fmt: skip
    assert not (tmp_path / "out.csv").exists()


def test_a_bad_option_value_is_not_echoed() -> None:
    result = run("ids", "check", "x.csv", "-c", "fnr", "--scheme", OTHER)
    assert result.exit_code == 2 and no_number(result.output), result.output


# -- 5. control characters -------------------------------------------------------------------
def test_control_characters_from_a_file_are_escaped_in_the_message(tmp_path: Path) -> None:
    """Before: the error line held raw control characters (backspace, ESC), which a terminal
    obeys."""
    source = tmp_path / "odd.csv"
    source.write_bytes(f"fnr;a\x08b\x1b[2J\n{FNR};x\n".encode())
    result = run("ids", "check", source, "-c", "nope")
    assert result.exit_code == 2
    line = result.stderr
    assert line.endswith("\n") and line.count("\n") == 1
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", line), repr(line)
    assert "\\x08" in line and "\\x1b" in line and no_number(line)


def test_bare_cr_line_endings_are_read_as_lines(tmp_path: Path) -> None:
    """Before: a file whose lines end in a bare CR read as one header of glued rows and
    0 rows, and ``ids check`` said 'counts reconcile' with exit 0."""
    source = tmp_path / "mac.csv"
    source.write_bytes(f"fnr;x\r{FNR};a\r{OTHER};b\r123;c\r".encode())
    result = run("ids", "check", source, "-c", "fnr", "--json")
    assert result.exit_code == 1, result.output  # one reject
    report = json.loads(result.stdout)
    assert (report["rows"], report["valid"], report["rejected"]) == (3, 2, 1)


def test_a_header_mixing_bare_cr_and_lf_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "mixed.csv"
    source.write_bytes(f"fnr;x\r{FNR};a\n{OTHER};b\n".encode())
    result = run("ids", "check", source, "-c", "fnr")
    assert result.exit_code == 2
    assert "line 1 holds a bare carriage return (CR)" in result.stderr
    assert no_number(result.stderr)


def test_a_path_with_control_characters_is_escaped(tmp_path: Path) -> None:
    result = run("ids", "check", tmp_path / "a\x1b[31m\nb.csv", "-c", "fnr")
    assert result.exit_code == 2
    assert "\x1b" not in result.stderr and result.stderr.count("\n") == 1, repr(result.stderr)


# Without the hex letters: a hex token of 16 or more characters is a hash, kept whole (below).
_ANY = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="abcdefABCDEF"), max_size=60
)


@given(message=_ANY, column=_ANY)
def test_every_koble_error_is_one_clean_line(message: str, column: str) -> None:
    """Whatever a message or column name holds, its text has no control character and no
    11-digit run, for every kind of koble error."""
    for error in (KobleError(message), InputError(message, path=message, column=column)):
        text = str(error)
        assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", text), repr(text)
        assert re.search(r"\d{6}[ \-.\u00a0\u2009\u202f]?\d{5}", text) is None, repr(text)


def test_hashes_and_key_ids_in_messages_are_kept_whole() -> None:
    digest = "0123456789" * 6 + "abcd"
    text = str(KobleError(f"expected head {digest}, key v1-e3ead22f85a29f1b, fnr {FNR}"))
    assert digest in text and "v1-e3ead22f85a29f1b" in text and FNR not in text


@given(number=st.from_regex(r"\A[0-9]{11}\Z"), sep=st.sampled_from(["", " ", "-"]))
def test_a_column_named_by_a_number_is_never_shown(number: str, sep: str) -> None:
    name = f"{number[:6]}{sep}{number[6:]}"
    assert number[6:] not in str(ColumnError("no such column", column=name))


@pytest.mark.parametrize("as_json", [False, True])
def test_ids_check_does_not_print_a_column_name_holding_a_number(
    tmp_path: Path, as_json: bool
) -> None:
    """A file without a header has its first row as names; ``-c`` then names a number."""
    source = write_csv(tmp_path / "noheader.csv", f"{OTHER}\n{FNR}\n")
    result = run("ids", "check", source, "-c", OTHER, *(["--json"] if as_json else []))
    assert result.exit_code == 0, result.output
    assert no_number(result.output) and "<redacted>" in result.output


def test_a_domain_holding_a_person_number_is_refused(tmp_path: Path, keyset: Path) -> None:
    """A domain is echoed, audited and reported: ``project:<fnr>`` must not be one."""
    source = write_csv(tmp_path / "in.csv", f"fnr\n{FNR}\n")
    out = tmp_path / "out.csv"
    result = run("pseudonymise", source, out, "-c", "fnr", "--domain", f"project:{OTHER}",
                 "--keyset", keyset)  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "holds a person number" in result.stderr and no_number(result.output)
    assert not out.exists()


# -- anonymity anonymise: a release never carries a person number -----------------------------
def _anonymise_input(tmp_path: Path, person: str | None) -> tuple[Path, Path]:
    numbers = [FNR, OTHER, LEADING_ZERO]
    rows = [f"{numbers[i % 3]};{20 + (i * 7) % 60};{'MK'[i % 2]}" for i in range(60)]
    source = write_csv(tmp_path / "data.csv", "id;age;sex\n" + "\n".join(rows) + "\n")
    config = tmp_path / "anon.toml"
    config.write_text(
        "[requirements]\nk = 2\nsuppression = 0.5\n"
        + (f'person = "{person}"\n' if person else "")
        + '[quasi_identifiers]\nage = "age"\nsex = "categorical"\n'
    )
    return source, config


def test_anonymise_refuses_a_release_holding_person_numbers(tmp_path: Path) -> None:
    """Before: exit 0, and the 'anonymous' release kept the id column in clear."""
    source, config = _anonymise_input(tmp_path, person=None)
    out = tmp_path / "release.csv"
    result = run("anonymity", "anonymise", source, "--config", config, "--out", out,
                 "--report", tmp_path / "report")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "valid fødselsnummer-family numbers in id (60 rows, first row 1)" in result.output
    assert no_number(result.output)
    assert not out.exists() and not (tmp_path / "report").exists()


def test_anonymise_drops_a_person_column_holding_person_numbers(tmp_path: Path) -> None:
    source, config = _anonymise_input(tmp_path, person="id")
    out = tmp_path / "release.csv"
    result = run("anonymity", "anonymise", source, "--config", config, "--out", out,
                 "--report", tmp_path / "report")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert pl.read_csv(out, separator=";").columns == ["age", "sex"]
    assert no_number(out.read_text())


def test_anonymity_check_fails_a_file_holding_person_numbers(tmp_path: Path) -> None:
    """Before: 'meets the requirements' (exit 0) for a k-anonymous file with an fnr column."""
    rows = [f"{(FNR, OTHER)[i % 2]};{20 + i % 3};{'MK'[i % 2]}" for i in range(60)]
    source = write_csv(tmp_path / "data.csv", "id;age;sex\n" + "\n".join(rows) + "\n")
    result = run("anonymity", "check", source, "--qi", "age,sex", "--k", "5")
    assert result.exit_code == 1, result.output
    assert "numbers in id (60 rows, first row 1); not anonymous" in result.output.replace("\n", " ")
    assert no_number(result.output)
    as_json = run("anonymity", "check", source, "--qi", "age,sex", "--k", "5", "--json")
    report = json.loads(as_json.stdout)
    assert report["meets"] is False and report["smallest_class"] >= 5
    assert report["direct_identifiers"] == "id (60 rows, first row 1)"
    clean = write_csv(tmp_path / "clean.csv", "age;sex\n" + "\n".join(r[12:] for r in rows) + "\n")
    assert run("anonymity", "check", clean, "--qi", "age,sex", "--k", "5").exit_code == 0


def test_anonymity_table_refuses_labels_holding_person_numbers(tmp_path: Path) -> None:
    """Before: exit 0 and every fødselsnummer published as a row label."""
    rows = [f"{(FNR, OTHER)[i % 2]};{'MK'[i % 2]};{i % 2}" for i in range(40)]
    source = write_csv(tmp_path / "data.csv", "id;sex;grp\n" + "\n".join(rows) + "\n")
    out = tmp_path / "table.csv"
    result = run("anonymity", "table", source, "--rows", "id", "--cols", "sex", "--out", out)
    assert result.exit_code == 2, result.output
    assert "labels would hold valid fødselsnummer-family numbers in id (40 rows" in result.output
    assert no_number(result.output) and not out.exists()
    fine = run("anonymity", "table", source, "--rows", "sex", "--cols", "grp", "--out", out)
    assert fine.exit_code == 0, fine.output
    assert out.is_file() and no_number(out.read_text())
