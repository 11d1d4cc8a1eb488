"""Option types that check numbers and column lists as they are parsed.

A bad value is refused by click (exit 2) with a message naming the option and the rule,
never the value: a value typed into the wrong option may be a fødselsnummer. The rules are
those of :mod:`koble.anonymity.parameters`, which the library applies again for its own
callers.
"""

from __future__ import annotations

import math

import click

from koble.anonymity.parameters import column_list
from koble.linkage.memory_size import MEMORY_SIZE

__all__ = ["ColumnList", "Share", "WholeNumber", "memory_limit_option"]


class WholeNumber(click.ParamType[int]):
    """A whole number of at least ``minimum``."""

    name = "integer"

    def __init__(self, minimum: int = 1) -> None:
        self.minimum = minimum

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and value >= self.minimum:
            return value
        try:
            number = int(str(value).strip())
        except ValueError:
            number = self.minimum - 1
        if number < self.minimum:
            self.fail(f"must be a whole number of at least {self.minimum}", param, ctx)
        return number


class Share(click.ParamType[float]):
    """A finite number in [0, 1], or in (0, 1] with ``open_low``."""

    name = "number"

    def __init__(self, *, open_low: bool = False) -> None:
        self.open_low = open_low

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            number = float(str(value).strip())
        except ValueError:
            number = math.nan
        low_ok = number > 0 if self.open_low else number >= 0
        if not math.isfinite(number) or not low_ok or number > 1:
            self.fail(f"must be a number in {'(0' if self.open_low else '[0'}, 1]", param, ctx)
        return number


class ColumnList(click.ParamType[list[str]]):
    """Comma-separated column names (blanks between commas skipped): at least one, none twice."""

    name = "columns"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> list[str]:
        if isinstance(value, list):
            return value
        columns = [c.strip() for c in str(value).split(",") if c.strip()]
        problems = column_list(columns, "")
        if problems:
            self.fail("; ".join(p.strip() for p in problems), param, ctx)
        return columns


def memory_limit_option(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> str | None:
    """A memory size (``"4GB"``, ``"512MiB"``), checked before anything runs. The
    environment's size (``KOBLE_DUCKDB_MEMORY_LIMIT``) is DuckDB's: with ``--engine spark`` only the
    option itself sets the driver's memory."""
    source = ctx.get_parameter_source(param.name or "")
    from_env = source is click.core.ParameterSource.ENVIRONMENT
    if value is not None and from_env and ctx.params.get("engine", "duckdb") != "duckdb":
        return None
    if value is None or MEMORY_SIZE.fullmatch(value.strip()):
        return None if value is None else value.strip()
    raise click.BadParameter("must be a size such as 4GB or 512MiB", ctx, param)
