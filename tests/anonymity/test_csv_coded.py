"""A CSV input to the ``anonymise`` command takes the coded path (issue 14): its
quasi-identifiers are parsed straight into Categorical and handed to the hierarchies
encoded, and the file is hashed beside the search. Everything it gives is what the strings
gave: the frame, the hierarchies, the release and withheld files, the checks before and
after, the distributions and the certificate's hash of the input.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.anonymity.check import check_frame
from koble.anonymity.coded import read_coded
from koble.anonymity.config import AnonymiseConfig
from koble.anonymity.distributions import top_values
from koble.anonymity.generalisation import Generalisation
from koble.anonymity.hierarchies.base import ChunkedIndex, encode
from koble.anonymity.preparation import generalise
from koble.anonymity.release import anonymise_file
from koble.anonymity.search import find_optimal
from koble.digests import sha256_file
from koble.tables import read_table

CITIES = ["Oslo", "Bergen", "Tromsø", "Bodø", "Ålesund", "Vardø"]
QIS = {"age": "age", "city": "categorical", "kind": "categorical"}


def _rows(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(8, 80))
    city = st.one_of(st.none(), st.sampled_from(CITIES))
    return pl.DataFrame({
        "age": draw(st.lists(st.one_of(st.none(), st.integers(0, 99)), min_size=n, max_size=n)),
        "city": draw(st.lists(city, min_size=n, max_size=n)),
        "kind": draw(st.lists(st.sampled_from(["a", "b", "c", ""]), min_size=n, max_size=n)),
        "note": draw(st.lists(st.sampled_from(["x", "y;z", 'q"uote']), min_size=n, max_size=n)),
    }, schema_overrides={"city": pl.String, "age": pl.Int64})  # fmt: skip


frames = st.composite(lambda draw: _rows(draw))()


def _csv(frame: pl.DataFrame, path: Path, encoding: str = "utf-8") -> Path:
    """``frame`` as a semicolon CSV in ``encoding``."""
    text = frame.write_csv(separator=";")
    path.write_bytes(text.encode(encoding))
    return path


def _same(a: Generalisation, b: Generalisation) -> None:
    assert np.array_equal(a.codes, b.codes) and a.labels == b.labels
    assert all(np.array_equal(x, y) for x, y in zip(a.maps, b.maps, strict=True))
    assert a.raw is not None and b.raw is not None and a.has_missing == b.has_missing
    assert sorted(a.raw.to_list()) == sorted(b.raw.to_list())


@given(frames, st.sampled_from(["utf-8", "cp1252", "utf-16"]))
@settings(max_examples=40, deadline=None)
def test_a_csv_read_coded_is_the_text_and_generalises_as_it(frame: pl.DataFrame,
                                                            encoding: str) -> None:  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = _csv(frame, Path(tmp) / "in.csv", encoding)
        text = read_table(path, encoding=encoding)
        coded, encoded, digest = read_coded(path, [*QIS, "absent"], encoding=encoding)
        assert digest.result() == sha256_file(path)
    assert set(encoded) == set(QIS)  # all text in a CSV file; a name it lacks is ignored
    assert all(coded.schema[c] == pl.Categorical for c in QIS)
    assert coded.schema["note"] == pl.String
    assert coded.with_columns(pl.col(*QIS).cast(pl.String)).equals(text)
    config = AnonymiseConfig(k=2, quasi_identifiers=dict(QIS))
    for a, b in zip(generalise(text, config, "in"), generalise(coded, config, "in", encoded),
                    strict=True):  # fmt: skip
        _same(a, b)


def test_a_value_first_seen_in_a_later_chunk(tmp_path: Path) -> None:
    """The reader parses a file in chunks, in parallel: a value that appears only in the
    last rows, and a category other columns or files hold but this column does not, are
    placed as in the strings."""
    pl.Series("other", ["Bergen", "Hamar"], dtype=pl.Categorical)  # categories held apart
    n = 40_000
    frame = pl.DataFrame({
        "city": ["Oslo"] * (n - 3) + ["Vardø", None, "Oslo"],
        "kind": (["a", "b"] * n)[:n],
        "age": [str(20 + i % 50) for i in range(n)],
    })  # fmt: skip
    path = _csv(frame, tmp_path / "late.csv")
    coded, encoded, _ = read_coded(path, list(QIS))
    values, index = encoded["city"]
    assert sorted(values.to_list()) == ["Oslo", "Vardø"]
    assert isinstance(index, ChunkedIndex)  # the categories hold values this column lacks
    positions = np.arange(len(values) + 1, dtype=np.int32)
    shown = [None if p == len(values) else values[int(p)] for p in index.take(positions)]
    assert shown == frame["city"].to_list()
    config = AnonymiseConfig(k=2, quasi_identifiers=dict(QIS))
    for a, b in zip(generalise(frame, config, "in"), generalise(coded, config, "in", encoded),
                    strict=True):  # fmt: skip
        _same(a, b)


@pytest.mark.parametrize("categorical", [True, False])
def test_encode_of_a_categorical_is_encode_of_its_text(categorical: bool) -> None:
    text = pl.Series("c", ["x", None, "y", "x", "z", None])
    column = text.cast(pl.Categorical) if categorical else text
    pl.Series(["w", "v"], dtype=pl.Categorical)  # more categories than the column holds
    values, index = encode(column)
    rows = np.arange(len(values) + 1)
    taken = index.take(rows) if isinstance(index, ChunkedIndex) else rows[index]
    assert values.dtype == pl.String
    assert [None if i == len(values) else values[int(i)] for i in taken] == text.to_list()
    assert sorted(values.to_list()) == ["x", "y", "z"]


def _config(k: int, limit: float) -> AnonymiseConfig:
    return AnonymiseConfig(k=k, quasi_identifiers=dict(QIS), suppression=limit)


@given(frames, st.integers(2, 4), st.sampled_from([0.0, 0.1, 0.3]),
       st.sampled_from(["out.parquet", "out.csv"]))  # fmt: skip
@settings(max_examples=40, deadline=None)
def test_a_csv_release_is_the_row_by_row_release(frame: pl.DataFrame, k: int, limit: float,
                                                 name: str) -> None:  # fmt: skip
    """The command's files and figures from a CSV input are those of the strings released
    row by row (``SearchResult.apply``)."""
    with tempfile.TemporaryDirectory() as tmp:
        source = _csv(frame, Path(tmp) / "in.csv")
        out, held = Path(tmp) / name, Path(tmp) / f"held{Path(name).suffix}"
        config = _config(k, limit)
        release = anonymise_file(source, config, out, held)
        assert release.hashes["input"] == sha256_file(source)
        rows = read_table(source)  # all text
        qis = generalise(rows, config, str(source))
        result = find_optimal(qis, k=k, suppression_limit=limit, metric=config.metric)
        assert release.result.levels == result.levels
        names = list(QIS)
        assert release.before == check_frame(rows, names, k=k, scan=False, path=str(source),
                                             model="row")  # fmt: skip
        if not result.feasible:
            assert not out.exists()
            return
        expected, withheld = result.apply(rows, qis)
        if out.suffix == ".csv":
            assert out.read_bytes() == expected.write_csv(separator=";").encode()
            assert held.read_bytes() == withheld.write_csv(separator=";").encode()
        else:
            assert pl.read_parquet(out).equals(expected)
            assert pl.read_parquet(held).equals(withheld)
        assert release.after == check_frame(expected, names, k=k, scan=False, path=str(out),
                                             model="row")  # fmt: skip
        for g, level in zip(qis, result.levels, strict=True):
            order = g.labels[level] if g.name == "age" else None
            raw = () if g.name == "age" else None
            assert release.distributions[g.name] == {
                "before": top_values(rows[g.name], raw),
                "after": top_values(expected[g.name], order),
            }
