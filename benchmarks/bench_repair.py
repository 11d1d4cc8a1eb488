"""Benchmark: repairing mistyped fødselsnumre against a national register.

Builds a register of N persons (default 5.5 million: valid numbers from
``koble.synth.numbers``, names drawn from pools of common and rare names, birth dates, sex)
and M records (default 1 million), each a registered person's number with one random digit
substituted or two adjacent digits swapped, with the person's name (a share written without
æ/ø/å, a share with the first and last name swapped, a share with no name but the birth
date). Runs :func:`koble.recovery.repair.repair` and prints a table: the time of the stage
(and, apart, of the register's one-off number index), records per second, and how many
records were repaired to their true person, to someone else (must be 0), marked ambiguous
or left. Target: the stage under 10 s for 1 M records against 5.5 M persons on this machine.

    .venv/bin/python benchmarks/bench_repair.py [--persons 5500000] [--records 1000000] \
        [--threads T]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

from _report import cpu_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=5_500_000)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--threads", type=int, default=0, help="Polars threads (0 = all)")
    args = parser.parse_args()
    if args.threads:
        os.environ["POLARS_MAX_THREADS"] = str(args.threads)  # must precede the polars import

    import numpy as np
    import polars as pl

    from koble.recovery.contract import RECORD_SCHEMA
    from koble.recovery.register import Register
    from koble.recovery.repair import repair
    from koble.synth.numbers import KIND_FNR, format_ids, person_numbers

    rng = np.random.default_rng(args.seed)
    n, m = args.persons, args.records
    start = time.perf_counter()
    birth = rng.integers(-25_000, 19_000, n).astype(np.int32)  # 1901-2022
    male = rng.random(n) < 0.5
    ids = person_numbers(rng, birth, male, np.full(n, KIND_FNR, np.int8), rng.random(n) < 0.01)
    common = ["Hansen", "Johansen", "Olsen", "Larsen", "Andersen", "Pedersen", "Nilsen"]
    rare = [f"{a}{b}" for a in ("Bjørn", "Sæt", "Ås", "Løk", "Berg", "Haug", "Vik", "Dal",
                                "Li", "Nes", "Ru", "Stor", "Lund", "Moe", "Aa", "Ødegå")
            for b in ("rud", "stad", "heim", "vik", "dal", "li", "bakken", "haug", "nes",
                      "seth", "land", "rød", "mo", "berg", "gård")]  # fmt: skip
    lasts = np.array(common + rare)
    weight = np.r_[np.full(len(common), 30.0), 1.0 / np.arange(1, len(rare) + 1)]
    first_pool = np.array(["Ole", "Lars", "Per", "Jan", "Bjørn", "Håkon", "Kari", "Anne",
                           "Ingrid", "Åse", "Mari", "Solveig", "Nora", "Emma", "Jakob",
                           "Noah", "Sofie", "Ella", "Ida", "Jon"])  # fmt: skip
    persons = pl.DataFrame({
        "person_id": format_ids(ids),
        "first_name": first_pool[rng.integers(0, len(first_pool), n)],
        "last_name": lasts[rng.choice(len(lasts), n, p=weight / weight.sum())],
        "birth_date": pl.Series(birth).cast(pl.Date),
        "sex": np.where(male, "M", "F"),
    })  # fmt: skip
    register = Register.from_frames(persons)
    build_s = time.perf_counter() - start

    start = time.perf_counter()
    _ = register.ids
    index_s = time.perf_counter() - start

    pick = rng.choice(n, m, replace=False)
    truth = ids[pick]
    digits = (truth[:, None] // 10 ** np.arange(10, -1, -1)) % 10
    swap = rng.random(m) < 0.5
    pos = np.where(swap, rng.integers(0, 10, m), rng.integers(0, 11, m))
    rows = np.arange(m)
    swap &= digits[rows, pos] != digits[rows, np.minimum(pos + 1, 10)]  # else: substitute
    new = digits.copy()
    new[rows, pos] = np.where(swap, digits[rows, np.minimum(pos + 1, 10)],
                              (digits[rows, pos] + rng.integers(1, 10, m)) % 10)  # fmt: skip
    new[rows[swap], pos[swap] + 1] = digits[rows[swap], pos[swap]]
    typo = new @ 10 ** np.arange(10, -1, -1)
    changed = typo != truth  # always: every record has a typo
    chosen = persons[pick]
    style = rng.random(m)
    records = pl.DataFrame({
        "record_id": pl.Series(np.arange(m)).cast(pl.String),
        "fnr": format_ids(typo),
        "first_name": chosen["first_name"],
        "last_name": chosen["last_name"].str.replace("ø", "o").str.replace("æ", "ae")
        .str.replace("Å", "Aa"),
        "birth_date": chosen["birth_date"], "sex": chosen["sex"],
    }).with_columns(
        middle_name=pl.lit(None, pl.String), death_date=pl.lit(None, pl.Date),
        kommune=pl.lit(None, pl.String),
    ).with_columns(  # 3 % first/last swapped, 5 % no name (birth date only)
        first_name=pl.when(pl.Series(style < 0.03)).then("last_name")
        .when(pl.Series(style > 0.95)).then(None).otherwise("first_name"),
        last_name=pl.when(pl.Series(style < 0.03)).then("first_name")
        .when(pl.Series(style > 0.95)).then(None).otherwise("last_name"),
    ).filter(pl.Series(changed)).select(RECORD_SCHEMA.names())  # fmt: skip
    truth_frame = pl.DataFrame({"record_id": records["record_id"],
                                "truth": format_ids(truth[changed])})  # fmt: skip

    start, cpu = time.perf_counter(), time.process_time()
    result = repair(records, register)
    repair_s, repair_cpu = time.perf_counter() - start, time.process_time() - cpu

    checked = result.linked.join(truth_frame, on="record_id")
    right = int((checked["person_id"] == checked["truth"]).sum())
    wrong = checked.height - right
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    table = [
        ("register persons", f"{n:,}"),
        ("records (one typo each)", f"{records.height:,}"),
        ("build register (s)", f"{build_s:.1f}"),
        ("number index, once per register (s)", f"{index_s:.2f}"),
        ("repair stage (s)", f"{repair_s:.2f}"),
        ("repair stage, CPU time of all threads (s)", f"{repair_cpu:.2f}"),
        ("records per second", f"{records.height / repair_s:,.0f}"),
        ("repaired to the true person", f"{right:,} ({right / records.height:.2%})"),
        ("repaired to someone else", f"{wrong:,}"),
        ("marked ambiguous", f"{result.pending.height:,}"),
        ("left unrepaired", f"{result.remaining.height - result.pending.height:,}"),
        ("peak RSS (GB)", f"{rss_gb:.1f}"),
        ("target: repair stage < 10 s", "met" if repair_s < 10 else "MISSED"),
    ]
    print(machine_info(args.threads, pl.__version__))
    print()
    print("| measure | value |")
    print("|---|---:|")
    for key, value in table:
        print(f"| {key} | {value} |")


def machine_info(threads: int, polars_version: str) -> str:
    """The header every benchmark prints: CPU, cores, load, versions."""
    cpu = cpu_name()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"machine: {cpu}; {os.cpu_count()} cores (Polars threads: {threads or 'all'}); "
        f"load average {load}; Python {platform.python_version()}; Polars {polars_version}"
    )


if __name__ == "__main__":
    main()
