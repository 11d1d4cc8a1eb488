"""The reference the search is tested against: every lattice node, evaluated from scratch.

:func:`brute_force` rolls every node up straight from the base table (no cache, no
tagging, no bounds) and picks the feasible node of least loss with the same tie-break as the
search (lowest height, then lexicographically smallest levels). It is exponential in the
number of QIs by nature, so it is meant for tests and small problems only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from koble.anonymity.search import Problem

__all__ = ["BruteForce", "brute_force"]


@dataclass(frozen=True)
class BruteForce:
    """Per node (by lattice number): feasibility, monotone-part feasibility, loss,
    suppressed rows; and the optimal node (``None`` when none is feasible)."""

    feasible: npt.NDArray[np.bool_]
    feasible_monotone: npt.NDArray[np.bool_]
    loss: npt.NDArray[np.float64]
    suppressed: npt.NDArray[np.int64]
    best: int | None


def brute_force(problem: Problem) -> BruteForce:
    """Evaluate every node of ``problem``'s lattice from the base table."""
    size = problem.lattice.size
    feasible = np.zeros(size, dtype=np.bool_)
    monotone = np.zeros(size, dtype=np.bool_)
    loss = np.full(size, np.inf)
    suppressed = np.zeros(size, dtype=np.int64)
    for index in range(size):
        check, value, _ = problem.evaluate(index, cached=False)
        feasible[index] = check.feasible
        monotone[index] = check.feasible_monotone
        loss[index] = value
        suppressed[index] = check.suppressed
    candidates = np.flatnonzero(feasible)
    best = None
    if len(candidates):
        height = problem.lattice.height[candidates]
        order = np.lexsort((candidates, height, loss[candidates]))
        best = int(candidates[order[0]])
    return BruteForce(feasible, monotone, loss, suppressed, best)
