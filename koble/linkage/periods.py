"""A job's requested periods, split by identity regime and holder, each part routed.

A registry's identity model holds for a period of its data (design.md §1.3): NPR was
de-identified before 2008 and identifiable since; Reseptregisteret (pseudonymous) holds
prescriptions to 2021 and Legemiddelregisteret (identifiable) from 2022. The catalogue cuts a
request's years at those boundaries (:meth:`Catalogue.segments
<koble.registries.catalogue.Catalogue.segments>`); here each piece gets its route from the
fields of the regime in force (:func:`koble.linkage.routes.route_for`), so:

* a linkable piece becomes a planned request of its own, for the registry that holds those
  years and for those years only, under the approval of the job's request (a successor needs
  no approval of its own beyond it; the plan says so in a note);
* a piece that cannot be linked (de-identified years, an unknown model) is refused with the
  reason, while the rest of the request is planned;
* years before a registry's data start or after they end are not refused: they join the
  neighbouring piece of the same registry, and the plan notes that no rows are expected there
  (as for a registry without regimes);
* a registry reached twice (asked for itself and as a successor) is planned once: the later
  piece is refused saying where its years are already asked.

A request without an approval reference is refused whole, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from koble.linkage.job import Job, Request
from koble.linkage.plan import PartRoute, PlanPart, Refusal
from koble.linkage.routes import Route, in_regime, route_for
from koble.registries.catalogue import Catalogue, Registry
from koble.registries.catalogue_model import LegalSource, Regime, Segment

__all__ = ["Periods", "plan_periods"]

_NO_APPROVAL = "no approval reference (REK, Helsedataservice or the registry's decision)"


@dataclass(frozen=True)
class Periods:
    """The planned requests (one per registry, with its years), their entries (as under the
    regime in force) and routes, the refusals, every part, and notes for the plan."""

    planned: list[Request]
    entries: dict[str, Registry]
    routes: dict[str, Route]
    refusals: list[Refusal]
    parts: tuple[PlanPart, ...]
    notes: list[str]


@dataclass(frozen=True)
class _Piece:
    registry: str
    start: int
    end: int
    regime: Regime | None
    reason: str | None  # why the years cannot be planned, before routing
    gap: bool = False  # outside the registry's data years: no rows expected


def plan_periods(job: Job, catalogue: Catalogue) -> Periods:
    """Split every request of ``job`` by regime and holder; route and check each part."""
    out = Periods([], {}, {}, [], (), [])
    parts: list[PlanPart] = []
    asked_by: dict[str, str] = {}  # planned registry -> the request it was planned for
    for request in job.requests:
        entry = catalogue.get(request.registry)
        approval = f"{request.approval.kind} {request.approval.reference}".strip()
        if not request.approval.reference.strip():
            out.refusals.append(Refusal(request.registry, _NO_APPROVAL))
            parts.append(_part(request, entry, request.start, request.end, approval, _NO_APPROVAL))
            continue
        pieces = _pieces(
            catalogue, catalogue.segments(request.registry, request.start, request.end)
        )
        whole = len(pieces) == 1
        for piece in pieces:
            holder = catalogue.get(piece.registry) if piece.registry in catalogue else entry
            as_then = in_regime(holder, piece.regime)
            route = route_for(holder, piece.regime)
            reason = piece.reason or route.refusal
            if reason is not None and not whole:
                reason = _why(piece, reason)
            if reason is None and piece.registry in asked_by:
                reason = (
                    f"{piece.registry}'s data are already planned for the request of "
                    f"{asked_by[piece.registry]}; ask for these years there"
                )
            parts.append(_part(request, as_then, piece.start, piece.end, approval, reason, route))
            if reason is not None:
                span = (None, None) if whole else (piece.start, piece.end)
                out.refusals.append(Refusal(piece.registry, reason, *span))
                continue
            asked_by[piece.registry] = request.registry
            out.planned.append(replace(request, registry=piece.registry, start=piece.start,
                                       end=piece.end))  # fmt: skip
            out.entries[piece.registry] = as_then
            out.routes[piece.registry] = route
            if piece.registry != request.registry:
                out.notes.append(_successor_note(request, entry, piece, approval))
    return replace(out, parts=tuple(parts))


def _pieces(catalogue: Catalogue, segments: list[Segment]) -> list[_Piece]:
    """The segments as pieces: years outside a registry's data join the neighbouring piece
    of the same registry (taking its regime); neighbours alike are merged."""
    pieces = [
        _Piece(s.registry_id, s.start, s.end, s.regime, None if _outer(catalogue, s) else s.reason,
               gap=_outer(catalogue, s))
        for s in segments
    ]  # fmt: skip
    for i, piece in enumerate(pieces):
        if piece.gap:
            near = [p for p in (*pieces[i - 1 : i][::-1], *pieces[i + 1 : i + 2])]
            same = next((p for p in near if p.registry == piece.registry and not p.gap), None)
            pieces[i] = replace(piece, regime=same.regime if same else None)
    merged: list[_Piece] = []
    for piece in pieces:
        last = merged[-1] if merged else None
        if last is not None and (last.registry, last.regime, last.reason) == (
            piece.registry,
            piece.regime,
            piece.reason,
        ):
            merged[-1] = replace(last, end=piece.end, gap=last.gap or piece.gap)
        else:
            merged.append(piece)
    return merged


def _outer(catalogue: Catalogue, segment: Segment) -> bool:
    """Whether ``segment`` lies before the registry's data start or after their end."""
    if segment.regime is not None or segment.registry_id not in catalogue:
        return False
    regimes = catalogue.get(segment.registry_id).all_regimes
    return segment.end < regimes[0].first or segment.start > regimes[-1].last


def _why(piece: _Piece, reason: str) -> str:
    """A refused part's reason, citing the legal source of its regime where it has one."""
    if piece.regime is not None and isinstance(piece.regime.evidence, LegalSource):
        source = piece.regime.evidence
        reason += f" ({source.law} {source.section})"
    return reason


def _part(
    request: Request,
    entry: Registry,
    start: int,
    end: int,
    approval: str,
    reason: str | None,
    route: Route | None = None,
) -> PlanPart:
    how: PartRoute = (
        "refused"
        if reason is not None or route is None
        else "ttp-pseudonym"
        if route.pseudonymous
        else "distributed"
    )
    return PlanPart(
        request.registry, entry.id, start, end, entry.identity_model, how, approval, reason
    )


def _successor_note(request: Request, asked: Registry, piece: _Piece, approval: str) -> str:
    """Why another registry is asked: the succession, whether its year is confirmed, and the
    approval the successor's years come under."""
    succession = asked.continued_by
    note = (
        f"{request.registry}: data years {piece.start}–{piece.end} are held by "
        f"{piece.registry}, which continues it"
    )
    if succession is not None:
        note += f" from {succession.start}"
        if not succession.confirmed:
            why = asked.unknown_reasons.get("continued_by")
            note += " (the succession year is not confirmed" + (f": {why})" if why else ")")
    return (
        note + f"; planned under the job's approval for {request.registry} ({approval}), which "
        f"must cover {piece.registry}'s years too: a successor needs no approval of its own "
        "beyond the job's request"
    )
