"""Benchmark: blind pseudonyms (RFC 9497 OPRF, ristretto255-SHA512) against the AES path.

Times, best of ``--repeat``, on N distinct valid fødselsnummer (default 10 000):

1. client ``blind``: validate, canonicalise, deduplicate and blind (koble.pseudonym.blind);
   and the hazmat ``blind_batch`` alone;
2. service ``BlindKey.evaluate`` on one thread, and split over ``--workers`` threads
   (libsodium is called through ctypes, which releases the GIL);
3. client ``BlindedBatch.finalize``: unblind (one shared inversion) and hash;
4. the default AES path, ``pseudonymise_values``, on the same N and on ``--aes-n`` values
   (it is too fast to time well on 10 000).

Prints elements/s, µs per element, how many times the AES path's time each step takes, and
the bytes per element on the wire.

    python benchmarks/bench_blind.py [--n 10000] [--repeat 3] [--workers 2] [--aes-n 1000000]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor

from _report import best_of, cpu_name

DOMAIN = "reseptregisteret"


def valid_numbers(n: int, seed: int) -> list[str]:
    """``n`` distinct valid fødselsnummer (real dates, classic check digits)."""
    import numpy as np

    from koble.registries.identifiers._rules import K1_WEIGHTS, K2_WEIGHTS

    rng = np.random.default_rng(seed)
    out: set[str] = set()
    while len(out) < n:
        size = 2 * (n - len(out)) + 100
        days = rng.integers(0, 36_500, size)
        dates = (np.datetime64("1925-01-01") + days.astype("timedelta64[D]")).astype(str)
        individual = rng.integers(0, 500, size)
        for date, number in zip(dates, individual, strict=True):
            body = f"{date[8:10]}{date[5:7]}{date[2:4]}{number:03d}"
            digits = [int(c) for c in body]
            k1 = -sum(w * d for w, d in zip(K1_WEIGHTS, digits, strict=True)) % 11
            k2 = -sum(w * d for w, d in zip(K2_WEIGHTS, [*digits, k1], strict=True)) % 11
            if k1 < 10 and k2 < 10:
                out.add(f"{body}{k1}{k2}")
    return sorted(out)[:n]


def machine_info() -> str:
    from koble.pseudonym.hazmat.sodium import sodium

    cpu = cpu_name()
    sodium()
    name = os.environ.get("KOBLE_LIBSODIUM") or ctypes.util.find_library("sodium") or "?"
    version = ctypes.CDLL(name).sodium_version_string
    version.restype = ctypes.c_char_p
    return (
        f"machine: {cpu}; {os.cpu_count()} cores; Python {platform.python_version()}; "
        f"libsodium {version().decode()} ({name})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000, help="distinct identifiers")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--aes-n", type=int, default=1_000_000, help="values for the AES rate")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    os.environ["POLARS_MAX_THREADS"] = "1"  # one core, as the OPRF steps; must precede polars

    import polars as pl

    from koble.pseudonym.blind import BlindKey, blind
    from koble.pseudonym.hazmat import oprf
    from koble.pseudonym.insecure_cleartext import keyset_from_key
    from koble.pseudonym.pseudonymise import pseudonymise_values

    n = args.n
    numbers = valid_numbers(n, args.seed)
    keyset = keyset_from_key(bytes(32))  # a benchmark may use a fixed key
    key = BlindKey.from_keyset(keyset, DOMAIN)
    randbytes = os.urandom

    blind_s, batch = best_of(args.repeat, lambda: blind(numbers, randbytes))
    assert len(batch.blinded) == n, "the numbers must be distinct"
    inputs = [b"fnr:" + number.encode() for number in numbers]
    raw_blind_s, _ = best_of(args.repeat, lambda: oprf.blind_batch(inputs, randbytes))
    evaluate_s, evaluated = best_of(args.repeat, lambda: key.evaluate(batch.blinded))

    def evaluate_threaded() -> list[bytes]:
        size = -(-n // args.workers)
        chunks = [batch.blinded[i : i + size] for i in range(0, n, size)]
        with ThreadPoolExecutor(args.workers) as pool:
            return [e for part in pool.map(key.evaluate, chunks) for e in part]

    threaded_s, threaded = best_of(args.repeat, evaluate_threaded)
    assert threaded == evaluated

    finalize_s = float("inf")
    for _ in range(args.repeat):  # a batch finalises once: blind afresh each time, untimed
        fresh = blind(numbers, randbytes)
        answer = key.evaluate(fresh.blinded)
        start = time.perf_counter()
        pseudonyms = fresh.finalize(answer)
        finalize_s = min(finalize_s, time.perf_counter() - start)
    assert len(pseudonyms) == n and len(set(pseudonyms)) == n

    compact = pl.Series("fnr", numbers)
    aes_s, _ = best_of(args.repeat, lambda: pseudonymise_values(keyset, DOMAIN, compact))
    big = pl.Series("fnr", (numbers * (args.aes_n // n + 1))[: args.aes_n])
    aes_big_s, _ = best_of(args.repeat, lambda: pseudonymise_values(keyset, DOMAIN, big))
    aes_rate = args.aes_n / aes_big_s

    rows = [
        ("client: blind() (validate, dedupe, blind)", n, blind_s),
        ("client: hazmat blind_batch alone", n, raw_blind_s),
        ("service: BlindKey.evaluate, 1 thread", n, evaluate_s),
        (f"service: BlindKey.evaluate, {args.workers} threads", n, threaded_s),
        ("client: BlindedBatch.finalize", n, finalize_s),
        ("round trip: blind + evaluate + finalize", n, blind_s + evaluate_s + finalize_s),
        ("default AES: pseudonymise_values", n, aes_s),
        ("default AES: pseudonymise_values", args.aes_n, aes_big_s),
    ]
    print(f"\n{machine_info()}")
    print(f"{n:,} distinct fødselsnummer, best of {args.repeat}; Polars on 1 thread\n")
    print(
        f"| {'step':<44} | {'elements':>9} | {'seconds':>8} | {'elements/s':>11} "
        f"| {'µs/element':>10} | {'x AES time':>10} |"
    )
    print(f"|{'-' * 46}|{'-' * 10}:|{'-' * 9}:|{'-' * 12}:|{'-' * 11}:|{'-' * 11}:|")
    for name, count, seconds in rows:
        print(
            f"| {name:<44} | {count:9,} | {seconds:8.3f} | {count / seconds:11,.0f} "
            f"| {seconds / count * 1e6:10.2f} | {aes_rate * seconds / count:10,.0f} |"
        )
    element = oprf.ELEMENT_BYTES
    print(
        f"\nwire: {element} bytes an element each way ({element * 2} hex characters, "
        f"{4 * -(-element // 3)} base64), per distinct identifier; the AES path sends the "
        "identifiers themselves to the service"
    )
    population = 5_500_000
    print(
        f"population register ({population:,}): evaluate ≈ {population * evaluate_s / n / 60:.1f} "
        f"min on one core, {population * threaded_s / n / 60:.1f} min on {args.workers}; "
        f"AES ≈ {population / aes_rate:.1f} s"
    )


if __name__ == "__main__":
    main()
