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
- ``non-uniform entropy`` (Gionis & Tassa; ARX): Σ over QIs and rows of
  log2(f(generalised value) / f(original value)), frequencies over all N rows; a suppressed
  row counts as fully generalised (f = N). Monotone without suppression, not with it. Its
  value without suppression is additive over QIs, so it is a static bound for every node.
- ``average class size`` (C_AVG): (N − suppressed) / (released classes × k); N / k when
  nothing is released. Monotone without suppression, not with it. Floor and bound:
  (N − allowed) / (classes × k), since the class count only falls upwards.
"""

from __future__ import annotations

import math
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from koble.anonymity.checks import NodeCheck
from koble.anonymity.frequency import FrequencyTable, Lookups
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
        self.exact = metric in (Metric.HEIGHT, Metric.PRECISION)
        self.monotone = self.exact or allowed == 0
        levels = lattice.levels.astype(np.int64)
        heights = [len(c) - 1 for c in lookups.cards]
        self._penalty: list[list[Floats]] = []
        if metric is Metric.HEIGHT:
            self.bound = levels.sum(axis=1).astype(np.float64)
        elif metric is Metric.PRECISION:
            lcm = math.lcm(*[h for h in heights if h > 0] or [1])
            weights = np.array([lcm // h if h else 0 for h in heights], dtype=np.int64)
            self.bound = (levels @ weights) / float(lcm * len(heights))
        elif metric is Metric.NON_UNIFORM_ENTROPY:
            self.bound = self._entropy_bound(lookups, base, levels)
        else:
            classes = np.ones(lattice.size, dtype=np.int64)
            for i, cards in enumerate(lookups.cards):
                per_level = np.asarray(cards, dtype=np.int64)[levels[:, i]]
                classes = np.minimum(classes * per_level, self.rows)
            if metric is Metric.DISCERNIBILITY:
                self.bound = (self.rows * self.rows // classes).astype(np.float64)
            else:
                self.bound = (self.rows - allowed) / (classes * max(self.k, 1))

    def _entropy_bound(
        self, lookups: Lookups, base: FrequencyTable, levels: npt.NDArray[np.int64]
    ) -> Floats:
        """Per QI and level, the loss without suppression; also the suppression penalties."""
        total = np.zeros(len(levels), dtype=np.float64)
        log_n = math.log2(self.rows)
        for i, g in enumerate(lookups.qis):
            f0 = np.bincount(base.codes[i], base.counts, lookups.cards[i][0]).astype(np.float64)
            per_level = np.zeros(g.height + 1, dtype=np.float64)
            penalties = []
            for lv, m in enumerate(g.maps):
                freq = np.bincount(m, f0, lookups.cards[i][lv]).astype(np.float64)
                per_level[lv] = _plogp(freq) - _plogp(f0)
                with np.errstate(divide="ignore"):
                    penalties.append(np.where(freq > 0, log_n - np.log2(freq), 0.0))
            self._penalty.append(penalties)
            total += per_level[levels[:, i]]
        return total

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
        penalty = 0.0
        for i, lv in enumerate(table.levels):
            penalty += float(weights @ self._penalty[i][lv][table.codes[i][entries]])
        return static + penalty, static
