"""Benchmark: pseudonymising a national column of identifiers from Parquet.

For each size, writes N valid fødselsnummer (column ``fnr``, plus a ``payload`` column that
must pass through) to a temporary Parquet file and times, best of ``--repeat``:

1. koble's full path: read the Parquet file, ``pseudonymise_frame`` (validate, pseudonymise,
   account for every row), write the output Parquet file. Above ``--batch-rows`` rows the
   file is streamed in row-group batches (``ParquetFile.iter_batches``), as an operator would;
2. the pseudonymise step alone: ``pseudonymise_values`` on already-validated compact strings;
3. the physical limit: raw AES-256-ECB over the same identifiers already packed into one
   buffer of 16-byte blocks, one ``update`` call;
4. per-row AES-SIV (what SSB's pseudonymisation service uses by default) and per-row
   HMAC-SHA256, in a Python loop on a sample, extrapolated to N.

Targets: the pseudonymise step within 2x of the raw AES limit and at least 20x faster than
per-row AES-SIV. Also prints where the pseudonymise step spends its time and the peak RSS.

    python benchmarks/bench_pseudonym.py [--n 5500000 50000000] [--threads T] [--repeat R]
                                         [--batch-rows B] [--sample 200000]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from _report import cpu_name

if TYPE_CHECKING:
    import polars as pl

    from koble.pseudonym.keys import Keyset

T = TypeVar("T")
DOMAIN = "reseptregisteret"
KEY = bytes(32)  # a benchmark may use a fixed key
GENERATE_CHUNK = 2_000_000  # rows per generated row group: keeps generation memory small
TARGET_VS_RAW = 2.0
TARGET_VS_SIV = 20.0


@dataclass(frozen=True)
class Row:
    step: str
    n: int
    seconds: float
    sampled: int = 0  # rows actually run, when the time is extrapolated from a sample


@dataclass(frozen=True)
class SizeResult:
    n: int
    rows: list[Row]
    full: Row
    step: Row
    raw: Row
    into: Row
    siv: Row
    stages: list[tuple[str, float]]
    peak_rss_gib: float
    generate_s: float
    input_mib: float
    output_mib: float


def peak_rss_gib() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def best_of(repeat: int, fn: Callable[[], T]) -> tuple[float, T]:
    best, result = float("inf"), None
    for _ in range(repeat):
        result = None  # free the previous result before the next run
        gc.collect()
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    assert result is not None
    return best, result


def generate(path: Path, n: int, seed: int) -> None:
    """N valid fødselsnummer (births 1925-2024, classic check digits) as a Parquet file.

    Built in chunks of whole columns with NumPy; draws whose check digit would be 10 are
    dropped and redrawn. Each chunk is one row group.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from koble.registries.identifiers._rules import K1_WEIGHTS, K2_WEIGHTS
    from koble.synth.numbers import format_ids

    rng = np.random.default_rng(seed)
    k1w = np.array(K1_WEIGHTS, dtype=np.int64)
    k2w = np.array(K2_WEIGHTS, dtype=np.int64)
    powers = 10 ** np.arange(8, -1, -1, dtype=np.int64)
    first = np.datetime64("1925-01-01", "D")
    span = int((np.datetime64("2025-01-01", "D") - first).astype(np.int64))
    schema = pa.schema([("fnr", pa.string()), ("payload", pa.int64())])
    written = 0
    with pq.ParquetWriter(path, schema, compression="zstd", compression_level=3) as writer:
        while written < n:
            m = min(GENERATE_CHUNK, n - written)
            ids = np.zeros(0, dtype=np.int64)
            while len(ids) < m:
                size = int((m - len(ids)) * 1.25) + 64
                dates = first + rng.integers(0, span, size).astype("timedelta64[D]")
                year = dates.astype("datetime64[Y]").astype(np.int64) + 1970
                month_start = dates.astype("datetime64[M]")
                month = month_start.astype(np.int64) % 12 + 1
                day = (dates - month_start.astype("datetime64[D]")).astype(np.int64) + 1
                # individual numbers 000-499 for 1900-1999, 500-999 for 2000-2039
                individual = rng.integers(0, 500, size) + 500 * (year >= 2000)
                stem = ((day * 100 + month) * 100 + year % 100) * 1000 + individual
                digits = (stem[:, None] // powers) % 10
                k1 = (-(digits @ k1w)) % 11
                k2 = (-(digits @ k2w[:9] + k2w[9] * k1)) % 11
                ok = (k1 < 10) & (k2 < 10)
                ids = np.concatenate([ids, (stem * 100 + k1 * 10 + k2)[ok]])
            ids = ids[:m]
            batch = pa.table(
                {"fnr": format_ids(ids), "payload": pa.array(np.arange(written, written + m))},
                schema=schema,
            )
            writer.write_table(batch)
            written += m


def full_path_frame(src: Path, dst: Path, keyset: Keyset) -> int:
    """Read the whole file into one frame, pseudonymise it, write it."""
    import polars as pl

    from koble.pseudonym.pseudonymise import pseudonymise_frame

    frame = pl.read_parquet(src)
    result = pseudonymise_frame(frame, "fnr", keyset=keyset, domain=DOMAIN)
    result.table.write_parquet(dst, compression="zstd", compression_level=3)
    assert result.report.reconciled
    return result.report.pseudonymised


def full_path_stream(src: Path, dst: Path, keyset: Keyset, batch_rows: int) -> int:
    """Stream the file in row-group batches: read, pseudonymise and write one batch at a time."""
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq

    from koble.pseudonym.pseudonymise import pseudonymise_frame

    done = 0
    writer = None
    try:
        for batch in pq.ParquetFile(src).iter_batches(batch_size=batch_rows):
            frame = pl.from_arrow(pa.Table.from_batches([batch]))
            assert isinstance(frame, pl.DataFrame)
            result = pseudonymise_frame(frame, "fnr", keyset=keyset, domain=DOMAIN)
            assert result.report.reconciled
            table = result.table.to_arrow(compat_level=pl.CompatLevel.oldest())
            if writer is None:
                writer = pq.ParquetWriter(
                    dst, table.schema, compression="zstd", compression_level=3
                )
            writer.write_table(table)
            done += result.report.pseudonymised
    finally:
        if writer is not None:
            writer.close()
    return done


def per_row(sample: list[str], fn: Callable[[bytes], bytes]) -> float:
    gc.collect()
    start = time.perf_counter()
    for value in sample:
        fn(value.encode())
    return time.perf_counter() - start


def stage_profile(keyset: Keyset, compact: pl.Series, repeat: int) -> Iterator[tuple[str, float]]:
    """Manual timers per stage of ``pseudonymise_values`` (best of ``repeat`` each)."""
    import polars as pl
    import pyarrow as pa

    from koble.pseudonym import scheme

    version = keyset.primary.version
    key = keyset._domain_key(version, DOMAIN)
    lengths_s, _ = best_of(repeat, lambda: compact.str.len_bytes().to_numpy())
    yield "encode: digit counts (str.len_bytes)", lengths_s
    cast_s, _ = best_of(repeat, lambda: compact.cast(pl.UInt64).to_numpy())
    yield "encode: parse digits (cast to UInt64)", cast_s
    encode_s, blocks = best_of(repeat, lambda: scheme.encode(compact, "fnr"))
    yield "encode: packing 16-byte blocks", encode_s - lengths_s - cast_s
    yield "encode total (scheme.encode)", encode_s
    aes_s, cipher = best_of(repeat, lambda: scheme.encrypt(key, blocks))
    yield "AES: cipher into a NumPy buffer (scheme.encrypt)", aes_s
    format_s, series = best_of(repeat, lambda: scheme.format_pseudonyms(version, cipher))
    arrow = series.to_arrow(compat_level=pl.CompatLevel.oldest())
    if isinstance(arrow, pa.ChunkedArray):
        arrow = arrow.combine_chunks()
    offsets, data = arrow.buffers()[1], arrow.buffers()[2]
    n = len(compact)
    convert_s, _ = best_of(
        repeat, lambda: pl.from_arrow(pa.LargeStringArray.from_buffers(n, offsets, data))
    )
    yield "format: hex digits (NumPy)", format_s - convert_s
    yield "format: Arrow -> Polars (pl.from_arrow)", convert_s
    yield "format total (scheme.format_pseudonyms)", format_s


def run_size(args: argparse.Namespace, n: int, tmp: Path) -> SizeResult:
    import hashlib
    import hmac

    import numpy as np
    import numpy.typing as npt
    import polars as pl
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESSIV

    from koble.pseudonym import scheme
    from koble.pseudonym.insecure_cleartext import keyset_from_key
    from koble.pseudonym.pseudonymise import pseudonymise_values
    from koble.registries.identifiers import validate_column

    repeat = args.repeat or (3 if n <= 10_000_000 else 1)
    keyset = keyset_from_key(KEY)
    src, dst = tmp / f"fnr-{n}.parquet", tmp / f"pseudonymised-{n}.parquet"
    started = time.perf_counter()
    generate(src, n, args.seed)
    generate_s = time.perf_counter() - started
    rows: list[Row] = []

    # 1. full path
    batch_rows = args.batch_rows
    if batch_rows and n > batch_rows:
        batches = -(-n // batch_rows)
        name = f"full path, streamed ({batches} batches of ≤{batch_rows:,})"
        full_s, done = best_of(repeat, lambda: full_path_stream(src, dst, keyset, batch_rows))
    else:
        name = "full path, one frame"
        full_s, done = best_of(repeat, lambda: full_path_frame(src, dst, keyset))
    assert done == n, f"{n - done} rows were rejected"
    full = Row(f"{name}: read → pseudonymise_frame → write", n, full_s)
    rows.append(full)
    output_mib = dst.stat().st_size / 2**20
    dst.unlink()

    # 2. the pseudonymise step alone, on validated compact strings
    checked = validate_column(pl.read_parquet(src, columns=["fnr"])["fnr"])
    assert bool(checked["valid"].all())
    compact = checked["compact"].rechunk()
    del checked
    step_s, pseudonyms = best_of(
        repeat, lambda: pseudonymise_values(keyset, DOMAIN, compact, "fnr")
    )
    step = Row("pseudonymise step alone (pseudonymise_values)", n, step_s)
    rows.append(step)

    # 3. the physical limit: raw AES-256-ECB over pre-packed blocks, one call
    key = keyset._domain_key(keyset.primary.version, DOMAIN)
    packed = scheme.encode(compact, "fnr").tobytes()

    def raw_aes() -> bytes:
        return Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(packed)

    raw_s, raw_out = best_of(repeat, raw_aes)
    raw = Row("raw AES-256-ECB, packed buffer, one update() call (limit)", n, raw_s)
    rows.append(raw)

    def raw_aes_into() -> npt.NDArray[np.uint8]:
        # the same cipher writing into a preallocated NumPy buffer: update() returns a new
        # bytes object whose 4 KiB pages are faulted in one by one; NumPy's large buffers
        # are backed by transparent huge pages
        out = np.empty(len(packed) + 15, dtype=np.uint8)
        Cipher(algorithms.AES(key), modes.ECB()).encryptor().update_into(packed, out.data)
        return out

    into_s, _ = best_of(repeat, raw_aes_into)
    into = Row("raw AES-256-ECB, update_into() a NumPy buffer (informative)", n, into_s)
    rows.append(into)
    check = 1000
    expected = np.frombuffer(raw_out[: 16 * check], np.uint8).reshape(-1, 16)
    got = pseudonyms.head(check).str.slice(4).to_list()
    assert got == [bytes(block).hex() for block in expected], "step and raw AES disagree"
    del raw_out, pseudonyms
    packed = b""  # free the buffer (the closures above still name it)

    # 4. per-row baselines on a sample, extrapolated to n
    sample = compact.head(min(args.sample, n)).to_list()
    siv = AESSIV(bytes(range(64)))
    siv_s = per_row(sample, lambda v: siv.encrypt(v, None)) * n / len(sample)
    siv_row = Row("per-row AES-SIV-256 (SSB default)", n, siv_s, len(sample))
    rows.append(siv_row)
    mac_s = per_row(sample, lambda v: hmac.digest(key, v, hashlib.sha256)) * n / len(sample)
    rows.append(Row("per-row HMAC-SHA256 (reference)", n, mac_s, len(sample)))
    del sample

    stages = list(stage_profile(keyset, compact, repeat))
    return SizeResult(
        n=n,
        rows=rows,
        full=full,
        step=step,
        raw=raw,
        into=into,
        siv=siv_row,
        stages=stages,
        peak_rss_gib=peak_rss_gib(),
        generate_s=generate_s,
        input_mib=src.stat().st_size / 2**20,
        output_mib=output_mib,
    )


def machine_info(threads: int) -> str:
    import cryptography
    import numpy as np
    import polars as pl
    import pyarrow as pa
    from cryptography.hazmat.backends.openssl import backend

    cpu = cpu_name()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"machine: {cpu}; {os.cpu_count()} cores ({usable} usable); "
        f"Polars threads: {pl.thread_pool_size()} (requested {threads})\n"
        f"Python {platform.python_version()}, polars {pl.__version__}, pyarrow {pa.__version__}, "
        f"numpy {np.__version__}, cryptography {cryptography.__version__} "
        f"({backend.openssl_version_text()})"
    )


def print_results(results: list[SizeResult], args: argparse.Namespace) -> None:
    print(f"\n{machine_info(args.threads)}\n")
    header = (
        f"| {'step':<78} | {'N':>10} | {'seconds':>8} | {'identifiers/s':>13} "
        f"| {'x raw AES time':>14} | {'x faster than AES-SIV':>21} |"
    )
    print(header)
    widths = [80, 12, 10, 15, 16, 23]
    print("|" + "|".join("-" * (w - 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|")
    for result in results:
        for row in result.rows:
            step = row.step + (f" [sampled {row.sampled:,}, extrapolated]" if row.sampled else "")
            print(
                f"| {step:<78} | {row.n:>10,} | {row.seconds:8.3f} | "
                f"{row.n / row.seconds:13,.0f} | {row.seconds / result.raw.seconds:13.1f}x | "
                f"{result.siv.seconds / row.seconds:20.1f}x |"
            )
    for result in results:
        n = result.n
        vs_raw = result.step.seconds / result.raw.seconds
        vs_siv = result.siv.seconds / result.step.seconds
        full_vs_siv = result.siv.seconds / result.full.seconds
        print(f"\nN = {n:,}:")
        print(
            f"  target: pseudonymise step ≤ {TARGET_VS_RAW:.0f}x raw AES limit: "
            f"{'met' if vs_raw <= TARGET_VS_RAW else 'MISSED'} ({vs_raw:.1f}x)"
        )
        print(
            f"  target: pseudonymise step ≥ {TARGET_VS_SIV:.0f}x faster than per-row AES-SIV: "
            f"{'met' if vs_siv >= TARGET_VS_SIV else 'MISSED'} ({vs_siv:.1f}x; "
            f"full path {full_vs_siv:.1f}x)"
        )
        print(
            f"  (against AES update_into() a NumPy buffer the step is "
            f"{result.step.seconds / result.into.seconds:.1f}x)"
        )
        print(
            f"  peak RSS so far {result.peak_rss_gib:.2f} GiB; input Parquet "
            f"{result.input_mib:,.0f} MiB (generated in {result.generate_s:.1f} s), "
            f"output {result.output_mib:,.0f} MiB"
        )
        print("  where the pseudonymise step spends its time:")
        for stage, seconds in result.stages:
            print(
                f"    {stage:<44} {seconds:7.3f} s  "
                f"{100 * seconds / result.step.seconds:5.1f} % of the step"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--n", type=int, nargs="+", default=[5_500_000, 50_000_000], help="identifiers per run"
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="Polars threads (default: all)"
    )
    parser.add_argument(
        "--repeat", type=int, default=0, help="best of this many runs (default 3, 1 above 10M)"
    )
    parser.add_argument(
        "--batch-rows",
        type=int,
        default=10_000_000,
        help="stream the full path in batches of this many rows above it (0: one frame)",
    )
    parser.add_argument("--sample", type=int, default=200_000, help="rows for per-row loops")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--tmp", type=Path, default=None, help="directory for the Parquet files")
    args = parser.parse_args()
    os.environ["POLARS_MAX_THREADS"] = str(args.threads)  # must precede the polars import

    results = []
    with tempfile.TemporaryDirectory(prefix="koble-bench-", dir=args.tmp) as tmp:
        for n in args.n:
            results.append(run_size(args, n, Path(tmp)))
            gc.collect()
    print_results(results, args)


if __name__ == "__main__":
    main()
