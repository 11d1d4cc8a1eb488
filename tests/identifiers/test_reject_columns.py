"""A table whose rejects koble writes must not have a column the rejects file adds.

Every rejects file puts ``row``, ``reason`` and ``message`` before the input's own columns;
an input with a column of one of those names used to end in Polars' DuplicateError (an
internal error, exit 3) in ``ids check``, ``pseudonymise`` and a linkage run's population.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from koble.cli.main import cli
from koble.errors import ColumnError
from koble.registries.identifiers.check import check_frame, rejects_table

GOOD = "15108695088"


@pytest.mark.parametrize("column", ["row", "reason", "message"])
def test_ids_check_refuses_a_file_with_a_rejects_column(tmp_path: Path, column: str) -> None:
    path = tmp_path / "cohort.csv"
    path.write_text(f"id;{column}\n{GOOD};a\n12345678901;b\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli, ["ids", "check", str(path), "--column", "id", "--rejects", str(tmp_path / "r.csv")]
    )
    assert result.exit_code == 2, result.stderr
    assert f"column {column!r}" in result.stderr and "cohort.csv" in result.stderr
    assert "rename it" in result.stderr and "internal" not in result.stderr
    assert GOOD not in result.stderr + result.stdout
    assert not (tmp_path / "r.csv").exists()


def test_check_frame_names_the_file_and_rejects_table_the_column() -> None:
    frame = pl.DataFrame({"id": [GOOD], "message": ["hi"]})
    with pytest.raises(ColumnError, match="'message'") as caught:
        check_frame(frame, "id", path="pop.parquet")
    assert caught.value.path is not None and "pop.parquet" in str(caught.value.path)
    with pytest.raises(ColumnError, match="rename it"):
        rejects_table(frame, pl.Series([None], dtype=pl.String))


def test_other_columns_are_kept_after_the_three() -> None:
    frame = pl.DataFrame({"id": [GOOD, "1"], "rows": [1, 2], "Reason": ["a", "b"]})
    out = rejects_table(frame, pl.Series([None, "wrong_length"]))
    assert out.columns == ["row", "reason", "message", "id", "rows", "Reason"]
    assert out["row"].to_list() == [2]
