"""What a completed step tells the run: :class:`StepStats`.

Every step handler returns one (design.md §2.1: typed records between the steps and the
run). The run keeps its :attr:`~StepStats.figures` as the step's entry in ``run.json`` (and
in :attr:`~koble.linkage.executor.RunResult.stats`), and writes the step's audit event from
its typed fields: the rows that came in, went out and were rejected, the pseudonym domain
and key a step used, and the step's own audit details. None of them may hold an
identifier: the audit log checks every event it is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["StepStats"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _count(figures: Mapping[str, Any], *names: str) -> int | None:
    """The first of ``names`` that ``figures`` holds as a count (an int, not a bool)."""
    for name in names:
        value = figures.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _text(figures: Mapping[str, Any], name: str) -> str | None:
    value = figures.get(name)
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class StepStats:
    """A completed step's figures (its report as JSON, or a few counts) and its audit
    event's fields.

    :meth:`of` reads the audit fields from the figures by the names every step's report
    uses (``rows_sent``; ``rows_delivered``, ``rows`` or ``rows_stored``; ``rows_rejected``;
    ``domain``; ``key_id``; ``audit``), so a report and its audit event cannot disagree.
    """

    figures: Mapping[str, Any]
    rows_in: int | None = None
    rows_out: int | None = None
    rejected: int | None = None
    domain: str | None = None
    key_id: str | None = None
    #: The step's own figures for its audit event: counts, thresholds, model parameters.
    audit: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    @classmethod
    def of(cls, figures: Mapping[str, Any]) -> StepStats:
        """The stats of a step whose report (or counts) is ``figures``; a step's own audit
        details are its ``audit`` entry, kept in ``run.json`` with the rest."""
        audit = figures.get("audit")
        return cls(
            figures=MappingProxyType(dict(figures)),
            rows_in=_count(figures, "rows_sent"),  # a sealed ingest's: sent = stored + rejected
            rows_out=_count(figures, "rows_delivered", "rows", "rows_stored"),
            rejected=_count(figures, "rows_rejected"),
            domain=_text(figures, "domain"),
            key_id=_text(figures, "key_id"),
            audit=MappingProxyType(dict(audit)) if isinstance(audit, Mapping) else _EMPTY,
        )

    def record(self) -> dict[str, Any]:
        """The step's entry in ``run.json``: its figures as JSON."""
        return dict(self.figures)
