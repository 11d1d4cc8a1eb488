"""``koble anonymity anonymise --engine duckdb|spark``: a release of a file larger than memory.

The engine (:mod:`koble.linkage.engine`: DuckDB, or Spark on a cluster) reads the rows; only
small tables come to Python (the SQL is :mod:`koble.anonymity.engine_sql`):

1. the frequency table, the input grouped by the quasi-identifiers with each class's rows;
2. the lattice search on it, here (:func:`~koble.anonymity.search.find_optimal` with
   ``counts``): the same optimum as over the rows;
3. the release and the withheld rows written by the engine: each quasi-identifier joined to
   a mapping table (value → its label at the chosen level), the rows of the classes the
   search withholds apart, in the file's order, the other columns unchanged.

The figures before and after, the distributions and the report are counted from the
frequency table, and the report and certificate are those of the local command
(:func:`koble.anonymity.report.write_report`). Scope: the row model of a Parquet file into a
Parquet release; a person column, a person shape, a sensitive attribute (l-diversity,
t-closeness) or a population table are refused under ``--engine``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from koble.anonymity.check import AnonymityCheck, check_sizes
from koble.anonymity.coded import hashing
from koble.anonymity.config import AnonymiseConfig
from koble.anonymity.distributions import exact_codes, top_from_counts
from koble.anonymity.engine_sql import (
    COUNT,
    FIRST,
    REASON,
    frequency_table,
    input_schema,
    release_sql,
    scan_columns,
    source_sql,
    write_query,
)
from koble.anonymity.frequency import Lookups, roll_up
from koble.anonymity.generalisation import Generalisation
from koble.anonymity.hierarchies import hierarchy_for
from koble.anonymity.hierarchies.registry import is_ordered
from koble.anonymity.parameters import check_columns
from koble.anonymity.preparation import generalise
from koble.anonymity.release import Release, labels_clean, timed
from koble.anonymity.report import REPORT_FILES, write_report
from koble.anonymity.search import SearchResult, find_optimal
from koble.digests import sha256_file
from koble.errors import UsageError
from koble.files import OutputSet
from koble.linkage.engine import Engine
from koble.registries.identifiers.scan import describe, refuse_findings, scan_frame
from koble.tables import PARQUET_SUFFIXES

__all__ = ["anonymise_on_engine", "anonymise_with_report_on_engine"]

_RUN_LOCALLY = "run without --engine"


def _refuse_unsupported(config: AnonymiseConfig, source: Path, output: Path) -> None:
    """What ``--engine`` does not do, all at once, each saying to run without it."""
    problems = []
    if config.person is not None or config.shape == "person":
        problems.append("a person column or person shape (person-level models)")
    if config.sensitive is not None or config.l is not None or config.t is not None:
        problems.append("a sensitive attribute (l-diversity, t-closeness)")
    if config.population is not None:
        problems.append("a population table (the journalist model)")
    if source.suffix.lower() not in PARQUET_SUFFIXES:
        problems.append("an input other than Parquet")
    if output.suffix.lower() not in PARQUET_SUFFIXES:
        problems.append("a release other than Parquet")
    if problems:
        raise UsageError("--engine releases rows of a Parquet file under k-anonymity only; "
                         f"not {', '.join(problems)}: {_RUN_LOCALLY}")  # fmt: skip


def _refuse_person_numbers(
    engine: Engine, path: Path, frame: pl.DataFrame, schema: pa.Schema, qis: list[str]
) -> None:
    """:func:`koble.anonymity.preparation.refuse_person_numbers` over the engine: the column
    names, the quasi-identifiers' distinct values (the frequency table's), and the other
    columns' values, and those of any quasi-identifier with a number among its values,
    streamed from the engine."""
    names = scan_frame(pl.DataFrame(pl.from_arrow(schema.empty_table())), values_of=())
    flagged = {f.column for f in scan_frame(frame.select(qis), values_of=qis) if f.first_row}
    streamed = [c for c in schema.names if c not in qis or c in flagged]
    refuse_findings(
        [*names, *scan_columns(engine, path, streamed)],
        what="the release would hold",
        remedy="an anonymous file cannot carry direct identifiers: drop those columns first",
        path=str(path),
    )


def _mapping(g: Generalisation, level: int, values: pl.Series, kind: pa.DataType) -> pa.Table:
    """Each value of the quasi-identifier (NULL too) with its label at ``level``: what the
    engine joins the rows to. From the frequency table, so a few rows per value."""
    codes = g.maps[level][g.codes]
    pairs = pl.DataFrame([values.alias("v"), pl.Series("c", codes)])
    pairs = pairs.unique("v", keep="first", maintain_order=True)
    labels = pl.Series("l", list(g.labels[level]), dtype=pl.String).gather(pairs["c"])
    return pa.table({"v": pairs["v"].to_arrow().cast(kind),
                     "l": labels.to_arrow().cast(pa.string())})  # fmt: skip


def _distributions(
    frame: pl.DataFrame, counts: npt.NDArray[np.int64], qis: list[Generalisation],
    result: SearchResult, exact: list[bool], kept: npt.NDArray[np.int64],
    config: AnonymiseConfig,
) -> dict[str, dict[str, dict[str, int]]]:  # fmt: skip
    """The release's distributions (those of the local command) from the frequency table:
    before, its rows per value (by the level-0 codes where they stand for the values);
    after, the rows ``kept`` of each class by their labels at the chosen level."""
    base = result.base
    assert base is not None
    out = {}
    for i, (g, level) in enumerate(zip(qis, result.levels, strict=True)):
        order = g.labels[level] if is_ordered(config.quasi_identifiers.get(g.name, "")) else None
        raw = () if order is not None else None
        if exact[i] and g.raw is not None and g.raw_codes is not None:
            per_code = np.bincount(base.code(i), weights=base.counts, minlength=len(g.labels[0]))
            before = top_from_counts(g, 0, per_code.astype(np.int64), raw, values=True)
        else:  # two values read as one code: by the values themselves
            plain = hierarchy_for("categorical").apply(frame[g.name])
            per_value = np.bincount(plain.codes, weights=counts, minlength=len(plain.labels[0]))
            before = top_from_counts(plain, 0, per_value.astype(np.int64), raw, values=True)
        after = np.bincount(g.codes, weights=kept, minlength=len(g.labels[0])).astype(np.int64)
        out[g.name] = {"before": before, "after": top_from_counts(g, level, after, order)}
    return out


def _classes(
    qis: list[Generalisation], result: SearchResult, frame: pl.DataFrame, schema: pa.Schema
) -> tuple[pa.Table, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """At the chosen node: the frequency-table entries of the classes withheld (their values
    ``h0``, ``h1``, ... and the reason), the rows of each class released, and the rows each
    entry releases (0 for an entry of a class withheld)."""
    base = result.base
    assert base is not None
    node = roll_up(base, result.levels, Lookups(qis))
    reason = result.requirements.settle(node).reason
    gone = np.flatnonzero(reason >= 0)
    texts = pl.Series(REASON, result.requirements.texts(), dtype=pl.String)
    codes = [f"\0c{i}" for i in range(len(qis))]
    classes = pl.DataFrame([pl.Series(c, node.code(i)[gone].astype(np.int64))
                            for i, c in enumerate(codes)])  # fmt: skip
    classes = classes.with_columns(texts.gather(reason[gone]))
    levels = zip(qis, result.levels, strict=True)
    entries = pl.DataFrame([pl.Series(c, g.maps[lv][g.codes].astype(np.int64))
                            for c, (g, lv) in zip(codes, levels, strict=True)])  # fmt: skip
    why = entries.join(classes, on=codes, how="left", maintain_order="left")[REASON]
    counts = frame[COUNT].to_numpy().astype(np.int64)
    withheld = why.is_not_null()
    values = frame.select([frame[g.name].alias(f"h{i}") for i, g in enumerate(qis)])
    held = values.with_columns(why.alias("reason")).filter(withheld).to_arrow()
    kinds = [schema.field(g.name).type for g in qis]
    held = held.cast(pa.schema([*(pa.field(f"h{i}", t) for i, t in enumerate(kinds)),
                                pa.field("reason", pa.string())]))  # fmt: skip
    released = node.counts[reason < 0].astype(np.int64)
    return held, released, np.where(withheld.to_numpy(), 0, counts).astype(np.int64)


def _after(
    qis: list[Generalisation], result: SearchResult, sizes: npt.NDArray[np.int64],
    output: Path, checks: Mapping[str, object],
) -> AnonymityCheck:  # fmt: skip
    """The check of the release from its classes' sizes; when a label at the chosen levels
    holds a person number (none, unless a user's hierarchy has them), the labels there are
    scanned and the check fails naming them."""
    names = [g.name for g in qis]
    after = check_sizes(pl.Series(sizes), names, rows=int(sizes.sum()), path=str(output),
                        **checks)  # type: ignore[arg-type]  # fmt: skip
    if not labels_clean(qis, result.levels):
        findings = []
        for g, level in zip(qis, result.levels, strict=True):
            labels = pl.Series(g.name, sorted(set(g.labels[level])), dtype=pl.String)
            findings += scan_frame(labels.to_frame())
        if findings:
            after = dataclasses.replace(after, direct_identifiers=describe(findings))
    return after


def anonymise_on_engine(
    source: str | Path, config: AnonymiseConfig, output: str | Path, withheld: str | Path,
    engine: Engine, *, outputs: OutputSet | None = None,
) -> Release:  # fmt: skip
    """:func:`koble.anonymity.release.anonymise_file` of a Parquet file with the rows read
    and written by ``engine`` (the module docstring says how): the same levels, withheld
    rows, figures and report; the release and withheld files in the file's row order."""
    source, output, withheld = Path(source), Path(output), Path(withheld)
    _refuse_unsupported(config, source, output)
    timings: dict[str, float] = {}
    path, names = str(source), list(config.quasi_identifiers)
    with timed(timings, "read"):
        schema = input_schema(source)
        check_columns(pl.DataFrame(pl.from_arrow(schema.empty_table())), names, path)
        digest = hashing(source)
        frame = pl.DataFrame(pl.from_arrow(frequency_table(engine, source, names, schema)))
    counts = frame[COUNT].to_numpy().astype(np.int64)
    with timed(timings, "scan"):
        _refuse_person_numbers(engine, source, frame, schema, names)
    with timed(timings, "generalise"):
        qis = generalise(frame, config, path, rows=frame[FIRST].to_numpy())
    result = find_optimal(qis, k=config.k, suppression_limit=config.suppression,
                          metric=config.metric, counts=counts)  # fmt: skip
    timings["search"] = result.seconds
    base = result.base
    assert base is not None
    checks = {"k": config.k, "sensitive": None, "risk_threshold": config.risk_threshold,
              "l": None, "person": None, "model": "row", "m": config.m}  # fmt: skip
    with timed(timings, "check_before"):
        exact = [exact_codes(frame[g.name], g, base.code(i)) for i, g in enumerate(qis)]
        sizes = base.counts if all(exact) else counts  # the classes of the values as they are
        before = check_sizes(pl.Series(sizes), names, rows=result.rows, path=path,
                             **checks)  # type: ignore[arg-type]  # fmt: skip
    level_names = {g.name: g.level_names[lv] for g, lv in zip(qis, result.levels, strict=True)}
    with timed(timings, "hashing"):
        hashes: dict[str, str | None] = {"input": digest.result(), "output": None,
                                         "withheld": None}  # fmt: skip
    release = Release(path, None, None, config, result, level_names, before, None, {}, hashes,
                      timings, tried=["row"], qi_columns={n: [n] for n in names})  # fmt: skip
    release.hierarchies = {g.name: g.level_names for g in qis}
    if not result.feasible:  # no stale release beside a report saying none was made
        with OutputSet() if outputs is None else nullcontext(outputs) as stale:
            stale.remove(withheld)
            stale.remove(output)
        return release
    with timed(timings, "apply"):
        held, released, kept = _classes(qis, result, frame, schema)
        tables = {f"m{i}": _mapping(g, lv, frame[g.name], schema.field(g.name).type)
                  for i, (g, lv) in enumerate(zip(qis, result.levels, strict=True))}  # fmt: skip
    with timed(timings, "check_after"):
        release.after = _after(qis, result, released, output, checks)
    if not release.after.meets:  # the search's guarantee, checked independently
        failures = "; ".join(release.after.failures())
        raise RuntimeError(f"the release does not meet its requirements ({failures}); nothing is "
                           "written")  # fmt: skip
    kept_sql, gone_sql = release_sql(source_sql(engine, source), schema.names, names)
    as_released = pa.schema([pa.field(c, pa.string()) if c in names else schema.field(c)
                             for c in schema.names])  # fmt: skip
    with timed(timings, "write"), OutputSet() if outputs is None else nullcontext(outputs) as out:
        with out.file(withheld) as temp:
            rows_held = write_query(engine, gone_sql, {**tables, "held": held},
                                    schema.append(pa.field(REASON, pa.string())), temp)  # fmt: skip
        with out.file(output, last=True) as temp:
            rows_out = write_query(engine, kept_sql, {**tables, "held": held}, as_released, temp)
        if (rows_out, rows_held) != (release.after.rows, result.suppressed):
            raise RuntimeError(f"the engine wrote {rows_out:,} rows released and {rows_held:,} "
                               f"withheld, not {release.after.rows:,} and "
                               f"{result.suppressed:,}; nothing is written")  # fmt: skip
        staged = out.current
        with timed(timings, "hashing"):
            hashes["output"] = sha256_file(staged(output))
            hashes["withheld"] = sha256_file(staged(withheld))
    release.output, release.withheld = str(output), str(withheld)
    release.unchanged = [c for c in schema.names if c not in names]
    with timed(timings, "distributions"):
        release.distributions = _distributions(frame, counts, qis, result, exact, kept, config)
    return release


def anonymise_with_report_on_engine(
    source: str | Path, config: AnonymiseConfig, output: str | Path, directory: str | Path,
    engine: Engine,
) -> tuple[Release, dict[str, Path]]:  # fmt: skip
    """:func:`koble.anonymity.report.anonymise_with_report` on ``engine``: the release, the
    withheld rows, the report and the certificate appear together or not at all."""
    directory = Path(directory)
    with OutputSet() as outputs:
        release = anonymise_on_engine(source, config, output, directory / REPORT_FILES[0],
                                      engine, outputs=outputs)  # fmt: skip
        started = time.perf_counter()
        files = write_report(release, directory, outputs=outputs)
    release.seconds["report"] = time.perf_counter() - started
    return release, files
