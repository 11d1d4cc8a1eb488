"""The speed-ups of the search leave every result as it was.

Issue 14: the search was made faster (to beat ARX 3.9.2's 25 ms on adult, 9 QIs, no
suppression: measured in benchmarks/bench_anonymity.py, never here, since a timed unit test
measures the machine's load). The golden test pins the optimum and its loss on adult for
every metric, with and without suppression, to the values found before the speed-ups; the
property tests hold each faster piece (codes read back off the keys, the packed cache
lookup, tagging by slices) to the plain computation it replaces.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.anonymity.frequency import FrequencyTable, Lookups, TableCache, build_table, roll_up
from koble.anonymity.generalisation import Generalisation
from koble.anonymity.hierarchies import hierarchy_for
from koble.anonymity.lattice import Evaluation, Lattice, _Search
from koble.anonymity.search import find_optimal
from tests.anonymity.test_frequency import ADULT, ADULT_QIS, datasets

QIS9 = (*ADULT_QIS, "occupation")

# (QIs, limit, metric) -> (levels, loss, suppressed), as found before the speed-ups (ARX's
# hierarchy files, so the `loss` metric sees their domains).
GOLDEN: dict[tuple[int, float, str], tuple[tuple[int, ...], float, int]] = {
    (8, 0.0, "height"): ((1, 0, 1, 2, 3, 2, 2, 1), 12.0, 0),
    (8, 0.0, "precision"): ((4, 0, 1, 2, 3, 2, 0, 0), 0.625, 0),
    (8, 0.0, "discernibility"): ((1, 1, 1, 1, 3, 2, 2, 1), 55170356.0, 0),
    (8, 0.0, "non-uniform entropy"): ((1, 1, 1, 1, 3, 2, 2, 1), 324620.52699186956, 0),
    (8, 0.0, "average class size"): ((4, 0, 1, 2, 0, 2, 2, 1), 188.5125, 0),
    (8, 0.0, "loss"): ((4, 0, 1, 2, 3, 2, 0, 0), 0.5422108254079409, 0),
    (8, 0.0, "non-uniform entropy, suppressed as *"): (
        (1, 1, 1, 1, 3, 2, 2, 1), 324620.52699186956, 0
    ),
    (8, 0.02, "height"): ((1, 0, 1, 1, 1, 2, 1, 0), 7.0, 563),
    (8, 0.02, "precision"): ((4, 0, 0, 1, 1, 1, 1, 0), 0.3541666666666667, 511),
    (8, 0.02, "discernibility"): ((0, 0, 1, 2, 3, 2, 2, 0), 9268952.0, 60),
    (8, 0.02, "non-uniform entropy"): ((0, 0, 1, 1, 2, 2, 2, 1), 199602.3133790343, 473),
    (8, 0.02, "average class size"): ((0, 1, 1, 2, 2, 2, 0, 1), 9.941946308724832, 535),
    (8, 0.02, "loss"): ((3, 0, 0, 2, 2, 1, 1, 0), 0.2464771553021718, 506),
    (8, 0.02, "non-uniform entropy, suppressed as *"): (
        (0, 0, 1, 1, 2, 2, 2, 1), 201603.11563875465, 473
    ),
    (9, 0.0, "height"): ((1, 0, 1, 2, 3, 2, 2, 1, 2), 14.0, 0),
    (9, 0.0, "precision"): ((4, 0, 1, 1, 3, 2, 2, 0, 1), 0.6666666666666666, 0),
    (9, 0.0, "discernibility"): ((1, 1, 1, 2, 3, 2, 2, 1, 1), 33627534.0, 0),
    (9, 0.0, "non-uniform entropy"): ((2, 1, 1, 1, 3, 2, 2, 1, 1), 407289.5388925299, 0),
    (9, 0.0, "average class size"): ((2, 1, 1, 1, 3, 2, 2, 1, 1), 125.675, 0),
    (9, 0.0, "loss"): ((4, 0, 1, 1, 3, 2, 2, 0, 1), 0.5731509655759612, 0),
    (9, 0.0, "non-uniform entropy, suppressed as *"): (
        (2, 1, 1, 1, 3, 2, 2, 1, 1), 407289.5388925299, 0
    ),
    (9, 0.02, "height"): ((1, 0, 1, 1, 1, 2, 1, 0, 2), 9.0, 563),
    (9, 0.02, "precision"): ((4, 0, 0, 1, 1, 1, 1, 0, 2), 0.42592592592592593, 511),
    (9, 0.02, "discernibility"): ((0, 0, 1, 2, 3, 2, 2, 1, 1), 7220555.0, 105),
    (9, 0.02, "non-uniform entropy"): ((0, 0, 1, 1, 3, 2, 2, 1, 1), 285604.7496447584, 309),
    (9, 0.02, "average class size"): ((0, 1, 1, 2, 3, 2, 2, 1, 0), 9.35314465408805, 419),
    (9, 0.02, "loss"): ((3, 0, 0, 2, 2, 1, 1, 0, 2), 0.31371303533111894, 506),
    (9, 0.02, "non-uniform entropy, suppressed as *"): (
        (0, 0, 1, 1, 3, 2, 2, 1, 1), 286873.70073744486, 309
    ),
}  # fmt: skip


@cache
def arx_adult() -> dict[str, Generalisation]:
    """Adult's 9 QIs under ARX's own hierarchy files, as the benchmark loads them."""
    frame = pl.read_csv(ADULT / "adult.csv", separator=";", infer_schema=False)
    return {
        q: hierarchy_for(f"csv:{ADULT / f'adult_hierarchy_{q}.csv'}").apply(frame.get_column(q))
        for q in QIS9
    }


def _qis(n: int) -> list[Generalisation]:
    gens = arx_adult()
    return [gens[q] for q in QIS9[:n]]


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(GOLDEN), ids=lambda k: f"{k[0]}qis-{k[1]:.0%}-{k[2]}")
def test_adult_optimum_and_loss_unchanged(key: tuple[int, float, str]) -> None:
    n, limit, metric = key
    levels, loss, suppressed = GOLDEN[key]
    result = find_optimal(_qis(n), k=5, suppression_limit=limit, metric=metric)
    assert result.levels == levels
    assert result.loss == pytest.approx(loss, rel=1e-12)
    assert result.suppressed == suppressed


def _plain_codes(table: FrequencyTable) -> list[list[int]]:
    return [c.tolist() for c in table.codes]


@given(st.data())
@settings(max_examples=120)
def test_rolled_up_tables_read_their_codes_off_the_keys(data: st.DataObject) -> None:
    """A chain of roll-ups (through the base's memo and through decoded tables) gives the
    codes, sensitive codes and counts of grouping the rows at the target directly."""
    qis, sensitive, _ = data.draw(datasets())
    tracked = data.draw(st.booleans())
    codes = sensitive.codes if tracked else None
    lookups = Lookups(qis, len(sensitive.labels[0]) if tracked else 1)
    base, _ = build_table(lookups, (0,) * len(qis), codes)
    memo: dict[tuple[int, int], np.ndarray] = {}
    table = base
    for _ in range(data.draw(st.integers(1, 3))):
        target = tuple(
            data.draw(st.integers(lv, g.height)) for lv, g in zip(table.levels, qis, strict=True)
        )
        table = roll_up(table, target, lookups, memo if table is base else None)
        direct, _ = build_table(lookups, target, codes)
        assert np.array_equal(table.keys, direct.keys)
        assert np.array_equal(table.counts, direct.counts)
        assert _plain_codes(table) == _plain_codes(direct)
        if tracked:
            assert table.sensitive is not None and direct.sensitive is not None
            assert table.sensitive.tolist() == direct.sensitive.tolist()
        else:
            assert table.sensitive is None
        assert table.nbytes == direct.nbytes
        # From the base again, through the memo filled above: the same table.
        again = roll_up(base, target, lookups, memo)
        assert np.array_equal(again.keys, table.keys)
        assert _plain_codes(again) == _plain_codes(table)


@given(
    heights=st.lists(st.integers(0, 20), min_size=1, max_size=6),
    nodes=st.lists(st.lists(st.integers(0, 20), min_size=6, max_size=6), max_size=12),
    target=st.lists(st.integers(0, 20), min_size=6, max_size=6),
)
@settings(max_examples=200)
def test_packed_cache_lookup_picks_as_the_plain_one(
    heights: list[int], nodes: list[list[int]], target: list[int]
) -> None:
    """The guard-bit comparison finds the same cached table as comparing level by level
    (and with tops too wide to pack, the plain comparison is used)."""
    d = len(heights)
    values = tuple(str(v) for v in range(50))  # 50 rows, 50 values: the base has 50 entries
    qis = [
        Generalisation(
            f"q{i}",
            tuple(f"l{lv}" for lv in range(h + 1)),
            np.arange(50, dtype=np.int32),
            (values, *(("*",) for _ in range(h))),
            (np.arange(50, dtype=np.int32), *(np.zeros(50, np.int32) for _ in range(h))),
        )
        for i, h in enumerate(heights)
    ]
    base, _ = build_table(Lookups(qis), (0,) * d)
    assert base.size == 50
    packed = TableCache(base, 1 << 20, heights)
    plain = TableCache(base, 1 << 20)
    wide = TableCache(base, 1 << 20, [1 << 20] * d)
    tables = []
    for i, node in enumerate(nodes):
        levels = tuple(min(lv, h) for lv, h in zip(node, heights, strict=False))
        counts = np.ones(len(nodes) - i, dtype=np.int64)  # sizes differ: the pick is unique
        table = FrequencyTable(levels, counts, np.arange(len(counts)), 1, False, (1,) * d)
        tables.append(table)
        for table_cache in (packed, plain, wide):
            table_cache.put(table)
    goal = tuple(min(lv, h) for lv, h in zip(target, heights, strict=False))
    expected = min(  # smaller than the base, or the base itself
        (t for t in tables if all(a <= b for a, b in zip(t.levels, goal, strict=True))),
        key=lambda t: t.size,
        default=base,
    )
    assert expected.size < base.size or expected is base
    assert packed.source(goal) is plain.source(goal) is wide.source(goal) is expected


@given(
    heights=st.lists(st.integers(0, 3), min_size=1, max_size=6),
    data=st.data(),
)
@settings(max_examples=150)
def test_tagging_by_slices_tags_the_up_and_down_sets(
    heights: list[int], data: st.DataObject
) -> None:
    """Tagging a box of slices of the statuses (one axis per QI) tags exactly the nodes
    ≥ a passing node / ≤ a failing one that were still unclassified, and counts them."""
    lattice = Lattice(heights)
    levels = lattice.levels.astype(np.int64)
    state = _Search(
        lattice, lambda i: Evaluation(True, True, 0.0, 0.0), np.zeros(lattice.size), True
    )
    expected = np.zeros(lattice.size, dtype=np.int8)
    tagged = 0
    for index in data.draw(st.lists(st.integers(0, lattice.size - 1), max_size=20)):
        passed = data.draw(st.booleans())
        if passed:
            nodes = np.flatnonzero((levels >= levels[index]).all(axis=1))
        else:
            nodes = np.flatnonzero((levels <= levels[index]).all(axis=1))
        assert np.array_equal(
            np.sort(lattice.above(index) if passed else lattice.below(index)), nodes
        )
        fresh = nodes[expected[nodes] == 0]
        expected[fresh] = 1 if passed else 2
        tagged += len(fresh)
        state.tag(index, passed)
        assert np.array_equal(state.status, expected)
        assert state.tagged == tagged
