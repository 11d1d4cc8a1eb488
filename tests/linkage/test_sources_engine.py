"""Sources files (koble.linkage.sources) and the SQL engine steps run on (.engine)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from koble.errors import FileFormatError, UsageError
from koble.linkage.engine import DuckDBEngine, engine_named, quote
from koble.linkage.sources import RegistrySource, Sources, load_sources, synthetic_sources
from tests.linkage.conftest import PEOPLE

VALID = """\
[operator]
identity_history = "history/identity_history.parquet"

[registries.npr]
file = "data/npr.parquet"
id_column = "fnr"
date_column = "start_date"

[registries.hoftebruddregisteret]
file = "quality.parquet"
id_column = " fnr "
date_column = "procedure_date"
consent_column = "consent"

[registries."ssb-inntekt"]
file = "/abs/ssb_income.parquet"
id_column = "fnr"
"""


def write_sources(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "sources.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- load_sources -------------------------------------------------------------------------


def test_a_valid_sources_file(tmp_path: Path) -> None:
    base = tmp_path / "project"
    sources = load_sources(write_sources(base, VALID))
    assert sorted(sources.registries) == ["hoftebruddregisteret", "npr", "ssb-inntekt"]
    assert sources.get("npr") == RegistrySource(
        "npr", base / "data" / "npr.parquet", "fnr", "start_date", None
    )
    assert sources.get("hoftebruddregisteret") == RegistrySource(
        "hoftebruddregisteret", base / "quality.parquet", "fnr", "procedure_date", "consent"
    )
    assert sources.get("ssb-inntekt").file == Path("/abs/ssb_income.parquet")
    assert sources.get("ssb-inntekt").date_column is None
    assert not any(r.ingest for r in sources.registries.values())
    history = base / "history" / "identity_history.parquet"
    assert sources.operator_history == history
    assert sources.ttp_history == history  # defaults to the operator's
    assert sources.population_dir == base


def test_paths_are_relative_to_the_sources_file_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path / "deep" / "dir"
    path = write_sources(base, VALID)
    monkeypatch.chdir(tmp_path)
    sources = load_sources(Path("deep/dir/sources.toml"))
    assert sources.get("npr").file == Path("deep/dir/data/npr.parquet")
    assert (tmp_path / sources.get("npr").file) == base / "data" / "npr.parquet"
    assert load_sources(path).get("npr").file == base / "data" / "npr.parquet"


def test_the_ttp_may_have_its_own_identity_history(tmp_path: Path) -> None:
    text = VALID + '\n[ttp]\nidentity_history = "ttp/history.parquet"\n'
    sources = load_sources(write_sources(tmp_path, text))
    assert sources.ttp_history == tmp_path / "ttp" / "history.parquet"
    assert sources.operator_history == tmp_path / "history" / "identity_history.parquet"


def test_no_identity_history(tmp_path: Path) -> None:
    sources = load_sources(write_sources(tmp_path, '[registries.npr]\nfile="a"\nid_column="b"\n'))
    assert sources.operator_history is None
    assert sources.ttp_history is None


def test_an_empty_sources_file(tmp_path: Path) -> None:
    sources = load_sources(write_sources(tmp_path, ""))
    assert sources.registries == {}
    with pytest.raises(UsageError, match="sources cover: none"):
        sources.get("npr")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[registry.npr]\nfile = 'a'\nid_column = 'fnr'\n", "registry"),
        ("[operators]\nidentity_history = 'h'\n[zz]\n", "operators, zz"),
        ("population = 'p.parquet'\n", "population"),
    ],
)
def test_unknown_tables_are_named(tmp_path: Path, text: str, named: str) -> None:
    path = write_sources(tmp_path, text)
    with pytest.raises(FileFormatError) as info:
        load_sources(path)
    assert f"unknown table(s) {named}" in str(info.value)
    assert info.value.path == str(path)


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("file='a'\nid_column='fnr'\nid_colum='x'\n", "registries.npr.id_colum"),
        ("file='a'\nid_column='fnr'\ningested=true\n", "registries.npr.ingested"),
        ("file='a'\nid_column='fnr'\nb=1\na=2\n", "registries.npr.a, registries.npr.b"),
    ],
)
def test_unknown_registry_keys_are_named(tmp_path: Path, spec: str, named: str) -> None:
    path = write_sources(tmp_path, "[registries.npr]\n" + spec)
    with pytest.raises(FileFormatError) as info:
        load_sources(path)
    assert f"unknown key(s) {named}" in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ("id_column = 'fnr'\n", "registries.npr.file"),
        ("file = 'npr.parquet'\n", "registries.npr.id_column"),
        ("file = ''\nid_column = 'fnr'\n", "registries.npr.file"),
        ("file = '   '\nid_column = 'fnr'\n", "registries.npr.file"),
        ("file = 3\nid_column = 'fnr'\n", "registries.npr.file"),
        ("file = 'a'\nid_column = ['fnr']\n", "registries.npr.id_column"),
        ("file = 'a'\nid_column = 'fnr'\ndate_column = 5\n", "registries.npr.date_column"),
        ("file = 'a'\nid_column = 'fnr'\nconsent_column = ''\n", "registries.npr.consent_column"),
    ],
)
def test_missing_or_bad_values_name_the_key(tmp_path: Path, spec: str, key: str) -> None:
    path = write_sources(tmp_path, "[registries.npr]\n" + spec)
    with pytest.raises(FileFormatError) as info:
        load_sources(path)
    assert f"{key} must be a non-empty string" in str(info.value)
    assert str(path) in str(info.value)


def test_a_registry_that_is_not_a_table(tmp_path: Path) -> None:
    path = write_sources(tmp_path, "[registries]\nnpr = 'npr.parquet'\n")
    with pytest.raises(FileFormatError, match=r"\[registries\.npr\] must be a table"):
        load_sources(path)


def test_a_bad_identity_history_names_the_key(tmp_path: Path) -> None:
    path = write_sources(tmp_path, "[ttp]\nidentity_history = 7\n")
    with pytest.raises(FileFormatError, match=r"ttp\.identity_history must be"):
        load_sources(path)


def test_a_missing_sources_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(FileFormatError, match="no such file") as info:
        load_sources(path)
    assert info.value.path == str(path)


def test_invalid_toml(tmp_path: Path) -> None:
    path = write_sources(tmp_path, "[registries.npr\nfile = 'a'\n")
    with pytest.raises(FileFormatError, match="not valid TOML") as info:
        load_sources(path)
    assert info.value.path == str(path)


@pytest.mark.parametrize("table", ["operator", "ttp"])
def test_unknown_operator_and_ttp_keys_are_named(tmp_path: Path, table: str) -> None:
    path = write_sources(tmp_path, f"[{table}]\nidentity_histroy = 'h.parquet'\n")
    with pytest.raises(FileFormatError, match=f"{table}.identity_histroy"):
        load_sources(path)


@pytest.mark.parametrize("text", ["operator = 'x'\n", "ttp = 1\n", "registries = 'npr'\n"])
def test_tables_of_the_wrong_type_are_file_format_errors(tmp_path: Path, text: str) -> None:
    path = write_sources(tmp_path, text)
    with pytest.raises(FileFormatError, match=text.split(" ")[0]):
        load_sources(path)


# --- world = "dir" --------------------------------------------------------------------------


def test_a_world_sources_file(tmp_path: Path) -> None:
    path = write_sources(tmp_path / "conf", 'world = "../world"\n')
    sources = load_sources(path)
    world = tmp_path / "conf" / ".." / "world"
    assert sources == synthetic_sources(world)
    assert sources.population_dir == world
    assert sources.operator_history == world / "identity_history.parquet"
    assert sources.ttp_history == world / "identity_history.parquet"
    npr = sources.get("npr")
    assert (npr.file, npr.id_column, npr.date_column) == (
        world / "npr.parquet",
        "fnr",
        "start_date",
    )
    assert sources.get("hoftebruddregisteret").consent_column == "consent"
    resept = sources.get("reseptregisteret")
    assert resept.ingest
    assert resept.file == world / "feeds" / "reseptregisteret.parquet"
    assert dict(resept.id_columns) == {"fnr": "fnr", "prescriber_hpr": "hpr"}
    assert {r for r, s in sources.registries.items() if s.ingest} == {"reseptregisteret", "iplos"}


def test_an_absolute_world(tmp_path: Path) -> None:
    world = tmp_path / "w"
    sources = load_sources(write_sources(tmp_path / "conf", f'world = "{world}"\n'))
    assert sources.population_dir == world


def test_world_with_an_unknown_table_is_refused(tmp_path: Path) -> None:
    path = write_sources(tmp_path, 'world = "w"\n[registry.npr]\nfile = "mine.parquet"\n')
    with pytest.raises(FileFormatError, match="registry"):
        load_sources(path)


# --- Sources.get --------------------------------------------------------------------------


def test_get_an_unknown_registry_lists_the_covered_ones(tmp_path: Path) -> None:
    sources = load_sources(write_sources(tmp_path, VALID))
    with pytest.raises(UsageError) as info:
        sources.get("kreftregisteret")
    message = str(info.value)
    assert "'kreftregisteret'" in message
    assert message.endswith("sources cover: hoftebruddregisteret, npr, ssb-inntekt")


def test_get_from_sources_built_in_code() -> None:
    source = RegistrySource("npr", Path("npr.parquet"), "fnr")
    sources = Sources({"npr": source})
    assert sources.get("npr") is source
    with pytest.raises(UsageError, match=r"sources cover: npr$"):
        sources.get("mfr")


# --- DuckDBEngine -------------------------------------------------------------------------


@pytest.fixture
def engine() -> Iterator[DuckDBEngine]:
    eng = DuckDBEngine(threads=1)
    yield eng
    eng.close()


def test_query_over_a_parquet_path(engine: DuckDBEngine, events: Path) -> None:
    result = engine.query(
        "SELECT code, COUNT(*) AS n FROM events GROUP BY code ORDER BY code", {"events": events}
    )
    assert isinstance(result, pa.Table)
    assert result.to_pydict() == {"code": ["C50", "I21", "S72"], "n": [2, 1, 1]}


def test_query_over_an_arrow_table(engine: DuckDBEngine) -> None:
    result = engine.query("SELECT pid FROM people WHERE age > 45 ORDER BY pid", {"people": PEOPLE})
    assert result.to_pydict() == {"pid": ["b", "d"]}


def test_a_join_of_parquet_and_arrow(engine: DuckDBEngine, events: Path) -> None:
    result = engine.query(
        "SELECT p.pid, p.age, COUNT(e.code) AS n FROM people p "
        "LEFT JOIN events e ON e.pid = p.pid GROUP BY p.pid, p.age ORDER BY p.pid",
        {"events": events, "people": PEOPLE},
    )
    assert result.to_pydict() == {"pid": ["a", "b", "d"], "age": [40, 51, 62], "n": [2, 1, 0]}


def test_tables_are_unregistered_after_a_query(engine: DuckDBEngine, events: Path) -> None:
    engine.query("SELECT 1", {"events": events, "people": PEOPLE})
    for name in ("events", "people"):
        with pytest.raises(duckdb.Error, match=name):
            engine.query(f"SELECT * FROM {name}", {})
    # and the names are free to be bound again, to something else
    result = engine.query("SELECT COUNT(*) AS n FROM events", {"events": PEOPLE})
    assert result.to_pydict() == {"n": [3]}
    result = engine.query("SELECT COUNT(*) AS n FROM people", {"people": events})
    assert result.to_pydict() == {"n": [4]}


def test_tables_are_unregistered_after_a_failing_query(engine: DuckDBEngine, events: Path) -> None:
    with pytest.raises(duckdb.Error):
        engine.query(
            "SELECT no_such_column FROM events, people", {"events": events, "people": PEOPLE}
        )
    for name in ("events", "people"):
        with pytest.raises(duckdb.Error, match=name):
            engine.query(f"SELECT * FROM {name}", {})


@pytest.mark.parametrize("name", ["Events", "1events", "ev-ents", "ev ents", "x;drop", "", "æ"])
def test_an_invalid_table_name_is_a_usage_error(engine: DuckDBEngine, name: str) -> None:
    with pytest.raises(UsageError) as info:
        engine.query("SELECT 1", {name: PEOPLE})
    assert f"invalid table name {name!r}" in str(info.value)


def test_an_invalid_name_after_a_valid_one_unregisters_the_valid_one(
    engine: DuckDBEngine, events: Path
) -> None:
    with pytest.raises(UsageError):
        engine.query("SELECT 1", {"events": events, "people": PEOPLE, "Bad": PEOPLE})
    for name in ("events", "people"):
        with pytest.raises(duckdb.Error, match=name):
            engine.query(f"SELECT * FROM {name}", {})


def test_a_parquet_path_with_a_quote_in_it(engine: DuckDBEngine, tmp_path: Path) -> None:
    path = tmp_path / "o'brien's.parquet"
    pq.write_table(PEOPLE, path)
    result = engine.query("SELECT COUNT(*) AS n FROM t", {"t": path})
    assert result.to_pydict() == {"n": [3]}


def test_a_missing_parquet_file_fails(engine: DuckDBEngine, tmp_path: Path) -> None:
    with pytest.raises(duckdb.Error):
        engine.query("SELECT * FROM t", {"t": tmp_path / "missing.parquet"})


def test_several_parquet_files_read_as_one_table_matched_by_name(
    engine: DuckDBEngine, events: Path, tmp_path: Path
) -> None:
    later = tmp_path / "later.parquet"
    pq.write_table(pa.table({"code": ["K35"], "pid": ["d"]}), later)  # columns in another order
    result = engine.query("SELECT pid, code FROM t", {"t": [events, later]})
    assert result.to_pydict() == {
        "pid": ["a", "b", "a", "c", "d"],
        "code": ["C50", "I21", "S72", "C50", "K35"],
    }


def test_write_parquet_keeps_order_counts_rows_and_repeats_its_bytes(
    engine: DuckDBEngine, events: Path, tmp_path: Path
) -> None:
    outputs = [tmp_path / "o'ne.parquet", tmp_path / "two.parquet"]
    for out in outputs:
        sql = "SELECT * FROM t WHERE pid <> 'b'"
        rows = engine.write_parquet(sql, {"t": [events, events]}, out)
        assert rows == 6
    assert outputs[0].read_bytes() == outputs[1].read_bytes()
    assert pq.read_table(outputs[0]).to_pydict() == {
        "pid": ["a", "a", "c"] * 2,
        "code": ["C50", "S72", "C50"] * 2,
    }
    with pytest.raises(duckdb.Error, match="t"):  # and the table is gone again
        engine.query("SELECT * FROM t", {})


def test_settings_are_applied() -> None:
    eng = DuckDBEngine(threads=2, memory_limit="200MB")
    try:
        result = eng.query(
            "SELECT current_setting('threads') AS t, current_setting('memory_limit') AS m", {}
        )
    finally:
        eng.close()
    row = result.to_pylist()[0]
    assert row["t"] == 2
    assert row["m"] == "190.7 MiB"  # 200 MB in DuckDB's own units


def test_engine_named() -> None:
    eng = engine_named("duckdb")
    try:
        assert isinstance(eng, DuckDBEngine)
        assert eng.name == "duckdb"
    finally:
        eng.close()
    with pytest.raises(UsageError, match="unknown engine 'flink'; available: duckdb, spark"):
        engine_named("flink")


@pytest.mark.parametrize(
    ("identifier", "quoted"),
    [("fnr", '"fnr"'), ('we"ird', '"we""ird"'), ("", '""'), ("a b", '"a b"')],
)
def test_quote(identifier: str, quoted: str) -> None:
    assert quote(identifier) == quoted


def test_quoted_identifiers_round_trip_through_sql(engine: DuckDBEngine) -> None:
    column = 'we"ird col'
    table = pa.table({column: [1, 2]})
    result = engine.query(f"SELECT {quote(column)} AS x FROM t", {"t": table})
    assert result.to_pydict() == {"x": [1, 2]}
