"""Information-loss metrics, computed from a node's frequency table and the hierarchies.

Every metric gives the search three things: a static lower bound for every node at once
(never decreasing upwards), the exact loss of an evaluated node, and a ``floor`` that bounds
the loss of the node and of every node above it. Which metrics are monotone (never better
higher up the lattice) matters for the search: for monotone ones only the lowest feasible
nodes can be optimal; for the others every feasible node must be bounded or evaluated.

- ``height``: sum of the levels. Monotone; suppression plays no part. Exact without data.
- ``precision`` (Sweeney's Prec): mean over QIs of level / height (a QI with one level
  counts 0). Monotone; suppression plays no part (suppressed rows are reported, not scored).
- ``discernibility`` (DM): Σ|E|² over released classes + suppressed rows × N. Monotone
  without suppression, not with it (generalising can release a suppressed class).
  Floor: Σ |E|·max(|E|, k) over the node's classes (a class only grows upwards, and a
  released class has at least k rows, a suppressed row costs N).
- ``non-uniform entropy`` (Gionis & Tassa; ARX's definition, ``MetricMDNUNMEntropy``):
  Σ over QIs and all N rows of log2(f(original value) / f(generalised value)), frequencies
  over all N rows, plus for the suppressed rows, per QI, their count times the entropy of
  their generalised values within the suppressed set (S·H = Σ c·log2(S / c)). Monotone
  without suppression, not with it. Its value without suppression is additive over QIs, so
  it is a static bound for every node (the suppression term is never negative) and a floor.
- ``non-uniform entropy, suppressed as *``: the same, but a suppressed row counts as fully
  generalised (f = N): log2(N / f(original value)) per QI, as koble scored it before it
  followed ARX. Same bound and floor.
- ``average class size`` (C_AVG): (N − suppressed) / (released classes × k); N / k when
  nothing is released. Monotone without suppression, not with it. Floor and bound:
  (N − allowed) / (classes × k), since the class count only falls upwards.
- ``loss`` (ARX's default quality model, ``MetricMDNMLoss`` with its defaults: equal weights,
  gs-factor 0.5, geometric mean): per QI, Σ over released rows of the generalised value's
  share of the domain (values under it / values in the hierarchy, :class:`~koble.anonymity.
  generalisation.Domain`) plus 1 per suppressed row, normalised to [0, 1] by
  (x − N/D) / (N − N/D); the QIs are combined as (Π (1 + x_i))^(1/d) − 1. A share never
  falls upwards, so the value with suppressed rows charged their share instead of 1 is a
  static bound and a floor; it is the loss itself without suppression.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from koble.anonymity.checks import NodeCheck
from koble.anonymity.frequency import FrequencyTable, Int64s, Lookups
from koble.anonymity.lattice import Lattice

__all__ = ["LossModel", "Metric"]

Floats = npt.NDArray[np.float64]


class Metric(StrEnum):
    """The loss metrics on offer (the value is the name reported with the result)."""

    HEIGHT = "height"
    PRECISION = "precision"
    DISCERNIBILITY = "discernibility"
    NON_UNIFORM_ENTROPY = "non-uniform entropy"
    AECS = "average class size"
    LOSS = "loss"
    ENTROPY_SUPPRESSED_AS_TOP = "non-uniform entropy, suppressed as *"


def _outer(
    per_qi: Sequence[npt.NDArray[Any]],
    op: Callable[[npt.NDArray[Any], npt.NDArray[Any]], npt.NDArray[Any]],
) -> npt.NDArray[Any]:
    """Every lattice node's value from one value per level of each QI, combined with
    ``op`` in QI order, in node order (the first QI most significant): an outer operation
    per QI, not a gather per QI over the whole lattice."""
    total = per_qi[0]
    for values in per_qi[1:]:
        total = op(total[:, None], values).ravel()
    return total


def _plogp(freq: Floats) -> float:
    nz = freq[freq > 0]
    return float((nz * np.log2(nz)).sum())


class LossModel:
    """One metric prepared for one search: bounds for all nodes, and per-node evaluation."""

    def __init__(
        self,
        metric: Metric,
        lookups: Lookups,
        base: FrequencyTable,
        lattice: Lattice,
        k: int,
        allowed: int,
    ) -> None:
        self.metric, self.lattice = metric, lattice
        self.rows = int(base.counts.sum())
        self.k, self.allowed = min(k, self.rows), allowed
        # Without suppression the entropies and ARX's loss are their static values: the
        # bound is the loss, and the search need evaluate no node for its loss.
        additive = (Metric.NON_UNIFORM_ENTROPY, Metric.ENTROPY_SUPPRESSED_AS_TOP, Metric.LOSS)
        self.exact = metric in (Metric.HEIGHT, Metric.PRECISION) or (
            allowed == 0 and metric in additive
        )
        self.monotone = self.exact or allowed == 0
        heights = [len(c) - 1 for c in lookups.cards]
        self._penalty: list[list[Floats]] = []
        self._shares: list[list[Floats]] = []
        self._spread: list[Floats] = []  # per QI: N/D and N − N/D, the normalisation
        if metric is Metric.HEIGHT:
            self.bound = lattice.height.astype(np.float64)
        elif metric is Metric.PRECISION:
            lcm = math.lcm(*[h for h in heights if h > 0] or [1])
            steps = [np.arange(h + 1, dtype=np.int64) * (lcm // h if h else 0) for h in heights]
            self.bound = _outer(steps, np.add) / float(lcm * len(heights))
        elif metric in (Metric.NON_UNIFORM_ENTROPY, Metric.ENTROPY_SUPPRESSED_AS_TOP):
            self.bound = self._entropy_bound(lookups, base)
        elif metric is Metric.LOSS:
            self.bound = self._loss_bound(lookups, base)
        else:
            per_qi = [np.asarray(c, dtype=np.int64) for c in lookups.cards]
            per_qi[0] = np.minimum(per_qi[0], self.rows)
            classes = _outer(per_qi, lambda a, b: np.minimum(a * b, self.rows))
            if metric is Metric.DISCERNIBILITY:
                self.bound = (self.rows * self.rows // classes).astype(np.float64)
            else:
                self.bound = (self.rows - allowed) / (classes * max(self.k, 1))

    def _entropy_bound(self, lookups: Lookups, base: FrequencyTable) -> Floats:
        """Per QI and level, the loss without suppression; also the suppression penalties."""
        per_qi = []
        log_n = math.log2(self.rows)
        for i, g in enumerate(lookups.qis):
            f0 = np.bincount(base.code(i), base.weights, lookups.cards[i][0]).astype(np.float64)
            per_level = np.zeros(g.height + 1, dtype=np.float64)
            penalties = []
            original = _plogp(f0)
            for lv, m in enumerate(g.maps):
                freq = np.bincount(m, f0, lookups.cards[i][lv]).astype(np.float64)
                per_level[lv] = _plogp(freq) - original
                if self.metric is Metric.ENTROPY_SUPPRESSED_AS_TOP:  # only it charges them
                    with np.errstate(divide="ignore"):
                        penalties.append(np.where(freq > 0, log_n - np.log2(freq), 0.0))
            self._penalty.append(penalties)
            per_qi.append(per_level)
        return _outer(per_qi, np.add)

    def _loss_bound(self, lookups: Lookups, base: FrequencyTable) -> Floats:
        """ARX's loss without suppression at every node (each QI's normalised value is
        additive over rows, so it is computed once per QI and level); also every code's
        domain share, for the suppressed rows' surcharge."""
        n = float(self.rows)
        per_qi = []
        for i, g in enumerate(lookups.qis):
            domain = g.domain_counts()
            shares = [c.astype(np.float64) / domain.size for c in domain.counts]
            f0 = np.bincount(base.code(i), base.weights, lookups.cards[i][0]).astype(np.float64)
            low = n / domain.size
            self._shares.append(shares)
            self._spread.append(np.array([low, n - low]))
            per_level = np.array([f0 @ share[m] for share, m in zip(shares, g.maps, strict=True)])
            per_qi.append(np.log1p(self._normalise(per_level, i)))
        return self._geometric(_outer(per_qi, np.add), len(per_qi))

    def _normalise(self, charged: Floats, qi: int) -> Floats:
        """ARX's ``normalizeGeneralized``: (x − N/D) / (N − N/D), at least 0."""
        low, span = self._spread[qi]
        if span <= 0:  # a one-value domain: nothing can be lost
            return np.zeros_like(charged)
        result: Floats = np.maximum((charged - low) / span, 0.0)
        return result

    @staticmethod
    def _aggregate(per_qi: list[Floats]) -> Floats:
        """ARX's geometric mean over the QIs, shifted by one so zeros do no harm."""
        total = np.zeros_like(per_qi[0])
        for values in per_qi:
            total += np.log1p(values)
        return LossModel._geometric(total, len(per_qi))

    @staticmethod
    def _geometric(logs: Floats, d: int) -> Floats:
        """From the sum of log1p over the d QIs, the shifted geometric mean."""
        result: Floats = np.expm1(logs / d)
        return result

    def sized(
        self, index: int, counts: Int64s, failing: npt.NDArray[np.bool_], suppressed: int,
        feasible: bool,
    ) -> tuple[float, float] | None:  # fmt: skip
        """:meth:`loss` of a node whose entries are its classes (k-anonymity alone), from
        the class sizes (``counts``) and those under k (``failing``), for the metrics that
        need nothing else (discernibility, average class size): the same figures without
        the general bookkeeping. None for the other metrics."""
        static, n = float(self.bound[index]), self.rows
        if self.metric is Metric.DISCERNIBILITY:
            floor = float(max(int((counts * np.maximum(counts, self.k)).sum()), static))
            if not feasible:
                return math.inf, floor
            kept = counts[~failing] if suppressed else counts
            return float(int((kept * kept).sum()) + suppressed * n), floor
        if self.metric is Metric.AECS:
            floor_aecs = max((n - self.allowed) / (len(counts) * self.k), static)
            if not feasible:
                return math.inf, floor_aecs
            released = len(counts) - int(np.count_nonzero(failing))
            aecs = (n - suppressed) / (released * self.k) if released else n / self.k
            return aecs, floor_aecs
        return None

    def loss(self, index: int, table: FrequencyTable, check: NodeCheck) -> tuple[float, float]:
        """The node's loss (infinite when infeasible: it is never needed) and its floor (a
        bound for it and every node above it)."""
        static = float(self.bound[index])
        if self.exact:
            return (static if check.feasible else math.inf), static
        sizes, n = check.classes.sizes, self.rows
        if self.metric is Metric.DISCERNIBILITY:
            if check.persons_suppressed is None:
                floor = int((sizes * np.maximum(sizes, self.k)).sum())
            else:  # a class may lose some persons above: each row still costs at least k
                floor = n * self.k
            if not check.feasible:
                return math.inf, float(max(floor, static))
            kept = check.kept_sizes
            dm = int((kept * kept).sum()) + check.suppressed * n
            return float(dm), float(max(floor, static))
        if self.metric is Metric.AECS:
            floor_aecs = max((n - self.allowed) / (len(sizes) * self.k), static)
            released = check.kept_classes
            if not check.feasible:
                return math.inf, floor_aecs
            aecs = (n - check.suppressed) / (released * self.k) if released else n / self.k
            return aecs, floor_aecs
        if not check.feasible:
            return math.inf, static
        if not check.suppressed:
            return static, static
        entries = np.flatnonzero(check.withheld)
        weights = table.counts[entries].astype(np.float64)
        if self.metric is Metric.LOSS:
            return max(self._loss_suppressed(table, entries, weights), static), static
        penalty = 0.0
        for i, lv in enumerate(table.levels):
            codes = table.codes_at(i, entries)
            if self.metric is Metric.NON_UNIFORM_ENTROPY:  # S·H of the suppressed values
                within = np.bincount(codes, weights).astype(np.float64)
                total = float(within.sum())
                penalty += total * math.log2(total) - _plogp(within)
            else:
                penalty += float(weights @ self._penalty[i][lv][codes])
        return static + penalty, static

    def _loss_suppressed(self, table: FrequencyTable, entries: Int64s, weights: Floats) -> float:
        """ARX's loss at a node with suppressed rows: each costs 1 per QI, not its share."""
        per_qi = []
        for i, lv in enumerate(table.levels):
            share = self._shares[i][lv]
            charged = float(table.counts @ share[table.digits(i)])
            charged += float(weights @ (1.0 - share[table.codes_at(i, entries)]))
            per_qi.append(self._normalise(np.array([charged]), i))
        return float(self._aggregate(per_qi)[0])
