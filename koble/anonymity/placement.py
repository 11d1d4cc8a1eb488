"""Why each row is withheld at the chosen node, from what the search settled there.

A search settles its chosen node once (:meth:`~koble.anonymity.checks.Requirements.settle`);
applying the result used to group the rows again at that node and settle it a second time,
only to read each row's entry. :class:`Placement` keeps instead what decides an entry's
reason, which is small: the reason of each class (the first criterion it fails), and under
a person model the persons withheld whole and, for rescued persons, the classes whose rows
they give up. A row's reason is then a function of its class and its person, found with a
few gathers over the rows.

That the reasons decompose so is checked on the settled table itself, entry by entry, when
the placement is made: every row lies in exactly one entry (its class and its person), so the
rows' reasons are those of their entries. When the check fails, or the keys were re-coded,
there is no placement and the rows are grouped again as before.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from koble.anonymity.checks import Settlement
from koble.anonymity.frequency import FrequencyTable, Int64s, Lookups, class_keys
from koble.anonymity.generalisation import Codes, Generalisation

__all__ = ["Placement"]

Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class Placement:
    """Each class's reason and the person-level withholding at one settled node.

    ``keys`` are the classes' keys (as :func:`~koble.anonymity.frequency.class_keys` makes
    them for rows), sorted; ``reason[c]`` the index of the first criterion class c fails
    (-1: none). Under a person model (``gone`` not None) a row in a passing class is withheld
    for the model (reason ``criteria``) when its person is ``gone``, and as a rare row
    (``criteria + 1``) when its person is ``rescued`` and its class ``rare``."""

    lookups: Lookups
    levels: tuple[int, ...]
    sensitive: Codes | None
    keys: Int64s
    space: int
    reason: Int64s
    criteria: int
    gone: Mask | None
    rescued: Mask | None
    rare: Mask | None

    @classmethod
    def of(
        cls, table: FrequencyTable, settled: Settlement, lookups: Lookups,
        sensitive: Codes | None, criteria: int, persons: bool,
    ) -> Placement | None:  # fmt: skip
        """The placement of ``table``'s rows as ``settled``, or None when its reasons do
        not decompose by class and person (or the keys were re-coded)."""
        if table.cards is None or (persons and table.sensitive is None):
            return None
        classes = settled.check.classes
        first = settled.reason[classes.starts]
        reason = np.where(first < criteria, first, -1)
        expect = reason[classes.entry_class]
        gone = rescued = rare = None
        if persons:
            assert table.sensitive is not None
            who = table.sensitive
            gone = np.zeros(lookups.n_sensitive, dtype=np.bool_)
            gone[who[settled.reason == criteria]] = True
            alone = settled.reason == criteria + 1
            rescued = np.zeros(lookups.n_sensitive, dtype=np.bool_)
            rescued[who[alone]] = True
            rare = np.zeros(len(classes.sizes), dtype=np.bool_)
            rare[classes.entry_class[alone]] = True
            expect = _with_persons(expect, classes.entry_class, who, gone, rescued, rare, criteria)
        if not np.array_equal(expect, settled.reason):
            return None
        space = math.prod(c for c in table.cards if c > 1)
        keys = table.keys[classes.starts] // table.radix
        return cls(lookups, table.levels, sensitive, keys, space, reason, criteria, gone,
                   rescued, rare)  # fmt: skip

    def fits(self, qis: Sequence[Generalisation], sensitive: Generalisation | None) -> bool:
        """Whether these are the very columns the search placed (not merely alike)."""
        codes = None if sensitive is None else sensitive.codes
        return (
            len(qis) == len(self.lookups.qis)
            and all(a is b for a, b in zip(qis, self.lookups.qis, strict=True))
            and codes is self.sensitive
        )

    def row_reasons(self) -> Int64s | None:
        """Each row's reason (-1: released), or None if a row's class is not among the
        settled classes (then these are not the rows the search settled)."""
        keys = class_keys(self.lookups, self.levels)
        found: npt.NDArray[np.integer]
        if self.space <= max(1 << 16, 2 * len(keys)):
            where: npt.NDArray[np.integer] = np.full(
                self.space, -1, dtype=np.int32 if len(self.keys) < (1 << 31) else np.int64
            )
            where[self.keys] = np.arange(len(self.keys))
            found = where[keys]
            if len(found) and int(found.min()) < 0:
                return None
        else:
            found = np.searchsorted(self.keys, keys)
            np.minimum(found, max(len(self.keys) - 1, 0), out=found)
            if len(keys) and not np.array_equal(self.keys[found], keys):
                return None
        reason = self.reason[found]
        if self.gone is None:
            return reason  # type: ignore[no-any-return]
        assert self.sensitive is not None and self.rescued is not None and self.rare is not None
        return _with_persons(reason, found, self.sensitive, self.gone, self.rescued, self.rare,
                             self.criteria)  # fmt: skip


def _with_persons(
    reason: Int64s, where: npt.NDArray[np.integer], who: Codes, gone: Mask, rescued: Mask,
    rare: Mask, criteria: int,
) -> Int64s:  # fmt: skip
    """``reason`` (by class) with the person model's reasons where the class passes, as
    :meth:`~koble.anonymity.checks.Requirements.settle` gives them."""
    person = np.where(gone[who], criteria, np.where(rare[where] & rescued[who], criteria + 1, -1))
    return np.where(reason >= 0, reason, person)
