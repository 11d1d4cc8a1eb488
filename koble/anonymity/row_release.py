"""A release made row by row, where the coded release (:mod:`koble.anonymity.coded`) does
not apply: a person column (persons withheld whole, rare rows alone), a sensitive attribute,
a population, tied quasi-identifiers.

:func:`apply_rows` places the rows by :meth:`~koble.anonymity.search.SearchResult.row_reasons`
and gathers the released ones once, in their final order: a person table's rows sorted by
the values they are released with (:func:`value_order`, the labels ranked as integers, not
compared as text per row). :func:`person_ids` hands the person-level check the codes the
search holds, so it need not read those columns' values again.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence

import numpy as np
import numpy.typing as npt
import polars as pl

from koble.anonymity.distributions import exact_codes
from koble.anonymity.frequency import Lookups, class_keys
from koble.anonymity.generalisation import Generalisation
from koble.anonymity.preparation import IDS, ROW
from koble.anonymity.search import REASON_COLUMN, SearchResult

__all__ = ["apply_rows", "person_ids", "value_order"]


def apply_rows(
    frame: pl.DataFrame, qis: Sequence[Generalisation], result: SearchResult, lookups: Lookups,
    sensitive: Generalisation | None, person: str | None,
    into: MutableMapping[str, npt.NDArray[np.integer]] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.Series, npt.NDArray[np.integer]]:  # fmt: skip
    """The release row by row (:meth:`SearchResult.apply`): released rows, withheld rows,
    each released row's class key and its row number in ``frame`` (in the release's order).

    The released rows are gathered once, in their final order: each quasi-identifier's
    labels at the chosen level by the rows' codes, the other columns as they are. Each
    plain quasi-identifier's codes at its level are taken once for the rows released, and
    serve the order, the labels and (``into``, by name, in the release's order) the
    person-level check after the release (:func:`person_ids`)."""
    reason = result.row_reasons(frame, qis, sensitive)
    gone = reason >= 0
    kept = np.flatnonzero(~gone)
    rows = kept
    at = {g.name: g.maps[level][g.codes[kept]] for g, level in zip(qis, result.levels, strict=True)
          if g.column_names == (g.name,)}  # fmt: skip
    if person is not None:
        # by value, not by person: adjacent rows (or an order by fødselsnummer) would
        # tie a person's rows together, or give the person away
        order = value_order(frame, qis, result.levels, kept, person, at=at).to_numpy()
        rows = kept[order]
        at = {name: codes[order] for name, codes in at.items()}
    if into is not None:
        into.update(at)
    where = pl.Series(rows)
    labels: dict[str, pl.Series] = {}
    for g, level in zip(qis, result.levels, strict=True):
        if g.column_names == (g.name,):
            text = pl.Series(g.name, list(g.labels[level]), dtype=pl.String)
            labels[g.name] = text.gather(at[g.name])
        else:  # a tied QI: its member columns
            labels.update((s.name, s.gather(where)) for s in g.columns(level))
    released = pl.DataFrame([labels[c] if c in labels else frame.get_column(c).gather(where)
                             for c in frame.columns])  # fmt: skip
    texts = pl.Series(result.requirements.texts(), dtype=pl.String)
    why = texts.gather(reason[gone]).alias(REASON_COLUMN)
    keys = class_keys(lookups, result.levels)
    # filtered beside each row's class and number, as ever: whether Polars joins the
    # input's chunks into one depends on the columns beside them, and the chunks are the
    # withheld file's row groups (its bytes)
    keyed = frame.with_columns(pl.Series(IDS, keys),
                               pl.int_range(pl.len(), dtype=pl.UInt32).alias(ROW))  # fmt: skip
    held = keyed.filter(pl.Series(gone)).drop(IDS, ROW).with_columns(why)
    return released, held, pl.Series(IDS, keys[rows]), rows


def person_ids(
    frame: pl.DataFrame, qis: Sequence[Generalisation], levels: Sequence[int],
    sensitive: Generalisation | None, person: str | None,
    rows: npt.NDArray[np.integer] | None, exact: Sequence[bool],
    known: Mapping[str, npt.NDArray[np.integer]] | None = None,
) -> dict[str, npt.NDArray[np.integer]] | None:  # fmt: skip
    """For the person-level figures of ``frame``'s ``rows`` (all when None) released at
    ``levels``: the codes the search holds, per column, where they part the rows exactly
    as the values do (the person's codes, the sensitive slot's; a plain quasi-identifier's
    at its level when ``exact`` and its labels there are distinct), so those columns'
    values need not be read again. ``known``: quasi-identifiers' codes at ``levels`` of
    ``rows`` taken already (:func:`apply_rows`' ``into``)."""
    if person is None or sensitive is None or not exact_codes(frame[person], sensitive):
        return None

    def pick(codes: npt.NDArray[np.integer]) -> npt.NDArray[np.integer]:
        return codes if rows is None else codes[rows]

    ids = {person: pick(sensitive.codes)}
    for g, level, same in zip(qis, levels, exact, strict=True):
        labels = g.labels[level]
        if g.column_names == (g.name,) and same and len(set(labels)) == len(labels):
            if known is not None and g.name in known:
                ids[g.name] = known[g.name]
            else:
                ids[g.name] = pick(g.codes) if level == 0 else g.maps[level][pick(g.codes)]
    return ids


def value_order(
    frame: pl.DataFrame, qis: Sequence[Generalisation], levels: Sequence[int],
    kept: npt.NDArray[np.integer], person: str,
    at: Mapping[str, npt.NDArray[np.integer]] | None = None,
) -> pl.Series:  # fmt: skip
    """The order of the released rows ``kept`` by the values they are released with, every
    column but ``person`` in the file's order, nulls last, ties in file order: a
    quasi-identifier's labels by their rank among its level's labels (sorted as text), not
    as text per row; the other columns by their values. ``at``: plain quasi-identifiers'
    codes at their level for the rows ``kept``, taken already."""
    plain = {g.name: (g, level) for g, level in zip(qis, levels, strict=True)
             if g.column_names == (g.name,)}  # fmt: skip
    tied = {c: (g, level) for g, level in zip(qis, levels, strict=True)
            for c in g.column_names if g.column_names != (g.name,)}  # fmt: skip
    where = pl.Series(kept)
    keys: list[pl.Series | tuple[npt.NDArray[np.int64], int]] = []
    for c in frame.columns:
        if c == person:
            continue
        if c in plain:
            g, level = plain[c]
            labels = pl.Series(list(g.labels[level]), dtype=pl.String)
            of_code = labels.rank("dense").cast(pl.Int64).to_numpy() - 1
            codes = at[c] if at is not None and c in at else g.maps[level][g.codes[kept]]
            rank, card = of_code[codes], int(of_code.max(initial=0)) + 1
            last = keys[-1] if keys else None
            if isinstance(last, tuple) and last[1] * card < 1 << 62:  # one key, mixed radix
                keys[-1] = (last[0] * card + rank, last[1] * card)
            else:
                keys.append((rank, card))
        elif c in tied:
            g, level = tied[c]
            keys.append(next(s for s in g.columns(level) if s.name == c).gather(where))
        else:
            keys.append(frame.get_column(c).gather(where))
    if not keys:
        return pl.Series(np.arange(len(kept)))
    by = pl.DataFrame([(k if isinstance(k, pl.Series) else pl.Series(k[0])).alias(f"\0{i}")
                       for i, k in enumerate(keys)])  # fmt: skip
    order = pl.arg_sort_by(by.columns, nulls_last=True, maintain_order=True)
    return by.select(order).to_series()
