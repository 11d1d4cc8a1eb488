"""Streaming Parquet output and the manifest that describes it.

Every table is written through :class:`TableWriter`, which appends record batches with
``pyarrow.parquet.ParquetWriter`` (one row group per chunk, so memory stays bounded) and,
on close, records the row count and SHA-256 of the file. Output depends only on the data:
no timestamps, fixed compression, fixed schema.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from koble.digests import sha256_file
from koble.files import atomic_write, write_text

__all__ = ["TableWriter", "labels", "write_manifest"]


class TableWriter:
    """Append-only Parquet writer for one table of the world."""

    def __init__(self, out_dir: Path, relpath: str, schema: pa.Schema) -> None:
        self.relpath = relpath
        self.path = out_dir / relpath
        self.schema = schema
        self.rows = 0
        # Written under a temporary name, renamed into place by close(): never half a table.
        self._stack = contextlib.ExitStack()
        temp = self._stack.enter_context(atomic_write(self.path))
        self._writer = pq.ParquetWriter(temp, schema, compression="zstd")

    def write(self, columns: dict[str, pa.Array]) -> None:
        """Append one batch given as column name -> Arrow array (schema order enforced)."""
        table = pa.Table.from_arrays([columns[f.name] for f in self.schema], schema=self.schema)
        if table.num_rows:
            try:
                self._writer.write_table(table)
            except (OSError, pa.ArrowException) as exc:
                self._abandon(exc)
            self.rows += table.num_rows

    def close(self) -> dict[str, Any]:
        """Finish the file; return its manifest entry."""
        try:
            self._writer.close()
        except (OSError, pa.ArrowException) as exc:
            self._abandon(exc)
        self._stack.close()
        return {
            "path": self.relpath,
            "rows": self.rows,
            "sha256": sha256_file(self.path),
            "columns": self.schema.names,
        }

    def _abandon(self, exc: BaseException) -> NoReturn:
        """Give the file up after ``exc``: it goes through :func:`atomic_write`, which removes
        the temporary file and turns an OS error (disk full, file-size limit) into an
        :class:`~koble.errors.OutputError` naming this table's file."""
        with contextlib.suppress(Exception):
            self._writer.close()  # release the handle; the footer may fail to write too
        self._stack.__exit__(type(exc), exc, exc.__traceback__)
        raise exc


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Deterministic JSON: sorted keys, fixed indentation, trailing newline; atomically."""
    write_text(path, json.dumps(manifest, sort_keys=True, indent=2) + "\n")


def labels(
    values: Sequence[str], index: npt.NDArray[Any], null: npt.NDArray[np.bool_] | None = None
) -> pa.Array:
    """The strings ``values[index]`` as an Arrow string column (decoded in C++, not Python);
    ``null`` marks entries to leave null."""
    codes = pa.array(np.asarray(index, dtype=np.int32), mask=null)
    return pa.DictionaryArray.from_arrays(
        codes, pa.array(list(values), pa.string())
    ).dictionary_decode()
