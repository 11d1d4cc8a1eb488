"""Benchmark: validating a national population of identifiers.

Compares koble's column API with python-stdnum's per-row ``is_valid`` (and koble's own scalar
API) on the same 5.5 million numbers, on one core, and prints a table. Target: the whole
Norwegian population validated in under one second on one core.

    python benchmarks/bench_identifiers.py [--n 5500000] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5_500_000, help="numbers to validate")
    parser.add_argument("--threads", type=int, default=1, help="Polars threads (1 = one core)")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many column runs")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    os.environ["POLARS_MAX_THREADS"] = str(args.threads)  # must precede the polars import

    import numpy as np
    import polars as pl
    from stdnum.no import fodselsnummer as stdnum_fnr

    from koble.registries.identifiers import fodselsnummer, validate_column
    from koble.registries.identifiers._rules import K1_WEIGHTS, K2_WEIGHTS

    rng = np.random.default_rng(args.seed)
    n = args.n
    size = int(n * 1.25) + 100  # some draws have a check digit of 10 and are dropped
    # Realistic numbers: real dates, classic check digits, 2 % damaged, 1 % with a space.
    days = rng.integers(0, 36_500, size)
    dates = np.datetime64("1925-01-01") + days.astype("timedelta64[D]")
    ymd = dates.astype("datetime64[D]").astype(str)
    frame = pl.DataFrame({"d": ymd}).select(
        pl.col("d").str.slice(8, 2) + pl.col("d").str.slice(5, 2) + pl.col("d").str.slice(2, 2)
    )
    body = frame["d"] + pl.Series(rng.integers(0, 500, size)).cast(pl.String).str.zfill(3)
    digits = np.frombuffer("".join(body.to_list()).encode(), np.uint8).reshape(size, 9) - 48
    k1 = (-(digits.astype(np.int32) @ np.array(K1_WEIGHTS))) % 11
    ten = np.column_stack([digits, k1 % 10])
    k2 = (-(ten.astype(np.int32) @ np.array(K2_WEIGHTS))) % 11
    numbers = body + pl.Series(k1 % 10).cast(pl.String) + pl.Series(k2 % 10).cast(pl.String)
    numbers = numbers.filter(pl.Series((k1 < 10) & (k2 < 10))).head(n)
    damaged = rng.random(n) < 0.02
    spaced = rng.random(n) < 0.01
    numbers = (
        pl.DataFrame({"x": numbers, "bad": damaged, "sp": spaced})
        .select(
            pl.when("bad")
            .then(pl.col("x").str.slice(0, 10) + "9")
            .when("sp")
            .then(pl.col("x").str.slice(0, 6) + " " + pl.col("x").str.slice(6))
            .otherwise("x")
        )
        .to_series()
        .rechunk()
    )
    as_list = numbers.to_list()

    def best_of(repeat: int, fn: object) -> tuple[float, object]:
        best, result = float("inf"), None
        for _ in range(repeat):
            start = time.perf_counter()
            result = fn()  # type: ignore[operator]
            best = min(best, time.perf_counter() - start)
        return best, result

    column_s, result = best_of(args.repeat, lambda: validate_column(numbers))
    valid_column = int(result["valid"].sum())  # type: ignore[index]
    scalar_s, valid_scalar = best_of(1, lambda: sum(map(fodselsnummer.is_valid, as_list)))
    stdnum_s, valid_stdnum = best_of(1, lambda: sum(map(stdnum_fnr.is_valid, as_list)))

    rows = [
        ("koble column API (validate_column)", column_s, valid_column),
        ("koble scalar API, per row", scalar_s, valid_scalar),
        ("python-stdnum is_valid, per row", stdnum_s, valid_stdnum),
    ]
    print(
        f"\nValidating {n:,} fødselsnummer ({args.threads} Polars thread(s), best of "
        f"{args.repeat} for the column API)\n"
    )
    print(
        f"| {'method':<36} | {'seconds':>8} | {'numbers/s':>13} | {'vs column':>9} | {'valid':>9} |"
    )
    print(f"|{'-' * 38}|{'-' * 10}:|{'-' * 14}:|{'-' * 10}:|{'-' * 10}:|")
    for name, seconds, valid in rows:
        print(
            f"| {name:<36} | {seconds:8.3f} | {n / seconds:13,.0f} | "
            f"{seconds / column_s:8.1f}x | {valid:9,} |"
        )
    verdict = "met" if column_s < 1.0 else "MISSED"
    print(f"\ntarget (< 1 s for {n:,} on one core): {verdict}")
    if valid_column != valid_scalar:
        print("ERROR: column and scalar APIs disagree", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
