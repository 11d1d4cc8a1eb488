"""The anonymise command's coded passes (issue 14, overhead under 30 % of the search): the
figures and files they give are those of the row-by-row reference.

- a Parquet file's text columns read dictionary-encoded generalise exactly as their strings;
- the release made class by class (``release_coded``) holds the rows, values and withheld
  records that ``SearchResult.apply`` gives, reads back as plain text, is the same bytes on
  every run, and names no label held only by withheld rows;
- the check before from the search's level-0 counts, and the distributions from counts,
  equal those counted from the rows;
- a release with a column whose type needs the Arrow schema (a time zone) keeps it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.anonymity.check import check_frame
from koble.anonymity.coded import CodedRelease, read_coded, write_release
from koble.anonymity.config import AnonymiseConfig
from koble.anonymity.distributions import top_values
from koble.anonymity.frequency import Lookups, base_table, locate
from koble.anonymity.hierarchies import hierarchy_for
from koble.anonymity.preparation import generalise
from koble.anonymity.release import anonymise_file
from koble.anonymity.search import find_optimal
from koble.tables import read_table

CITIES = ["Oslo", "Bergen", "Tromsø", "Bodø", "Alta", "Vardø"]
QIS = {"age": "age", "city": "categorical", "kind": "categorical"}


def _rows(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(8, 80))
    city = st.one_of(st.none(), st.sampled_from(CITIES))
    return pl.DataFrame({
        "age": draw(st.lists(st.one_of(st.none(), st.integers(0, 99)), min_size=n, max_size=n)),
        "city": draw(st.lists(city, min_size=n, max_size=n)),
        "kind": draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=n, max_size=n)),
        "note": draw(st.lists(st.integers(0, 9), min_size=n, max_size=n)),
    }, schema_overrides={"city": pl.String, "age": pl.Int64})  # fmt: skip


frames = st.composite(lambda draw: _rows(draw))()


def _parquet(frame: pl.DataFrame, path: Path, row_group: int = 16) -> Path:
    """Written in small row groups: each holds a dictionary of its own."""
    frame.write_parquet(path, row_group_size=row_group)
    return path


@given(frames)
@settings(max_examples=40, deadline=None)
def test_read_dictionary_encoded_generalises_as_the_strings(frame: pl.DataFrame) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = _parquet(frame, Path(tmp) / "in.parquet")
        coded, encoded, _ = read_coded(path, list(QIS))
    assert set(encoded) == {"city", "kind"}  # the text columns; age is a number
    assert coded.with_columns(pl.col("city", "kind").cast(pl.String)).equals(frame)
    config = AnonymiseConfig(k=2, quasi_identifiers=dict(QIS))
    plain, fast = generalise(frame, config, "in"), generalise(coded, config, "in", encoded)
    for a, b in zip(plain, fast, strict=True):
        assert np.array_equal(a.codes, b.codes) and a.labels == b.labels
        assert all(np.array_equal(x, y) for x, y in zip(a.maps, b.maps, strict=True))
        assert a.raw is not None and b.raw is not None and a.has_missing == b.has_missing
        assert sorted(a.raw.to_list()) == sorted(b.raw.to_list())


def _config(k: int, limit: float) -> AnonymiseConfig:
    return AnonymiseConfig(k=k, quasi_identifiers=dict(QIS), suppression=limit)


@given(frames, st.integers(2, 4), st.sampled_from([0.0, 0.1, 0.3]))
@settings(max_examples=40, deadline=None)
def test_coded_release_is_the_row_by_row_release(frame: pl.DataFrame, k: int,
                                                 limit: float) -> None:  # fmt: skip
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        source = _parquet(frame, Path(tmp) / "in.parquet")
        out, held = Path(tmp) / "out.parquet", Path(tmp) / "held.parquet"
        config = _config(k, limit)
        release = anonymise_file(source, config, out, held)
        qis = generalise(frame, config, str(source))
        result = find_optimal(qis, k=k, suppression_limit=limit, metric=config.metric)
        assert release.result.levels == result.levels
        names = list(QIS)
        before = check_frame(frame, names, k=k, scan=False, path=str(source), model="row")
        assert release.before == before
        if not result.feasible:
            assert not out.exists()
            return
        expected, withheld = result.apply(frame, qis)
        released = pl.read_parquet(out)
        assert released.schema == expected.schema  # text, as the input's text was
        assert released.equals(expected)
        assert pl.read_parquet(held).equals(withheld)
        assert release.after is not None
        assert release.after == check_frame(expected, names, k=k, scan=False, path=str(out),
                                            model="row")  # fmt: skip
        # the dictionary pages hold only labels some released row holds
        stored = pq.ParquetFile(out, read_dictionary=["city", "kind"]).read()
        for column in ("city", "kind"):
            dictionary = set(stored.column(column).unify_dictionaries().chunk(0).dictionary
                             .to_pylist()) if stored.num_rows else set()  # fmt: skip
            assert dictionary <= set(expected[column].drop_nulls().to_list())
        for g, level in zip(qis, result.levels, strict=True):
            order = g.labels[level] if g.name == "age" else None
            raw = () if g.name == "age" else None
            assert release.distributions[g.name] == {
                "before": top_values(frame[g.name], raw),
                "after": top_values(expected[g.name], order),
            }
        again = anonymise_file(source, config, Path(tmp) / "again.parquet",
                               Path(tmp) / "held2.parquet")  # fmt: skip
        assert again.hashes["output"] == release.hashes["output"]
        assert (Path(tmp) / "again.parquet").read_bytes() == out.read_bytes()


def test_csv_release_is_unchanged_text(tmp_path: Path) -> None:
    frame = pl.DataFrame({"age": [30, 31, 32, 33, 34, 35] * 3,
                          "city": ["Oslo", "Oslo", "Alta", "Alta", "Bodø", None] * 3,
                          "kind": ["a", "b"] * 9, "note": list(range(18))})  # fmt: skip
    source = tmp_path / "in.csv"
    frame.write_csv(source, separator=";")
    release = anonymise_file(source, _config(3, 0.2), tmp_path / "out.csv",
                             tmp_path / "held.csv")  # fmt: skip
    assert release.result.feasible
    rows = read_table(source)
    qis = generalise(rows, _config(3, 0.2), str(source))
    expected, _ = release.result.apply(rows, qis)
    buffer = tmp_path / "expected.csv"
    expected.write_csv(buffer, separator=";")
    assert (tmp_path / "out.csv").read_bytes() == buffer.read_bytes()


def test_a_column_needing_the_arrow_schema_keeps_its_type(tmp_path: Path) -> None:
    when = dt.datetime(2024, 1, 1, 12)
    frame = pl.DataFrame({
        "city": ["Oslo", "Oslo", "Alta", "Alta"] * 3, "kind": ["a", "b"] * 6,
        "age": [40] * 12, "at": [when] * 12, "took": [dt.timedelta(hours=1)] * 12,
    }).with_columns(pl.col("at").dt.replace_time_zone("Europe/Oslo"))  # fmt: skip
    source = _parquet(frame, tmp_path / "in.parquet")
    release = anonymise_file(source, _config(2, 0.0), tmp_path / "out.parquet",
                             tmp_path / "held.parquet")  # fmt: skip
    assert release.result.feasible
    back = pl.read_parquet(tmp_path / "out.parquet")
    assert back.schema["at"] == frame.schema["at"] and back.schema["took"] == pl.Duration("us")
    assert back.schema["city"] == pl.String
    plain = pl.DataFrame({"city": pl.Series(["x", "y"]).cast(pl.Categorical), "n": [1, 2]})
    nothing = np.zeros(0, dtype=np.int64)
    as_is = CodedRelease(("city", "n"), {}, plain, plain.clear(), pl.Series([2]), (), nothing,
                         np.ones(2, dtype=np.bool_), nothing)  # fmt: skip
    write_release(as_is, tmp_path / "plain.parquet")  # nothing coded: as it is
    assert pl.read_parquet(tmp_path / "plain.parquet")["n"].to_list() == [1, 2]


def test_class_sizes_and_locate_refuse_what_they_cannot_give() -> None:
    frame = pl.DataFrame({"a": ["x", "x", "y"], "p": [1, 2, 3]})
    sizes = pl.Series([2, 1])
    same = check_frame(frame, ["a"], k=2, scan=False, class_sizes=sizes)
    assert same == check_frame(frame, ["a"], k=2, scan=False)
    with pytest.raises(ValueError, match="person"):
        check_frame(frame, ["a"], k=2, scan=False, person="p", class_sizes=sizes)
    with pytest.raises(ValueError, match="add up"):
        check_frame(frame, ["a"], k=2, scan=False, class_sizes=pl.Series([1, 1]))
    pairs = [
        hierarchy_for("categorical").apply(pl.Series(v)) for v in (["x", "x", "y"], ["p", "q", "p"])
    ]
    table = base_table(Lookups(pairs))  # (y, q) is missing: key 3
    assert locate(table, table.keys).tolist() == list(range(table.size))
    for key in (3, 7, -1):
        with pytest.raises(ValueError, match="not in the table"):
            locate(table, np.array([key], dtype=np.int64))


def test_a_parquet_input_released_row_by_row_is_unchanged(tmp_path: Path) -> None:
    """With a sensitive attribute the release is made row by row (``SearchResult.apply``),
    over the columns read dictionary-encoded: the files hold the same text as from
    strings."""
    frame = pl.DataFrame({
        "city": ["Oslo", "Oslo", "Alta", "Alta", "Bodø", None] * 4,
        "kind": ["a", "b", "c"] * 8, "age": list(range(30, 54)),
        "diagnosis": ["J18", "I10", "F03", "C50"] * 6,
    })  # fmt: skip
    source = _parquet(frame, tmp_path / "in.parquet", row_group=5)
    config = AnonymiseConfig(k=2, quasi_identifiers=dict(QIS), suppression=0.3,
                             sensitive="diagnosis", l=2)  # fmt: skip
    release = anonymise_file(source, config, tmp_path / "out.parquet", tmp_path / "held.parquet")
    assert release.result.feasible
    qis = generalise(frame, config, str(source))
    sensitive = hierarchy_for("categorical").apply(frame["diagnosis"])
    expected, withheld = release.result.apply(frame, qis, sensitive)
    assert pl.read_parquet(tmp_path / "out.parquet").equals(expected)
    assert pl.read_parquet(tmp_path / "held.parquet").equals(withheld)
