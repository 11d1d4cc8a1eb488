"""Cell suppression: every hidden cell stays hidden against an attacker who knows the totals."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from koble.anonymity.tables import determined_cells, safe_table, suppress
from koble.errors import UsageError

tables = hnp.arrays(
    np.int64,
    st.tuples(st.integers(2, 7), st.integers(2, 7)),
    elements=st.integers(0, 15),
)


def recompute_by_elimination(counts: np.ndarray, hidden: np.ndarray) -> set[tuple[int, int]]:
    """The textbook attack: repeatedly solve any row or column with one unknown cell."""
    known = ~hidden.copy()
    solved: set[tuple[int, int]] = set()
    changed = True
    while changed:
        changed = False
        for axis in (0, 1):
            lines = known if axis == 1 else known.T
            for index in range(lines.shape[0]):
                unknown = np.flatnonzero(~lines[index])
                if len(unknown) == 1:
                    cell = (index, int(unknown[0])) if axis == 1 else (int(unknown[0]), index)
                    known[cell] = True
                    solved.add(cell)
                    changed = True
    return solved


@settings(max_examples=300)
@given(tables, st.integers(2, 6), st.booleans())
def test_no_hidden_cell_can_be_recomputed(counts: np.ndarray, threshold: int, zeros: bool) -> None:
    try:
        hidden, primary = suppress(counts, threshold=threshold, zeros=zeros)
    except UsageError:
        assume(False)
        return
    assert (hidden >= primary).all()
    assert (primary == ((counts < threshold) & ((counts > 0) | zeros))).all()
    assert recompute_by_elimination(counts, hidden) == set()
    assert determined_cells(counts, hidden) == []


def test_the_attacks_work_on_primary_suppression_alone() -> None:
    counts = np.array([[2, 10, 10], [10, 10, 10], [10, 10, 10]])
    primary = counts < 5
    assert recompute_by_elimination(counts, primary) == {(0, 0)}
    assert determined_cells(counts, primary) == [(0, 0)]
    hidden, _ = suppress(counts)
    assert hidden.sum() == 4  # a 2x2 rectangle is the least that protects one cell


def test_safe_table_from_a_frame() -> None:
    frame = pl.DataFrame({"fylke": ["03"] * 12 + ["11"] * 7 + ["46"] * 3, "sex": ["F", "M"] * 11})
    table = safe_table(frame, "fylke", "sex")
    assert table.row_labels == ["03", "11", "46"] and table.col_labels == ["F", "M"]
    out = table.to_dict()
    assert out["total"] == 22 and out["primary_suppressed"] == 4
    assert out["secondary_suppressed"] == 0
    assert out["cells"] == [[6, 6], [None, None], [None, None]]
    published = table.to_frame("fylke")
    assert published.row(-1) == ("Total", "11", "11", "22")
    assert published.row(1) == ("11", ":", ":", "7")
    assert determined_cells(table.counts, table.hidden) == []
