"""Frequency tables: grouping, roll-ups through composed lookups, and the table cache.

Also home to the test helpers the other anonymity tests import: a Generalisation built from
an explicit label table, and a loader for the adult benchmark (ARX's CSV hierarchies), kept
test-local because the real hierarchy loader lives elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from unittest import mock

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.anonymity.frequency import (
    FrequencyTable,
    Lookups,
    TableCache,
    aggregate,
    build_table,
    roll_up,
)
from koble.anonymity.generalisation import Generalisation

ADULT = Path("/work/shared/data/adult")
ADULT_QIS = (
    "age",
    "sex",
    "race",
    "marital-status",
    "education",
    "native-country",
    "workclass",
    "salary-class",
)


def from_table(
    name: str, table: Sequence[Sequence[str]], values: Sequence[str] | pl.Series
) -> Generalisation:
    """A Generalisation from ARX-style rows ``(value, level 1, ..., top)`` and a column."""
    labels: list[tuple[str, ...]] = []
    maps = []
    for level in range(len(table[0])):
        seen: dict[str, int] = {}
        maps.append(np.array([seen.setdefault(r[level], len(seen)) for r in table], np.int32))
        labels.append(tuple(seen))
    index = {r[0]: i for i, r in enumerate(table)}
    series = pl.Series(name, values, dtype=pl.String)
    codes = series.replace_strict(index, return_dtype=pl.Int32).to_numpy()
    names = tuple(f"level {i}" for i in range(len(labels)))
    return Generalisation(name, names, codes.astype(np.int32), tuple(labels), tuple(maps))


@cache
def adult_frame() -> pl.DataFrame:
    """The adult benchmark records, every column a string."""
    return pl.read_csv(ADULT / "adult.csv", separator=";", infer_schema_length=0)


def adult_hierarchy(name: str) -> list[list[str]]:
    """One ARX hierarchy file: no header, ``value;level1;...;*``."""
    lines = (ADULT / f"adult_hierarchy_{name}.csv").read_text().splitlines()
    return [line.split(";") for line in lines if line.strip()]


def adult(
    names: Sequence[str] = ADULT_QIS, frame: pl.DataFrame | None = None
) -> list[Generalisation]:
    """The adult QIs as Generalisations (of ``frame``, by default the benchmark records)."""
    frame = adult_frame() if frame is None else frame
    return [from_table(n, adult_hierarchy(n), frame[n]) for n in names]


@st.composite
def hierarchies(
    draw: st.DrawFn, name: str, height: int | None = None, max_values: int = 6
) -> list[list[str]]:
    """A random hierarchy as ARX rows: up to ``max_values`` values, and ``height`` levels
    above them (a random 0-3 when not given)."""
    sizes = [draw(st.integers(1, max_values))]
    parents: list[list[int]] = []
    for _ in range(draw(st.integers(0, 3)) if height is None else height):
        n = draw(st.integers(1, sizes[-1]))
        rest = draw(st.lists(st.integers(0, n - 1), min_size=sizes[-1] - n, max_size=sizes[-1] - n))
        parents.append(list(range(n)) + rest)
        sizes.append(n)
    rows = []
    for value in range(sizes[0]):
        row, code = [f"{name}{value}"], value
        for level, parent in enumerate(parents, start=1):
            code = parent[code]
            row.append(f"{name}{level}.{code}")
        rows.append(row)
    return rows


@st.composite
def datasets(
    draw: st.DrawFn, max_qis: int = 3, max_rows: int = 60
) -> tuple[list[Generalisation], Generalisation, pl.DataFrame]:
    """Random QIs with random hierarchies, a sensitive attribute, and the frame they came from.

    Rows are drawn as prototypes repeated a random number of times (up to ``max_rows`` in
    all), so classes of very different sizes occur, as in real data.
    """
    tables = [draw(hierarchies("abcdefgh"[i])) for i in range(draw(st.integers(1, max_qis)))]
    n_values = draw(st.integers(1, 4))
    shapes = [len(t) for t in tables] + [n_values]
    prototype = st.tuples(*(st.integers(0, n - 1) for n in shapes), st.integers(1, max_rows))
    rows: list[tuple[int, ...]] = []
    for *picks, times in draw(st.lists(prototype, min_size=1, max_size=12)):
        rows.extend([tuple(picks)] * min(times, max_rows - len(rows)))
        if len(rows) >= max_rows:
            break
    columns = {t[0][0][0]: [t[r[i]][0] for r in rows] for i, t in enumerate(tables)}
    qis = [from_table(name, t, columns[name]) for name, t in zip(columns, tables, strict=True)]
    columns["s"] = [f"s{r[-1]}" for r in rows]
    sensitive = from_table("s", [[f"s{v}"] for v in range(n_values)], columns["s"])
    return qis, sensitive, pl.DataFrame(columns)


def reference_groups(qis: Sequence[Generalisation], levels: Sequence[int]) -> pl.DataFrame:
    """Row-level group-by of the generalised labels: one row per combination, with its count."""
    frame = pl.DataFrame([g.column(lv) for g, lv in zip(qis, levels, strict=True)])
    return frame.group_by(frame.columns).len("n")


def _as_labels(
    table_codes: Sequence[np.ndarray], qis: Sequence[Generalisation], levels: Sequence[int]
) -> list[tuple[str, ...]]:
    return [
        tuple(g.labels[lv][int(c)] for g, lv, c in zip(qis, levels, row, strict=True))
        for row in zip(*table_codes, strict=True)
    ]


@given(st.data())
@settings(max_examples=150, deadline=None)
def test_build_and_roll_up_match_row_level_grouping(data: st.DataObject) -> None:
    qis, _, _ = data.draw(datasets())
    lookups = Lookups(qis)
    base, entry = build_table(lookups, (0,) * len(qis))
    assert base.counts.sum() == len(qis[0].codes)
    assert np.all(np.diff(base.keys) > 0)
    for i, g in enumerate(qis):  # every row's entry holds the row's codes
        assert np.array_equal(base.codes[i][entry], g.codes)
    middle = tuple(data.draw(st.integers(0, g.height)) for g in qis)
    top = tuple(data.draw(st.integers(m, g.height)) for m, g in zip(middle, qis, strict=True))
    composed = roll_up(roll_up(base, middle, lookups), top, lookups)
    direct, _ = build_table(lookups, top)
    assert np.array_equal(composed.keys, direct.keys)
    assert np.array_equal(composed.counts, direct.counts)
    for a, b in zip(composed.codes, direct.codes, strict=True):
        assert np.array_equal(a, b)
    expected = {tuple(r[:-1]): r[-1] for r in reference_groups(qis, top).iter_rows()}
    got = dict(zip(_as_labels(composed.codes, qis, top), composed.counts.tolist(), strict=True))
    assert got == expected


def _entries(table: FrequencyTable) -> set[tuple[int, ...]]:
    assert table.sensitive is not None
    columns = (*table.codes, table.sensitive, table.counts)
    return {tuple(int(v) for v in row) for row in zip(*columns, strict=True)}


def _class_runs(table: FrequencyTable) -> list[bool]:
    ck = (table.keys // table.radix).tolist()
    return [True] + [a != b for a, b in zip(ck[1:], ck[:-1], strict=True)]


@given(st.data())
@settings(max_examples=60, deadline=None)
def test_dense_recoding_and_sort_path_agree(data: st.DataObject) -> None:
    """A tiny key limit forces the dense re-coding and the argsort path."""
    qis, sensitive, _ = data.draw(datasets())
    n_s = len(sensitive.labels[0])
    lookups = Lookups(qis, n_s)
    levels = tuple(data.draw(st.integers(0, g.height)) for g in qis)
    top = tuple(data.draw(st.integers(lv, g.height)) for lv, g in zip(levels, qis, strict=True))
    normal, _ = build_table(lookups, levels, sensitive.codes)
    normal = roll_up(normal, top, lookups)
    with mock.patch("koble.anonymity.frequency_keys._LIMIT", 8):
        general = Lookups(qis, n_s)
        tight, _ = build_table(general, levels, sensitive.codes)
        tight = roll_up(tight, top, general)
    assert _entries(normal) == _entries(tight)
    assert _class_runs(normal) == _class_runs(tight)


def test_aggregate_paths_agree() -> None:
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 5000, 3000).astype(np.int64)
    counts = rng.integers(1, 9, 3000).astype(np.int64)
    small = aggregate(keys, 5000, counts, inverse=True)
    large = aggregate(keys, 1 << 40, counts, inverse=True)
    huge = aggregate(keys, 1 << 61, counts, inverse=True)
    for other in (large, huge):
        assert np.array_equal(small[0], other[0])
        assert np.array_equal(small[1], other[1])
        assert np.array_equal(keys[small[2]], keys[other[2]])
        assert np.array_equal(small[3], other[3])  # type: ignore[arg-type]
    assert small[3] is not None and np.array_equal(small[0][small[3]], keys)


def test_cache_picks_the_smallest_table_below_and_respects_the_budget() -> None:
    qis = adult(("age", "sex", "education"))
    lookups = Lookups(qis)
    base, _ = build_table(lookups, (0, 0, 0))
    cache = TableCache(base, budget=base.nbytes)
    low = roll_up(base, (1, 0, 0), lookups)
    high = roll_up(base, (2, 0, 1), lookups)
    cache.put(low)
    cache.put(high)
    assert cache.source((2, 1, 1)) is high
    assert cache.source((1, 1, 3)) is low
    assert cache.source((0, 1, 3)) is base
    big = roll_up(base, (0, 0, 1), lookups)
    cache.put(big)  # over budget: the least recently used goes first
    assert cache.source((2, 1, 1)) in (high, base)
    assert sum(t.nbytes for t in cache._tables if t is not None) <= base.nbytes


def test_roll_up_refuses_to_go_down() -> None:
    qis = adult(("age", "sex"))
    lookups = Lookups(qis)
    base, _ = build_table(lookups, (0, 0))
    with pytest.raises(ValueError, match="cannot roll up"):
        roll_up(roll_up(base, (2, 0), lookups), (1, 0), lookups)


def test_adult_base_table() -> None:
    qis = adult()
    base, _ = build_table(Lookups(qis), (0,) * len(qis))
    assert base.counts.sum() == 30_162
    assert base.size == adult_frame().select(ADULT_QIS).n_unique()
