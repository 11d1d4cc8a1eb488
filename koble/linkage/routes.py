"""Which route a registry takes, derived from its catalogue fields (never from its name).

design.md §1.3–1.4, read field by field:

* ``identity_model == "unknown"``: refused; koble does not guess a route.
* ``identity_model == "de-identified"``, or ``identifier == "none"``, or
  ``linkage_by == "none"``: refused, with a pointer to aggregate statistics.
* ``identity_model == "pseudonymous"`` or ``identifier == "registry-pseudonym"``: the TTP
  pseudonym route (the registry never receives fødselsnummer).
* ``identity_model`` ``identifiable`` or ``consent-based``: distributed.
* ``identity_model == "consent-based"`` or ``consent_required is True``: add a consent filter
  at the registry.
* ``anonymous_output is True``: the whole job goes the central anonymous route (central
  linkage, then the anonymity gate).
* a reservation whose purposes cover the job (:data:`JOB_PURPOSES`): add a reservation
  filter at the registry (:mod:`koble.linkage.reservation`), which withholds what persons
  opted out of before anything leaves it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from koble.registries.catalogue_model import UNKNOWN, Regime, Registry

__all__ = ["JOB_PURPOSES", "Route", "in_regime", "regime_within", "reservation_note", "route_for"]

#: The reservation purposes (catalogue ``Reservation.purposes``) a koble job is subject to: it
#: releases data for research, and a reservation against registration covers every use. A
#: job's deliveries carry løpenummer, never fødselsnummer, so a reservation against release
#: *with fødselsnummer* alone (KPR) does not withhold a person from it.
JOB_PURPOSES: frozenset[str] = frozenset({"research", "registration"})


@dataclass(frozen=True)
class Route:
    """How one registry takes part; ``refusal`` is set (and nothing else matters) if refused."""

    registry: str
    pseudonymous: bool = False
    consent_filter: bool = False
    anonymous_output: bool = False
    #: Persons may opt out of data this job asks for: the registry withholds it first.
    reservation_filter: bool = False
    refusal: str | None = None
    notes: tuple[str, ...] = ()


def in_regime(entry: Registry, regime: Regime | None) -> Registry:
    """``entry`` as it stood under ``regime`` (data years with their own identity model):
    its identity model and identifier are the regime's, and so are its anonymous-output and
    linkage fields where the regime records them (else the entry's). ``None``: unchanged."""
    if regime is None:
        return entry
    return replace(
        entry,
        identity_model=regime.identity_model,
        identifier=regime.identifier,
        anonymous_output=(
            entry.anonymous_output
            if regime.anonymous_output == UNKNOWN
            else regime.anonymous_output
        ),
        linkage_by=entry.linkage_by if regime.linkage_by == UNKNOWN else regime.linkage_by,
    )


def regime_within(entry: Registry, start: int, end: int) -> Regime | None:
    """The first regime of ``entry`` in force in a year of ``start``–``end`` (None if none)."""
    return next((r for y in range(start, end + 1) if (r := entry.regime_for(y))), None)


def route_for(entry: Registry, regime: Regime | None = None) -> Route:
    """The route for ``entry`` (under ``regime``, if given: :func:`in_regime`), from its
    identity model, identifier, linkage and flags."""
    entry = in_regime(entry, regime)
    name = entry.name
    if entry.identity_model == "unknown":
        return Route(
            entry.id,
            refusal=(
                f"the catalogue does not record {name}'s identity model, so koble cannot tell "
                "whether it may receive fødselsnummer; it does not guess a route: record the "
                "identity model in a catalogue file (--catalogue) and plan again"
            ),
        )
    if (
        entry.identity_model == "de-identified"
        or entry.identifier == "none"
        or entry.linkage_by == "none"
    ):
        return Route(
            entry.id,
            refusal=(
                f"{name} is de-identified (avidentifisert): its records cannot be linked to a "
                "person or over time; ask the registry for aggregate statistics instead"
            ),
        )
    notes = tuple(
        f"{entry.id}: part {part.name!r} is {part.identity_model} and is not extracted; "
        "only the linkable part is"
        for part in entry.parts
        if part.identity_model in ("de-identified", "unknown")
    )
    pseudonymous = (
        entry.identity_model == "pseudonymous" or entry.identifier == "registry-pseudonym"
    )
    reservation = reservation_note(entry)
    return Route(
        entry.id,
        pseudonymous=pseudonymous,
        consent_filter=entry.identity_model == "consent-based" or entry.consent_required is True,
        anonymous_output=entry.anonymous_output is True,
        reservation_filter=reservation is not None,
        notes=notes if reservation is None else (*notes, reservation),
    )


def reservation_note(entry: Registry) -> str | None:
    """The plan's note on ``entry``'s reservation filter, or None if no reservation applies.

    A reservation applies when one of its purposes is among :data:`JOB_PURPOSES`; the note
    says what the registry withholds (whole persons, or which variables)."""
    applies = [r for r in entry.reservations if JOB_PURPOSES & set(r.purposes)]
    if not applies:
        return None
    what = sorted(
        {"whole persons" if r.scope == "persons" else ", ".join(r.variables) for r in applies}
    )
    return (
        f"{entry.id}: reservation filter at the registry: before anything leaves it, the "
        f"registry withholds what persons opted out of ({'; '.join(what)})"
    )
