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

Reading a TOML table into a :class:`Registry` is :mod:`.catalogue_parse`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

__all__ = [
    "CLASSIFIED",
    "IDENTIFIERS",
    "IDENTITY_MODELS",
    "KINDS",
    "LINKAGE_BY",
    "UNKNOWN",
    "Evidence",
    "IdentityModel",
    "Part",
    "Period",
    "Registry",
    "is_unknown",
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
    evidence: Evidence


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
    evidence: Mapping[str, Evidence] = field(default_factory=dict)
    parts: tuple[Part, ...] = ()

    @property
    def models(self) -> frozenset[str]:
        """The entry's identity model and those of its parts."""
        return frozenset({self.identity_model, *(p.identity_model for p in self.parts)})

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
            "evidence": {k: v.to_dict() for k, v in sorted(self.evidence.items())},
            "parts": [
                {
                    "name": p.name,
                    "identity_model": p.identity_model,
                    "evidence": p.evidence.to_dict(),
                }
                for p in self.parts
            ],
            "see_also": list(self.see_also),
            "notes": self.notes,
        }


def is_unknown(value: object) -> bool:
    """Whether a field's value (a period included) is unknown."""
    return value == UNKNOWN or (isinstance(value, Period) and not value.known)
