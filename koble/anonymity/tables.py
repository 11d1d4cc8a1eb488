"""Frequency tables safe to publish: primary and secondary cell suppression.

A two-way table of counts (rows × columns, with row, column and grand totals) is published
with every cell of 1 to ``threshold - 1`` persons hidden (*primary* suppression; zero cells
too when asked). Hiding those alone is not enough: a hidden cell that is the only hidden cell
of its row can be recomputed as the row total minus the visible cells, and more generally any
hidden cell fixed by the system of row and column equations can be solved for. *Secondary*
suppression hides further cells until no hidden cell is determined by the totals.

A hidden cell is determined exactly when, in the bipartite graph whose nodes are rows and
columns and whose edges are the hidden cells, its edge is a *bridge* (lies on no cycle): a
cycle lets one add and subtract the same amount around it without changing any total. So
secondary suppression hides, for each bridge, the cheapest rectangle through it (the fewest
new cells, then the fewest persons), until no bridge is left. This is a greedy heuristic,
not the minimum-loss suppression pattern (an integer programme), but it always ends
protected. It scales: the bridges are found once and kept up to date as cells are hidden
(:mod:`koble.anonymity.bridges`), and the cheapest rectangle is found by looking only where
one can be, so 1,000 × 1,000 tables take about a second. The verifiers
:func:`determined_cells` (linear algebra) and :func:`~koble.anonymity.bridges.bridge_cells`
(Tarjan's algorithm) check a result independently of how it was made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from koble.anonymity.bridges import GrowingBridges
from koble.anonymity.parameters import check_columns
from koble.errors import UsageError
from koble.registries.identifiers.scan import refuse_findings, scan_frame

__all__ = ["SafeTable", "crosstab", "determined_cells", "suppress"]

Counts = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class SafeTable:
    """Counts with a mask of hidden cells; totals are always published."""

    row_labels: list[str]
    col_labels: list[str]
    counts: Counts
    hidden: Mask
    primary: Mask
    threshold: int

    @property
    def secondary(self) -> Mask:
        return self.hidden & ~self.primary

    def to_frame(self, row_name: str = "row", symbol: str = ":") -> pl.DataFrame:
        """The publishable table as text: hidden cells shown as ``symbol`` (SSB uses ``:``)."""
        cells = np.where(self.hidden, symbol, self.counts.astype(str))
        data: dict[str, Any] = {row_name: [*self.row_labels, "Total"]}
        for j, label in enumerate(self.col_labels):
            data[label] = [*cells[:, j].tolist(), str(int(self.counts[:, j].sum()))]
        data["Total"] = [
            *(str(int(v)) for v in self.counts.sum(axis=1)),
            str(int(self.counts.sum())),
        ]
        return pl.DataFrame(data)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.row_labels,
            "columns": self.col_labels,
            "cells": [[None if h else int(c) for c, h in zip(r, hr, strict=True)]
                      for r, hr in zip(self.counts, self.hidden, strict=True)],
            "row_totals": self.counts.sum(axis=1).tolist(),
            "column_totals": self.counts.sum(axis=0).tolist(),
            "total": int(self.counts.sum()),
            "threshold": self.threshold,
            "primary_suppressed": int(self.primary.sum()),
            "secondary_suppressed": int(self.secondary.sum()),
        }  # fmt: skip


def crosstab(
    frame: pl.DataFrame, rows: str, cols: str, *, path: str = "<table>"
) -> tuple[list[str], list[str], Counts]:
    """Counts of ``rows`` × ``cols`` (values as text; missing shown as ``(missing)``)."""
    if rows == cols:
        raise UsageError("rows and cols must be two different columns")
    check_columns(frame, (rows, cols), path)
    text = frame.select(
        pl.col(rows).cast(pl.String).fill_null("(missing)").alias("r"),
        pl.col(cols).cast(pl.String).fill_null("(missing)").alias("c"),
    )
    grouped = text.group_by("r", "c").len()
    row_labels = sorted(grouped["r"].unique().to_list())
    col_labels = sorted(grouped["c"].unique().to_list())
    counts = np.zeros((len(row_labels), len(col_labels)), dtype=np.int64)
    r_index = grouped["r"].replace_strict(row_labels, list(range(len(row_labels)))).to_numpy()
    c_index = grouped["c"].replace_strict(col_labels, list(range(len(col_labels)))).to_numpy()
    counts[r_index, c_index] = grouped["len"].to_numpy()
    return row_labels, col_labels, counts


#: progress(stage, done, total): called now and then during long work (see :func:`suppress`)
Progress = Callable[[str, int, int], None]
_FINDING, _HIDING = "finding cells the totals reveal", "hiding more cells to protect them"

Index = npt.NDArray[np.intp]


def _least(persons: Counts, rows: Index, cols: Index) -> tuple[int, int, int] | None:
    """The least (persons, row, column) of a block of ``persons`` over ``rows`` × ``cols``
    (both ascending, so the first minimum in row-major order is the least), or None."""
    if persons.size == 0:
        return None
    k = int(np.argmin(persons))
    return int(persons.flat[k]), int(rows[k // cols.size]), int(cols[k % cols.size])


def _one_new_cell(counts: Counts, hidden: Mask, i: int, j: int, rows: Index, cols: Index,
                  free_rows: Index, free_cols: Index) -> tuple[int, int, int] | None:  # fmt: skip
    """The least (persons, i2, j2) over rectangles through bridge (i, j) that need one new
    cell, or None. ``rows``: the other hidden cells of column j; ``cols``: of row i;
    ``free_rows`` and ``free_cols``: the open cells of column j and row i. Since (i, j) lies
    on no cycle, a far corner in ``rows`` × ``cols`` is open (and the one new cell); else
    the far corner must be hidden and (i, j2) or (i2, j) is new."""
    options = [_least(counts[np.ix_(rows, cols)], rows, cols)]
    if rows.size and free_cols.size:  # (i, j2) is new; (i2, j2) hidden
        far = hidden[np.ix_(rows, free_cols)]
        usable = far.any(axis=0)
        if usable.any():
            persons = counts[i, free_cols]
            least = int(persons[usable].min())
            chosen = usable & (persons == least)
            r = int(np.argmax(far[:, chosen].any(axis=1)))
            c = int(free_cols[chosen][np.argmax(far[r, chosen])])
            options.append((least, int(rows[r]), c))
    if cols.size and free_rows.size:  # (i2, j) is new; (i2, j2) hidden
        far = hidden[np.ix_(free_rows, cols)]
        usable = far.any(axis=1)
        if usable.any():
            persons = counts[free_rows, j]
            least = int(persons[usable].min())
            r = int(np.flatnonzero(usable & (persons == least))[0])
            options.append((least, int(free_rows[r]), int(cols[np.argmax(far[r])])))
    return min((o for o in options if o is not None), default=None)


def _cheapest_rectangle(counts: Counts, hidden: Mask, i: int, j: int,
                        cells: Callable[[], tuple[Index, Index]]) -> tuple[int, int]:  # fmt: skip
    """The far corner (i2, j2) of the cheapest rectangle through bridge (i, j): the fewest
    new cells, then the fewest persons newly hidden, then the first row, then column.

    The exact minimum over every (i2, j2), without costing each: a rectangle needs one, two
    or three new cells (never none: (i, j) is on no cycle), and each number has few places
    to look. One new cell: :func:`_one_new_cell`. Two (only when none needs one): the far
    corner in a row of column j's hidden cells or a column of row i's (then it is open), or
    any other hidden cell (``cells()``, all of them). Three: only when (i, j) is the one
    hidden cell of its row, its column and every row and column that meet them.
    """
    rows = np.flatnonzero(hidden[:, j])
    rows = rows[rows != i]
    cols = np.flatnonzero(hidden[i])
    cols = cols[cols != j]
    free_rows, free_cols = np.flatnonzero(~hidden[:, j]), np.flatnonzero(~hidden[i])
    best = _one_new_cell(counts, hidden, i, j, rows, cols, free_rows, free_cols)
    if best is None:
        options = [
            _least(counts[i, free_cols] + counts[np.ix_(rows, free_cols)], rows, free_cols),
            _least(counts[free_rows, j][:, None] + counts[np.ix_(free_rows, cols)],
                   free_rows, cols),
        ]  # fmt: skip
        r, c = cells()
        far = ~hidden[r, j] & ~hidden[i, c]
        if far.any():
            r, c = r[far], c[far]
            persons = counts[i, c] + counts[r, j]
            k = int(np.lexsort((c, r, persons))[0])
            options.append((int(persons[k]), int(r[k]), int(c[k])))
        best = min((o for o in options if o is not None), default=None)
    if best is None:
        if not free_rows.size or not free_cols.size:
            raise UsageError("the table is too small to protect: it needs two rows and two columns")
        block = (counts[np.ix_(free_rows, free_cols)] + counts[i, free_cols]
                 + counts[free_rows, j][:, None])  # fmt: skip
        best = _least(block, free_rows, free_cols)
        assert best is not None
    return best[1], best[2]


def _bridge_queue(hidden: Mask, report: Progress) -> tuple[GrowingBridges, list[tuple[int, int]]]:
    """The row-column graph of ``hidden`` and its bridges, leaves of the bridge forest first
    (a rectangle there often protects the bridges above it too), then in row-major order."""
    n_rows = hidden.shape[0]
    graph = GrowingBridges(n_rows + hidden.shape[1])
    cells = np.nonzero(hidden)
    pairs = list(zip(cells[0].tolist(), cells[1].tolist(), strict=True))
    step = max(1, -(-len(pairs) // 100))
    for done, (i, j) in enumerate(pairs):
        if done % step == 0:
            report(_FINDING, done, len(pairs))
        graph.add(i, n_rows + j)
    report(_FINDING, len(pairs), len(pairs))
    bridges = [(i, j) for i, j in pairs if graph.is_bridge(i, n_rows + j)]
    depth = graph.depths([node for i, j in bridges for node in (i, n_rows + j)])
    order = sorted(range(len(bridges)), key=lambda k: (-max(depth[2 * k], depth[2 * k + 1]), k))
    return graph, [bridges[k] for k in order]


def suppress(counts: Counts, *, threshold: int = 5, zeros: bool = False,
             progress: Progress | None = None) -> tuple[Mask, Mask]:  # fmt: skip
    """(hidden, primary) masks for ``counts``: primary cells under ``threshold``, then
    secondary cells until no hidden cell can be recomputed from the totals.

    The bridges of the row-column graph are found once (:func:`_bridge_queue`), and each
    one still a bridge when its turn comes gets the cheapest rectangle through it. Adding a
    rectangle closes a 4-cycle, so it creates no bridge and can only turn others into
    non-bridges: one pass leaves none. Deterministic: the same counts give the same mask.
    ``progress(stage, done, total)`` hears how far it is, a hundred times per stage at most.
    """
    if threshold < 1:
        raise UsageError("the threshold must be at least 1")
    report: Progress = progress or (lambda stage, done, total: None)
    primary = (counts < threshold) & ((counts > 0) | zeros)
    hidden = primary.copy()
    graph, queue = _bridge_queue(hidden, report)
    n_rows = counts.shape[0]
    rows, cols = np.nonzero(hidden)
    cells, added = (rows, cols), list[tuple[int, int]]()

    def every_hidden_cell() -> tuple[Index, Index]:
        nonlocal cells
        if added:
            more = np.array(added, dtype=np.intp)
            cells = (np.concatenate([cells[0], more[:, 0]]), np.concatenate([cells[1], more[:, 1]]))
            added.clear()
        return cells

    step = max(1, -(-len(queue) // 100))
    for done, (i, j) in enumerate(queue):
        if done % step == 0:
            report(_HIDING, done, len(queue))
        if not graph.is_bridge(i, n_rows + j):
            continue
        i2, j2 = _cheapest_rectangle(counts, hidden, i, j, every_hidden_cell)
        for cell in ((i, j2), (i2, j), (i2, j2)):
            if not hidden[cell]:
                hidden[cell] = True
                added.append(cell)
                graph.add(cell[0], n_rows + cell[1])
    report(_HIDING, len(queue), len(queue))
    return hidden, primary


def determined_cells(counts: Counts, hidden: Mask) -> list[tuple[int, int]]:
    """Hidden cells an attacker can solve for from the published cells and totals.

    Independent of :func:`suppress`: a hidden cell is determined when its unit vector lies in
    the row space of the equations (one per row total and column total) restricted to the
    hidden cells, i.e. when every solution of the equations gives it the same value.
    """
    cells = list(zip(*np.nonzero(hidden), strict=True))
    if not cells:
        return []
    n_rows, n_cols = counts.shape
    equations = np.zeros((n_rows + n_cols, len(cells)))
    for k, (i, j) in enumerate(cells):
        equations[i, k] = 1.0
        equations[n_rows + j, k] = 1.0
    _, singular, vt = np.linalg.svd(equations)
    rank = int((singular > 1e-9).sum())
    null_space = vt[rank:]
    free = np.abs(null_space).max(axis=0) > 1e-9 if len(null_space) else np.zeros(len(cells), bool)
    return [(int(i), int(j)) for k, (i, j) in enumerate(cells) if not free[k]]


def safe_table(frame: pl.DataFrame, rows: str, cols: str, *, threshold: int = 5,
               zeros: bool = False, path: str = "<table>",
               progress: Progress | None = None) -> SafeTable:  # fmt: skip
    """The publishable two-way table of ``rows`` × ``cols`` in ``frame`` (read from ``path``).

    Its labels are published: a row or column variable holding a fødselsnummer-family number
    is refused (a :class:`ColumnError` naming where, never what), whatever the counts.
    ``progress`` hears how the suppression goes (:func:`suppress`)."""
    row_labels, col_labels, counts = crosstab(frame, rows, cols, path=path)
    refuse_findings(
        scan_frame(frame.select(rows, cols)),
        what="the table's labels would hold",
        remedy="tabulate a variable that identifies no one",
        path=path,
    )
    hidden, primary = suppress(counts, threshold=threshold, zeros=zeros, progress=progress)
    return SafeTable(row_labels, col_labels, counts, hidden, primary, threshold)
