"""Names never leave the TTP (issue 16, item 2; design.md §1.5): leak scans after runs with
identity recovery.

After the distributed demo job (its cohort recovered at the TTP) and the Helsearkivregisteret
job (the registry's journals recovered), every file every party other than the TTP holds is
read — data files cell by cell, JSON, Markdown, HTML, text, the run record and the audit log
as text — and scanned for every name of the TTP's population register (first, middle and
last, as whole words, and their normalised spellings: "Bjørnstad" also as "Bjornstad") and
for fødselsnummer the party must not see. The operator owns the population file, so it may
hold the names that file carries, and nothing else of the register. Sealed transfers
(ciphertext; what they carry is the recipient's store file, scanned there) and files of key
material are left out: random bytes make random words.

Every test runs on both engines (DuckDB, and Spark under the slow marker).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from koble.linkage.executor import RunResult
from koble.linkage.formats import read_delivery
from koble.recovery.normalise import name_key
from tests.linkage.conftest import HELSEARKIV_POPULATION, EngineRuns, World

DATA = {".parquet", ".csv", ".dta", ".sav", ".xpt"}
SKIP = {"keys.json", "directory.json"}  # key material: random base64, not person data
_WORD = re.compile(r"\w+")
_NUMBER = re.compile(r"\b\d{11}\b")  # whole words: not a digit run inside a hash
NAME_COLUMNS = ("first_name", "middle_name", "last_name")


@pytest.fixture
def distributed_run(engine_runs: EngineRuns, engine: str) -> RunResult:
    """The demo's distributed job (its cohort recovered at the TTP), on each engine."""
    return engine_runs.get("distributed", engine)


@pytest.fixture
def helsearkiv_run(engine_runs: EngineRuns, engine: str) -> RunResult:
    """The Helsearkivregisteret job (its journals recovered at the TTP), on each engine."""
    return engine_runs.get("helsearkiv", engine)


def _words(frame: pl.DataFrame, columns: tuple[str, ...]) -> set[str]:
    """Every whole word of the name columns (double and hyphenated names split)."""
    present = [c for c in columns if c in frame.columns]
    values = pl.concat([frame[c].drop_nulls().cast(pl.String) for c in present])
    return set(values.str.extract_all(r"\w+").explode().drop_nulls().unique().to_list())


def _normalised(words: set[str]) -> set[str]:
    """The normalised spellings that differ from the plain lower-case word (æ/ø/å, accents,
    -ssen): a text writing "Bjornstad" for "Bjørnstad" leaks the name just the same."""
    frame = pl.DataFrame({"w": sorted(words)}).with_columns(key=name_key(pl.col("w")))
    frame = frame.filter(
        pl.col("key").is_not_null() & (pl.col("key") != pl.col("w").str.to_lowercase())
    )
    return set(frame["key"].str.split(" ").explode().drop_nulls().to_list())


@pytest.fixture(scope="module")
def register_names(world: World) -> tuple[set[str], set[str]]:
    names = pl.read_parquet(world.path / "folkeregister" / "names.parquet")
    words = _words(names, NAME_COLUMNS)
    return words, _normalised(words)


def _texts(path: Path) -> Iterator[str]:
    """A file's text: every cell and column name of a data file, else the file decoded."""
    if path.suffix in DATA:
        frame = read_delivery(path)
        yield " ".join(frame.columns)
        for column in frame.columns:
            yield " ".join(frame[column].cast(pl.String).drop_nulls().to_list())
        return
    yield path.read_bytes().decode("utf-8", errors="replace")


def _holdings(root: Path, *, parties: bool) -> list[Path]:
    """Every file under ``root`` except the TTP's, sealed transfers and key material; with
    ``parties`` False only the run's own files (run record, audit log, ingest work)."""
    out = []
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if not path.is_file() or parts[0] == "ttp" or path.name in SKIP:
            continue
        if path.suffix in {".koblt", ".pem"} or path.name.endswith(".lock"):
            continue
        out.append(path)
    return out


def _party_of(root: Path, path: Path) -> str:
    first = path.relative_to(root).parts[0]
    return first if (root / first).is_dir() and first not in {"ingest"} else "run"


def _scan(run: RunResult) -> dict[str, dict[str, set[str]]]:
    """For each holder (party directory, or ``run`` for the run record and audit log):
    the words and 11-digit numbers in its files."""
    found: dict[str, dict[str, set[str]]] = {}
    for path in _holdings(run.workspace, parties=True):
        party = _party_of(run.workspace, path)
        seen = found.setdefault(party, {"words": set(), "numbers": set()})
        for text in _texts(path):
            seen["words"] |= set(_WORD.findall(text))
            seen["numbers"] |= set(_NUMBER.findall(text))
    return found


def _fixed_words(world: World, run: RunResult) -> set[str]:
    """Words that are in a file by the job's own text or koble's, not a person's: the job
    file (recipient, title, registries), and the catalogue's registry names."""
    text = " ".join(p.read_text("utf-8") for p in world.path.glob("job_*.toml"))
    text += " " + " ".join(f"{e.name} {e.owner}" for e in world.catalogue)
    return set(_WORD.findall(text))


def _check_names(
    world: World, run: RunResult, register: tuple[set[str], set[str]], own: set[str]
) -> None:
    words, normalised = register
    fixed = _fixed_words(world, run)
    for party, seen in _scan(run).items():
        allowed = (own if party == "operator" else set()) | fixed
        if party == "operator":  # the scan does see names: the population's own are here
            assert seen["words"] & own & words
        leaked = (seen["words"] & words) - allowed
        assert not leaked, f"{party} holds register names: {sorted(leaked)[:10]}"
        lowered = {w.casefold() for w in seen["words"] - allowed}
        own_keys = _normalised(own) if party == "operator" else set()
        spelt = (lowered & normalised) - own_keys - {w.casefold() for w in allowed}
        assert not spelt, f"{party} holds normalised register names: {sorted(spelt)[:10]}"


def test_no_party_but_the_ttp_holds_a_register_name_after_population_recovery(
    world: World, distributed_run: RunResult, register_names: tuple[set[str], set[str]]
) -> None:
    population = pl.read_parquet(world.path / "study_population.parquet")
    own = _words(population, ("fornavn", "mellomnavn", "etternavn"))
    assert own, "the study population carries names (the job recovers with them)"
    _check_names(world, distributed_run, register_names, own)


def test_no_party_but_the_ttp_holds_a_register_name_after_registry_recovery(
    world: World, helsearkiv_run: RunResult, register_names: tuple[set[str], set[str]]
) -> None:
    # the registry's own table holds its patients' names: its store may not gain others
    journals = pl.read_parquet(world.path / "helsearkiv.parquet")
    fixed = _fixed_words(world, helsearkiv_run)
    words, _ = register_names
    found = _scan(helsearkiv_run)
    for party, seen in found.items():
        allowed = fixed | (
            _words(journals, NAME_COLUMNS) if party.startswith("registry") else set()
        )
        leaked = (seen["words"] & words) - allowed
        assert not leaked, f"{party} holds register names: {sorted(leaked)[:10]}"
    registry = found["registry-helsearkivregisteret"]["words"]
    assert not registry & (words - _words(journals, NAME_COLUMNS) - fixed)


def test_the_audit_log_and_run_record_hold_no_name_and_no_number(
    world: World,
    distributed_run: RunResult,
    helsearkiv_run: RunResult,
    register_names: tuple[set[str], set[str]],
) -> None:
    words, _ = register_names
    fixed = _fixed_words(world, distributed_run)
    persons = set(pl.read_parquet(world.path / "folkeregister" / "persons.parquet")["person_id"])
    for run in (distributed_run, helsearkiv_run):
        log = (run.workspace / "audit.log").read_text("utf-8")
        assert not (set(_WORD.findall(log)) & words) - fixed
        assert not set(_NUMBER.findall(log)) & persons
        assert "threshold_low" in log  # the resolve's thresholds and counts are there


def test_fodselsnummer_go_only_where_the_plan_sends_them(
    world: World, distributed_run: RunResult, helsearkiv_run: RunResult
) -> None:
    """The researcher and the run's own files hold none; the operator none of a person
    outside its population (a candidate the TTP weighed and did not link stays there);
    the Helsearkivregisteret none but its patients' and the persons it was sent."""
    persons = set(pl.read_parquet(world.path / "folkeregister" / "persons.parquet")["person_id"])
    cohort = pl.read_parquet(world.path / "truth" / "cohort.parquet")
    population = set(pl.read_parquet(world.path / "study_population.parquet")["fnr"].drop_nulls())
    in_population = population | set(cohort["person_id"]) | set(cohort["true_fnr"])
    found = _scan(distributed_run)
    assert not found["researcher"]["numbers"] & persons
    assert not found["run"]["numbers"] & persons
    assert not (found["operator"]["numbers"] & persons) - in_population
    truth = pl.read_parquet(world.path / "truth" / "helsearkiv.parquet")
    deceased = set(pl.read_parquet(world.path / HELSEARKIV_POPULATION)["fnr"])
    patients = set(truth["person_id"]) | set(truth["true_fnr"].drop_nulls())
    found = _scan(helsearkiv_run)
    assert not found["researcher"]["numbers"] & persons
    registry = found["registry-helsearkivregisteret"]["numbers"] & persons
    assert not registry - patients - deceased
    assert not (found["operator"]["numbers"] & persons) - deceased
