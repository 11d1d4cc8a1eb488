"""The generalisation lattice, and the optimal search over it with monotonicity pruning.

A node is a tuple of levels, one per quasi-identifier; node ``a`` is below ``b`` when every
level of ``a`` is ≤ that of ``b``. Nodes are numbered by mixed radix (the first QI most
significant), so numeric order is lexicographic order of the levels.

The search (:func:`search`) runs in two phases.

1. Classification, after ARX's Flash: from each unclassified node (lowest first) a chain is
   walked upwards through unclassified successors and binary-searched; a node that passes the
   monotone criteria tags every node above it as passing them, one that fails tags every node
   below it as failing (predictive tagging). The boundary found on the chain is then traced
   to a maximal failing node (climbing through failing successors) and a minimal passing one
   (descending through passing predecessors): those are exactly the nodes no tag can reach,
   and they tag the most. Nodes whose lower bound on the loss cannot beat the best feasible
   node found so far are not classified at all.
2. Selection. For metrics whose bound is the exact loss (height, precision) the candidates are
   taken in order of loss and the first feasible one wins. For the others the candidates are
   visited layer by layer (by height); a node's bound is the larger of its static bound and
   every predecessor's ``floor`` (a lower bound on the loss of all its successors that an
   evaluation yields), and only nodes whose bound can still beat the best are evaluated.

Ties are broken deterministically: least loss, then lowest height (sum of levels), then the
lexicographically smallest levels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from koble.errors import UsageError

__all__ = ["MAX_NODES", "Evaluation", "Lattice", "Outcome", "search"]

MAX_NODES = 20_000_000
Floats = npt.NDArray[np.float64]
_UNKNOWN, _PASS, _FAIL = 0, 1, 2


class Lattice:
    """All combinations of levels for QIs of the given heights, with their order relations."""

    def __init__(self, heights: Sequence[int]) -> None:
        self.radix = tuple(h + 1 for h in heights)
        self.size = math.prod(self.radix)
        if self.size > MAX_NODES:
            raise UsageError(f"the lattice has {self.size:,} nodes; at most {MAX_NODES:,}")
        self.strides = tuple(math.prod(self.radix[i + 1 :]) for i in range(len(self.radix)))
        grid = np.indices(self.radix, dtype=np.int16).reshape(len(self.radix), self.size)
        self.levels = grid.T  # a view: row n is node n's levels
        height = np.zeros(1, dtype=np.int64)
        for r in self.radix:  # outer sums in node order: cheaper than summing the levels
            height = (height[:, None] + np.arange(r, dtype=np.int64)).ravel()
        self.height = height
        self.order = np.argsort(self.height.astype(np.int16), kind="stable")
        self.layers = np.searchsorted(self.height[self.order], np.arange(sum(heights) + 2))
        self._tops = tuple(r - 1 for r in self.radix)
        self._steps = [
            np.arange(r, dtype=np.int64) * st
            for st, r in zip(self.strides, self.radix, strict=True)
        ]

    def node(self, index: int) -> tuple[int, ...]:
        """The levels of node ``index``."""
        return tuple(self.levels[index].tolist())

    def index(self, levels: Sequence[int]) -> int:
        """The number of the node with these levels."""
        return sum(lv * st for lv, st in zip(levels, self.strides, strict=True))

    def successors(self, index: int) -> list[int]:
        """Nodes one level higher in exactly one QI."""
        row = self.levels[index].tolist()
        steps = zip(self.strides, row, self._tops, strict=True)
        return [index + st for st, lv, top in steps if lv < top]

    def predecessors(self, index: int) -> list[int]:
        """Nodes one level lower in exactly one QI."""
        row = self.levels[index].tolist()
        return [index - st for st, lv in zip(self.strides, row, strict=True) if lv > 0]

    def box(self, low: Sequence[int], high: Sequence[int]) -> npt.NDArray[np.int64]:
        """Numbers of the nodes between ``low`` and ``high`` component-wise (inclusive)."""
        # The QIs fixed at one level only shift the numbers: add them once at the end (a
        # probe near the bottom or top of the lattice spans few QIs; this runs per probe).
        offset, found = 0, None
        for lo, hi, stride, all_steps in zip(low, high, self.strides, self._steps, strict=True):
            offset += lo * stride
            if hi > lo:
                steps = all_steps[: hi - lo + 1]
                found = steps if found is None else (found[:, None] + steps).ravel()
        if found is None:
            return np.array([offset], dtype=np.int64)
        return found + offset

    def above(self, index: int) -> npt.NDArray[np.int64]:
        """The nodes ≥ ``index`` (itself included)."""
        return self.box(self.node(index), self._tops)

    def below(self, index: int) -> npt.NDArray[np.int64]:
        """The nodes ≤ ``index`` (itself included)."""
        return self.box([0] * len(self.radix), self.node(index))


@dataclass(frozen=True)
class Evaluation:
    """What evaluating one node tells the search.

    ``floor`` bounds from below the loss of this node and every node above it (whenever they
    are feasible), e.g. discernibility without the suppression penalty.
    """

    feasible: bool
    feasible_monotone: bool
    loss: float
    floor: float


@dataclass(frozen=True)
class Outcome:
    """The optimal node (``None`` when no node is feasible) and the search's effort."""

    best: int | None
    evaluated: int
    tagged: int


class _Search:
    def __init__(
        self,
        lattice: Lattice,
        evaluate: Callable[[int], Evaluation],
        bound: Floats,
        monotone: bool,
    ) -> None:
        self.lat, self.evaluate, self.bound, self.monotone = lattice, evaluate, bound, monotone
        self.status = np.zeros(lattice.size, dtype=np.int8)
        self.grid = self.status.reshape(lattice.radix)  # a view: one axis per QI
        self.floor = np.full(lattice.size, -np.inf)
        self.results: dict[int, Evaluation] = {}
        self.tagged = 0
        self.best: tuple[float, int, int] | None = None

    def beats(self, loss: float, index: int) -> bool:
        """Whether a node with this loss (or bound) would be preferred to the best so far."""
        return self.best is None or (loss, int(self.lat.height[index]), index) < self.best

    def beats_all(self, loss: Floats, index: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """Vectorised :meth:`beats`."""
        if self.best is None:
            return np.ones(len(index), dtype=np.bool_)
        bl, bh, bi = self.best
        h = self.lat.height[index]
        better: npt.NDArray[np.bool_] = (loss < bl) | (
            (loss == bl) & ((h < bh) | ((h == bh) & (index < bi)))
        )
        return better

    def check(self, index: int) -> Evaluation:
        found = self.results.get(index)
        if found is None:
            found = self.results[index] = self.evaluate(index)
            self.floor[index] = found.floor
            if found.feasible and self.beats(found.loss, index):
                self.best = (found.loss, int(self.lat.height[index]), index)
        return found

    def tag(self, index: int, passed: bool) -> None:
        """Tag the unclassified nodes of ``index``'s up-set passing (``passed``), else of
        its down-set failing.

        Node numbers are the levels in C order, so in the statuses with one axis per QI
        (``grid``) a node's up- or down-set is a box of basic slices: it is tagged in
        place, without listing its nodes."""
        levels = self.lat.levels[index].tolist()
        if passed:
            region = self.grid[tuple([slice(lv, None) for lv in levels])]
        else:
            region = self.grid[tuple([slice(0, lv + 1) for lv in levels])]
        unknown = region == _UNKNOWN
        found = int(np.count_nonzero(unknown))
        if found:
            region[unknown] = _PASS if passed else _FAIL
            self.tagged += found

    def probe(self, index: int) -> bool:
        """Check one node for the monotone criteria and tag its up- or down-set."""
        passed = self.check(index).feasible_monotone
        self.status[index] = _PASS if passed else _FAIL
        self.tag(index, passed)
        return passed

    def climb(self, index: int) -> None:
        """From a failing node up to a maximal failing one: its down-set is the largest."""
        moved = True
        while moved:
            moved = False
            for up in self.lat.successors(index):
                if self.status[up] == _UNKNOWN and not self.probe(up):
                    index, moved = up, True
                    break

    def descend(self, index: int) -> None:
        """From a passing node down to a minimal passing one (skipping hopeless nodes)."""
        moved = True
        while moved:
            moved = False
            for down in self.lat.predecessors(index):
                if self.status[down] != _UNKNOWN or not self.beats(self.bound[down], down):
                    continue
                if self.probe(down):
                    index, moved = down, True
                    break

    def next_open(self, pos: int) -> int | None:
        """The first position from ``pos`` on in the order by height of a node still
        unclassified whose bound can beat the best. A node once closed stays closed (tags
        are final and the best only improves), so the scan goes forward, in growing chunks:
        the next open node is usually near."""
        order, chunk = self.lat.order, 256
        while pos < len(order):
            ids = order[pos : pos + chunk]
            open_ = (self.status[ids] == _UNKNOWN) & self.beats_all(self.bound[ids], ids)
            found = np.flatnonzero(open_)
            if len(found):
                return pos + int(found[0])
            pos, chunk = pos + len(ids), chunk * 4
        return None

    def classify(self) -> None:
        """Phase 1: Flash-style chains with binary search and predictive tagging, each
        boundary then traced to a maximal failing and a minimal passing node."""
        order, pos = self.lat.order, 0
        while True:
            found = self.next_open(pos)
            if found is None:
                return
            pos = found
            path = [int(order[pos])]
            while True:
                nexts = [s for s in self.lat.successors(path[-1]) if self.status[s] == _UNKNOWN]
                if not nexts:
                    break
                path.append(min(nexts, key=lambda s: (self.bound[s], s)))
            lo, hi = 0, len(path) - 1
            while lo <= hi:
                mid = (lo + hi) // 2
                if self.probe(path[mid]):
                    hi = mid - 1
                else:
                    lo = mid + 1
            if lo > 0:
                self.climb(path[lo - 1])
            if lo < len(path):
                self.descend(path[lo])

    def select_exact(self) -> None:
        """Phase 2 when the bound is the loss: the first feasible candidate in loss order."""
        cand = np.flatnonzero(self.status == _PASS)
        cand = cand[self.beats_all(self.bound[cand], cand)]
        for index in cand[np.lexsort((cand, self.lat.height[cand], self.bound[cand]))].tolist():
            if self.monotone or self.check(index).feasible:
                self.best = (float(self.bound[index]), int(self.lat.height[index]), index)
                return

    def select_bounded(self) -> None:
        """Phase 2 otherwise: layer by layer, bounds inherited from evaluated predecessors."""
        lat = self.lat
        inherited = np.full(lat.size + 1, -np.inf)  # the last stands for "no predecessor"
        strides = np.asarray(lat.strides, dtype=np.int64)
        for h in range(len(lat.layers) - 1):
            ids = lat.order[lat.layers[h] : lat.layers[h + 1]]
            preds = ids[:, None] - strides  # every predecessor of the layer at once
            preds[lat.levels[ids] == 0] = lat.size
            bound = np.maximum(self.bound[ids], inherited[preds].max(axis=1))
            keep = (self.status[ids] == _PASS) & self.beats_all(bound, ids)
            for index, b in zip(ids[keep].tolist(), bound[keep].tolist(), strict=True):
                if self.beats(b, index):
                    self.check(index)
            inherited[ids] = np.maximum(bound, self.floor[ids])


def search(
    lattice: Lattice,
    evaluate: Callable[[int], Evaluation],
    bound: Floats,
    *,
    exact: bool,
    monotone: bool,
) -> Outcome:
    """Find the feasible node of least loss.

    ``bound[n]`` is a lower bound on node n's loss that never decreases upwards (the loss
    itself when ``exact``); ``monotone`` says whether feasibility as a whole is monotone
    (otherwise ``Evaluation.feasible_monotone`` carries the monotone part only).
    """
    state = _Search(lattice, evaluate, bound, monotone)
    state.classify()
    if exact:
        state.select_exact()
    else:
        state.select_bounded()
    best = None if state.best is None else state.best[2]
    if best is not None:
        state.check(best)
    return Outcome(best, len(state.results), state.tagged)
