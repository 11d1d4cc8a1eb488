"""Part 2 of ``bench_anonymity.py``: the Python peers on adult. anjana's greedy k-anonymity
(scored with koble's metrics) and pycanon's k check beside ``check_frame``. The peers pin old
NumPy/pandas versions, so they run in a child: the script again under their own interpreter
(``../venv-peers``), whose ``--peer-worker`` runs :func:`peer_worker`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from _anonymity_base import (
    LIMITS,
    QIS8,
    QIS9,
    REPO,
    SCRIPT,
    K,
    fmt_levels,
    fmt_loss,
    fmt_ms,
)
from _report import best_of, load, print_table

PEERS_PYTHON = REPO.parent / "venv-peers" / "bin" / "python"


def peer_worker(spec: dict[str, Any]) -> None:
    """Runs under the peers' interpreter: anjana and pycanon only (no koble, no polars)."""
    import contextlib
    import importlib
    import io
    from importlib.metadata import version

    # Imported by name: the peers (and pandas) are not in the project's environment.
    result: dict[str, Any] = {}
    try:
        pd = importlib.import_module("pandas")
        pycanon_anonymity = importlib.import_module("pycanon.anonymity")
        k_anonymity_inner = importlib.import_module("anjana.anonymity").k_anonymity_inner
    except ImportError as error:
        print(json.dumps({"error": f"not installed ({error.name})"}))
        return
    result["versions"] = {"anjana": version("anjana"), "pycanon": version("pycanon")}
    adult_dir = Path(spec["adult_dir"])
    data = pd.read_csv(adult_dir / "adult.csv", sep=";")
    anjana_rows = []
    for qis in spec["qi_sets"]:
        for percent in spec["percents"]:
            best, outcome = float("inf"), None
            for _ in range(spec["repeat"]):
                hierarchies = {
                    q: dict(pd.read_csv(adult_dir / f"adult_hierarchy_{q}.csv", sep=";",
                                        header=None))
                    for q in qis
                }  # fmt: skip
                start = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):
                    anon, suppressed, levels = k_anonymity_inner(
                        data, [], list(qis), spec["k"], percent, hierarchies
                    )
                best = min(best, time.perf_counter() - start)
                outcome = (anon, suppressed, levels)
            assert outcome is not None
            anon, suppressed, levels = outcome
            k_real = int(pycanon_anonymity.k_anonymity(anon, list(qis))) if len(anon) else 0
            anjana_rows.append(
                {
                    "qis": list(qis),
                    "percent": percent,
                    "seconds": best,
                    "levels": [int(levels.get(q, 0)) for q in qis],
                    "suppressed": int(suppressed),
                    "rows": len(anon),
                    "k": k_real,
                }
            )
    result["anjana"] = anjana_rows
    checks = []
    for path in spec["released"]:
        released = pd.read_csv(path, sep=";", dtype=str)
        check = partial(pycanon_anonymity.k_anonymity, released, list(spec["check_qis"]))
        seconds, k_real = best_of(spec["repeat"], check)
        checks.append({"path": path, "seconds": seconds, "k": int(k_real)})
    result["pycanon"] = checks
    print(json.dumps(result))


def _peers_python(args: argparse.Namespace) -> Path | None:
    """The interpreter that has the peers: --peers-python, ../venv-peers, or this one."""
    for candidate in (args.peers_python, PEERS_PYTHON, Path(sys.executable)):
        if candidate is None or not Path(candidate).exists():
            continue
        probe = subprocess.run(
            [str(candidate), "-c", "import anjana, pycanon"], capture_output=True, check=False
        )
        if probe.returncode == 0:
            return Path(candidate)
    return None


def run_peers(args: argparse.Namespace, adult: dict[str, Any]) -> None:
    """Part 2: anjana's greedy k-anonymity and pycanon's check, next to koble's."""
    import polars as pl

    from koble.anonymity.metrics import Metric
    from koble.anonymity.release import check_frame
    from koble.anonymity.search import Problem

    print(f"## 2. Python peers on adult, k = {K} ({load()})\n")
    frame, gens, results = adult["frame"], adult["gens"], adult["results"]
    python = _peers_python(args)
    with tempfile.TemporaryDirectory(prefix="koble-bench-anon-") as tmp:
        released_paths = []
        for limit in LIMITS:
            chosen = results[(8, limit, args.metrics[0])]
            released, _ = chosen.apply(frame, [gens[q] for q in QIS8])
            path = Path(tmp) / f"adult_released_{int(limit * 100)}.csv"
            released.write_csv(path, separator=";")
            released_paths.append((limit, chosen, path))
        peers: dict[str, Any] = {"error": "not installed"}
        if python is not None:
            spec = {
                "adult_dir": str(args.adult_dir),
                "qi_sets": [list(QIS8), list(QIS9)],
                "percents": [limit * 100 for limit in LIMITS],
                "k": K,
                "repeat": args.repeat,
                "released": [str(p) for _, _, p in released_paths],
                "check_qis": list(QIS8),
            }
            child = subprocess.run(
                [str(python), str(SCRIPT), "--peer-worker", json.dumps(spec)],
                capture_output=True,
                text=True,
                check=False,
            )
            if child.returncode:
                peers = {"error": f"failed: {child.stderr.strip().splitlines()[-1:]}"}
            else:
                peers = json.loads(child.stdout.strip().splitlines()[-1])
        versions = peers.get("versions", {})
        print(
            f"Peers: anjana {versions.get('anjana', '—')}, pycanon {versions.get('pycanon', '—')}"
            f" ({python or 'not installed'}). anjana generalises greedily (the QI with the "
            "most distinct values, one level at a time) until k holds with at most the "
            "suppression limit withheld: one answer, not the optimum. Its levels are scored "
            "below with koble's metrics on the same hierarchies. Times are the best of "
            f"{args.repeat}.\n"
        )
        rows: list[tuple[object, ...]] = []
        anjana_rows = {(len(r["qis"]), r["percent"]): r for r in peers.get("anjana", [])}
        for qis in (QIS8, QIS9):
            qi_gens = [gens[q] for q in qis]
            for limit in LIMITS:
                scores = {}
                for metric in ("precision", "non-uniform entropy"):
                    best = results.get((len(qis), limit, metric))
                    scores[metric] = best
                koble_p, koble_e = scores["precision"], scores["non-uniform entropy"]
                peer = anjana_rows.get((len(qis), limit * 100))
                if koble_p is not None and koble_e is not None:
                    for name, r in (("precision", koble_p), ("non-uniform entropy", koble_e)):
                        rows.append(
                            (len(qis), f"{limit:.0%}", f"koble find_optimal ({name})",
                             fmt_ms(r.seconds), fmt_levels(r.levels), r.suppressed,
                             fmt_loss(_score(Problem, Metric, qi_gens, limit, r.levels,
                                             "precision")[1]),
                             fmt_loss(_score(Problem, Metric, qi_gens, limit, r.levels,
                                             "non-uniform entropy")[1]), "optimal")
                        )  # fmt: skip
                if peer is None:
                    rows.append(
                        (len(qis), f"{limit:.0%}", "anjana k_anonymity",
                         peers.get("error", "—"), "—", "—", "—", "—", "—")
                    )  # fmt: skip
                    continue
                feasible_p, precision = _score(Problem, Metric, qi_gens, limit, peer["levels"],
                                               "precision")  # fmt: skip
                _, entropy = _score(Problem, Metric, qi_gens, limit, peer["levels"],
                                    "non-uniform entropy")  # fmt: skip
                note = f"k={peer['k']}" + ("" if feasible_p else ", infeasible for koble")
                rows.append(
                    (len(qis), f"{limit:.0%}", "anjana k_anonymity (greedy)",
                     fmt_ms(peer["seconds"]), fmt_levels(peer["levels"]), peer["suppressed"],
                     fmt_loss(precision), fmt_loss(entropy), note)
                )  # fmt: skip
        print_table(
            ("QIs", "supp.", "tool", "ms", "levels", "suppressed", "precision",
             "non-uniform entropy", "note"),
            rows,
        )  # fmt: skip
        check_rows: list[tuple[str, str, str, object]] = []
        pycanon_checks = peers.get("pycanon", [])
        for i, (limit, chosen, path) in enumerate(released_paths):
            released = pl.read_csv(path, separator=";", infer_schema=False)
            seconds, check = best_of(args.repeat, partial(check_frame, released, QIS8, k=K))
            group_s, smallest = best_of(args.repeat, partial(_smallest_class, released))
            label = (
                f"adult released at {fmt_levels(chosen.levels)}, {limit:.0%} "
                f"({released.height:,} rows)"
            )
            check_rows.append((label, "koble check_frame (k, class sizes, risk)", fmt_ms(seconds),
                               check.smallest_class))  # fmt: skip
            check_rows.append((label, "polars group_by + min (k alone)", fmt_ms(group_s), smallest))
            if i < len(pycanon_checks):
                c = pycanon_checks[i]
                check_rows.append((label, "pycanon k_anonymity", fmt_ms(c["seconds"]), c["k"]))
            else:
                check_rows.append((label, "pycanon k_anonymity", peers.get("error", "—"), "—"))
        print(
            "Checking a released file (the 8-QI optimum under the first metric, written with "
            "`SearchResult.apply` and read back as text; reading not timed). pycanon's "
            "`k_anonymity` returns the smallest class size; koble's `check_frame` (the library "
            "function behind `koble anonymity check`) also bins class sizes and computes the "
            "prosecutor risk.\n"
        )
        print_table(("file", "tool", "ms", "k found"), check_rows, right=2)


def _smallest_class(frame: Any) -> int:
    """k of ``frame`` over the 8 QIs, the plainest way: one group-by, its smallest count."""
    return int(frame.group_by(list(QIS8)).len().get_column("len").min())


def _score(
    problem_cls: Any, metric_cls: Any, qi_gens: Sequence[Any], limit: float,
    levels: Sequence[int], metric: str,
) -> tuple[bool, float]:  # fmt: skip
    """koble's loss (and feasibility) of the node ``levels`` under ``metric``."""
    problem = problem_cls(qi_gens, k=K, suppression_limit=limit, metric=metric_cls(metric))
    check, loss, _ = problem.evaluate(problem.lattice.index(levels), cached=False)
    return bool(check.feasible), float(loss)
