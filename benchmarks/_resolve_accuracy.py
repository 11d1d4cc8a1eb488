"""Part 1 of ``bench_resolve.py``: every data set resolved the three ways and its table, the
synthetic journals by kind of dirt, the repair stage alone, and the summary against the
targets of issue 16 item 4."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _report import load, print_table, verdict
from _resolve_cases import Case, febrl_case, synth_case, synth_world
from _resolve_score import score
from _resolve_ways import Row, evaluate

TARGET_PRECISION, TARGET_RECALL = 0.999, 0.995  # synthetic journals, automatic threshold
TARGET_REPAIR_SHARE = 0.95  # of single-digit and transposition errors, with no false link


def dirt_table(world: Path, case: Case, facts: dict[str, Any]) -> None:
    """Recall (and false links) of each system among the journals with each kind of dirt:
    where each way wins or loses."""
    import polars as pl

    flags = pl.read_parquet(world / "truth" / "helsearkiv.parquet")
    kinds = [c for c in flags.columns if flags[c].dtype == pl.Boolean]
    flags = flags.rename({"journal_id": "record_id"})
    table = []
    for kind in ["(all)", *kinds]:
        part = flags if kind == "(all)" else flags.filter(pl.col(kind).fill_null(False))
        truth = case.truth.join(part.select("record_id"), on="record_id", how="semi")
        if not truth.height:
            continue
        cells: list[object] = [kind, f"{truth.height:,}"]
        for links in facts["links"].values():
            s = score(links.join(truth.select("record_id"), on="record_id", how="semi"), truth)
            cells.append(f"{s.recall:.2%} / {s.false_links:,}")
        table.append(cells)
    print(f"### Synthetic journals by kind of dirt: recall / false links ({load()})\n")
    print_table(["dirt (truth flag)", "journals", *facts["links"]], table, right=1)


def repair_alone(world: Path, case: Case) -> list[tuple[str, int, int, int, int]]:
    """The repair stage alone on the journals whose number has one error: per kind (single
    digit, transposition, OCR confusion, and digit+transposition together) the journals,
    repaired to the true person, to someone else, left (ambiguous or none)."""
    import polars as pl

    from koble.recovery.repair import repair

    flags = pl.read_parquet(world / "truth" / "helsearkiv.parquet").select(
        pl.col("journal_id").alias("record_id"), "person_id", "fnr_digit",
        "fnr_transposition", "fnr_ocr",
    )  # fmt: skip
    dirty = flags.filter(pl.col("fnr_digit") | pl.col("fnr_transposition") | pl.col("fnr_ocr"))
    records = case.records.join(dirty.select("record_id"), on="record_id", how="semi")
    result = repair(records, case.register)
    checked = dirty.join(result.linked.select("record_id", pl.col("person_id").alias("got")),
                         on="record_id", how="left")  # fmt: skip
    out = []
    kinds = {"single digit": pl.col("fnr_digit"), "transposition": pl.col("fnr_transposition"),
             "digit or transposition": pl.col("fnr_digit") | pl.col("fnr_transposition"),
             "OCR confusion (1/7, 0/8)": pl.col("fnr_ocr")}  # fmt: skip
    for label, which in kinds.items():
        part = checked.filter(which)
        right = int((part["got"] == part["person_id"]).fill_null(False).sum())
        wrong = int(part["got"].is_not_null().sum()) - right
        out.append((label, part.height, right, wrong, part.height - right - wrong))
    return out


def print_case(case: Case, rows: Sequence[Row], facts: dict[str, Any]) -> None:
    """A data set's table: each system and method with its links scored."""
    seconds = facts["seconds"]
    counts = facts["counts"]
    print(f"### {case.name} ({load()})\n")
    print(
        f"{case.records.height:,} records against {case.register.persons.height:,} persons; "
        f"{case.truth.height:,} true links. koble: model trained by {facts['how']} "
        f"({facts['training']:,} labelled pairs), {facts['comparisons']:,} comparisons scored; "
        f"{counts['awaiting_review']:,} records await review, {counts['rejected']:,} rejected. "
        f"Seconds: koble {seconds['koble']:.1f}, exact {seconds['exact']:.2f}, "
        f"Splink generic {seconds['splink']:.1f}. Per method, recall is the share of all "
        f"true links that method found.\n"
    )
    print_table(
        ["system", "method", "links", "true", "false", "precision", "recall", "F1"],
        [_cells(r) for r in rows],
        right=2,
    )


def _cells(r: Row) -> tuple[str, ...]:
    s = r.score
    return (r.system, r.method, f"{s.links:,}", f"{s.true_links:,}", f"{s.false_links:,}",
            f"{s.precision:.4f}", f"{s.recall:.4f}", f"{s.f1:.4f}")  # fmt: skip


def run_accuracy(args: argparse.Namespace, tmp: Path) -> bool:
    """Part 1: every data set, its table, then the summary with the targets (a world made
    for the run goes to ``tmp``)."""
    print(f"## 1. Accuracy against truth and peers ({load()})\n")
    world = args.world
    if world is None:
        world = tmp / "world"
        start = time.perf_counter()
        synth_world(world, args.persons, args.seed)
        print(f"World: `koble synth --persons {args.persons:,} --seed {args.seed}` in "
              f"{time.perf_counter() - start:.0f} s.\n")  # fmt: skip
    cases: list[tuple[Case, list[Row], dict[str, Any]]] = []
    synth = synth_case(world)
    rows, facts = evaluate(synth, seed=args.seed)
    print_case(synth, rows, facts)
    cases.append((synth, rows, facts))
    dirt_table(world, synth, facts)
    repaired = repair_alone(world, synth)
    print(f"### The repair stage alone, on the journals whose number has one error ({load()})\n")
    print_table(["error", "journals", "repaired to the truth", "to someone else", "left",
                 "share"],
                [(k, f"{n:,}", f"{r:,}", f"{w:,}", f"{left:,}", f"{r / n:.2%}" if n else "—")
                 for k, n, r, w, left in repaired], right=1)  # fmt: skip
    febrl = [(4, True), (4, False), *((d, False) for d in args.febrl_dedup)]
    for dataset, with_number in febrl:
        case = febrl_case(dataset, with_number=with_number)
        rows, facts = evaluate(case, seed=args.seed)
        print_case(case, rows, facts)
        cases.append((case, rows, facts))
    return summary(cases, repaired)


def summary(
    cases: Sequence[tuple[Case, list[Row], dict[str, Any]]],
    repaired: Sequence[tuple[str, int, int, int, int]],
) -> bool:
    """The F1 of each system per data set and every target of issue 16 item 4."""
    print(f"### Summary (F1; dedup data sets scored as pairs) ({load()})\n")
    table, all_met = [], True
    for case, _, facts in cases:
        ahead = facts["koble"] > max(facts["exact"], facts["splink"])
        all_met &= ahead
        table.append((case.name, f"{facts['koble']:.4f}", f"{facts['exact']:.4f}",
                      f"{facts['splink']:.4f}", f"{facts['splink_best']:.4f}",
                      verdict(ahead)))  # fmt: skip
    print_table(["data set", "koble", "exact name+dob", "Splink p>=0.5",
                 "Splink best F1 (oracle)", "koble ahead of both"], table, right=1)  # fmt: skip
    synth = cases[0][2]["koble_score"]
    febrl4 = next(f for c, _, f in cases if c.name == "FEBRL 4 without soc_sec_id")
    both = next(r for r in repaired if r[0] == "digit or transposition")
    share = both[2] / both[1] if both[1] else 0.0
    targets = [
        ("koble ahead of both baselines on every data set (F1)", "see above", all_met),
        (f"synthetic journals: precision >= {TARGET_PRECISION}", f"{synth.precision:.4f}",
         synth.precision >= TARGET_PRECISION),
        (f"synthetic journals: recall >= {TARGET_RECALL}", f"{synth.recall:.4f}",
         synth.recall >= TARGET_RECALL),
        ("FEBRL 4 without soc_sec_id: F1 above Splink generic",
         f"{febrl4['koble']:.4f} vs {febrl4['splink']:.4f}", febrl4["koble"] > febrl4["splink"]),
        (f"repair alone: >= {TARGET_REPAIR_SHARE:.0%} of digit/transposition errors, no false link",
         f"{share:.2%}, {both[3]} false", share >= TARGET_REPAIR_SHARE and both[3] == 0),
    ]  # fmt: skip
    print_table(["target", "measured", "verdict"], [(t, m, verdict(ok)) for t, m, ok in targets])
    return all(ok for _, _, ok in targets)
