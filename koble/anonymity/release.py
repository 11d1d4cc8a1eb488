"""Coarsening a file until it is anonymous: :func:`anonymise_file` and its :class:`Release`.

:func:`anonymise_file` finds the optimal generalisation for an
:class:`~koble.anonymity.config.AnonymiseConfig` (under the strictest person-level model that
finds one), checks the release independently before writing it, writes it, keeps the
withheld records apart (counted, never silently dropped) and returns everything the report
needs. Checking a file as it stands is :mod:`koble.anonymity.check` (re-exported here); what
the search runs over is :mod:`koble.anonymity.preparation`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from koble import __version__
from koble.anonymity.check import AnonymityCheck, check_frame, check_sizes, class_size_bins
from koble.anonymity.coded import (
    beside,
    codable,
    hashing,
    read_encoded,
    release_coded,
    write_release,
)
from koble.anonymity.config import AnonymiseConfig
from koble.anonymity.distributions import (
    exact_codes,
    top_from_codes,
    top_from_counts,
    top_values,
)
from koble.anonymity.frequency import FrequencyTable, Lookups
from koble.anonymity.generalisation import Generalisation
from koble.anonymity.hierarchies.registry import is_ordered
from koble.anonymity.longitudinal import PersonKM, PersonModel
from koble.anonymity.parameters import (
    check_columns,
)
from koble.anonymity.person_columns import (
    person_slot,
    refuse_missing_persons,
    refuse_unjudgeable,
)
from koble.anonymity.person_shape import PersonShape
from koble.anonymity.preparation import (
    criteria,
    generalise,
    generalised_population,
    inferred,
    late_constant,
    level0_ids,
    person_constant_qis,
    person_shape,
    refuse_person_numbers,
)
from koble.anonymity.row_release import apply_rows, person_ids
from koble.anonymity.search import SearchResult, find_optimal
from koble.digests import sha256_file
from koble.errors import KobleError
from koble.files import OutputSet
from koble.registries.identifiers.scan import scan_frame
from koble.tables import read_table, require_column, write_table

__all__ = [
    "AnonymityCheck",
    "Release",
    "anonymise_file",
    "check_frame",
    "class_size_bins",
    "labels_clean",
    "timed",
]


@contextmanager
def timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    """Add the wall time of the block to ``timings[phase]``: the command's phases (read,
    scan, generalise, search, checks, apply, write, hashing, distributions, report) are
    reported apart, so its overhead beside the search can be measured."""
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[phase] = timings.get(phase, 0.0) + time.perf_counter() - started


def labels_clean(qis: Sequence[Generalisation], levels: Sequence[int]) -> bool:
    """Whether no label the release can hold (each QI's labels at its chosen level) is or
    holds a fødselsnummer-family number: then its rows need no scan (a tied QI's members
    are scanned as rows)."""
    for g, level in zip(qis, levels, strict=True):
        if g.column_names != (g.name,):
            return False
        labels = pl.Series("labels", list(g.labels[level]), dtype=pl.String)
        if scan_frame(labels.to_frame()):
            return False
    return True


def _distributions(
    frame: pl.DataFrame, released: pl.DataFrame, qis: Sequence[Generalisation],
    levels: Sequence[int], orders: Mapping[str, Sequence[str]], exact: Sequence[bool],
    kept: npt.NDArray[np.integer],
) -> dict[str, dict[str, dict[str, int]]]:  # fmt: skip
    """Each released column's most frequent values before and after (``kept``: the rows
    released): counted by the codes the search holds where they stand for the values
    (:func:`~koble.anonymity.distributions.top_from_counts`), else by the values. The rows
    released of each code are its rows less its rows withheld (a few): no pass over the
    released rows."""
    out = {}
    gone = np.ones(frame.height, dtype=np.bool_)
    gone[kept] = False
    withheld = np.flatnonzero(gone)
    for g, level, same in zip(qis, levels, exact, strict=True):
        if g.column_names != (g.name,):  # a tied QI: its member columns, by their values
            for name in g.column_names:
                out[name] = {"before": top_values(frame[name], None),
                             "after": top_values(released[name], None)}  # fmt: skip
            continue
        order = orders.get(g.name)
        before = () if order is not None else None
        width = len(g.labels[0])
        counts = np.bincount(g.codes, minlength=width).astype(np.int64)
        after = counts - np.bincount(g.codes[withheld], minlength=width)
        if same and g.raw is not None and g.raw_codes is not None:
            shown = top_from_counts(g, 0, counts, before, values=True)
        elif same:
            shown = top_from_codes(frame[g.name], g, 0, None, before)
        else:
            shown = top_values(frame[g.name], before)
        out[g.name] = {"before": shown, "after": top_from_counts(g, level, after, order)}
    return out


def _distributions_coded(
    frame: pl.DataFrame, qis: Sequence[Generalisation], levels: Sequence[int],
    orders: Mapping[str, Sequence[str]], exact: Sequence[bool], base: FrequencyTable,
    after: Sequence[npt.NDArray[np.int64]],
) -> dict[str, dict[str, dict[str, int]]]:  # fmt: skip
    """:func:`_distributions` of a coded release (plain quasi-identifiers): counted from the
    search's level-0 table (before) and the rows released per code (``after``), not from the
    rows; the values before by the codes where they stand for them (else by the values)."""
    out = {}
    for i, (g, level, same) in enumerate(zip(qis, levels, exact, strict=True)):
        order = orders.get(g.name)
        before = () if order is not None else None
        if same and g.raw is not None and g.raw_codes is not None:
            counts = np.bincount(base.code(i), weights=base.counts, minlength=len(g.labels[0]))
            shown = top_from_counts(g, 0, counts.astype(np.int64), before, values=True)
        else:
            shown = top_values(frame[g.name], before)
        out[g.name] = {"before": shown, "after": top_from_counts(g, level, after[i], order)}
    return out


@dataclass
class Release:
    """Everything one anonymisation produced, for the report and the certificate."""

    source: str
    output: str | None
    withheld: str | None
    config: AnonymiseConfig
    result: SearchResult
    level_names: dict[str, str]
    before: AnonymityCheck
    after: AnonymityCheck | None
    distributions: dict[str, dict[str, dict[str, int]]]
    hashes: dict[str, str | None]
    seconds: dict[str, float] = field(default_factory=dict)
    #: The models searched, strictest first; the last is the one used (``model``).
    tried: list[str] = field(default_factory=list)
    #: Columns constant within every person, made quasi-identifiers by a person model.
    person_constant: list[str] = field(default_factory=list)
    #: The one-row-per-person table released instead of the rows (``[shape]``), if any.
    shape: PersonShape | None = None
    #: The released columns of each quasi-identifier (several for a tied one).
    qi_columns: dict[str, list[str]] = field(default_factory=dict)
    #: The names of each quasi-identifier's levels, level 0 first (its height is one less).
    hierarchies: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Released columns that are not quasi-identifiers: they go out as they are, so the
    #: user sees them named (a column derived from a quasi-identifier undoes its coarsening).
    unchanged: list[str] = field(default_factory=list)

    @property
    def model(self) -> str:
        """The privacy model the release meets (or, when infeasible, the last one tried)."""
        return self.tried[-1] if self.tried else "row"

    def certificate(self) -> dict[str, Any]:
        """What an auditor needs to re-run the release and compare it bit for bit."""
        r = self.result
        return {
            "koble_version": __version__,
            "input": {"path": Path(self.source).name, "sha256": self.hashes["input"],
                      "rows": r.rows},
            "output": {"path": None if self.output is None else Path(self.output).name,
                       "sha256": self.hashes["output"],
                       "rows": None if self.after is None else self.after.rows},
            "withheld": {"rows": r.suppressed, "persons": r.persons_suppressed,
                         "sha256": self.hashes["withheld"]},
            "parameters": self.config.to_dict(),
            "released_unchanged": self.unchanged,
            "model": {"used": self.model, "tried": self.tried,
                      "person_constant_quasi_identifiers": self.person_constant},
            "shape": None if self.shape is None else {
                "unit": "person", "rows_in": self.shape.rows, "persons": self.shape.persons,
                "columns": self.shape.describe()},
            "person_level": {
                when: check.person_level.to_dict()
                for when, check in (("before", self.before), ("after", self.after))
                if check is not None and check.person_level is not None},
            "levels": {name: {"level": level, "name": self.level_names[name],
                              "height": len(self.hierarchies.get(name, ())) - 1}
                       for name, level in r.chosen.items() if r.feasible},
            "figures": {"feasible": r.feasible, "metric": r.metric,
                        "loss": r.loss if math.isfinite(r.loss) else None,
                        "classes": r.classes, "min_class_size": r.min_class_size,
                        "suppressed": r.suppressed, "allowed": r.allowed,
                        "criteria": list(r.criteria)},
            "search": {"lattice_size": r.lattice_size, "evaluated": r.evaluated,
                       "tagged": r.tagged},
        }  # fmt: skip


def _search(
    qis: list[Generalisation], config: AnonymiseConfig, models: list[PersonModel | None],
    sensitive: Generalisation | None, shape: PersonShape | None, timings: dict[str, float],
    entries: bool,
) -> tuple[SearchResult, PersonModel | None, list[str]]:  # fmt: skip
    """The optimum under the strictest of ``models`` that finds one (else the last tried),
    with the model and the names of those tried (``entries``: keep every row's level-0
    entry, for :func:`~koble.anonymity.coded.release_coded`)."""
    tried: list[str] = []
    for model in models:
        result = find_optimal(
            qis, k=config.k, suppression_limit=config.suppression, metric=config.metric,
            criteria=criteria(config) if shape is None else [], sensitive=sensitive,
            person_model=model, row_entries=entries,
        )  # fmt: skip
        tried.append(
            f"{config.k}-anonymity over one row per person" if shape is not None
            else "row" if model is None else model.describe()
        )  # fmt: skip
        timings["search"] = timings.get("search", 0.0) + result.seconds
        if result.feasible:
            break
    return result, model, tried


def anonymise_file(
    source: str | Path,
    config: AnonymiseConfig,
    output: str | Path,
    withheld: str | Path,
    *,
    outputs: OutputSet | None = None,
) -> Release:
    """Coarsen ``source`` optimally under ``config``; write the release and withheld records.

    When no generalisation meets the requirements no release is written, and the release says
    so (``result.feasible`` is False): the job goes back to the applicant with the report.
    A release or withheld file of an earlier run at ``output``/``withheld`` is then removed
    (with ``outputs``: when the set commits), so no stale release stands beside that report.
    With ``outputs`` both files are part of that set (the release renamed last), so they
    appear only with the report and certificate
    (:func:`koble.anonymity.report.anonymise_with_report`).
    """
    timings: dict[str, float] = {}
    # rows as classes: the quasi-identifiers' text columns are read dictionary-encoded too,
    # for their hierarchies (see koble.anonymity.coded); the file is hashed beside the search
    plain = config.shape != "person" and config.person is None and config.population is None
    with timed(timings, "read"):
        frame, encoded = read_encoded(source, list(config.quasi_identifiers) if plain else [])
    path = str(source)
    extra = [c for c in (config.sensitive, config.person) if c is not None]
    check_columns(frame, [*config.quasi_identifiers, *extra], path)
    rows_frame, shape = frame, None
    with timed(timings, "generalise"):
        try:
            if config.shape == "person":
                shape, frame, qis, promoted = person_shape(frame, config, path)
            else:
                qis = generalise(frame, config, path, encoded)
        except KobleError:  # a column of person numbers is refused as such, not as values
            refuse_person_numbers(frame, config, path)  # a hierarchy cannot place
            raise
    # The identifier scan runs beside the work up to and through the search (which leaves a
    # core idle); a finding still refuses the command before anything is written, and before
    # any other refusal or error on the way, as when it ran first.
    scan = beside(refuse_person_numbers, rows_frame, config, path,
                   list(qis) if shape is None else ())  # fmt: skip
    try:
        with timed(timings, "scan"):
            if config.person is not None:
                refuse_missing_persons(rows_frame, config.person, path)
                refuse_unjudgeable(rows_frame, config.person, path)
            sensitive = None
            slot = config.sensitive if config.person is None else config.person
            if slot is not None and shape is None:
                sensitive = person_slot(require_column(frame, slot, path))
        population = None
        if config.population is not None:
            with timed(timings, "read"):
                population = read_table(config.population)
            check_columns(population, config.quasi_identifiers, config.population)
        models = config.person_models()
        if shape is None:
            promoted = []
        if config.person is not None and models != [None]:
            with timed(timings, "generalise"):
                promoted, extra_qis = person_constant_qis(frame, config, path)
            qis += extra_qis
        # on the core the search (one thread) leaves idle, not beside the work above, which
        # takes both
        digest = hashing(Path(source))
        while True:
            entries = shape is None and sensitive is None and population is None
            result, model, tried = _search(qis, config, models, sensitive, shape, timings, entries)
            with timed(timings, "generalise"):
                late = (late_constant(frame, qis, result, sensitive, config)
                        if models != [None] else [])  # fmt: skip
            if not late:
                break
            promoted += late
            with timed(timings, "generalise"):
                qis += [inferred(frame[c]) for c in late]
    except (KeyboardInterrupt, SystemExit):
        raise  # a stopped command stops now, not after the scan
    except BaseException:
        scan.result()  # its refusal first, if it has one
        raise
    with timed(timings, "scan"):
        scan.result()
    names = [c for g in qis for c in g.column_names]
    checks = {
        "k": config.k, "sensitive": config.sensitive, "risk_threshold": config.risk_threshold,
        "l": None if config.l is None else int(config.l), "person": config.person,
        "model": "row" if model is None and shape is None else "person-set" if model is None
        else model.name,
        "m": model.m if isinstance(model, PersonKM) else config.m,
    }  # fmt: skip
    lookups = Lookups(qis)
    base = result.base if shape is None and codable(result, qis) else None
    with timed(timings, "check_before"):
        exact = [exact_codes(frame[g.name], g, None if base is None else base.code(i))
                 if g.column_names == (g.name,) else False
                 for i, g in enumerate(qis)]  # fmt: skip
        # rows as classes, level-0 codes as the values: the classes are the search's
        # level-0 table, counted already
        sizes = (pl.Series(base.counts) if base is not None and all(exact)
                 and population is None and config.sensitive is None else None)  # fmt: skip
        before = check_frame(rows_frame, list(config.quasi_identifiers) if shape else names,
                             path=path, population=population, scan=False,  # refused above
                             class_ids=None if shape or sizes is not None
                             else level0_ids(qis, lookups, exact), class_sizes=sizes,
                             column_ids=None if shape else person_ids(
                                 rows_frame, qis, (0,) * len(qis), sensitive, config.person,
                                 None, exact),
                             **checks)  # type: ignore[arg-type]  # fmt: skip
    level_names = {g.name: g.level_names[lv] for g, lv in zip(qis, result.levels, strict=True)}
    with timed(timings, "hashing"):
        hashes: dict[str, str | None] = {"input": digest.result(), "output": None,
                                         "withheld": None}  # fmt: skip
    columns = {g.name: list(g.column_names) for g in qis}
    release = Release(str(source), None, None, config, result, level_names, before, None,
                      {}, hashes, timings, tried=tried, person_constant=promoted,
                      shape=shape, qi_columns=columns)  # fmt: skip
    release.hierarchies = {g.name: g.level_names for g in qis}
    if not result.feasible:
        # A release and withheld records of an earlier run at these paths would stand beside
        # a report saying none was made: they go, in the same commit as that report.
        with OutputSet() if outputs is None else nullcontext(outputs) as stale:
            stale.remove(withheld)
            stale.remove(output)
        return release
    coded = None
    level_codes: dict[str, npt.NDArray[np.integer]] = {}  # the released rows' codes, per QI
    with timed(timings, "apply"):
        if base is not None and population is None:
            # class by class, the labels dictionary-encoded (koble.anonymity.coded); each
            # row's class key rides along for the check, as below
            coded = release_coded(frame, qis, result)
            held = coded.held
        else:
            released, held, released_ids, kept = apply_rows(frame, qis, result, lookups,
                                                             sensitive, config.person,
                                                             into=level_codes)  # fmt: skip
    with timed(timings, "check_after"):
        if population is not None:
            population = generalised_population(population, config, qis, result)
        # the other columns are the input's, scanned before the search; the generalised
        # ones hold only their hierarchies' labels: none to scan if no label holds one
        clean = labels_clean(qis, result.levels)
        if coded is not None and clean:  # the classes counted from the rows, as released
            release.after = check_sizes(coded.sizes, names, rows=coded.rows, path=str(output),
                                        **checks)  # type: ignore[arg-type]  # fmt: skip
        else:
            if coded is not None:
                released, released_ids = coded.frame(), coded.ids()
            release.after = check_frame(
                released,
                names,
                path=str(output),
                population=population,
                scan=False if clean else names,
                class_ids=released_ids,
                column_ids=None if coded is not None else person_ids(
                    frame, qis, result.levels, sensitive, config.person, kept, [True] * len(qis),
                    known=level_codes),
                **checks,  # type: ignore[arg-type]
            )  # fmt: skip
    if not release.after.meets:  # the search's guarantee, checked independently: never
        raise RuntimeError(  # a release that fails it (an internal error, exit 3)
            "the release does not meet its requirements ("
            + "; ".join(release.after.failures())
            + "); nothing is written"
        )
    with timed(timings, "write"):
        # columns read dictionary-encoded were text in the input: so they are in the output
        held = held.with_columns(pl.col(c).cast(pl.String) for c in encoded)
        write_table(held, withheld, outputs=outputs)
        if coded is not None:
            write_release(coded, output, outputs=outputs, last=True)
        else:
            write_table(released.drop(config.person) if config.person else released, output,
                        outputs=outputs, last=True)  # fmt: skip
    release.output, release.withheld = str(output), str(withheld)
    columns_out = coded.columns if coded is not None else released.columns
    release.unchanged = [c for c in columns_out if c not in names and c != config.person]
    staged = Path if outputs is None else outputs.current  # the bytes, before or after commit
    with timed(timings, "hashing"):
        hashes["output"] = sha256_file(staged(output))
        hashes["withheld"] = sha256_file(staged(withheld))
    orders = {  # ordered hierarchies (ages, dates, counts): their labels at the chosen level
        g.name: g.labels[level] for g, level in zip(qis, result.levels, strict=True)
        if g.column_names == (g.name,) and shape is None
        and is_ordered(config.quasi_identifiers.get(g.name, ""))
    }  # fmt: skip
    with timed(timings, "distributions"):
        if coded is not None and base is not None:
            release.distributions = _distributions_coded(frame, qis, result.levels, orders,
                                                         exact, base, coded.counts)  # fmt: skip
        else:
            release.distributions = _distributions(frame, released, qis, result.levels,
                                                   orders, exact, kept)  # fmt: skip
    return release
