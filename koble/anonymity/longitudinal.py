"""Anonymity per person, not per row: the person-level models for longitudinal files.

A file with several rows per person (IPLOS services, prescriptions, stays) can have every
row class hold k persons and still single persons out: an attacker who knows a person's
*set* of rows ("home nursing in 2015–2019, practical assistance in 2020–2024, Vestland")
finds the one person with that set. The models here judge the person:

- ``person-set`` (:class:`PersonSet`): every released person's set of generalised QI tuples
  is shared, exactly, by at least k persons (longitudinal k-anonymity, Tamersoy et al.
  2012). Columns constant within every person belong in the tuples (as quasi-identifiers).
- ``person-km`` (:class:`PersonKM`): any m of a person's tuples are held together by at
  least k persons (k^m-anonymity for set-valued data, Terrovitis et al. 2008). It protects
  against an attacker who knows at most m of a person's rows; person-set protects against
  one who knows them all. person-set implies person-km for every m, and person-km (m ≥ 1)
  implies k persons per row class.

Both are judged on a node's frequency table with the person in the sensitive slot: one
entry per (class, person), so a person's set is its entries' classes. Suppression withholds
whole persons; both models are monotone under generalisation with that suppression (a
coarser tuple set is a function of the finer one, and the k^m survivors of a finer node stay
survivors), so the lattice search keeps predictive tagging. :func:`rescue` then gives back,
at the chosen node, persons who pass once their rows in rare classes are withheld alone.

Everything is vectorised: a person's set is hashed order-independently (two 64-bit sums of
splitmix64 of its class numbers, 128 bits with the set size), subsets for k^m are enumerated
per set size as index arrays, and counts are bincounts.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from koble.anonymity.parameters import raise_problems, whole_number
from koble.errors import UsageError

__all__ = [
    "MAX_M",
    "MAX_SUBSETS",
    "MODELS",
    "PersonKM",
    "PersonModel",
    "PersonSet",
    "m_problem",
    "person_model",
    "rescue",
    "set_groups",
    "subset_count",
]

Mask = npt.NDArray[np.bool_]
Int64s = npt.NDArray[np.int64]
MODELS = ("row", "person-set", "person-km")
#: The most (person, subset) pairs person-km enumerates at one node before refusing.
MAX_SUBSETS = 200_000_000
#: The largest m person-km takes: the literature's attackers know a handful of items, and
#: the subsets to count grow as C(s, m).
MAX_M = 8
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SALT = np.uint64(0xD6E8FEB86659FD93)


def _mix(values: npt.NDArray[np.integer], salt: np.uint64) -> npt.NDArray[np.uint64]:
    """splitmix64 of ``values`` + ``salt``: well-spread 64-bit hashes."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) * _GOLDEN + salt
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))  # type: ignore[no-any-return]


def _sum_by(person: Int64s, hashes: npt.NDArray[np.uint64], n: int) -> npt.NDArray[np.uint64]:
    """Per person, the sum of ``hashes`` modulo 2**64 (exact: 32-bit halves in float64)."""
    lo = np.bincount(person, (hashes & np.uint64(0xFFFFFFFF)).astype(np.float64), n)
    hi = np.bincount(person, (hashes >> np.uint64(32)).astype(np.float64), n)
    with np.errstate(over="ignore"):
        return (hi.astype(np.uint64) << np.uint64(32)) + lo.astype(np.uint64)  # type: ignore[no-any-return]


def _sum_mixed(item: Int64s, person: Int64s, n: int, salt: np.uint64) -> npt.NDArray[np.uint64]:
    """``_sum_by(person, _mix(item, salt), n)``, mixing each distinct item once.

    A node has far fewer classes than (class, person) entries, so the hashes are computed
    for ``0..max(item)`` and their float64 halves gathered per entry: the same values summed
    in the same order as hashing every entry, at about half the cost.
    """
    n_items = int(item.max()) + 1 if len(item) else 0
    if n_items >= len(item):
        return _sum_by(person, _mix(item, salt), n)
    table = _mix(np.arange(n_items, dtype=np.int64), salt)
    lo = (table & np.uint64(0xFFFFFFFF)).astype(np.float64)[item]
    hi = (table >> np.uint64(32)).astype(np.float64)[item]
    sum_lo, sum_hi = np.bincount(person, lo, n), np.bincount(person, hi, n)
    with np.errstate(over="ignore"):
        return (sum_hi.astype(np.uint64) << np.uint64(32)) + sum_lo.astype(np.uint64)  # type: ignore[no-any-return]


def set_groups(item: Int64s, person: Int64s, n_persons: int) -> tuple[Int64s, Int64s, Mask]:
    """Group persons by their set of items: ``(group, sizes, present)``.

    ``item[j]`` and ``person[j]`` describe entry j; (item, person) pairs must be distinct.
    ``group[p]`` is person p's group number (-1 for persons without entries), ``sizes[g]``
    the number of persons in group g, ``present[p]`` whether p has entries.
    """
    count = np.bincount(person, minlength=n_persons)
    present = count > 0
    a = _sum_mixed(item, person, n_persons, _SALT)
    b = _sum_mixed(item, person, n_persons, _M2)
    with np.errstate(over="ignore"):
        b = b ^ _mix(count, _M1)
    who = np.flatnonzero(present)
    wa, wb = a[who], b[who]
    # Sorted by (a, b) as np.lexsort((wb, wa)) would, but by a alone (several times faster):
    # equal sets have equal (a, b), so the order within a run of equal a only matters when
    # two different sets share a (a 64-bit collision), and then lexsort decides.
    order = np.argsort(wa)
    sa, sb = wa[order], wb[order]
    if np.any((sa[1:] == sa[:-1]) & (sb[1:] != sb[:-1])):
        order = np.lexsort((wb, wa))
        sa, sb = wa[order], wb[order]
    flags = np.empty(len(who), dtype=np.bool_)
    flags[:1] = True
    np.not_equal(sa[1:], sa[:-1], out=flags[1:])
    flags[1:] |= sb[1:] != sb[:-1]
    numbers = np.cumsum(flags, dtype=np.int64) - 1
    group = np.full(n_persons, -1, dtype=np.int64)
    group[who[order]] = numbers
    sizes = np.bincount(numbers, minlength=int(numbers[-1]) + 1 if len(numbers) else 0)
    return group, sizes.astype(np.int64), present


def _by_person(item: Int64s, person: Int64s) -> tuple[Int64s, Int64s, Int64s]:
    """Entries sorted by (person, item): the items, the persons, and each person's start."""
    order = np.lexsort((item, person))
    items, persons = item[order], person[order]
    flags = np.empty(len(persons), dtype=np.bool_)
    flags[:1] = True
    np.not_equal(persons[1:], persons[:-1], out=flags[1:])
    return items, persons, np.flatnonzero(flags)


def _subsets(item: Int64s, person: Int64s, m: int) -> tuple[Int64s, Int64s]:
    """Every subset of 1..m of each person's items: ``(subset id, person)`` pairs.

    Persons are handled in blocks of equal set size s, with their items as an (n, s)
    matrix; the j-subsets are gathered by ``itertools.combinations(range(s), j)`` index
    arrays (a loop over set sizes and j, never over persons). A subset's id is exact: its
    items are folded in by mixed radix, re-coded densely after each item.
    """
    items, persons, starts = _by_person(item, person)
    sizes = np.diff(np.append(starts, len(items)))
    set_sizes, persons_of = np.unique(sizes, return_counts=True)
    total = subset_count(set_sizes.tolist(), persons_of.tolist(), m)
    if total > MAX_SUBSETS:
        raise UsageError(
            f"person-km would count {total:,} subsets at one node (at most {MAX_SUBSETS:,}); "
            "choose a smaller requirements.m or the person-set model"
        )
    n_items = int(item.max()) + 1 if len(item) else 1
    keys: list[Int64s] = []
    owners: list[Int64s] = []
    offset = 0
    for j in range(1, m + 1):
        found_keys: list[Int64s] = []
        found_owners: list[Int64s] = []
        for s in np.unique(sizes[sizes >= j]).tolist():
            first = starts[sizes == s]
            matrix = items[first[:, None] + np.arange(s)]
            combos = np.asarray(list(itertools.combinations(range(s), j)), dtype=np.int64)
            chosen = matrix[:, combos]  # (persons, combinations, j)
            found_keys.append(chosen.reshape(-1, j))
            found_owners.append(np.repeat(persons[first], len(combos)))
        if not found_keys:
            break
        tuples = np.concatenate(found_keys)
        key = tuples[:, 0].copy()
        for column in range(1, j):
            key = np.unique(key, return_inverse=True)[1].astype(np.int64).ravel()
            key = key * n_items + tuples[:, column]
        dense = np.unique(key, return_inverse=True)[1].astype(np.int64).ravel()
        keys.append(dense + offset)
        offset += int(dense.max()) + 1
        owners.append(np.concatenate(found_owners))
    return np.concatenate(keys), np.concatenate(owners)


def subset_count(set_sizes: Sequence[int], persons: Sequence[int], m: int) -> int:
    """How many (person, subset of 1..m items) pairs persons with these set sizes have:
    Σ persons × Σ_{j ≤ min(m, s)} C(s, j). Cheap for any m (j never passes s)."""
    return sum(
        int(n) * sum(math.comb(int(s), j) for j in range(1, min(m, int(s)) + 1))
        for s, n in zip(set_sizes, persons, strict=True)
    )


class PersonModel(ABC):
    """A person-level criterion: which persons fail at a node (they are withheld whole)."""

    name: ClassVar[str]

    @abstractmethod
    def failing(self, item: Int64s, person: Int64s, n_persons: int) -> Mask:
        """One flag per person code; ``item``/``person`` are a node's distinct
        (class, person) entries. Persons without entries never fail."""

    @abstractmethod
    def describe(self) -> str:
        """A short name with the parameters, e.g. ``person-set 5-anonymity``."""


@dataclass(frozen=True)
class PersonSet(PersonModel):
    """Every person's set of generalised tuples is shared exactly by at least k persons."""

    k: int
    name: ClassVar[str] = "person-set"

    def __post_init__(self) -> None:
        raise_problems([whole_number(self.k, "k")])

    def failing(self, item: Int64s, person: Int64s, n_persons: int) -> Mask:
        group, sizes, present = set_groups(item, person, n_persons)
        fail = np.zeros(n_persons, dtype=np.bool_)
        fail[present] = sizes[group[present]] < self.k
        return fail

    def describe(self) -> str:
        return f"person-set {self.k:,}-anonymity"


@dataclass(frozen=True)
class PersonKM(PersonModel):
    """Any m (or fewer) of a person's tuples are held together by at least k persons.

    Persons whose subsets fall short are withheld, which lowers other subsets' counts, so
    the check repeats until nothing more fails: what remains is the largest set of persons
    that is k^m-anonymous (a union of k^m-anonymous sets is one), hence unique.
    """

    k: int
    m: int = 2
    name: ClassVar[str] = "person-km"

    def __post_init__(self) -> None:
        raise_problems([whole_number(self.k, "k"), m_problem(self.m, "m")])

    def failing(self, item: Int64s, person: Int64s, n_persons: int) -> Mask:
        fail = np.zeros(n_persons, dtype=np.bool_)
        if not len(item):
            return fail
        subset, owner = _subsets(item, person, self.m)
        alive = np.ones(len(subset), dtype=np.bool_)
        n_subsets = int(subset.max()) + 1
        while True:
            counts = np.bincount(subset[alive], minlength=n_subsets)
            short = alive & (counts[subset] < self.k)
            if not short.any():
                return fail
            fail[owner[short]] = True
            alive &= ~fail[owner]

    def describe(self) -> str:
        return f"person-km {self.k:,}^{self.m}-anonymity"


def m_problem(value: object, name: str) -> str | None:
    """A problem unless ``value`` is a whole number from 1 to :data:`MAX_M`."""
    if whole_number(value, name) is not None or value > MAX_M:  # type: ignore[operator]
        return f"{name} must be a whole number from 1 to {MAX_M}"
    return None


def person_model(name: str, k: int, m: int = 2) -> PersonModel | None:
    """The model called ``name`` (``row`` is none: k persons per row class only)."""
    if name == "row":
        return None
    if name == "person-set":
        return PersonSet(k)
    if name == "person-km":
        return PersonKM(k, m)
    raise UsageError(f"model must be one of {', '.join(MODELS)}")


def rescue(
    item: Int64s, person: Int64s, n_persons: int, model: PersonModel, persons_per_item: Int64s,
    k: int,
) -> tuple[Mask, Mask]:  # fmt: skip
    """Persons the model fails, given back with only their rare rows withheld.

    A failing person's entries in classes held by fewer than k persons are dropped and the
    model is judged again over everyone. Only failing persons lose entries, and a person who
    passed keeps exactly their set: under person-set their group is unchanged or joined by
    rescued persons; under person-km the passing persons are k^m-anonymous among themselves
    and the largest k^m-anonymous set contains them. So every person who passed still
    passes, and anyone judged failing again is withheld whole. Returns
    ``(person_withheld, entry_withheld)``: persons withheld whole, and entries withheld
    (theirs, plus the rare entries of rescued persons).
    """
    failing = model.failing(item, person, n_persons)
    rare = (persons_per_item[item] < k) & failing[person]
    keep = ~rare
    again = model.failing(item[keep], person[keep], n_persons)
    remaining = np.bincount(person[keep], minlength=n_persons) > 0
    withheld = again | (failing & ~remaining)
    return withheld, withheld[person] | rare
