"""Memory sizes as the engines take them: DuckDB's (``4GB``, ``512MiB``) and Spark's.

One pattern for every option and variable that takes a size (``--memory-limit``,
``KOBLE_DUCKDB_MEMORY_LIMIT``), and the conversion for Spark, whose sizes are whole powers of
1024 (``spark.driver.memory``). No engine is imported here: the command line checks a size
before it loads one.
"""

from __future__ import annotations

import re

from koble.errors import UsageError

__all__ = ["MEMORY_SIZE", "spark_mebibytes", "spark_memory"]

#: A memory size as DuckDB takes it: ``4GB`` (powers of 1000) or ``512MiB`` (of 1024).
MEMORY_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)
#: A size as Spark takes it (``4g``, ``3814m``; no unit: mebibytes), in powers of 1024.
_SPARK_SIZE = re.compile(r"(\d+)\s*([kmgtp]?b?)", re.IGNORECASE)
_SPARK_SHIFT = {"b": -20, "k": -10, "": 0, "m": 0, "g": 10, "t": 20, "p": 30}
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip


def spark_memory(size: str) -> str:
    """A memory size as DuckDB takes it (``4GB``, ``512MiB``) in Spark's form: whole
    mebibytes (``3814m``), since Spark's units are powers of 1024 and take no fraction."""
    found = MEMORY_SIZE.fullmatch(size.strip())
    if found is None:
        raise UsageError(f"{size!r} is not a memory size such as 4GB or 512MiB")
    mebibytes = int(float(found[1]) * _UNITS[found[2].lower()]) // 2**20
    if mebibytes < 1:
        raise UsageError(f"a memory limit of {size} is less than one mebibyte")
    return f"{mebibytes}m"


def spark_mebibytes(size: str) -> int | None:
    """A Spark memory size (``4g``, ``3814m``, ``1024``: mebibytes) in whole mebibytes, to
    compare two ways of writing one size; None if it is not one (Spark refuses it itself)."""
    found = _SPARK_SIZE.fullmatch(size.strip())
    if found is None:
        return None
    unit = found[2].lower()
    shift = _SPARK_SHIFT[unit if unit == "b" else unit.removesuffix("b")]
    number = int(found[1])
    return number << shift if shift >= 0 else number >> -shift
