"""The researcher's scans of a delivered data file (:func:`koble.linkage.verify.verify_delivery`).

Both scans judge a text column by its distinct values (computed once for both): the
identifier scan reads a column's rows only when one of them holds a person number, and then
counts the rows; the pseudonym scan flags a column whose non-null values all look like
pseudonyms. These tests pin that the shortcut finds what a scan of every row finds: the rows
and first row of a number among repeated codes, a pseudonym column with repeats and nulls
(text or categorical), and no flag for a column with a single value that is not a pseudonym.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from koble.digests import sha256_file
from koble.linkage.keys import write_json
from koble.linkage.manifest import sign_manifest
from koble.linkage.verify import verify_delivery
from koble.pseudonym.scheme import PSEUDONYM_LENGTH
from tests.linkage.test_hardening_verify import FNR, OPERATOR, manifest_body

PSEUDONYM = "0123456789abcdef" * 3
assert len(PSEUDONYM[:PSEUDONYM_LENGTH]) == PSEUDONYM_LENGTH


def _deliver(directory: Path, frame: pl.DataFrame) -> None:
    """A signed delivery of ``frame`` as ``extract.parquet``, its hash and rows listed."""
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "extract.parquet"
    frame.write_parquet(data)
    sign_delivery(data, frame.height)


def sign_delivery(data: Path, rows: int) -> None:
    """The operator's signed manifest beside ``data``, listing it with its hash and rows."""
    output: dict[str, Any] = {"file": data.name, "sha256": sha256_file(data),
                              "rows": rows, "from": "registry:npr"}  # fmt: skip
    body = manifest_body([output], rows=1)
    write_json(data.parent / "manifest.json", sign_manifest(body, OPERATOR))


def _checks(directory: Path) -> dict[str, tuple[bool, str]]:
    report = verify_delivery(directory, key_id=OPERATOR.key_id)
    return {c.name: (c.ok, c.detail) for c in report.checks}


def test_a_number_among_repeated_codes_is_counted_by_row(tmp_path: Path) -> None:
    """The distinct codes show the number; its rows are then counted in the column itself."""
    codes = ["I21", "E11", FNR, "I21", FNR, None, "J45"] * 300
    _deliver(tmp_path, pl.DataFrame({"lopenr": range(len(codes)), "icd10": codes}))
    ok, detail = _checks(tmp_path)["identifier scan extract.parquet"]
    assert not ok
    assert detail == "fødselsnummer-like values in icd10 (600 rows, first row 3)"
    assert FNR not in detail
    assert _checks(tmp_path)["pseudonym scan extract.parquet"] == (True, "none")


@pytest.mark.parametrize("dtype", [pl.String, pl.Categorical])
def test_a_pseudonym_column_with_repeats_and_nulls_is_found(
    tmp_path: Path, dtype: pl.DataType
) -> None:
    other = PSEUDONYM[::-1][:PSEUDONYM_LENGTH]
    values = [PSEUDONYM[:PSEUDONYM_LENGTH], None, other, PSEUDONYM[:PSEUDONYM_LENGTH]] * 50
    frame = pl.DataFrame({"lopenr": range(200), "key": pl.Series(values, dtype=dtype),
                          "atc": ["N02BE01"] * 200})  # fmt: skip
    _deliver(tmp_path, frame)
    checks = _checks(tmp_path)
    assert checks["pseudonym scan extract.parquet"] == (False, "pseudonym-like columns: key")
    assert checks["identifier scan extract.parquet"][0]


def test_one_value_that_is_not_a_pseudonym_clears_the_column(tmp_path: Path) -> None:
    values = [PSEUDONYM[:PSEUDONYM_LENGTH]] * 999 + ["not-a-pseudonym"]
    empty = pl.Series([None] * 1000, dtype=pl.String)  # no value at all: not a pseudonym column
    _deliver(tmp_path, pl.DataFrame({"lopenr": range(1000), "key": values, "blank": empty}))
    assert _checks(tmp_path)["pseudonym scan extract.parquet"] == (True, "none")
