"""Issue 12, adversarial review of the hardening: a change the audit log refuses is never
saved (and an event never claims a change that was not), user errors never end in exit 3,
wrong key files are named, anon.toml data errors come all at once, and the pseudonymise
summary warns of dropped leading zeros."""

from __future__ import annotations

import errno
import json
import os
from itertools import count
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner, Result

from koble.cli.main import cli
from koble.errors import OutputError, UsageError
from koble.pseudonym.audit import verify_log
from koble.pseudonym.auditing import MemoryAudit
from koble.pseudonym.keystore import PassphraseKek, load_keyset
from koble.registries.identifiers import fodselsnummer

ENV = {
    "KOBLE_KEYSET_PASSPHRASE": "pw1",
    "KOBLE_AUDIT_PASSPHRASE": "pw2",
    "KOBLE_ACTOR": "ola",
}
PERSON = "25124940411"
KEYLIKE = "a" * 45  # refused by the audit log: could be key material
OFFICER = ["--role", "reidentification-officer", "--reason", "adverse reaction follow-up",
           "--legal-basis", "helseregisterloven § 19 e"]  # fmt: skip


def run(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env={**ENV, **(env or {})})


def valid_numbers(n: int) -> list[str]:
    """``n`` valid fødselsnumre (born 1 January 1980)."""
    found = (f"010180{i:05d}" for i in count())
    return [x for x in (next(found) for _ in range(3000)) if fodselsnummer.is_valid(x)][:n]


def operations(log: Path) -> list[str]:
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    return [e["operation"] for e in lines if e["type"] == "event"]


@pytest.fixture
def ttp(tmp_path: Path) -> Path:
    assert run("keys", "create-signer", tmp_path / "a.pem").exit_code == 0
    created = run("keys", "create", tmp_path / "k.json", *audited(tmp_path))
    assert created.exit_code == 0, created.output
    return tmp_path


def audited(where: Path) -> list[str | Path]:
    return ["--audit-log", where / "a.log", "--audit-key", where / "a.pem"]


# --- 1. a change the audit log refuses is never saved ----------------------------------------


@pytest.mark.parametrize("actor", [PERSON, KEYLIKE])
def test_keys_change_refused_by_the_audit_log_is_not_saved(ttp: Path, actor: str) -> None:
    before = (ttp / "k.json").read_bytes()
    rotated = run("keys", "rotate", ttp / "k.json", *audited(ttp), env={"KOBLE_ACTOR": actor})
    assert rotated.exit_code == 2, rotated.output
    assert run("keys", "rotate", ttp / "k.json").exit_code == 0  # v2 primary, unaudited
    middle = (ttp / "k.json").read_bytes()
    destroyed = run("keys", "destroy", ttp / "k.json", "1", "--yes", *audited(ttp),
                    env={"KOBLE_ACTOR": actor})  # fmt: skip
    assert destroyed.exit_code == 2, destroyed.output
    assert actor not in destroyed.output
    assert (ttp / "k.json").read_bytes() == middle != before
    keyset = load_keyset(ttp / "k.json", PassphraseKek(b"pw1"))
    assert [k.status.value for k in keyset.keys] == ["enabled", "enabled"]
    assert operations(ttp / "a.log") == ["keys-create"]
    assert verify_log(ttp / "a.log", (ttp / "a.pem.pub").read_bytes()).ok


class FailingSink:
    """An audit sink whose append fails as a full disk would."""

    def append(self, **fields: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_keyset_unchanged_when_the_audit_append_fails(tmp_path: Path) -> None:
    from koble.pseudonym.keychange import change_keyset, create_keyset

    kek = PassphraseKek(b"pw")
    create_keyset(tmp_path / "k.json", kek, actor="ola", randbytes=os.urandom, now=_now)
    before = (tmp_path / "k.json").read_bytes()
    with pytest.raises(OSError):
        change_keyset(tmp_path / "k.json", kek, "rotate", None, actor="ola", randbytes=os.urandom,
                      now=_now, open_audit=lambda: _ctx(FailingSink()))  # fmt: skip
    assert (tmp_path / "k.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.json", "k.json.lock"]


def test_event_saying_not_saved_when_the_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from koble.pseudonym.keychange import change_keyset, create_keyset

    kek = PassphraseKek(b"pw")
    create_keyset(tmp_path / "k.json", kek, actor="ola", randbytes=os.urandom, now=_now)
    before = (tmp_path / "k.json").read_bytes()
    sink = MemoryAudit()

    def no_rename(src: object, dst: object) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OutputError, match=r"k\.json"):
        change_keyset(tmp_path / "k.json", kek, "rotate", None, actor="ola",
                      randbytes=os.urandom, now=_now, open_audit=lambda: _ctx(sink))  # fmt: skip
    monkeypatch.undo()
    assert (tmp_path / "k.json").read_bytes() == before
    assert [e["operation"] for e in sink.entries] == ["keys-rotate", "keys-rotate-not-saved"]


def _now() -> Any:
    import datetime

    return datetime.datetime.now(datetime.UTC)


def _ctx(sink: Any) -> Any:
    from contextlib import nullcontext

    return nullcontext(sink)


@pytest.fixture
def pseudonyms(ttp: Path) -> Path:
    """``p.csv``: three pseudonyms (column ``pid``) beside a payload column ``x``."""
    numbers = valid_numbers(3)
    pl.DataFrame({"fnr": numbers, "x": ["a", "b", "c"]}).write_csv(ttp / "in.csv")
    done = run("pseudonymise", ttp / "in.csv", ttp / "p.csv", "-c", "fnr", "--domain", "d",
               "--keyset", ttp / "k.json", "--output-column", "pid")  # fmt: skip
    assert done.exit_code == 0, done.output
    return ttp / "p.csv"


def test_reidentify_onto_an_existing_column_is_refused_before_audit(
    ttp: Path, pseudonyms: Path
) -> None:
    out = ttp / "back.csv"
    result = run("reidentify", pseudonyms, out, "-c", "pid", "--domain", "d", "--keyset",
                 ttp / "k.json", *audited(ttp), *OFFICER, "--output-column", "x")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "--output-column" in result.output and "internal error" not in result.output
    assert not out.exists()
    assert operations(ttp / "a.log") == ["keys-create"]


@pytest.mark.parametrize("command", ["reidentify", "rekey", "pseudonymise"])
def test_operation_the_audit_log_refuses_writes_nothing(
    ttp: Path, pseudonyms: Path, command: str
) -> None:
    out = ttp / "out.csv"
    args: list[str | Path] = [command, pseudonyms, out, "-c", "pid", "--domain", "d",
                              "--keyset", ttp / "k.json", *audited(ttp)]  # fmt: skip
    if command == "reidentify":
        args += OFFICER
    if command == "pseudonymise":
        args = [command, ttp / "in.csv", out, "-c", "fnr", "--domain", "d",
                "--keyset", ttp / "k.json", *audited(ttp)]  # fmt: skip
    result = run(*args, env={"KOBLE_ACTOR": PERSON})
    assert result.exit_code == 2, result.output
    assert PERSON not in result.output
    assert not out.exists() and not (ttp / "out.rejects.csv").exists()
    assert operations(ttp / "a.log") == ["keys-create"]


# --- 2. user errors, never "internal error" ----------------------------------------------------


def test_pseudonymise_output_column_naming_an_existing_column_is_exit_2(
    ttp: Path, pseudonyms: Path
) -> None:
    out = ttp / "out.csv"
    result = run("pseudonymise", ttp / "in.csv", out, "-c", "fnr", "--output-column", "x",
                 "--domain", "d", "--keyset", ttp / "k.json", *audited(ttp))  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "--output-column" in result.output and "internal error" not in result.output
    assert not out.exists()
    assert operations(ttp / "a.log") == ["keys-create"]


def test_remote_output_column_naming_an_existing_column_is_refused_before_sending(
    tmp_path: Path,
) -> None:
    from koble.pseudonym.client import pseudonymise_file_remote

    pl.DataFrame({"fnr": valid_numbers(2), "x": ["a", "b"]}).write_csv(tmp_path / "in.csv")

    class NoService:
        def pseudonymise(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("sent to the service")

    with pytest.raises(UsageError, match="--output-column"):
        pseudonymise_file_remote(NoService(), tmp_path / "in.csv", tmp_path / "o.csv",  # type: ignore[arg-type]
                                 column="fnr", domain="d", output_column="x")  # fmt: skip
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("k", ["4294967296", PERSON, "9" * 30])
def test_anonymity_check_k_past_any_integer_type_is_not_met(tmp_path: Path, k: str) -> None:
    pl.DataFrame({"age": ["30", "40", "30"]}).write_csv(tmp_path / "a.csv")
    result = run("anonymity", "check", tmp_path / "a.csv", "--qi", "age", "--k", k, "--json")
    assert result.exit_code == 1, result.output  # not met, as the README says
    assert json.loads(result.stdout)["records_in_small_classes"] == 3


ANON = """[requirements]
k = {k}
suppression = 0.5
[quasi_identifiers]
{qi} = {spec}
"""


@pytest.mark.parametrize(
    ("k", "qi", "spec", "code"),
    [
        ("5000000000", "age", '"age"', 1),
        ("2", "age", '"age:bands=99999999999999999999"', 2),
        ("2", "age", '"age:bands=5;top=99999999999999999999"', 2),
        ("2", "d", '"date:period=99999999999999999999"', 2),
        ("2", "d", '"date:start=99999999999999999999"', 2),
        ("2", "age", '{type = "csv", path = "h.csv", encoding = "rot13"}', 2),
        ("2", "age", '{type = "csv", path = "h.csv", encoding = "nope"}', 2),
    ],
)
def test_anon_toml_numbers_and_encodings_are_user_errors(
    tmp_path: Path, k: str, qi: str, spec: str, code: int
) -> None:
    pl.DataFrame({"age": ["30", "40", "30"], "d": ["2020-01-01", "2021-02-03", "2020-05-06"]}
                 ).write_csv(tmp_path / "a.csv")  # fmt: skip
    (tmp_path / "h.csv").write_text("30;30-39\n40;40-49\n")
    (tmp_path / "anon.toml").write_text(ANON.format(k=k, qi=qi, spec=spec))
    result = run("anonymity", "anonymise", tmp_path / "a.csv", "--config", tmp_path / "anon.toml",
                 "--out", tmp_path / "r.csv", "--report", tmp_path / "rep")  # fmt: skip
    assert result.exit_code == code, result.output
    assert "internal error" not in result.output


@pytest.mark.parametrize("encoding", ["nope", "rot13", "base64", "zlib"])
def test_ids_check_encoding_that_is_not_a_text_encoding_is_exit_2(
    tmp_path: Path, encoding: str
) -> None:
    (tmp_path / "one.csv").write_text(f"fnr\n{PERSON}\n")
    result = run("ids", "check", tmp_path / "one.csv", "-c", "fnr", "--encoding", encoding)
    assert result.exit_code == 2, result.output
    assert "--encoding must name a text encoding" in result.output


# --- 3. a wrong key file is named, with what it holds -----------------------------------------


def test_wrong_public_key_files_are_named_with_what_they_hold(ttp: Path) -> None:
    party = {**ENV, "KOBLE_PARTY_PASSPHRASE": "pp"}
    for name in ("ttp", "reg"):
        made = run("ingest", "keygen", name, "--out", ttp / "keys", env=party)
        assert made.exit_code == 0, made.output
    (ttp / "job.toml").write_text('[project]\nid = "p1"\n')
    cases: list[tuple[list[str | Path], str]] = [
        (["audit", "verify-log", ttp / "a.log", "--public-key", ttp / "a.pem"],
         "--public-key: not an Ed25519 public key"),
        (["audit", "verify", ttp, "--public-key", ttp / "job.toml"],
         "--public-key: not an Ed25519 public key"),
        (["ingest", "seal", ttp / "in.csv", ttp / "b.sealed", "--id-column", "fnr",
          "--ttp-public", ttp / "keys" / "ttp.key.pem",
          "--registry-public", ttp / "keys" / "reg.pub.pem"],
         "--ttp-public: not an X25519 public key"),
        (["ingest", "seal", ttp / "in.csv", ttp / "b.sealed", "--id-column", "fnr",
          "--ttp-public", ttp / "keys" / "ttp.pub.pem",
          "--registry-public", ttp / "a.pem.pub"],
         "--registry-public: not an X25519 public key"),
    ]  # fmt: skip
    (ttp / "in.csv").write_text(f"fnr,x\n{valid_numbers(1)[0]},a\n")
    holds = ["a private key", "no PEM key at all", "a private key", "an Ed25519 (signing)"]
    files = ["a.pem", "job.toml", "ttp.key.pem", "a.pem.pub"]
    for (args, message), what, file in zip(cases, holds, files, strict=True):
        result = run(*args)
        assert result.exit_code == 2, result.output
        assert message in result.output and what in result.output, result.output
        assert f"{file}: {message}" in result.output
    assert not (ttp / "b.sealed").exists()


def test_ingest_seal_encoding_is_checked(ttp: Path) -> None:
    party = {**ENV, "KOBLE_PARTY_PASSPHRASE": "pp"}
    for name in ("ttp", "reg"):
        assert run("ingest", "keygen", name, "--out", ttp / "keys", env=party).exit_code == 0
    (ttp / "in.csv").write_text(f"fnr,x\n{valid_numbers(1)[0]},a\n")
    result = run("ingest", "seal", ttp / "in.csv", ttp / "b.sealed", "--id-column", "fnr",
                 "--ttp-public", ttp / "keys" / "ttp.pub.pem", "--registry-public",
                 ttp / "keys" / "reg.pub.pem", "--encoding", "rot13")  # fmt: skip
    assert result.exit_code == 2 and "--encoding" in result.output, result.output


# --- 5. the pseudonymise summary warns of dropped leading zeros, as ids check does ---------


def test_pseudonymise_summary_warns_of_a_dropped_leading_zero(ttp: Path) -> None:
    numbers = valid_numbers(2)
    rows = [numbers[0], numbers[1].lstrip("0")]  # the second as a spreadsheet leaves it
    pl.DataFrame({"fnr": rows}).write_csv(ttp / "in.csv")
    checked = run("ids", "check", ttp / "in.csv", "-c", "fnr", "--json")
    expected = json.loads(checked.stdout)["warnings"]
    assert expected and "leading zero" in expected[0]
    args: list[str | Path] = ["pseudonymise", ttp / "in.csv", ttp / "out.csv", "-c", "fnr",
                              "--domain", "d", "--keyset", ttp / "k.json"]  # fmt: skip
    as_json = run(*args, "--json")
    assert as_json.exit_code == 1, as_json.output
    assert json.loads(as_json.stdout)["warnings"] == expected
    text = run(*args)
    assert f"warning: {expected[0]}" in " ".join(text.output.split())


# --- 4. anon.toml data errors: all at once, config and data named, no value quoted ------------


def test_anon_toml_data_errors_are_reported_together_without_values(tmp_path: Path) -> None:
    pl.DataFrame({"age": ["30", "40"], "sex": ["F", "M"], "f": ["x", "y"]}
                 ).write_csv(tmp_path / "m.csv")  # fmt: skip
    (tmp_path / "anon.toml").write_text(
        "[requirements]\nk = 2\nsuppression = 0.5\n"
        '[quasi_identifiers]\nsex = "kommune"\nf = "age"\nage = "date"\n'
    )
    result = run("anonymity", "anonymise", tmp_path / "m.csv", "--config",
                 tmp_path / "anon.toml", "--out", tmp_path / "r.csv", "--report",
                 tmp_path / "rep")  # fmt: skip
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "m.csv" in message and "anon.toml" in message
    for column, row in (("sex", 1), ("f", 1), ("age", 1)):
        assert f"column '{column}': row {row}: the value is not" in message
    for value in ("'F'", "'x'", "'30'"):
        assert value not in message
    assert not (tmp_path / "r.csv").exists()


# --- sweep: a huge number is a user error, not a MemoryError -----------------------------------


@pytest.mark.parametrize("option", ["--persons", "--cohort-size"])
def test_synth_population_past_any_machine_is_exit_2(tmp_path: Path, option: str) -> None:
    result = run("synth", "--out", tmp_path / "w", "--persons", "100", option, "9" * 17)
    assert result.exit_code == 2, result.output
    assert "internal error" not in result.output and not (tmp_path / "w").exists()
