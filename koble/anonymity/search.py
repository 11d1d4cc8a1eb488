"""The optimal full-domain generalisation: :func:`find_optimal` and its :class:`SearchResult`.

``find_optimal`` groups the rows once into a frequency table, then searches the lattice of
level combinations (see :mod:`koble.anonymity.lattice`) for the node of least loss under the
chosen metric that meets k-anonymity and any further criteria with at most
``suppression_limit`` × N rows suppressed. Each node is evaluated by rolling up the smallest
cached table of a node below it. The result says which metric was used, what was suppressed,
and how much work the search did; :meth:`SearchResult.apply` turns it into a release.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from koble.anonymity.checks import Classes, Criterion, KAnonymity, NodeCheck, Requirements
from koble.anonymity.frequency import (
    FrequencyTable,
    Int64s,
    Lookups,
    TableCache,
    base_rows,
    base_table,
    build_table,
    roll_up,
)
from koble.anonymity.generalisation import Generalisation
from koble.anonymity.lattice import Evaluation, Lattice, search
from koble.anonymity.longitudinal import PersonModel
from koble.anonymity.metrics import LossModel, Metric
from koble.anonymity.placement import Placement
from koble.errors import ColumnError, UsageError

__all__ = ["DEFAULT_METRIC", "Problem", "SearchResult", "find_optimal"]

DEFAULT_METRIC = Metric.NON_UNIFORM_ENTROPY
REASON_COLUMN = "suppression_reason"


class Problem:
    """Everything fixed for one search: base table, lattice, requirements, metric, cache."""

    def __init__(
        self,
        qis: Sequence[Generalisation],
        *,
        k: int,
        suppression_limit: float,
        metric: Metric | str,
        criteria: Sequence[Criterion] = (),
        sensitive: Generalisation | None = None,
        cache_bytes: int = 512 << 20,
        person_model: PersonModel | None = None,
        row_entries: bool = False,
        counts: Int64s | None = None,
    ) -> None:
        _validate(qis, k, suppression_limit, criteria, sensitive, person_model, counts)
        self.qis, self.metric = tuple(qis), Metric(metric)
        self.rows = len(qis[0].codes) if counts is None else int(counts.sum())
        self.limit = suppression_limit
        self.sensitive = None if sensitive is None else sensitive.codes
        self.n_sensitive = 1 if sensitive is None else len(sensitive.labels[0])
        self.lookups = Lookups(self.qis, self.n_sensitive)
        self.lattice = Lattice([g.height for g in self.qis])
        self.entries: Int64s | None = None
        if row_entries and sensitive is None:
            self.base, self.entries = base_rows(self.lookups, counts)
        else:
            self.base = base_table(self.lookups, self.sensitive, counts)
        overall = np.zeros(0)
        if sensitive is not None:
            overall = np.bincount(sensitive.codes, counts, self.n_sensitive) / self.rows
        allowed = math.floor(suppression_limit * self.rows)
        self.requirements = Requirements((KAnonymity(k), *criteria), allowed, overall, person_model)
        self.model = LossModel(self.metric, self.lookups, self.base, self.lattice, k, allowed)
        self.cache = TableCache(self.base, cache_bytes, [g.height for g in self.qis])
        self._base_codes: dict[tuple[int, int], Int64s] = {}
        # k-anonymity alone, rows as classes: a node needs only its class sizes (``judge``).
        self._plain = self.sensitive is None and person_model is None and not criteria
        self._k = k
        self._counted = counts is not None

    def table(self, index: int, *, cached: bool = True) -> FrequencyTable:
        """Node ``index``'s table, rolled up from the cache (or from the base table)."""
        levels = self.lattice.node(index)
        source = self.cache.source(levels) if cached else self.base
        if source.levels == levels:
            return source
        memo = self._base_codes if source is self.base else None
        table = roll_up(source, levels, self.lookups, memo)
        if cached and table.size < source.size:
            self.cache.put(table)
        return table

    def evaluate(self, index: int, *, cached: bool = True) -> tuple[NodeCheck, float, float]:
        """The checks at node ``index``, its loss and its floor."""
        table = self.table(index, cached=cached)
        check = self.requirements.check(table)
        loss, floor = self.model.loss(index, table, check)
        return check, loss, floor

    def judge(self, index: int) -> Evaluation:
        """What the search needs of node ``index``: feasibility, loss and floor. In the
        plain case (``_plain``: k-anonymity alone, each entry a class) the classes under k
        are found directly, without the general bookkeeping of ``requirements.check``, and
        a loss known without the data (``model.exact``) is not computed at all; the figures
        are those of :meth:`evaluate`."""
        if not self._plain:
            check, loss, floor = self.evaluate(index)
            return Evaluation(check.feasible, check.feasible_monotone, loss, floor)
        table = self.table(index)
        counts = table.counts
        failing = counts < self._k
        suppressed = int(counts[failing].sum())
        feasible = suppressed <= self.requirements.allowed
        if self.model.exact:
            static = float(self.model.bound[index])
            return Evaluation(feasible, feasible, static if feasible else math.inf, static)
        sized = self.model.sized(index, counts, failing, suppressed, feasible)
        if sized is not None:
            return Evaluation(feasible, feasible, *sized)
        kept = np.where(failing, 0, counts)
        ids = np.arange(table.size, dtype=np.int64)
        classes = Classes(counts, ids, ids)
        check = NodeCheck(classes, failing, failing, kept, suppressed, suppressed,
                          feasible, feasible)  # fmt: skip
        loss, floor = self.model.loss(index, table, check)
        return Evaluation(feasible, feasible, loss, floor)

    def result(self, best: int | None, evaluated: int, tagged: int, start: float) -> SearchResult:
        """Package the outcome (evaluating the chosen node again for its figures)."""
        names = tuple(g.name for g in self.qis)
        settled, searched, placement = None, 0, None
        if best is None:
            node, loss = (0,) * len(names), math.inf
        else:
            node = self.lattice.node(best)
            check, loss, _ = self.evaluate(best)  # once: its figures are those of the node
            searched = check.suppressed
            table = self.table(best)
            settled = self.requirements.settle(table)
            # what apply needs of this settlement, so it need not group and settle again
            # (not for counted rows: apply groups the rows it is given, each counting once)
            if not self._counted:
                placement = Placement.of(table, settled, self.lookups, self.sensitive,
                                         len(self.requirements.criteria),
                                         self.requirements.person_model is not None)  # fmt: skip
        return SearchResult(
            names=names,
            levels=node,
            feasible=settled is not None,
            metric=self.metric.value,
            loss=loss,
            rows=self.rows,
            suppressed=0 if settled is None else settled.suppressed,
            classes=0 if settled is None else settled.kept_classes,
            min_class_size=0 if settled is None else settled.min_class_size,
            evaluated=evaluated,
            tagged=tagged,
            lattice_size=self.lattice.size,
            criteria=self.requirements.describe(),
            suppression_limit=self.limit,
            allowed=self.requirements.allowed,
            seconds=time.perf_counter() - start,
            requirements=self.requirements,
            persons_suppressed=None if settled is None else settled.persons_suppressed,
            searched_suppressed=searched,
            least_suppressed=None
            if best is not None
            else self.evaluate(self.lattice.size - 1, cached=False)[0].suppressed,
            base=self.base,
            entries=self.entries,
            placement=placement,
        )


@dataclass(frozen=True)
class SearchResult:
    """The chosen generalisation (``levels[i]`` for QI ``names[i]``) and how it was found.

    ``feasible`` is False when no node meets the requirements (``levels`` is then all zeros
    and ``loss`` infinite). ``suppressed`` rows fall in classes failing a criterion (at most
    ``allowed`` = ⌊``suppression_limit`` × ``rows``⌋); ``classes`` and ``min_class_size``
    describe the released classes.
    ``evaluated`` nodes had their table rolled up; ``tagged`` were classified by predictive
    tagging instead (a tagged node may still be evaluated later, for its loss).
    ``seconds`` is the wall time of the whole search, grouping the rows included.
    """

    names: tuple[str, ...]
    levels: tuple[int, ...]
    feasible: bool
    metric: str
    loss: float
    rows: int
    suppressed: int
    suppression_limit: float
    allowed: int
    classes: int
    min_class_size: int
    evaluated: int
    tagged: int
    lattice_size: int
    criteria: tuple[str, ...]
    seconds: float
    requirements: Requirements = field(repr=False, compare=False)
    #: Persons withheld whole by the person model (None without one).
    persons_suppressed: int | None = None
    #: Rows the search counted as withheld at this node (whole persons only); ``suppressed``
    #: is what the release withholds after rare rows stood in for some persons.
    searched_suppressed: int = 0
    #: When infeasible: rows the most general node (every QI at its top level) withholds.
    #: Generalising never makes a passing class fail, so for monotone criteria no node
    #: withholds fewer: the report says why nothing met the limit (None when feasible).
    least_suppressed: int | None = None
    #: The rows grouped at level 0 (:func:`~koble.anonymity.frequency.base_table`) the search
    #: ran over: the release counts classes and distributions from it instead of the rows.
    base: FrequencyTable | None = field(default=None, repr=False, compare=False)
    #: Every row's entry in ``base``, when asked for (``find_optimal(row_entries=True)``):
    #: a release places each row by it.
    entries: Int64s | None = field(default=None, repr=False, compare=False)
    #: What decides each row's reason at the chosen node (see :mod:`~koble.anonymity.placement`):
    #: :meth:`row_reasons` reads it instead of grouping and settling the rows again.
    placement: Placement | None = field(default=None, repr=False, compare=False)

    @property
    def chosen(self) -> dict[str, int]:
        """The chosen level of each quasi-identifier, by name."""
        return dict(zip(self.names, self.levels, strict=True))

    def apply(
        self,
        frame: pl.DataFrame,
        generalisations: Sequence[Generalisation],
        sensitive: Generalisation | None = None,
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Release ``frame`` at the chosen levels: ``(released, suppressed)``.

        ``released`` has the QI columns replaced by their labels (every member column of a
        tied QI, :mod:`koble.anonymity.tied`) and the suppressed rows removed;
        ``suppressed`` holds those rows, unchanged, with a ``suppression_reason`` column
        naming the first criterion their class fails. Row order is kept in both.
        """
        row_reason = self.row_reasons(frame, generalisations, sensitive)
        gone = pl.Series(row_reason >= 0)
        texts = pl.Series(self.requirements.texts(), dtype=pl.String)
        released = frame.with_columns(
            [s for g, lv in zip(generalisations, self.levels, strict=True) for s in g.columns(lv)]
        ).filter(~gone)
        why = texts.gather(row_reason[row_reason >= 0]).alias(REASON_COLUMN)
        return released, frame.filter(gone).with_columns(why)

    def row_reasons(
        self,
        frame: pl.DataFrame,
        generalisations: Sequence[Generalisation],
        sensitive: Generalisation | None = None,
    ) -> Int64s:
        """Why each row of ``frame`` is withheld at the chosen levels: the index of the
        reason among ``requirements.texts()``, or -1 for a row released (see :meth:`apply`,
        which checks its arguments here)."""
        if not self.feasible:
            raise UsageError("no generalisation meets the requirements; nothing to release")
        if sensitive is None and any(c.needs_sensitive for c in self.requirements.criteria):
            raise UsageError("this result needs the sensitive attribute to be applied")
        if tuple(g.name for g in generalisations) != self.names:
            raise UsageError(f"expected the quasi-identifiers {', '.join(self.names)} in order")
        for g in generalisations:
            for name in g.column_names:  # a tied QI stands for several columns
                if name not in frame.columns:
                    raise ColumnError("quasi-identifier column missing from the frame", column=name)
            if len(g.codes) != frame.height:
                raise ColumnError("generalisation and frame differ in length", column=g.name)
        if self.placement is not None and self.placement.fits(generalisations, sensitive):
            reason = self.placement.row_reasons()
            if reason is not None:
                return reason
        codes = None if sensitive is None else sensitive.codes
        radix = 1 if sensitive is None else len(sensitive.labels[0])
        table, entry = build_table(Lookups(generalisations, radix), self.levels, codes)
        return self.requirements.settle(table).reason[entry]  # type: ignore[no-any-return]


def _validate(
    qis: Sequence[Generalisation],
    k: int,
    limit: float,
    criteria: Sequence[Criterion],
    sensitive: Generalisation | None,
    person_model: PersonModel | None = None,
    counts: Int64s | None = None,
) -> None:
    """Collect every problem with the request and raise once."""
    problems = []
    if counts is not None:
        if qis and len(counts) != len(qis[0].codes):
            problems.append("the counts and the quasi-identifiers differ in length")
        elif len(counts) and int(counts.min()) < 1:
            problems.append("every count must be at least 1")
        if person_model is not None:
            problems.append("a person-level model needs the rows, not counted rows")
    if not qis:
        problems.append("at least one quasi-identifier is needed")
    elif len({len(g.codes) for g in qis} | ({len(sensitive.codes)} if sensitive else set())) > 1:
        problems.append("the quasi-identifiers and the sensitive attribute differ in length")
    elif not len(qis[0].codes):
        problems.append("there are no rows")
    if len({g.name for g in qis}) != len(qis):
        problems.append("quasi-identifier names must be distinct")
    if k < 1:
        problems.append(f"k must be at least 1, not {k}")
    if not 0.0 <= limit <= 1.0:
        problems.append(f"the suppression limit must be between 0 and 1, not {limit}")
    if sensitive is None and any(c.needs_sensitive for c in criteria):
        problems.append("l-diversity and t-closeness need a sensitive attribute")
    if sensitive is None and person_model is not None:
        problems.append("a person-level model needs the person column in the sensitive slot")
    if problems:
        raise UsageError("; ".join(problems))


def find_optimal(
    qis: Sequence[Generalisation],
    *,
    k: int,
    suppression_limit: float = 0.0,
    metric: Metric | str = DEFAULT_METRIC,
    criteria: Sequence[Criterion] = (),
    sensitive: Generalisation | None = None,
    cache_bytes: int = 512 << 20,
    person_model: PersonModel | None = None,
    row_entries: bool = False,
    counts: Int64s | None = None,
) -> SearchResult:
    """The full-domain generalisation of least loss meeting k-anonymity and ``criteria``.

    ``suppression_limit`` is the fraction of rows that may be withheld (classes failing a
    criterion are suppressed); ``sensitive`` (its level-0 codes; for ordered t-closeness the
    code order is the value order) is needed by l-diversity and t-closeness. The metric
    defaults to non-uniform entropy. Ties: lowest height, then lexicographically smallest
    levels (in the order of ``qis``). ``cache_bytes`` bounds the cached node tables.
    ``person_model`` (with the person's codes as ``sensitive``) judges persons, not rows:
    see :mod:`koble.anonymity.longitudinal`; the limit still counts rows. ``row_entries``:
    keep every row's entry in the level-0 table (``SearchResult.entries``; not with
    ``sensitive``), which the release places rows by. ``counts``: the rows are counted
    already (a frequency table, e.g. an engine's ``GROUP BY``), row i standing for
    ``counts[i]`` rows; the result is that of the rows expanded (not with ``person_model``).
    """
    start = time.perf_counter()
    problem = Problem(
        qis,
        k=k,
        suppression_limit=suppression_limit,
        metric=metric,
        criteria=criteria,
        sensitive=sensitive,
        cache_bytes=cache_bytes,
        person_model=person_model,
        row_entries=row_entries,
        counts=counts,
    )

    outcome = search(
        problem.lattice,
        problem.judge,
        problem.model.bound,
        exact=problem.model.exact,
        monotone=problem.requirements.monotone,
    )
    return problem.result(outcome.best, outcome.evaluated, outcome.tagged, start)
