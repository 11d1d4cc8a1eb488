"""Columns released as they are are named: a column derived from a quasi-identifier (fylke
beside kommune) would undo its coarsening, and the user must see that it went out."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from click.testing import CliRunner

from koble.cli.main import cli


def test_anonymise_names_the_columns_released_as_they_are(tmp_path: Path) -> None:
    frame = pl.DataFrame({
        "age": [30 + i % 40 for i in range(400)],
        "fylke": [f"{3 + i % 2:02d}" for i in range(400)],
        "score": [i % 7 for i in range(400)],
    })  # fmt: skip
    frame.write_parquet(tmp_path / "in.parquet")
    (tmp_path / "anon.toml").write_text('[requirements]\nk = 5\n[quasi_identifiers]\nage = "age"\n')
    args = ["anonymity", "anonymise", str(tmp_path / "in.parquet"), "--config",
            str(tmp_path / "anon.toml"), "--out", str(tmp_path / "out.parquet"), "--report",
            str(tmp_path / "report")]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "released as they are" in result.output and "fylke, score" in result.output
    import json

    certificate = json.loads((tmp_path / "report" / "certificate.json").read_text("utf-8"))
    assert certificate["released_unchanged"] == ["fylke", "score"]


def test_table_prints_a_table_not_a_frame_dump(tmp_path: Path) -> None:
    frame = pl.DataFrame({"kommune": ["0301"] * 2000 + ["1103"] * 1000,
                          "sex": ["K", "M", "M"] * 1000})  # fmt: skip
    frame.write_parquet(tmp_path / "in.parquet")
    result = CliRunner().invoke(cli, ["anonymity", "table", str(tmp_path / "in.parquet"),
                                      "--rows", "kommune", "--cols", "sex"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "shape:" not in result.output and "str" not in result.output.split()
    assert "0301" in result.output  # labels as they are, codes keep their zeros
    assert "3,000" in result.output and "2,000" in result.output
