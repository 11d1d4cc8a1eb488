"""The person-level figures as koble computed them before the numpy rewrite (polars, from
the values): the reference the rewrite must equal, figure for figure (issue 14)."""

# mypy: ignore-errors
from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from koble.anonymity.longitudinal import MAX_SUBSETS, subset_count
from koble.anonymity.parameters import UNSUPPORTED_TYPES
from koble.anonymity.person_risk import PersonRisk, Signatures

_P, _T, _TC, _PAIR = "\0person", "\0tuple", "\0tuple+", "\0tuple×rows"
_S, _N = "\0signature", "\0n"


def constant_columns(
    frame: pl.DataFrame, person: str, *, share: float = 0.9
) -> tuple[tuple[str, ...], int]:
    others = [
        c
        for c in frame.columns
        if c != person and not isinstance(frame.schema[c], UNSUPPORTED_TYPES)
    ]
    distinct = (
        frame.group_by(pl.col(person).alias("\0person"))
        .agg(
            pl.len().alias("\0rows"),
            *(pl.col(c).n_unique().alias(f"\0c{i}") for i, c in enumerate(others)),
        )
        .filter(pl.col("\0rows") >= 2)
    )
    if distinct.is_empty():
        return (), 0
    flags = distinct.select(
        (pl.col(f"\0c{i}") == 1).mean() >= share for i in range(len(others))
    ).row(0)
    return tuple(c for c, constant in zip(others, flags, strict=True) if constant), distinct.height


def _number(frame: pl.DataFrame, columns: list[str], name: str) -> pl.DataFrame:
    """``frame`` with ``name``: a number per distinct combination of ``columns`` (nulls
    equal to each other). A join on the distinct combinations: exact, and several times
    faster than ranking a struct."""
    numbers = frame.select(columns).unique().with_row_index(name)
    return frame.join(numbers.with_columns(pl.col(name).cast(pl.Int64)), on=columns,
                      how="left", nulls_equal=True)  # fmt: skip


def _summary(sizes: pl.Series, k: int) -> Signatures:
    """:class:`Signatures` from the persons per signature."""
    if sizes.is_empty():
        return Signatures(0, 0, 0, 0)
    sizes = sizes.cast(pl.Int64)
    return Signatures(
        groups=sizes.len(),
        unique=int((sizes == 1).sum()),
        # capped: k may exceed any group size and the column type's range
        under_k=int(sizes.filter(sizes < min(k, int(sizes.sum()) + 1)).sum()),
        smallest=int(sizes.min()),  # type: ignore[arg-type]
    )


def _by_set(entries: pl.DataFrame, item: str, k: int, *, distinct: bool = False) -> Signatures:
    """Persons grouped by the sorted list of their distinct ``item`` numbers (``distinct``:
    each (person, item) is in ``entries`` once already)."""
    items = pl.col(item) if distinct else pl.col(item).unique()
    signatures = entries.group_by(_P).agg(items.sort().alias(_S))
    return _summary(signatures.group_by(_S).len()["len"], k)


def _km_failing(
    entries: pl.DataFrame, item: str, k: int, m: int, *, distinct: bool = False
) -> int | None:
    """Persons with a subset of 1..m of their distinct items held by fewer than k persons
    (None when there would be more than ``MAX_SUBSETS`` subsets).

    Apriori: a subset held by fewer than k persons fails every person holding it, and so
    does each of its supersets (held by fewer still), whose persons are counted already; so
    only the subsets held by k or more are extended. Each subset is one integer (its items'
    dense numbers as digits), so counting its holders groups one column."""
    pairs = entries.select(_P, item) if distinct else entries.select(_P, item).unique()
    if pairs.is_empty():
        return 0
    per_person = pairs.group_by(_P).len()["len"].value_counts()
    sizes, counts = per_person.to_series(0).to_list(), per_person.to_series(1).to_list()
    if subset_count(sizes, counts, m) > MAX_SUBSETS:
        return None
    cap = min(k, pairs[_P].n_unique() + 1)  # k may exceed the count type's range
    items = pairs.select(_P, pl.col(item).cast(pl.Int64).alias("\0i"))  # dense numbers
    radix = int(items["\0i"].max()) + 1  # type: ignore[arg-type]
    # a j-subset's key: its items (ascending) as digits of base radix; wider than 62 bits
    # it is numbered densely again before the next digit goes on
    level = items.with_columns(pl.col("\0i").alias("\0key"), pl.col("\0i").alias("\0last"))
    short = []
    for j in range(m):
        if j:  # the j+1-subsets: a held j-subset extended by a larger item of the person
            nxt = items.rename({"\0i": "\0next"})
            level = level.join(nxt, on=_P).filter(pl.col("\0next") > pl.col("\0last"))
            if level.is_empty():
                break
            width = int(level["\0key"].max()) + 1  # type: ignore[arg-type]
            key = pl.col("\0key")
            if width.bit_length() + radix.bit_length() > 62:
                key = key.rank("dense").cast(pl.Int64)
            level = level.select(_P, (key * radix + pl.col("\0next")).alias("\0key"),
                                 pl.col("\0next").alias("\0last"))  # fmt: skip
        held = pl.len().over("\0key")  # persons holding the subset
        short.append(level.filter(held < cap).select(_P))
        if j + 1 < m:
            level = level.filter(held >= cap)
        if level.is_empty():
            break
    return pl.concat(short)[_P].n_unique()


def person_risk_reference(
    frame: pl.DataFrame, qis: Sequence[str], person: str, *, k: int, m: int = 2,
    path: str = "<table>", tuple_ids: pl.Series | None = None,
) -> PersonRisk:  # fmt: skip
    """The old ``person_risk``, without its parameter checks."""
    constant, multi = constant_columns(frame, person)
    added = tuple(c for c in constant if c not in qis)
    extra = [pl.col(c).alias(f"\0c{i}") for i, c in enumerate(added)]
    if tuple_ids is None:
        keys = [pl.col(c).alias(f"\0qi{i}") for i, c in enumerate(qis)]
        names = [f"\0qi{i}" for i in range(len(qis))]
        rows = _number(frame.select(pl.col(person).alias(_P), *keys, *extra), names, _T)
    else:  # numbered densely, so a tuple and a row count fit one integer below
        rows = frame.select(pl.col(person).alias(_P), *extra).with_columns(
            tuple_ids.rank("dense").cast(pl.Int64).alias(_T)
        )
    if added:  # the tuple and the person-constant columns
        rows = _number(rows, [_T, *(f"\0c{i}" for i in range(len(added)))], _TC)
    rows = rows.select(_P, _T, *([_TC] if added else []))
    counted = rows.group_by(_P, _T).len()
    # (tuple, rows) as one integer: tuples are dense (below 2^32), counts at most the rows
    radix = int(counted["len"].max() or 0) + 1  # type: ignore[arg-type]
    multiset = counted.select(_P, (pl.col(_T) * radix + pl.col("len")).alias(_PAIR))
    pairs = counted.select(_P, _T)  # each (person, tuple) once
    by_set = _by_set(pairs, _T, k, distinct=True)
    km = _km_failing(pairs, _T, k, m, distinct=True)
    # no tuple twice in a person: the multisets are the sets, grouped alike
    once = radix <= 2
    return PersonRisk(
        person=person,
        k=k,
        m=m,
        persons=counted[_P].n_unique(),
        rows=frame.height,
        multi_row_persons=multi,
        constant_columns=constant,
        added_columns=added,
        by_set=by_set,
        by_multiset=by_set if once else _by_set(multiset, _PAIR, k, distinct=True),
        by_set_with_constant=_by_set(rows, _TC, k) if added else by_set,
        km_failing=km,
        km_failing_with_constant=_km_failing(rows, _TC, k, m) if added else km,
    )
