"""``koble anonymity anonymise --engine``: the engine's release is the local command's.

- the search over counted rows (``find_optimal(counts=...)``) finds what it finds over the
  rows expanded: levels, loss, withheld rows and classes;
- on a generated table (nulls, built-in hierarchies and a user's CSV one, columns that are
  not quasi-identifiers) each engine gives the local command's levels, withheld count,
  released and withheld rows in the same order, figures, distributions and report; the
  two engines write byte-identical files (not the local command's bytes: another writer);
- the CLI with ``--engine duckdb`` end to end; what ``--engine`` does not do is refused
  naming the way out; an engine failure, a hierarchy's bad value (named by its row in the
  file) and a person number in the input are exit 2 with a message.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.anonymity.config import AnonymiseConfig
from koble.anonymity.engine_release import anonymise_with_report_on_engine
from koble.anonymity.hierarchies import hierarchy_for
from koble.anonymity.metrics import Metric
from koble.anonymity.release import Release
from koble.anonymity.report import anonymise_with_report
from koble.anonymity.search import find_optimal
from koble.cli.main import cli
from koble.digests import sha256_file
from koble.errors import ColumnError, UsageError
from koble.linkage.engine import DuckDBEngine, Engine, Table
from tests.anonymity.test_checks import criteria
from tests.anonymity.test_frequency import datasets
from tests.pseudonym.service.conftest import synthetic_fnr

ROWS = 3_000
KOMMUNER = ["0301", "4601", "5001", "1103", "3401", "1804", "3301", "1506"]
EDUCATION = ["Bachelors", "Masters", "Doctorate", "HS-grad", "Some-college", "Preschool"]


# --- the search over counted rows -------------------------------------------------------------


@given(st.data())
@settings(max_examples=200, deadline=None)
def test_counted_search_equals_rows(data: st.DataObject) -> None:
    """The frequency table of the rows (each combination once or split in two, in any
    order) searched with its counts: the same optimum as the rows themselves."""
    qis, sensitive, _ = data.draw(datasets(max_qis=4, max_rows=200))
    extra = data.draw(criteria())
    options: dict[str, Any] = dict(
        k=data.draw(st.integers(1, 8)),
        suppression_limit=data.draw(st.sampled_from([0.0, 0.02, 0.1, 0.25, 0.5])),
        metric=data.draw(st.sampled_from(list(Metric))),
        criteria=extra,
    )
    tracked = [sensitive] if extra else []
    stacked = np.stack([g.codes for g in [*qis, *tracked]], axis=1)
    combos, counts = np.unique(stacked, axis=0, return_counts=True)
    split = np.array(data.draw(st.lists(st.booleans(), min_size=len(counts),
                                        max_size=len(counts))))  # fmt: skip
    split &= counts > 1  # a combination counted in two entries (two spellings, one code)
    combos = np.concatenate([combos, combos[split]])
    counts = np.concatenate([np.where(split, counts - 1, counts), np.ones(split.sum(), int)])
    order = np.array(data.draw(st.permutations(range(len(counts)))), dtype=np.int64)
    combos, counts = combos[order], counts[order].astype(np.int64)

    def counted(i: int, g: Any) -> Any:
        return dataclasses.replace(g, codes=combos[:, i].astype(np.int32))

    rows = find_optimal(qis, sensitive=sensitive if extra else None, **options)
    table = find_optimal([counted(i, g) for i, g in enumerate(qis)], counts=counts,
                         sensitive=counted(len(qis), sensitive) if extra else None,
                         **options)  # fmt: skip
    assert table.feasible == rows.feasible and table.rows == rows.rows
    assert table.levels == rows.levels
    assert table.loss == rows.loss or (np.isinf(table.loss) and np.isinf(rows.loss))
    assert (table.suppressed, table.classes, table.min_class_size) == (
        rows.suppressed, rows.classes, rows.min_class_size)  # fmt: skip
    assert table.least_suppressed == rows.least_suppressed


def test_counts_are_checked() -> None:
    qis = [hierarchy_for("categorical").apply(pl.Series("a", ["x", "y", "x"]))]
    with pytest.raises(UsageError, match="differ in length"):
        find_optimal(qis, k=2, counts=np.ones(len(qis[0].codes) + 1, dtype=np.int64))
    with pytest.raises(UsageError, match="at least 1"):
        find_optimal(qis, k=2, counts=np.zeros(len(qis[0].codes), dtype=np.int64))


# --- a generated table, locally and on each engine --------------------------------------------


@cache
def _table() -> pl.DataFrame:
    """Every kind of column the hierarchies read, with nulls, and two that are not
    quasi-identifiers; skewed, so that some classes are small at every k."""
    rng = np.random.default_rng(23)
    age = rng.integers(0, 100, ROWS).astype(object)
    age[rng.random(ROWS) < 0.02] = None
    kommune = rng.choice(KOMMUNER, ROWS, p=[0.4, 0.2, 0.15, 0.1, 0.08, 0.04, 0.02, 0.01])
    kommune = kommune.astype(object)
    kommune[rng.random(ROWS) < 0.01] = None
    days = rng.integers(0, 7_000, ROWS)
    return pl.DataFrame({
        "note": [f"n{i % 7}" for i in range(ROWS)],
        "age": pl.Series(age.tolist(), dtype=pl.Int64),
        "kommune": pl.Series(kommune.tolist(), dtype=pl.String),
        "sex": rng.choice(["1", "2"], ROWS),
        "start": [dt.date(2001, 1, 1) + dt.timedelta(days=int(d)) for d in days],
        "education": rng.choice(EDUCATION, ROWS, p=[0.3, 0.2, 0.05, 0.3, 0.14, 0.01]),
        "value": rng.random(ROWS),
    })  # fmt: skip


def _education_csv(directory: Path) -> Path:
    path = directory / "education.csv"
    groups = {"Bachelors": "Higher", "Masters": "Higher", "Doctorate": "Higher",
              "HS-grad": "Secondary", "Some-college": "Secondary",
              "Preschool": "Primary"}  # fmt: skip
    path.write_text("".join(f"{v};{g};*\n" for v, g in groups.items()), "utf-8")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("engine-release")
    _education_csv(directory)
    _table().write_parquet(directory / "input.parquet", row_group_size=700)
    return directory


def _config(directory: Path, k: int) -> AnonymiseConfig:
    qis: dict[str, str | dict[str, Any]] = {
        "age": "age", "kommune": "kommune", "sex": "sex", "start": "date",
        "education": f"csv:{directory / 'education.csv'}"}  # fmt: skip
    return AnonymiseConfig(k=k, quasi_identifiers=qis, suppression=0.05,
                           metric=Metric.NON_UNIFORM_ENTROPY)  # fmt: skip


_local: dict[tuple[Path, int], Release] = {}


def _run(directory: Path, k: int, engine: Engine | None) -> tuple[Release, Path]:
    """The release at ``k`` locally (once per module) or on ``engine``, in a directory of
    its own: the release file and the report directory's files beside it."""
    name = "local" if engine is None else engine.name
    out = directory / f"{name}-{k}"
    config, source = _config(directory, k), directory / "input.parquet"
    if engine is None:
        if (directory, k) not in _local:
            target = out / "release.parquet"
            _local[directory, k] = anonymise_with_report(source, config, target, out)[0]
        return _local[directory, k], out
    release, _ = anonymise_with_report_on_engine(source, config, out / "release.parquet", out,
                                                 engine)  # fmt: skip
    return release, out


def _report(out: Path) -> dict[str, Any]:
    """The report without what differs by run: paths, the files' hashes, the seconds."""
    report: dict[str, Any] = json.loads((out / "report.json").read_text("utf-8"))
    for key in ("seconds", "withheld_file"):
        report.pop(key)
    report["after"].pop("path")
    certificate = report.pop("certificate")
    for part in ("output", "withheld"):
        certificate[part].pop("sha256")
    certificate["output"].pop("path")
    assert certificate == json.loads((out / "certificate.json").read_text("utf-8")) | {
        "output": certificate["output"], "withheld": certificate["withheld"]}  # fmt: skip
    return {**report, "certificate": certificate}


def _same_as_local(directory: Path, k: int, engine: Engine) -> Path:
    """The engine's release and the local command's agree in every figure and every row."""
    local, local_out = _run(directory, k, None)
    ran, out = _run(directory, k, engine)
    assert local.result.feasible and ran.result.feasible
    assert ran.result.levels == local.result.levels
    assert ran.result.suppressed == local.result.suppressed > 0
    assert ran.result.loss == local.result.loss
    assert ran.before == local.before and local.after is not None
    assert ran.after == dataclasses.replace(local.after, path=str(out / "release.parquet"))
    assert ran.distributions == local.distributions
    assert ran.unchanged == local.unchanged == ["note", "value"]
    released = pl.read_parquet(out / "release.parquet")
    assert released.equals(pl.read_parquet(local_out / "release.parquet"))
    assert released.height == local.result.rows - local.result.suppressed
    held = pl.read_parquet(out / "withheld.parquet")
    assert held.equals(pl.read_parquet(local_out / "withheld.parquet"))
    assert held.height == local.result.suppressed
    assert _report(out) == _report(local_out)
    return out


@pytest.mark.parametrize("k", [3, 10])
def test_duckdb_release_is_the_local_one(data: Path, k: int) -> None:
    engine = DuckDBEngine(threads=2)
    try:
        _same_as_local(data, k, engine)
    finally:
        engine.close()


@pytest.mark.slow
@pytest.mark.parametrize("k", [3, 10])
def test_spark_release_is_the_local_one_and_duckdbs_bytes(
    data: Path, k: int, spark: Engine
) -> None:
    """On Spark too; and the two engines' files are byte-identical (the local command's
    are not: its writer keeps the labels dictionary-encoded)."""
    out = _same_as_local(data, k, spark)
    engine = DuckDBEngine(threads=2)
    try:
        duck = _same_as_local(data, k, engine)
    finally:
        engine.close()
    for name in ("release.parquet", "withheld.parquet"):
        assert sha256_file(out / name) == sha256_file(duck / name)
    local = data / f"local-{k}" / "release.parquet"
    assert sha256_file(local) != sha256_file(duck / "release.parquet")


# --- the command --------------------------------------------------------------------------------


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def _toml(directory: Path, k: int = 3, **requirements: str) -> Path:
    lines = ["[requirements]", f"k = {k}", "suppression = 0.05", 'metric = "non-uniform entropy"',
             *(f'{key} = "{value}"' for key, value in requirements.items()),
             "[quasi_identifiers]", 'age = "age"', 'kommune = "kommune"', 'sex = "sex"',
             'start = "date"', f'education = "csv:{directory / "education.csv"}"']  # fmt: skip
    path = directory / f"anon-{k}-{len(requirements)}.toml"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def test_command_with_engine_duckdb(data: Path, tmp_path: Path) -> None:
    result = run("anonymity", "anonymise", data / "input.parquet", "--config", _toml(data),
                 "--out", tmp_path / "out.parquet", "--report", tmp_path / "report",
                 "--engine", "duckdb", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    certificate = json.loads(result.output)
    local, local_out = _run(data, 3, None)
    assert certificate["levels"] == local.certificate()["levels"]
    assert certificate["withheld"]["rows"] == local.result.suppressed
    assert pl.read_parquet(tmp_path / "out.parquet").equals(
        pl.read_parquet(local_out / "release.parquet"))  # fmt: skip
    assert certificate["output"]["sha256"] == sha256_file(tmp_path / "out.parquet")
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == [
        "certificate.json", "report.html", "report.json", "report.md",
        "withheld.parquet"]  # fmt: skip


def test_person_model_is_refused_under_engine(data: Path, tmp_path: Path) -> None:
    result = run("anonymity", "anonymise", data / "input.parquet", "--config",
                 _toml(data, person="note"), "--out", tmp_path / "out.parquet", "--report",
                 tmp_path / "report", "--engine", "duckdb")  # fmt: skip
    assert result.exit_code == 2
    assert "person column" in result.output and "run without --engine" in result.output
    assert not (tmp_path / "out.parquet").exists() and not (tmp_path / "report").exists()


@pytest.mark.parametrize("option", [("--spark-master", "local[1]"), ("--memory-limit", "1GB")])
def test_engine_options_need_the_engine(
    data: Path, tmp_path: Path, option: tuple[str, str]
) -> None:
    result = run("anonymity", "anonymise", data / "input.parquet", "--config", _toml(data),
                 "--out", tmp_path / "out.parquet", "--report", tmp_path / "report",
                 *option)  # fmt: skip
    assert result.exit_code == 2 and "need --engine" in result.output
    assert not (tmp_path / "out.parquet").exists()


def test_the_memory_limit_reaches_the_engine(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--memory-limit`` caps the engine the command makes (here DuckDB's buffer pool),
    and the release is the one made without it."""
    import koble.linkage.engine as engine_module

    limits: list[str] = []
    made = engine_module.engine_named

    def recording(name: str, **options: Any) -> Engine:
        engine = made(name, **options)
        limits.append(
            engine.query("SELECT current_setting('memory_limit') AS m", {})["m"][0].as_py()
        )
        return engine

    monkeypatch.setattr(engine_module, "engine_named", recording)
    result = run("anonymity", "anonymise", data / "input.parquet", "--config", _toml(data),
                 "--out", tmp_path / "out.parquet", "--report", tmp_path / "report",
                 "--engine", "duckdb", "--memory-limit", "512MiB")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert limits == ["512.0 MiB"]
    _, local_out = _run(data, 3, None)
    assert pl.read_parquet(tmp_path / "out.parquet").equals(
        pl.read_parquet(local_out / "release.parquet"))  # fmt: skip


def test_engine_failure_is_exit_2(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An engine that fails while writing (out of memory here): a one-line message, exit 2,
    and no file of the release, its withheld rows or its report."""

    streamed = DuckDBEngine.batches

    def fail(self: DuckDBEngine, sql: str, tables: Mapping[str, Table]) -> Any:
        if "held" in tables:  # the release and the withheld rows, not the scan before
            raise duckdb.OutOfMemoryException("could not allocate for the value 'Ola Nordmann'")
        return streamed(self, sql, tables)

    monkeypatch.setattr(DuckDBEngine, "batches", fail)
    result = run("anonymity", "anonymise", data / "input.parquet", "--config", _toml(data),
                 "--out", tmp_path / "out.parquet", "--report", tmp_path / "report",
                 "--engine", "duckdb")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "engine could not run the query (OutOfMemoryException" in result.output
    assert "Ola" not in result.output and "Traceback" not in result.output
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # temporary files too


def test_bad_value_is_named_by_its_row_in_the_file(data: Path, tmp_path: Path) -> None:
    frame = _table().with_columns(
        pl.when(pl.int_range(pl.len()) == 1_234).then(pl.lit("Unknown"))
        .otherwise(pl.col("education")).alias("education"))  # fmt: skip
    source = tmp_path / "bad.parquet"
    frame.write_parquet(source, row_group_size=500)
    engine = DuckDBEngine(threads=2)
    try:
        with pytest.raises(ColumnError, match=r"column 'education': row 1235:"):
            anonymise_with_report_on_engine(source, _config(data, 3), tmp_path / "out.parquet",
                                            tmp_path / "report", engine)  # fmt: skip
    finally:
        engine.close()


def test_person_numbers_are_refused(data: Path, tmp_path: Path) -> None:
    numbers = synthetic_fnr(ROWS, seed=4)
    source = tmp_path / "with-fnr.parquet"
    _table().with_columns(pl.Series("note", numbers)).write_parquet(source)
    result = run("anonymity", "anonymise", source, "--config", _toml(data), "--out",
                 tmp_path / "out.parquet", "--report", tmp_path / "report",
                 "--engine", "duckdb")  # fmt: skip
    assert result.exit_code == 2
    assert "fødselsnummer" in result.output and "note (3,000 rows, first row 1)" in result.output
    assert not any(n in result.output for n in numbers[:50])
    assert not (tmp_path / "out.parquet").exists()
