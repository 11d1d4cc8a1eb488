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
secondary suppression repeats: find a bridge and hide the cheapest rectangle through it (the
fewest new cells, then the fewest persons), until no bridge is left. This is a greedy
heuristic, not the minimum-loss suppression pattern (an integer programme), but it always
ends protected. The verifier :func:`determined_cells` checks the result with
linear algebra, independently of the graph argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

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


def _bridges(hidden: Mask) -> list[tuple[int, int]]:
    """Hidden cells that lie on no cycle of the row-column graph (Tarjan, iterative)."""
    n_rows, n_cols = hidden.shape
    adjacency: list[list[tuple[int, int]]] = [[] for _ in range(n_rows + n_cols)]
    for edge, (i, j) in enumerate(zip(*np.nonzero(hidden), strict=True)):
        adjacency[int(i)].append((n_rows + int(j), edge))
        adjacency[n_rows + int(j)].append((int(i), edge))
    cells = list(zip(*np.nonzero(hidden), strict=True))
    order = [-1] * len(adjacency)
    low = [0] * len(adjacency)
    found: list[tuple[int, int]] = []
    counter = 0
    for root in range(len(adjacency)):
        if order[root] != -1 or not adjacency[root]:
            continue
        order[root] = low[root] = counter
        counter += 1
        stack: list[tuple[int, int, int]] = [(root, -1, 0)]
        while stack:
            node, via, position = stack[-1]
            if position < len(adjacency[node]):
                stack[-1] = (node, via, position + 1)
                neighbour, edge = adjacency[node][position]
                if edge == via:
                    continue
                if order[neighbour] == -1:
                    order[neighbour] = low[neighbour] = counter
                    counter += 1
                    stack.append((neighbour, edge, 0))
                else:
                    low[node] = min(low[node], order[neighbour])
            else:
                stack.pop()
                if stack:
                    parent = stack[-1][0]
                    low[parent] = min(low[parent], low[node])
                    if low[node] > order[parent]:
                        i, j = cells[via]
                        found.append((int(i), int(j)))
    return found


def _close_cycle(counts: Counts, hidden: Mask, i: int, j: int) -> None:
    """Hide the cheapest rectangle through cell (i, j): the fewest new cells, then the fewest
    persons hidden, so that (i, j) lies on a cycle."""
    n_rows, n_cols = counts.shape
    best: tuple[int, int, int, int] | None = None
    for i2 in range(n_rows):
        if i2 == i:
            continue
        for j2 in range(n_cols):
            if j2 == j:
                continue
            corners = ((i, j2), (i2, j), (i2, j2))
            new = [c for c in corners if not hidden[c]]
            cost = (len(new), int(sum(counts[c] for c in new)), i2, j2)
            if best is None or cost < best:
                best = cost
    if best is None:
        raise UsageError("the table is too small to protect: it needs two rows and two columns")
    _, _, i2, j2 = best
    for cell in ((i, j2), (i2, j), (i2, j2)):
        hidden[cell] = True


def suppress(counts: Counts, *, threshold: int = 5, zeros: bool = False) -> tuple[Mask, Mask]:
    """(hidden, primary) masks for ``counts``: primary cells under ``threshold``, then
    secondary cells until no hidden cell can be recomputed from the totals."""
    if threshold < 1:
        raise UsageError("the threshold must be at least 1")
    primary = (counts < threshold) & ((counts > 0) | zeros)
    hidden = primary.copy()
    while bridges := _bridges(hidden):
        _close_cycle(counts, hidden, *bridges[0])
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
               zeros: bool = False, path: str = "<table>") -> SafeTable:  # fmt: skip
    """The publishable two-way table of ``rows`` × ``cols`` in ``frame`` (read from ``path``).

    Its labels are published: a row or column variable holding a fødselsnummer-family number
    is refused (a :class:`ColumnError` naming where, never what), whatever the counts."""
    row_labels, col_labels, counts = crosstab(frame, rows, cols, path=path)
    refuse_findings(
        scan_frame(frame.select(rows, cols)),
        what="the table's labels would hold",
        remedy="tabulate a variable that identifies no one",
        path=path,
    )
    hidden, primary = suppress(counts, threshold=threshold, zeros=zeros)
    return SafeTable(row_labels, col_labels, counts, hidden, primary, threshold)
