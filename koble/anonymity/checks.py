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
from koble.anonymity.longitudinal import PersonModel, rescue
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
    "Settlement",
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


_IDENTITY: list[Int64s] = [np.arange(0, dtype=np.int64)]


def _identity(n: int) -> Int64s:
    """``0, 1, ..., n - 1`` as a read-only view of one shared array (grown as needed): a
    search asks for it at every node."""
    if len(_IDENTITY[0]) < n:
        grown = np.arange(max(n, 2 * len(_IDENTITY[0])), dtype=np.int64)
        grown.flags.writeable = False
        _IDENTITY[0] = grown
    return _IDENTITY[0][:n]


def classes_of(table: FrequencyTable) -> Classes:
    """Classes are runs of equal ``keys // radix`` in the sorted table."""
    if table.radix == 1:
        index = _identity(table.size)
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
        return f"{self.k:,}-anonymity"


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
        return f"{self.k:,}-anonymity over persons"


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
    """The outcome at one node: which classes fail a class criterion, which entries are
    withheld (those classes' entries, and every entry of a person a person-level model
    fails), and whether the withheld rows fit the limit (all criteria, and the monotone
    ones). ``persons_suppressed`` counts persons withheld whole (None without a model)."""

    classes: Classes
    failing: Mask
    withheld: Mask
    kept_sizes: Int64s
    suppressed: int
    suppressed_monotone: int
    feasible: bool
    feasible_monotone: bool
    persons_suppressed: int | None = None

    @property
    def kept_classes(self) -> int:
        """Number of released classes (holding at least one released row)."""
        return int(np.count_nonzero(self.kept_sizes))

    @property
    def min_class_size(self) -> int:
        """Smallest released class (0 when everything is suppressed)."""
        kept = self.kept_sizes[self.kept_sizes > 0]
        return int(kept.min()) if len(kept) else 0


@dataclass(frozen=True)
class Settlement:
    """The release at one node: per entry the reason it is withheld (-1: released), the
    rows released per class, the rows and the whole persons withheld."""

    check: NodeCheck
    reason: Int64s
    withheld: Mask
    kept_sizes: Int64s
    suppressed: int
    persons_suppressed: int | None

    @property
    def kept_classes(self) -> int:
        return int(np.count_nonzero(self.kept_sizes))

    @property
    def min_class_size(self) -> int:
        kept = self.kept_sizes[self.kept_sizes > 0]
        return int(kept.min()) if len(kept) else 0


@dataclass(frozen=True)
class Requirements:
    """The criteria, the number of rows that may be suppressed, the overall distribution,
    and the person-level model (which needs the person in the sensitive slot)."""

    criteria: tuple[Criterion, ...]
    allowed: int
    overall: Floats
    person_model: PersonModel | None = None

    def __post_init__(self) -> None:
        raise_problems([whole_number(self.allowed, "allowed", minimum=0)])

    @property
    def monotone(self) -> bool:
        """Whether feasibility as a whole is monotone (so feasible nodes may be tagged)."""
        return self.allowed == 0 or all(c.monotone_with_suppression for c in self.criteria)

    def check(self, table: FrequencyTable) -> NodeCheck:
        """Evaluate every criterion on ``table``'s classes, and the person model.

        Work a plain search does not need is skipped: with no sensitive attribute every
        entry is its own class (no per-entry gathers), and without non-monotone criteria the
        monotone figures are the figures."""
        classes = classes_of(table)
        identity = table.radix == 1  # classes_of: entry j is class j
        mono: Mask | None = None
        rest: Mask | None = None
        for criterion in self.criteria:
            flags = criterion.failing(table, classes, self.overall)
            if criterion.monotone_with_suppression:
                mono = flags if mono is None else mono | flags
            else:
                rest = flags if rest is None else rest | flags
        if mono is None:
            mono = np.zeros(len(classes.sizes), dtype=np.bool_)
        failing = mono if rest is None else mono | rest
        withheld = failing if identity else failing[classes.entry_class]
        if rest is None:
            withheld_mono = withheld
        else:
            withheld_mono = mono if identity else mono[classes.entry_class]
        persons = None
        if self.person_model is not None:
            assert table.sensitive is not None, "a person model needs the person column"
            who = table.sensitive.astype(np.int64)
            n = int(who.max()) + 1 if len(who) else 0
            gone = self.person_model.failing(classes.entry_class, who, n)
            persons = int(np.count_nonzero(gone))
            withheld = withheld | gone[who]
            withheld_mono = withheld if rest is None else withheld_mono | gone[who]
        suppressed = int(table.counts[withheld].sum())
        if withheld_mono is withheld:
            suppressed_mono = suppressed
        else:
            suppressed_mono = int(table.counts[withheld_mono].sum())
        if identity:
            kept = np.where(withheld, 0, table.counts)
        else:
            kept = np.bincount(
                classes.entry_class, np.where(withheld, 0, table.counts), len(classes.sizes)
            ).astype(np.int64)
        feasible = suppressed <= self.allowed
        if self.monotone:
            suppressed_mono, feasible_mono = suppressed, feasible
        else:
            feasible_mono = suppressed_mono <= self.allowed
        return NodeCheck(classes, failing, withheld, kept, suppressed, suppressed_mono,
                         feasible, feasible_mono, persons)  # fmt: skip

    def describe(self) -> tuple[str, ...]:
        """Every criterion's short name, the person model's last."""
        names = tuple(c.describe() for c in self.criteria)
        return names if self.person_model is None else (*names, self.person_model.describe())

    def texts(self) -> list[str]:
        """What :meth:`settle`'s reason numbers stand for, in order."""
        texts = [f"fails {c.describe()}" for c in self.criteria]
        if self.person_model is not None:
            texts.append(f"fails {self.person_model.describe()}: the person is withheld")
            texts.append(
                f"row of a class held by fewer than {self.k} persons, withheld so that the "
                f"rest of the person passes {self.person_model.describe()}"
            )
        return texts

    @property
    def k(self) -> int:
        """The k of the first k-anonymity criterion (the search always sets one)."""
        return next((c.k for c in self.criteria if isinstance(c, KAnonymity)), 1)

    def settle(self, table: FrequencyTable) -> Settlement:
        """What is withheld at this node, entry by entry, and why (see :meth:`texts`).

        Class criteria withhold their classes; a person model withholds whole persons, and
        :func:`~koble.anonymity.longitudinal.rescue` gives back those who pass with only
        their rows in classes of fewer than k persons withheld.
        """
        check = self.check(table)
        reason = self.reasons(table, check.classes)[check.classes.entry_class]
        persons = None
        if self.person_model is not None:
            assert table.sensitive is not None
            who = table.sensitive.astype(np.int64)
            n = int(who.max()) + 1 if len(who) else 0
            per_item = distinct_per_class(table, check.classes)
            gone, entries = rescue(check.classes.entry_class, who, n, self.person_model,
                                   per_item, self.k)  # fmt: skip
            base = len(self.criteria)
            person_reason = np.where(gone[who], base, np.where(entries, base + 1, -1))
            reason = np.where(reason >= 0, reason, person_reason)
            persons = int(np.count_nonzero(gone))
        withheld = reason >= 0
        kept = np.bincount(
            check.classes.entry_class, np.where(withheld, 0, table.counts), len(check.classes.sizes)
        ).astype(np.int64)
        return Settlement(check, reason, withheld, kept, int(table.counts[withheld].sum()),
                          persons)  # fmt: skip

    def reasons(self, table: FrequencyTable, classes: Classes) -> npt.NDArray[np.int64]:
        """Per class, the index of the first criterion it fails (-1 when it passes)."""
        reason = np.full(len(classes.sizes), -1, dtype=np.int64)
        for index in reversed(range(len(self.criteria))):
            reason[self.criteria[index].failing(table, classes, self.overall)] = index
        return reason
