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
"""

from __future__ import annotations

from dataclasses import dataclass

from koble.registries.catalogue_model import Registry

__all__ = ["Route", "route_for"]


@dataclass(frozen=True)
class Route:
    """How one registry takes part; ``refusal`` is set (and nothing else matters) if refused."""

    registry: str
    pseudonymous: bool = False
    consent_filter: bool = False
    anonymous_output: bool = False
    refusal: str | None = None
    notes: tuple[str, ...] = ()


def route_for(entry: Registry) -> Route:
    """The route for ``entry``, from its identity model, identifier, linkage and flags."""
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
    return Route(
        entry.id,
        pseudonymous=pseudonymous,
        consent_filter=entry.identity_model == "consent-based" or entry.consent_required is True,
        anonymous_output=entry.anonymous_output is True,
        notes=notes,
    )
