"""One registry catalogue entry, its allowed values, and how a TOML table becomes one.

Every classified field is either a value read from the seed or ``"unknown"``: the catalogue
never guesses. A linkage route is derived from the fields, never from a registry's name:

* ``identity_model``: ``identifiable`` (holds fødselsnummer), ``pseudonymous`` (a trusted third
  party replaces fødselsnummer by a registry pseudonym before data enter), ``de-identified``
  (avidentifisert: cannot be linked to a person or over time), ``consent-based`` (only persons
  who consented), or ``unknown``;
* ``anonymous_output``: ``true`` when linked data may only leave in anonymous form (IPLOS),
  ``false`` when the seed says individual-level data are delivered, else ``"unknown"``;
* ``consent_required``: ``true`` / ``false`` / ``"unknown"``;
* ``identifier``: what the registry holds to find a person: ``fnr`` (the fødselsnummer family),
  ``registry-pseudonym``, ``none``, ``unknown``;
* ``linkage_by``: who links: ``ssb``, ``ttp`` (a trusted third party named as such), ``registry``,
  ``none`` (linkage impossible), ``unknown``.

A value is backed by a :data:`Source`: a verbatim seed passage (:class:`Evidence`) or a cited
statute or regulation (:class:`LegalSource`, cited, never quoted). A value the sources leave
unconfirmed stays ``unknown``, with the reason in :attr:`Registry.unknown_reasons`.

An identity model holds for a period of the registry's data (:class:`Regime`); a registry may be
continued by another from a data year on (:class:`Succession`, Reseptregisteret →
Legemiddelregisteret); persons may opt out of some data or releases (:class:`Reservation`).
:meth:`Registry.segments` cuts a requested range of data years at those boundaries.

Reading a TOML table into a :class:`Registry` is :mod:`.catalogue_parse`.
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

__all__ = [
    "CLASSIFIED",
    "IDENTIFIERS",
    "IDENTITY_MODELS",
    "KINDS",
    "LINKAGE_BY",
    "RESERVATION_PURPOSES",
    "RESERVATION_SCOPES",
    "UNKNOWN",
    "EndYear",
    "Evidence",
    "Flag",
    "Identifier",
    "IdentityModel",
    "LegalSource",
    "LinkageBy",
    "Part",
    "Period",
    "Regime",
    "Registry",
    "Reservation",
    "Segment",
    "Source",
    "Succession",
    "Year",
    "is_unknown",
    "source_to_dict",
]

UNKNOWN: Final = "unknown"

IdentityModel = Literal["identifiable", "pseudonymous", "de-identified", "consent-based", "unknown"]
Identifier = Literal["fnr", "registry-pseudonym", "none", "unknown"]
LinkageBy = Literal["ssb", "ttp", "registry", "none", "unknown"]
Kind = Literal[
    "central-health-register",
    "national-health-register",
    "health-register",
    "medical-quality-register",
    "health-survey",
    "administrative-register",
    "ssb-data-collection",
    "unknown",
]
Flag = bool | Literal["unknown"]
Year = int | Literal["unknown"]
EndYear = int | Literal["present", "unknown"]

IDENTITY_MODELS: tuple[str, ...] = get_args(IdentityModel)
IDENTIFIERS: tuple[str, ...] = get_args(Identifier)
LINKAGE_BY: tuple[str, ...] = get_args(LinkageBy)
KINDS: tuple[str, ...] = get_args(Kind)
ReservationScope = Literal["persons", "variables"]
RESERVATION_SCOPES: tuple[str, ...] = get_args(ReservationScope)
#: What a reservation may cover: ``registration`` (the data are not recorded, or are withheld,
#: for that person), ``release-with-fnr`` (no release that carries the fødselsnummer),
#: ``research`` (no release for research and other secondary use).
RESERVATION_PURPOSES: tuple[str, ...] = ("registration", "release-with-fnr", "research")

#: Fields classified from the seed; each needs evidence when its value is not unknown.
CLASSIFIED = (
    "kind",
    "owner",
    "legal_basis",
    "identity_model",
    "consent_required",
    "anonymous_output",
    "identifier",
    "linkage_by",
    "period",
)


@dataclass(frozen=True)
class Evidence:
    """A verbatim passage of a seed (``seed`` is the seed's file name) supporting a value."""

    seed: str
    quote: str

    def to_dict(self) -> dict[str, str]:
        return {"seed": self.seed, "quote": self.quote}


@dataclass(frozen=True)
class LegalSource:
    """A statute or regulation backing a value: cited (law, section, instrument, URL), never
    quoted. ``in_force`` is an ISO date or year, ``None`` when the sources do not give it;
    ``checked`` is when the cited page was read (a snapshot date)."""

    law: str
    section: str
    instrument: str | None
    in_force: str | None
    url: str
    checked: datetime.date
    note: str = ""

    def __str__(self) -> str:
        parts = [f"{self.law} {self.section}"]
        if self.instrument:
            parts.append(self.instrument)
        if self.in_force:
            parts.append(f"in force {self.in_force}")
        return "; ".join(parts) + f" <{self.url}> (checked {self.checked.isoformat()})"

    def to_dict(self) -> dict[str, str | None]:
        return {
            "law": self.law,
            "section": self.section,
            "instrument": self.instrument,
            "in_force": self.in_force,
            "url": self.url,
            "checked": self.checked.isoformat(),
            "note": self.note,
        }


#: What backs a catalogue value: a seed passage or a legal source.
Source = Evidence | LegalSource


def source_to_dict(source: Source) -> dict[str, Any]:
    """A source as JSON-ready data: ``{seed, quote}`` or ``{law, section, ..., url, checked}``."""
    return dict(source.to_dict())


@dataclass(frozen=True)
class Period:
    """First and last year covered; ``end`` is ``"present"`` when the seed says "til i dag"."""

    start: Year
    end: EndYear

    def __str__(self) -> str:
        if self.start == UNKNOWN and self.end == UNKNOWN:
            return UNKNOWN
        return f"{self.start}–{self.end}"

    @property
    def known(self) -> bool:
        return self.start != UNKNOWN or self.end != UNKNOWN


@dataclass(frozen=True)
class Part:
    """A part of a registry with its own identity model (MSIS group A and group C)."""

    name: str
    identity_model: IdentityModel
    evidence: Source


def _bound(value: Year | EndYear, open_value: float) -> float:
    return value if isinstance(value, int) else open_value


@dataclass(frozen=True)
class Regime:
    """The identity model a registry's data have for data years ``start``–``end``.

    An unknown ``start`` is open towards earlier years; an ``end`` of ``"present"`` or
    ``"unknown"`` is open towards later ones."""

    start: Year
    end: EndYear
    identity_model: IdentityModel
    identifier: Identifier
    evidence: Source
    anonymous_output: Flag = UNKNOWN
    linkage_by: LinkageBy = UNKNOWN

    @property
    def first(self) -> float:
        """The first year covered (``-inf`` when unknown)."""
        return _bound(self.start, float("-inf"))

    @property
    def last(self) -> float:
        """The last year covered (``inf`` when present or unknown)."""
        return _bound(self.end, float("inf"))

    def covers(self, year: int) -> bool:
        return self.first <= year <= self.last

    def __str__(self) -> str:
        return f"{self.start}–{self.end}: {self.identity_model}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "identity_model": self.identity_model,
            "identifier": self.identifier,
            "anonymous_output": self.anonymous_output,
            "linkage_by": self.linkage_by,
            "evidence": source_to_dict(self.evidence),
        }


@dataclass(frozen=True)
class Succession:
    """Data years from ``start`` on are held by ``registry`` (Reseptregisteret →
    Legemiddelregisteret from 2022); ``confirmed`` is false when the year is not settled."""

    registry: str
    start: int
    evidence: Source
    confirmed: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "start": self.start,
            "confirmed": self.confirmed,
            "evidence": source_to_dict(self.evidence),
        }


@dataclass(frozen=True)
class Segment:
    """A run of requested data years (``start``–``end``, inclusive) and who holds them.

    ``regime`` is ``None`` when no regime covers the years (before the data start, after the
    data end, or held by a successor not yet looked up); ``reason`` then says why, and also
    when the regime's data cannot be linked (de-identified, or the model is unknown)."""

    start: int
    end: int
    registry_id: str
    regime: Regime | None
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "registry": self.registry_id,
            "regime": self.regime.to_dict() if self.regime else None,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Reservation:
    """What persons may opt out of: their whole records (``scope = "persons"``) or only the
    listed ``variables``, for the listed ``purposes`` (:data:`RESERVATION_PURPOSES`). The
    registry drops what a person opted out of before anything leaves it (design.md §1.4)."""

    scope: ReservationScope
    variables: tuple[str, ...]
    purposes: tuple[str, ...]
    evidence: Source

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "variables": list(self.variables),
            "purposes": list(self.purposes),
            "evidence": source_to_dict(self.evidence),
        }


@dataclass(frozen=True)
class Registry:
    """One catalogue entry. ``evidence`` maps a classified field to the passage supporting it."""

    id: str
    name: str
    kind: Kind
    owner: str
    legal_basis: str
    identity_model: IdentityModel
    consent_required: Flag
    anonymous_output: Flag
    identifier: Identifier
    linkage_by: LinkageBy
    period: Period
    source: Evidence
    short: str | None = None
    notes: str = ""
    see_also: tuple[str, ...] = ()
    evidence: Mapping[str, Source] = field(default_factory=dict)
    parts: tuple[Part, ...] = ()
    unknown_reasons: Mapping[str, str] = field(default_factory=dict)
    regimes: tuple[Regime, ...] = ()
    continued_by: Succession | None = None
    reservations: tuple[Reservation, ...] = ()

    @property
    def models(self) -> frozenset[str]:
        """The entry's (current) identity model and those of its parts."""
        return frozenset({self.identity_model, *(p.identity_model for p in self.parts)})

    @property
    def all_regimes(self) -> tuple[Regime, ...]:
        """The recorded regimes, or the one implicit regime: the entry's own fields over its
        period, backed by the identity model's source (the entry's source if it has none)."""
        if self.regimes:
            return self.regimes
        return (
            Regime(
                self.period.start,
                self.period.end,
                self.identity_model,
                self.identifier,
                self.evidence.get("identity_model", self.source),
                self.anonymous_output,
                self.linkage_by,
            ),
        )

    def regime_for(self, year: int) -> Regime | None:
        """The regime in force for data year ``year``; ``None`` outside every regime and
        from the successor's first year on."""
        if self.continued_by is not None and year >= self.continued_by.start:
            return None
        return next((r for r in self.all_regimes if r.covers(year)), None)

    def segments(self, start: int, end: int) -> list[Segment]:
        """Data years ``start``–``end`` cut at regime boundaries and at the succession year.

        The segments partition the range exactly, in order. Years held by the successor come
        back as one segment naming it with ``regime = None`` (look it up with
        :meth:`Catalogue.segments <koble.registries.catalogue.Catalogue.segments>`)."""
        if end < start:
            raise ValueError("end before start")
        cuts = {start, end + 1}
        for regime in self.all_regimes:
            cuts |= {int(b) for b in (regime.first, regime.last + 1) if abs(b) != float("inf")}
        if self.continued_by is not None:
            cuts.add(self.continued_by.start)
        bounds = sorted(c for c in cuts if start <= c <= end + 1)
        out: list[Segment] = []
        for lo, hi in itertools.pairwise(bounds):
            segment = self._segment(lo, hi - 1)
            previous = out[-1] if out else None
            if previous is not None and (
                previous.registry_id,
                previous.regime,
                previous.reason,
            ) == (segment.registry_id, segment.regime, segment.reason):
                out[-1] = Segment(
                    previous.start, segment.end, segment.registry_id, segment.regime, segment.reason
                )
            else:
                out.append(segment)
        return out

    def _segment(self, lo: int, hi: int) -> Segment:
        """The segment for years ``lo``–``hi``, which no cut divides."""
        succ = self.continued_by
        if succ is not None and lo >= succ.start:
            return Segment(lo, hi, succ.registry, None, None)
        regime = self.regime_for(lo)
        label = self.short or self.name
        if regime is None:
            regimes = self.all_regimes
            if lo < regimes[0].first:
                gap = f"{label}'s data start in {regimes[0].start}"
            elif hi > regimes[-1].last:
                gap = f"{label}'s data end in {regimes[-1].end}"
            else:
                gap = f"the catalogue records no identity model for {label}'s data of {lo}–{hi}"
            return Segment(lo, hi, self.id, None, gap)
        why: str | None = None
        if regime.identity_model == "de-identified":
            why = (
                f"{label}'s data for these years are de-identified (avidentifisert): they cannot "
                "be linked to a person or over time; ask the registry for aggregate statistics "
                "instead"
            )
        elif regime.identity_model == UNKNOWN:
            why = (
                f"the catalogue does not record {label}'s identity model for these years, and "
                "koble does not guess a route: record it in a catalogue file (--catalogue) and "
                "plan again"
            )
            if "identity_model" in self.unknown_reasons:
                why += f" ({self.unknown_reasons['identity_model']})"
        return Segment(lo, hi, self.id, regime, why)

    def unknown_fields(self) -> list[str]:
        """The classified fields the seed is silent on."""
        return [f for f in CLASSIFIED if is_unknown(getattr(self, f))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "short": self.short,
            "kind": self.kind,
            "owner": self.owner,
            "legal_basis": self.legal_basis,
            "identity_model": self.identity_model,
            "consent_required": self.consent_required,
            "anonymous_output": self.anonymous_output,
            "identifier": self.identifier,
            "linkage_by": self.linkage_by,
            "period": {"start": self.period.start, "end": self.period.end},
            "source": self.source.to_dict(),
            "evidence": {k: source_to_dict(v) for k, v in sorted(self.evidence.items())},
            "unknown_reasons": dict(sorted(self.unknown_reasons.items())),
            "parts": [
                {
                    "name": p.name,
                    "identity_model": p.identity_model,
                    "evidence": source_to_dict(p.evidence),
                }
                for p in self.parts
            ],
            "regimes": [r.to_dict() for r in self.regimes],
            "continued_by": self.continued_by.to_dict() if self.continued_by else None,
            "reservations": [r.to_dict() for r in self.reservations],
            "see_also": list(self.see_also),
            "notes": self.notes,
        }


def is_unknown(value: object) -> bool:
    """Whether a field's value (a period included) is unknown."""
    return value == UNKNOWN or (isinstance(value, Period) and not value.known)
