"""Dates as int32 days since 1970-01-01, the representation every generator works in.

Keeping dates as plain integers makes whole-column arithmetic (ages, exposure windows,
validity periods) cheap; they become Arrow ``date32`` only when written.
"""

from __future__ import annotations

import datetime

import numpy as np
import numpy.typing as npt
import pyarrow as pa

__all__ = ["DAYS_PER_YEAR", "NEVER", "day", "days_to_arrow", "year_of", "year_start"]

DAYS_PER_YEAR = 365.25
#: A day after every real date ("not yet happened"); used for living persons' death day.
NEVER = np.int32(2**31 - 1)
_EPOCH = datetime.date(1970, 1, 1)

D32 = npt.NDArray[np.int32]


def day(value: datetime.date) -> int:
    """Days since 1970-01-01 of ``value``."""
    return (value - _EPOCH).days


def year_of(days: D32) -> npt.NDArray[np.int64]:
    """Calendar year of each day."""
    return days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970


def year_start(years: npt.NDArray[np.int64]) -> D32:
    """1 January of each year, as days."""
    return (years - 1970).astype("datetime64[Y]").astype("datetime64[D]").astype(np.int32)


def days_to_arrow(days: D32, null: npt.NDArray[np.bool_] | None = None) -> pa.Array:
    """An Arrow ``date32`` array; ``null`` marks missing entries."""
    return pa.array(days.astype(np.int32), type=pa.date32(), mask=null)
