"""The checks the hierarchy tests share: a Generalisation keeps the hierarchy contract, and
a row's label at every level."""

from __future__ import annotations

import numpy as np

from koble.anonymity.generalisation import Generalisation


def assert_valid(g: Generalisation, rows: int) -> None:
    """The contract: identity at level 0, dense codes, consistent maps, one code per row."""
    assert len(g.codes) == rows
    assert g.codes.dtype == np.int32
    assert len(g.level_names) == len(g.maps) == len(g.labels)
    assert np.array_equal(g.maps[0], np.arange(len(g.labels[0])))
    for level, codes in enumerate(g.maps):
        assert codes.dtype == np.int32
        assert len(codes) == len(g.labels[0])
        assert set(codes.tolist()) == set(range(len(g.labels[level]))), "codes not dense"
    for level in range(g.height):
        parent: dict[int, int] = {}
        for low, high in zip(g.maps[level].tolist(), g.maps[level + 1].tolist(), strict=True):
            assert parent.setdefault(low, high) == high, f"two parents at level {level + 1}"
    assert g.labels[g.height] == ("*",)


def labels_of(g: Generalisation, row: int = 0) -> list[str]:
    return [g.column(level)[row] for level in range(g.height + 1)]
