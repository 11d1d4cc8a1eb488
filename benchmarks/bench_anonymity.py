"""Benchmark: the optimal k-anonymity search (``find_optimal``) against ARX's targets and peers.

Three parts, each printed as a markdown table (the exact command and the machine's load
first):

1. **Adult** (30,162 records, ARX's hierarchies, in ``../shared/data/adult/``): the 8
   quasi-identifiers of the published benchmarks and all 9 (+ occupation), k = 5 with 0 % and
   2 % suppression, every metric: best-of-N time of ``find_optimal`` alone (hierarchies are
   built once, timed apart), the levels chosen and the loss (ARX's definitions for
   non-uniform entropy and loss). Targets, from ARX 3.9.2 run side by side on this machine:
   < 25 ms at 0 %, < 1 s at 2 %.
2. **Peers** on the same data: anjana's k-anonymity (a greedy, non-optimal generalisation
   with a suppression limit), its time and levels, scored with koble's metrics so the losses
   compare like for like; and pycanon's k-anonymity *check* of a released adult file against
   ``koble.anonymity.release.check_frame``. The peers pin old NumPy/pandas versions, so they
   live in a virtual environment of their own and run in a child process (see
   ``benchmarks/requirements-peers.txt``); when they are missing the rows say "not installed".
3. **Scale**: a synthetic adult-like table (adult's records resampled, 30 % of each column's
   values permuted independently so that new combinations appear; 5 million rows) and a
   synthetic IPLOS-like linked table (age 65-100, sex, kommune weighted by population, two
   service dates 2015-2025, an ICD-10 diagnosis; 5.5 million rows). Each case runs in a fresh
   child process: time to read the Parquet file, build the hierarchies, and find the optimum at
   k = 5 with 0 % and 2 % suppression; peak RSS from ``os.wait4``. Target: < 30 s and < 4 GB
   at 2 % on 5 million rows.
4. **Persons** (issue 13): an IPLOS-like longitudinal table (1 M persons, 1-20 service rows
   each, 5.5 M rows; age, sex, education constant per person) and the same generator at the
   demo's size (1,600 persons, 1.7 rows each). The person-set, row and (demo size) person-km
   models at k = 5, 0 % and 2 %, each in a fresh process as in part 3, with the persons whose
   released set of rows fewer than k share. Targets (person-set): < 60 s and < 6 GB at 1 M
   persons, < 1 s at demo size. ``--only-persons`` runs this part alone.
5. **Command** (issue 14): the ``anonymise`` command as the CLI runs it
   (``anonymise_with_report``) on the 5 M-row adult-like table (9 QIs, k = 5, 2 %; Parquet,
   and CSV with ``--command-csv``) and the big person table, each in a fresh process, phase by
   phase; overhead = total - search. Target: overhead < 30 % of the search at 5 M rows.
   ``--only-command`` runs this part alone (``--command-adult-only``: without the persons;
   ``--command-persons-only``: the person table alone).

    .venv/bin/python benchmarks/bench_anonymity.py                 # everything (~10 min)
    .venv/bin/python benchmarks/bench_anonymity.py --skip-scale --skip-peers
    .venv/bin/python benchmarks/bench_anonymity.py --rows 500000   # smaller scale tables
    .venv/bin/python benchmarks/bench_anonymity.py --only-persons  # part 4 alone (~5 min)
    .venv/bin/python benchmarks/bench_anonymity.py --only-command  # part 5 alone (~3 min)
    .venv/bin/python benchmarks/bench_anonymity.py --only-command --command-csv --command-data DIR

Peers (once): ``python3.11 -m venv ../venv-peers && ../venv-peers/bin/pip install -r
benchmarks/requirements-peers.txt``; the script looks for ``../venv-peers/bin/python``
(``--peers-python`` to point elsewhere; the project's interpreter is used if they are
installed there).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
from pathlib import Path

import koble.cli  # the command's process setting (NumPy's huge pages), for every child

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _anonymity_adult import run_adult
from _anonymity_base import ADULT_DIR
from _anonymity_command import command_worker, run_command
from _anonymity_peers import peer_worker, run_peers
from _anonymity_persons import generate_persons, persons_worker, run_persons
from _anonymity_scale import generate, run_scale, scale_worker
from _report import code_state, load, shown_python, verdict


def main() -> None:
    """Parse the options, then do a child's one job (a worker or a generator) or run the parts
    asked for, each printing its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--skip-scale", action="store_true", help="skip the 5M-row tables")
    parser.add_argument("--skip-peers", action="store_true", help="skip anjana and pycanon")
    parser.add_argument("--skip-persons", action="store_true", help="skip the person models")
    parser.add_argument(
        "--only-persons", action="store_true", help="run the person models only (part 4)"
    )
    parser.add_argument("--rows", type=int, help="rows of both scale tables (5M / 5.5M)")
    parser.add_argument("--persons", type=int, help="persons of the big person table (1M)")
    parser.add_argument(
        "--persons-km-big", action="store_true", help="also person-km on the big person table"
    )
    parser.add_argument("--repeat", type=int, default=3, help="best of this many (adult)")
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=["non-uniform entropy", "loss", "precision", "discernibility", "height",
                 "average class size"],
        help="metrics for the adult table (the first is used for the released file)",
    )  # fmt: skip
    parser.add_argument("--scale-metric", default="non-uniform entropy")
    parser.add_argument("--threads", type=int, help="Polars threads (default: all cores)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--adult-dir", type=Path, default=ADULT_DIR)
    parser.add_argument("--peers-python", type=Path, help="interpreter with anjana, pycanon")
    parser.add_argument("--tmp", help="directory for the scale tables (about 150 MB)")
    parser.add_argument("--profile-dir", help="write a cProfile of each scale search here")
    parser.add_argument("--peer-worker", help=argparse.SUPPRESS)
    parser.add_argument("--scale-worker", help=argparse.SUPPRESS)
    parser.add_argument("--persons-worker", help=argparse.SUPPRESS)
    parser.add_argument("--command-worker", help=argparse.SUPPRESS)
    parser.add_argument(
        "--only-command", action="store_true", help="run the anonymise command only (part 5)"
    )
    parser.add_argument("--skip-command", action="store_true", help="skip part 5")
    parser.add_argument("--command-csv", action="store_true", help="part 5: also a CSV input")
    parser.add_argument(
        "--command-adult-only", action="store_true", help="part 5: the adult-like case alone"
    )
    parser.add_argument("--command-repeat", type=int, default=2,
                        help="part 5: runs of each case, the fastest kept [2]")  # fmt: skip
    parser.add_argument(
        "--command-persons-only", action="store_true", help="part 5: the person table alone"
    )
    parser.add_argument(
        "--command-data",
        help="part 5: keep the generated inputs in this directory and reuse them next time",
    )
    parser.add_argument("--generate", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--generate-persons", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer_worker:
        peer_worker(json.loads(args.peer_worker))
        return
    if args.threads:
        os.environ["POLARS_MAX_THREADS"] = str(args.threads)  # before polars is imported
    if args.generate:
        kind, rows, seed, out = args.generate
        generate(kind, int(rows), int(seed), args.adult_dir, Path(out))
        print("{}")
        return
    if args.scale_worker:
        scale_worker(json.loads(args.scale_worker))
        return
    if not (args.adult_dir / "adult.csv").is_file():
        parser.error(
            f"no adult.csv in {args.adult_dir}: the public adult benchmark data (../shared/data/"
            "adult beside the project) is needed; point --adult-dir at it"
        )
    if args.generate_persons:
        persons, mean, seed, out = args.generate_persons
        generate_persons(int(persons), float(mean), int(seed), Path(out))
        print("{}")
        return
    if args.persons_worker:
        persons_worker(json.loads(args.persons_worker))
        return
    if args.command_worker:
        command_worker(json.loads(args.command_worker))
        return

    import numpy as np
    import polars as pl

    command = shlex.join([shown_python(), *sys.argv])
    print(f"# koble anonymity benchmark\n\n```\n{command}\n```\n")
    print(f"Code: {code_state('anonymity')}\n")
    print(
        f"{platform.node()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, NumPy {np.__version__}, "
        f"Polars {pl.__version__}, {pl.thread_pool_size()} Polars threads, NumPy huge pages "
        f"{'on' if os.environ[koble.cli.HUGEPAGE_VARIABLE] == '1' else 'off'} (the koble "
        f"command's default: {koble.cli.HUGEPAGE_VARIABLE}); at start: "
        f"{load()}\n"
    )
    if args.only_command:
        met = run_command(args)
        print(f"Command overhead target: {verdict(met)}.\n\nFinished; {load()}.")
        return
    if not args.only_persons:
        adult = run_adult(args)
        if not args.skip_peers:
            run_peers(args, adult)
        if not args.skip_scale:
            run_scale(args)
    if not args.skip_persons:
        met = run_persons(args)
        print(f"Person-level targets: {verdict(met)}.\n")
    if not args.skip_command and not args.only_persons:
        met = run_command(args)
        print(f"Command overhead target: {verdict(met)}.\n")
    print(f"Finished; {load()}.")


if __name__ == "__main__":
    main()
