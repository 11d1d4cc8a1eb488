"""The faster ``set_groups`` (items hashed once per distinct item, persons sorted by one hash
with a lexsort only on a collision) groups and numbers persons exactly as the plain
implementation did; and the IPLOS-like benchmark's person part runs end to end."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koble.anonymity import longitudinal
from koble.anonymity.longitudinal import _M1, _M2, _SALT, _mix, _sum_by, _sum_mixed, set_groups

Int64s = npt.NDArray[np.int64]
BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_anonymity.py"


def _reference(
    item: Int64s, person: Int64s, n: int, a: npt.NDArray[np.uint64] | None = None
) -> tuple[Int64s, Int64s, npt.NDArray[np.bool_]]:
    """set_groups as first written: every entry hashed, persons ordered by lexsort((b, a))."""
    count = np.bincount(person, minlength=n)
    present = count > 0
    if a is None:
        a = _sum_by(person, _mix(item, _SALT), n)
    b = _sum_by(person, _mix(item, _M2), n)
    with np.errstate(over="ignore"):
        b = b ^ _mix(count, _M1)
    who = np.flatnonzero(present)
    order = np.lexsort((b[who], a[who]))
    sa, sb = a[who][order], b[who][order]
    flags = np.ones(len(who), dtype=np.bool_)
    flags[1:] = (sa[1:] != sa[:-1]) | (sb[1:] != sb[:-1])
    numbers = np.cumsum(flags, dtype=np.int64) - 1
    group = np.full(n, -1, dtype=np.int64)
    group[who[order]] = numbers
    sizes = np.bincount(numbers, minlength=int(numbers[-1]) + 1 if len(numbers) else 0)
    return group, sizes.astype(np.int64), present


def _entries(pairs: set[tuple[int, int]]) -> tuple[Int64s, Int64s]:
    ordered = sorted(pairs)
    item = np.asarray([i for i, _ in ordered], dtype=np.int64)
    person = np.asarray([p for _, p in ordered], dtype=np.int64)
    return item, person


pairs_strategy = st.sets(st.tuples(st.integers(0, 12), st.integers(0, 30)), max_size=150)


@settings(max_examples=200, deadline=None)
@given(pairs_strategy)
def test_set_groups_equals_the_plain_implementation(pairs: set[tuple[int, int]]) -> None:
    item, person = _entries(pairs)
    got = set_groups(item, person, 31)
    want = _reference(item, person, 31)
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g, w)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 2000), max_size=300), st.integers(0, 50))
def test_sum_mixed_equals_hashing_every_entry(items: list[int], seed: int) -> None:
    # Both branches: items spread over more values than entries, and repeated items.
    item = np.asarray(items, dtype=np.int64)
    person = np.random.default_rng(seed).integers(0, 7, len(item))
    for salt in (_SALT, _M2):
        assert np.array_equal(
            _sum_mixed(item, person, 7, salt), _sum_by(person, _mix(item, salt), 7)
        )


def test_a_collision_of_the_first_hash_falls_back_to_lexsort(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every person gets the same first hash (as if they all collided): the groups must still
    # be told apart by the second one, and numbered in lexsort order.
    rng = np.random.default_rng(7)
    item, person = _entries({(int(i), int(p)) for i, p in rng.integers(0, 6, (120, 2))})
    real = longitudinal._sum_mixed
    constant = np.full(6, 12345, dtype=np.uint64)

    def colliding(item: Int64s, person: Int64s, n: int, salt: np.uint64) -> npt.NDArray[np.uint64]:
        return constant.copy() if salt == _SALT else real(item, person, n, salt)

    monkeypatch.setattr(longitudinal, "_sum_mixed", colliding)
    got = longitudinal.set_groups(item, person, 6)
    want = _reference(item, person, 6, a=constant.copy())
    assert len(want[1]) > 1  # several groups share the first hash
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g, w)


def _bench() -> ModuleType:
    """The benchmark's person part (``benchmarks/_anonymity_persons.py``), once the script is
    loaded as it runs: loading it puts ``benchmarks/`` on ``sys.path`` for its parts."""
    spec = importlib.util.spec_from_file_location("bench_anonymity", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_anonymity"] = module
    spec.loader.exec_module(module)
    return importlib.import_module("_anonymity_persons")


def test_benchmark_persons_part_generates_and_releases_no_person_under_k(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _bench()
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    bench.generate_persons(400, 1.7, 3, first)
    bench.generate_persons(400, 1.7, 3, second)
    assert first.read_bytes() == second.read_bytes()  # deterministic for a seed
    import polars as pl

    frame = pl.read_parquet(first)
    per_person = frame.group_by(bench.PERSON_COLUMN).agg(
        pl.len(), *(pl.col(c).n_unique() for c in ("education", "sex", "age"))
    )
    assert per_person.height == 400
    assert per_person["len"].max() <= bench.MAX_ROWS_PER_PERSON  # type: ignore[operator]
    assert 1.4 < frame.height / 400 < 2.0
    assert (per_person.select("education", "sex", "age").max_horizontal() == 1).all()
    spec = {"path": str(first), "model": "person-set", "m": 2, "limit": 0.02,
            "metric": "non-uniform entropy"}  # fmt: skip
    capsys.readouterr()
    bench.persons_worker(spec)
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["rows"] == frame.height and report["persons"] == 400
    assert report["feasible"] and report["under_k"] == 0
    assert report["suppressed"] <= 0.02 * frame.height
