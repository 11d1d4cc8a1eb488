"""Bridges of the row-column graph of hidden cells, found once and kept up to date.

Secondary cell suppression (:mod:`koble.anonymity.tables`) adds hidden cells until no edge of
the bipartite graph (rows and columns as nodes, hidden cells as edges) is a *bridge*. Finding
every bridge anew after each added rectangle made it quadratic; :class:`GrowingBridges`
instead maintains the 2-edge-connected components of a graph that only grows (the online
algorithm of cp-algorithms.com, "Finding bridges online": a union-find of 2-edge-connected
components, a union-find of connected components, and the forest of bridges between
components, re-rooted at the smaller tree on a merge). Adding m edges to n nodes costs
O(n log n + m α(n)); asking whether an edge is (still) a bridge costs one union-find lookup.

:func:`bridge_cells` is the textbook alternative (Tarjan's depth-first search over the whole
graph), kept as an independent check of the incremental structure and of a published mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["GrowingBridges", "bridge_cells"]


class GrowingBridges:
    """The bridges of an undirected graph on ``nodes`` nodes to which edges are only added.

    Nodes are ``0 .. nodes - 1``; :meth:`add` adds an edge, :meth:`is_bridge` tells whether
    an edge already added lies on no cycle. :attr:`bridges` counts the bridges.
    """

    def __init__(self, nodes: int) -> None:
        self._parent = [-1] * nodes  # bridge forest: a node of the parent component, -1 at a root
        self._ecc = list(range(nodes))  # union-find of 2-edge-connected components
        self._cc = list(range(nodes))  # union-find of connected components (on ecc roots)
        self._size = [1] * nodes  # nodes per connected component, at its root
        self._seen = [0] * nodes
        self._stamp = 0
        self.bridges = 0

    def component(self, node: int) -> int:
        """The representative of ``node``'s 2-edge-connected component."""
        ecc = self._ecc
        root = node
        while ecc[root] != root:
            root = ecc[root]
        while ecc[node] != root:
            ecc[node], node = root, ecc[node]
        return root

    def is_bridge(self, a: int, b: int) -> bool:
        """Whether the edge ``a``-``b`` (already added) lies on no cycle."""
        return self.component(a) != self.component(b)

    def _tree(self, node: int) -> int:
        """The root of the connected component (tree of the bridge forest) holding ``node``."""
        node = self.component(node)
        path = []
        while self._cc[node] != node:
            path.append(node)
            node = self.component(self._cc[node])
        for visited in path:
            self._cc[visited] = node
        return node

    def _make_root(self, node: int) -> None:
        """Re-root the tree of the bridge forest holding component ``node`` at ``node``."""
        root, child = node, -1
        while node != -1:
            up = self._parent[node]
            up = -1 if up == -1 else self.component(up)
            self._parent[node] = child
            self._cc[node] = root
            child, node = node, up
        self._size[root] = self._size[child]

    def _merge_path(self, a: int, b: int) -> None:
        """Merge every component on the forest path from ``a`` to ``b`` (both component
        representatives of one tree) into one: the new edge closes a cycle through them."""
        self._stamp += 1
        stamp, seen, parent = self._stamp, self._seen, self._parent
        paths: tuple[list[int], list[int]] = ([], [])
        ends = [a, b]
        lca = -1
        while lca == -1:
            for side in (0, 1):
                node = ends[side]
                if node == -1:
                    continue
                node = self.component(node)
                paths[side].append(node)
                if seen[node] == stamp:
                    lca = node
                    break
                seen[node] = stamp
                ends[side] = parent[node]
        for path in paths:
            for node in path:
                self._ecc[node] = lca
                if node == lca:
                    break
                self.bridges -= 1

    def depths(self, nodes: Sequence[int]) -> list[int]:
        """How deep each node's component lies in its tree of the bridge forest (0 at the
        root): an edge between deeper components is nearer a leaf."""
        memo: dict[int, int] = {}
        found = []
        for node in nodes:
            node = self.component(node)
            path = []
            while node not in memo:
                up = self._parent[node]
                if up == -1:
                    memo[node] = 0
                    break
                path.append(node)
                node = self.component(up)
            depth = memo[node]
            for below in reversed(path):
                depth += 1
                memo[below] = depth
            found.append(depth)
        return found

    def add(self, a: int, b: int) -> None:
        """Add the edge ``a``-``b``."""
        a, b = self.component(a), self.component(b)
        if a == b:
            return
        tree_a, tree_b = self._tree(a), self._tree(b)
        if tree_a == tree_b:
            self._merge_path(a, b)
            return
        self.bridges += 1
        if self._size[tree_a] > self._size[tree_b]:
            a, b, tree_a, tree_b = b, a, tree_b, tree_a
        self._make_root(a)
        self._parent[a] = self._cc[a] = b
        self._size[tree_b] += self._size[a]


def bridge_cells(hidden: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """Hidden cells of ``hidden`` that lie on no cycle of the row-column graph (Tarjan's
    bridge-finding, iterative): the cells that the row and column totals determine."""
    n_rows, n_cols = hidden.shape
    cells = list(zip(*(axis.tolist() for axis in np.nonzero(hidden)), strict=True))
    adjacency: list[list[tuple[int, int]]] = [[] for _ in range(n_rows + n_cols)]
    for edge, (i, j) in enumerate(cells):
        adjacency[i].append((n_rows + j, edge))
        adjacency[n_rows + j].append((i, edge))
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
                        found.append(cells[via])
    return sorted(found)
