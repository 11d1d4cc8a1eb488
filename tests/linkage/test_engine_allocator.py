"""The DuckDB engine's allocator returns freed memory to the system at once.

DuckDB's allocator (jemalloc) otherwise keeps what a query freed for seconds: a linkage
step after a large extract then starts gigabytes above what is in use, and a run capped
with ``--memory-limit`` peaks far above its cap (``benchmarks/bench_scale.py``'s peak RSS
by step). The engine turns on the allocator's background threads, which purge it.
"""

from __future__ import annotations

from koble.linkage.engine import DuckDBEngine


def _setting(engine: DuckDBEngine, name: str) -> object:
    row = engine._con.execute("SELECT current_setting(?)", [name]).fetchone()
    assert row is not None
    return row[0]


def test_the_allocator_purges_in_the_background() -> None:
    engine = DuckDBEngine(memory_limit="256MB")
    try:
        assert _setting(engine, "allocator_background_threads") is True
        assert _setting(engine, "memory_limit") == "244.1 MiB"  # 256 MB, in MiB
    finally:
        engine.close()
