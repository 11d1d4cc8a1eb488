"""Reference tables shipped with koble (``koble/anonymity/data``; sources in its README)."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

import polars as pl

__all__ = ["reference_table"]


@cache
def reference_table(name: str) -> pl.DataFrame:
    """The CSV ``name`` from ``koble/anonymity/data``, every column as a string.

    Read once per process; the tables are small (at most a few hundred rows).
    """
    data = files("koble.anonymity").joinpath("data", name).read_bytes()
    return pl.read_csv(data, infer_schema=False)
