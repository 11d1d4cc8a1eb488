"""Privacy criteria, checked per equivalence class on a node's frequency table.

A class that fails any criterion is suppressed (its rows are withheld); a node is feasible
when the suppressed rows are at most ``allowed`` (the suppression limit times the row
count, rounded down). Monotonicity decides how the lattice search may prune:

- k-anonymity and distinct l-diversity are monotone with and without suppression: merging
  classes (generalising) never makes a passing class fail, so the suppressed rows can only
  shrink, and every successor of a feasible node is feasible.
- entropy l-diversity and t-closeness (equal- and ordered-distance EMD) are monotone only
  without suppression: entropy and the EMD to the overall distribution are concave resp.
  convex in the class distribution, so a merge of passing classes passes, but a passing
  class merged with a failing one may fail. With a positive limit the search therefore
  never tags nodes feasible on their account; it still prunes with the monotone criteria
  (a node failing those is infeasible, and so is every predecessor) and checks the rest
  node by node.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from koble.anonymity.frequency import FrequencyTable, Int64s
from koble.anonymity.parameters import at_least, raise_problems, share, whole_number

__all__ = [
    "Classes",
    "Criterion",
    "DistinctLDiversity",
    "EntropyLDiversity",
    "KAnonymity",
    "KPersons",
    "NodeCheck",
    "Requirements",
    "TCloseness",
    "classes_of",
    "distinct_per_class",
]

Mask = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]
_EPS = 1e-9  # tolerance for the floating-point criteria (entropy, EMD)


@dataclass(frozen=True)
class Classes:
    """The equivalence classes of a table: their sizes, and each entry's class number."""

    sizes: Int64s
    entry_class: Int64s
    starts: Int64s


def classes_of(table: FrequencyTable) -> Classes:
    """Classes are runs of equal ``keys // radix`` in the sorted table."""
    if table.radix == 1:
        index = np.arange(table.size, dtype=np.int64)
        return Classes(table.counts, index, index)
    ck = table.keys // table.radix
    flags = np.empty(len(ck), dtype=np.bool_)
    flags[:1] = True
    np.not_equal(ck[1:], ck[:-1], out=flags[1:])
    starts = np.flatnonzero(flags)
    sizes = np.add.reduceat(table.counts, starts)
    return Classes(sizes, np.cumsum(flags, dtype=np.int64) - 1, starts)


def distinct_per_class(table: FrequencyTable, classes: Classes) -> Int64s:
    """Distinct sensitive codes per class: entries are (class, sensitive code) pairs, so a
    class's number of entries is its number of distinct values."""
    return np.diff(np.append(classes.starts, table.size))


class Criterion(ABC):
    """A per-class privacy requirement; ``failing`` marks the classes that violate it."""

    monotone_with_suppression: ClassVar[bool]
    needs_sensitive: ClassVar[bool]

    @abstractmethod
    def failing(self, table: FrequencyTable, classes: Classes, overall: Floats) -> Mask:
        """One flag per class; ``overall`` is the sensitive distribution of all rows."""

    @abstractmethod
    def describe(self) -> str:
        """A short human-readable name with the parameter, e.g. ``5-anonymity``."""


@dataclass(frozen=True)
class KAnonymity(Criterion):
    """Every released class has at least ``k`` rows."""

    k: int
    monotone_with_suppression: ClassVar[bool] = True
    needs_sensitive: ClassVar[bool] = False

    def __post_init__(self) -> None:
        raise_problems([whole_number(self.k, "k")])

    def failing(self, table: FrequencyTable, classes: Classes, overall: Floats) -> Mask:
        return classes.sizes < self.k

    def describe(self) -> str:
        return f"{self.k}-anonymity"


@dataclass(frozen=True)
class DistinctLDiversity(Criterion):
    """Every released class has at least ``l`` distinct sensitive values."""

    l: int  # noqa: E741 - the literature's name
    monotone_with_suppression: ClassVar[bool] = True
    needs_sensitive: ClassVar[bool] = True

    def __post_init__(self) -> None:
        raise_problems([whole_number(self.l, "l")])

    def failing(self, table: FrequencyTable, classes: Classes, overall: Floats) -> Mask:
        return distinct_per_class(table, classes) < self.l

    def describe(self) -> str:
        return f"distinct {self.l}-diversity"


@dataclass(frozen=True)
class KPersons(Criterion):
    """Every released class holds at least ``k`` distinct persons (files with several rows
    per person). The person column takes the sensitive slot: one entry per (class, person),
    so the distinct count per class is the number of persons. Monotone like distinct
    l-diversity: merging classes never loses a person."""

    k: int
    monotone_with_suppression: ClassVar[bool] = True
    needs_sensitive: ClassVar[bool] = True

    def __post_init__(self) -> None:
        raise_problems([whole_number(self.k, "k")])

    def failing(self, table: FrequencyTable, classes: Classes, overall: Floats) -> Mask:
        return distinct_per_class(table, classes) < self.k

    def describe(self) -> str:
        return f"{self.k}-anonymity over persons"


@dataclass(frozen=True)
class EntropyLDiversity(Criterion):
    """Every released class's sensitive values have entropy ≥ log(l) (natural log)."""

    l: float  # noqa: E741
    monotone_with_suppression: ClassVar[bool] = False
    needs_sensitive: ClassVar[bool] = True

    def __post_init__(self) -> None:
        raise_problems([at_least(self.l, "l")])

    def failing(self, table: FrequencyTable, classes: Classes, overall: Floats) -> Mask:
        c = table.counts.astype(np.float64)
        clogc = np.bincount(
            classes.entry_class, weights=c * np.log(c), minlength=len(classes.sizes)
        )
        s = classes.sizes.astype(np.float64)
        entropy = np.log(s) - clogc / s
        return entropy < math.log(self.l) - _EPS

    def describe(self) -> str:
        return f"entropy {self.l:g}-diversity"


@dataclass(frozen=True)
class TCloseness(Criterion):
    """Every released class's sensitive distribution is within EMD ``t`` of the overall one.

    ``ordered=False``: equal ground distance (half the L1 distance), for categories.
    ``ordered=True``: ordered distance over the sensitive codes' order (ordinal values):
    the sum of absolute cumulative differences divided by (number of values - 1).
    """

    t: float
    ordered: bool = False
    monotone_with_suppression: ClassVar[bool] = False
    needs_sensitive: ClassVar[bool] = True

    def __post_init__(self) -> None:
        raise_problems([share(self.t, "t")])

    def failing(self, table: FrequencyTable, classes: Classes, overall: Floats) -> Mask:
        assert table.sensitive is not None
        n_classes = len(classes.sizes)
        p = table.counts / classes.sizes[classes.entry_class]
        if not self.ordered:
            q = overall[table.sensitive]
            terms = np.abs(p - q) - q
            distance = 0.5 * (np.bincount(classes.entry_class, terms, n_classes) + 1.0)
        else:
            distance = _ordered_emd(table.sensitive, p, classes, overall)
        return distance > self.t + _EPS

    def describe(self) -> str:
        kind = "ordered" if self.ordered else "equal"
        return f"{self.t:g}-closeness ({kind} distance)"


def _ordered_emd(sensitive: npt.NDArray[np.int32], p: Floats, c: Classes, q: Floats) -> Floats:
    """Ordered-distance EMD per class, in blocks of classes so the dense matrix stays small."""
    n_values = len(q)
    n_classes = len(c.sizes)
    out = np.zeros(n_classes, dtype=np.float64)
    if n_values < 2:
        return out
    block = max(1, (1 << 22) // n_values)
    ends = np.append(c.starts, len(p))
    for first in range(0, n_classes, block):
        last = min(first + block, n_classes)
        lo, hi = int(ends[first]), int(ends[last])
        cells = (c.entry_class[lo:hi] - first) * n_values + sensitive[lo:hi]
        dense = np.bincount(cells, p[lo:hi], (last - first) * n_values)
        diff = dense.reshape(last - first, n_values) - q
        out[first:last] = np.abs(np.cumsum(diff, axis=1)[:, :-1]).sum(axis=1) / (n_values - 1)
    return out


@dataclass(frozen=True)
class NodeCheck:
    """The outcome at one node: which classes fail (all criteria, and the monotone ones)."""

    classes: Classes
    failing: Mask
    suppressed: int
    suppressed_monotone: int
    feasible: bool
    feasible_monotone: bool

    @property
    def kept_classes(self) -> int:
        """Number of released (not suppressed) classes."""
        return int(len(self.failing) - np.count_nonzero(self.failing))

    @property
    def min_class_size(self) -> int:
        """Smallest released class (0 when everything is suppressed)."""
        kept = self.classes.sizes[~self.failing]
        return int(kept.min()) if len(kept) else 0


@dataclass(frozen=True)
class Requirements:
    """The criteria, the number of rows that may be suppressed, the overall distribution."""

    criteria: tuple[Criterion, ...]
    allowed: int
    overall: Floats

    def __post_init__(self) -> None:
        raise_problems([whole_number(self.allowed, "allowed", minimum=0)])

    @property
    def monotone(self) -> bool:
        """Whether feasibility as a whole is monotone (so feasible nodes may be tagged)."""
        return self.allowed == 0 or all(c.monotone_with_suppression for c in self.criteria)

    def check(self, table: FrequencyTable) -> NodeCheck:
        """Evaluate every criterion on ``table``'s classes."""
        classes = classes_of(table)
        mono = np.zeros(len(classes.sizes), dtype=np.bool_)
        rest = np.zeros_like(mono)
        for criterion in self.criteria:
            target = mono if criterion.monotone_with_suppression else rest
            target |= criterion.failing(table, classes, self.overall)
        failing = mono | rest
        suppressed = int(classes.sizes[failing].sum())
        suppressed_mono = int(classes.sizes[mono].sum())
        feasible = suppressed <= self.allowed
        if self.monotone:
            suppressed_mono, feasible_mono = suppressed, feasible
        else:
            feasible_mono = suppressed_mono <= self.allowed
        return NodeCheck(classes, failing, suppressed, suppressed_mono, feasible, feasible_mono)

    def reasons(self, table: FrequencyTable, classes: Classes) -> npt.NDArray[np.int64]:
        """Per class, the index of the first criterion it fails (-1 when it passes)."""
        reason = np.full(len(classes.sizes), -1, dtype=np.int64)
        for index in reversed(range(len(self.criteria))):
            reason[self.criteria[index].failing(table, classes, self.overall)] = index
        return reason
