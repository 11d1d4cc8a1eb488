"""Project serial numbers (løpenummer) for a linkage project's population.

Every person in the population gets a unique serial number 1..N in an order fixed by the
project key: each identifier's pseudonym block under the project's domain
(``project:<id>``) is a keyed permutation of it, and sorting by those blocks gives a
random-looking order that nobody without the key can derive from the fødselsnummer, and that
an auditor with the same key and population reproduces exactly. The key list
(identifier, løpenummer) is the operator's: it belongs in the operator's private store only.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl

from koble.errors import ColumnError
from koble.pseudonym import scheme
from koble.pseudonym.keys import Keyset, check_domain
from koble.registries.identifiers.column import validate_column

__all__ = ["SERIAL", "assign_serials", "block_order", "project_domain"]

SERIAL = "lopenummer"


def project_domain(project: str) -> str:
    """The pseudonym domain of a project's serial numbers."""
    return check_domain(f"project:{project.lower()}")


def block_order(blocks: npt.NDArray[np.uint8]) -> npt.NDArray[np.intp]:
    """The permutation that sorts 16-byte blocks as big-endian 128-bit numbers.

    One argsort of the high 64 bits (ten times faster than a two-key lexsort); only when two
    high halves tie (about n²/2⁶⁵ for random blocks) is the full lexsort needed.
    """
    halves = np.ascontiguousarray(blocks).view(">u8").reshape(-1, 2).astype(np.uint64)
    order = np.argsort(halves[:, 0])
    if len(order) > 1 and not np.diff(halves[order, 0]).all():
        order = np.lexsort((halves[:, 1], halves[:, 0]))
    return order


def assign_serials(
    keyset: Keyset,
    project: str,
    population: pl.Series,
    *,
    path: str = "<population>",
    checked: bool = False,
) -> pl.DataFrame:
    """The key list: ``population``'s compact identifiers with their løpenummer, in input order.

    The population must hold valid, distinct identifiers (after removing separators); the
    first offending row is named otherwise. ``checked``: the caller has validated,
    compacted and deduplicated them already (the operator's step has), so they are not
    checked again.
    """
    column = population.name or "id"
    if checked:
        return _numbered(keyset, project, population.cast(pl.String), column)
    checked_ids = validate_column(population.cast(pl.String), test_numbers=True)
    invalid = (~checked_ids["valid"]).arg_true()
    if len(invalid):
        raise ColumnError(
            f"{len(invalid)} invalid identifiers in the population, first at this row",
            path=path, column=column, row=int(invalid[0]) + 1,
        )  # fmt: skip
    compact = checked_ids["compact"]
    # valid identifiers are 11 digits, so as integers they are distinct exactly when the
    # strings are, and integers are much cheaper to deduplicate
    repeated = compact.cast(pl.Int64).is_first_distinct().not_().arg_true()
    if len(repeated):
        raise ColumnError(
            f"{len(repeated)} duplicate persons in the population, first at this row",
            path=path, column=column, row=int(repeated[0]) + 1,
        )  # fmt: skip
    return _numbered(keyset, project, compact, column)


def _numbered(keyset: Keyset, project: str, compact: pl.Series, column: str) -> pl.DataFrame:
    """Løpenummer 1..N for valid, distinct, compact identifiers, by their blocks' order."""
    version = keyset.primary.version
    blocks = scheme.encrypt(
        keyset._domain_key(version, project_domain(project)), scheme.encode(compact, "fnr")
    )
    order = block_order(blocks)
    serial = np.empty(len(order), dtype=np.int64)
    serial[order] = np.arange(1, len(order) + 1, dtype=np.int64)
    return pl.DataFrame({column: compact, SERIAL: serial})
