"""Reading one registry catalogue entry from a TOML table, collecting every problem.

Problems are never raised one at a time: :func:`parse_registry` appends one line per problem to
the list it is given, prefixed with where the entry is (file and id), and the caller raises
them all at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, cast

from koble.registries.catalogue_model import (
    CLASSIFIED,
    IDENTIFIERS,
    IDENTITY_MODELS,
    KINDS,
    LINKAGE_BY,
    UNKNOWN,
    EndYear,
    Evidence,
    Flag,
    Part,
    Period,
    Registry,
    Year,
    is_unknown,
)

__all__ = ["parse_registry"]

_REQUIRED = ("id", "name", *CLASSIFIED, "source")
_OPTIONAL = ("short", "notes", "see_also", "evidence", "part")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")
_FIRST_YEAR, _LAST_YEAR = 1800, 2100


class _Reader:
    """Reads fields of one raw entry, appending a line to ``problems`` for each bad one."""

    def __init__(self, raw: Mapping[str, Any], where: str, problems: list[str]) -> None:
        self.raw, self.where, self.problems = raw, where, problems

    def problem(self, message: str) -> None:
        self.problems.append(f"{self.where}: {message}")

    def text(self, name: str, *, required: bool = True) -> str:
        value = self.raw.get(name)
        if value is None and not required:
            return ""
        if not isinstance(value, str) or not value.strip():
            self.problem(
                f"field {name!r} must be a non-empty string"
                if value is not None
                else f"missing field {name!r}"
            )
            return UNKNOWN
        return value.strip()

    def choice(self, name: str, allowed: tuple[str, ...]) -> Any:
        value = self.raw.get(name)
        if value is None:
            self.problem(f"missing field {name!r}")
        elif value not in allowed:
            self.problem(f"field {name!r} is {value!r}; allowed: {', '.join(allowed)}")
        else:
            return value
        return UNKNOWN

    def flag(self, name: str) -> Flag:
        value = self.raw.get(name)
        if value is None:
            self.problem(f"missing field {name!r}")
        elif isinstance(value, bool) or value == UNKNOWN:
            return value  # type: ignore[no-any-return]
        else:
            self.problem(f'field {name!r} is {value!r}; allowed: true, false, "unknown"')
        return UNKNOWN

    def evidence(self, value: object, name: str, default_seed: str) -> Evidence | None:
        if isinstance(value, str) and value.strip():
            return Evidence(default_seed, value.strip())
        if isinstance(value, Mapping):
            seed, quote = value.get("seed", default_seed), value.get("quote")
            if isinstance(seed, str) and seed and isinstance(quote, str) and quote.strip():
                return Evidence(seed, quote.strip())
        self.problem(f"{name} must be a quote or a table {{ seed = ..., quote = ... }}")
        return None

    def period(self) -> Period:
        value = self.raw.get("period")
        if not isinstance(value, Mapping):
            self.problem(
                "missing field 'period'"
                if value is None
                else "field 'period' must be a table { start = ..., end = ... }"
            )
            return Period(UNKNOWN, UNKNOWN)
        start, end = value.get("start"), value.get("end")
        if not (start == UNKNOWN or _year(start)):
            self.problem(f'period.start is {start!r}; a year or "unknown"')
            start = UNKNOWN
        if not (end in ("present", UNKNOWN) or _year(end)):
            self.problem(f'period.end is {end!r}; a year, "present" or "unknown"')
            end = UNKNOWN
        if isinstance(start, int) and isinstance(end, int) and end < start:
            self.problem(f"period ends ({end}) before it starts ({start})")
        return Period(cast(Year, start), cast(EndYear, end))


def _year(value: object) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and (_FIRST_YEAR <= value <= _LAST_YEAR)
    )


def parse_registry(
    raw: Mapping[str, Any], where: str, problems: list[str], *, need_evidence: bool
) -> Registry:
    """Build a :class:`Registry` from one TOML table; problems go to ``problems``.

    ``where`` names the file and entry in messages. With ``need_evidence`` (the bundled
    catalogue) every classified field that is not unknown must have an evidence quote.
    The entry is returned even when it has problems, so later checks can add theirs; the
    caller compares the length of ``problems`` before and after.
    """
    read = _Reader(raw, where, problems)
    for name in sorted(set(raw) - {*_REQUIRED, *_OPTIONAL}):
        read.problem(f"unknown field {name!r}")
    ident = read.text("id")
    if ident != UNKNOWN and not _ID.match(ident):
        read.problem(f"id {ident!r} must be lower-case letters, digits and hyphens")
    source_raw = raw.get("source")
    source = None
    if not isinstance(source_raw, Mapping) or "seed" not in source_raw:
        read.problem("missing field 'source' (a table { seed = ..., quote = ... })")
    else:
        source = read.evidence(source_raw, "source", "")
    default_seed = source.seed if source else ""
    evidence: dict[str, Evidence] = {}
    evidence_raw = raw.get("evidence", {})
    if not isinstance(evidence_raw, Mapping):
        read.problem("field 'evidence' must be a table")
        evidence_raw = {}
    for name, value in evidence_raw.items():
        if name not in CLASSIFIED:
            read.problem(f"evidence for {name!r}, which is not a classified field")
        found = read.evidence(value, f"evidence.{name}", default_seed)
        if found:
            evidence[name] = found
    parts: list[Part] = []
    raw_parts = raw.get("part", [])
    if not isinstance(raw_parts, list) or not all(isinstance(p, Mapping) for p in raw_parts):
        read.problem("'part' must be an array of tables ([[registry.part]])")
        raw_parts = []
    for number, part in enumerate(raw_parts, start=1):
        sub = _Reader(part, f"{where}: part {number}", problems)
        model = sub.choice("identity_model", IDENTITY_MODELS)
        quote = sub.evidence(part.get("evidence"), "evidence", default_seed)
        if quote:
            parts.append(Part(sub.text("name"), model, quote))
    see_also = raw.get("see_also", [])
    if not isinstance(see_also, list) or not all(isinstance(s, str) for s in see_also):
        read.problem("field 'see_also' must be a list of registry ids")
        see_also = []
    registry = Registry(
        id=ident,
        name=read.text("name"),
        short=read.text("short", required=False) or None,
        kind=read.choice("kind", KINDS),
        owner=read.text("owner"),
        legal_basis=read.text("legal_basis"),
        identity_model=read.choice("identity_model", IDENTITY_MODELS),
        consent_required=read.flag("consent_required"),
        anonymous_output=read.flag("anonymous_output"),
        identifier=read.choice("identifier", IDENTIFIERS),
        linkage_by=read.choice("linkage_by", LINKAGE_BY),
        period=read.period(),
        source=source or Evidence(UNKNOWN, UNKNOWN),
        notes=read.text("notes", required=False),
        see_also=tuple(see_also),
        evidence=evidence,
        parts=tuple(parts),
    )
    _check_consistency(registry, read, need_evidence=need_evidence)
    return registry


def _check_consistency(entry: Registry, read: _Reader, *, need_evidence: bool) -> None:
    """Rules across fields, so a route derived from the fields cannot contradict itself."""
    model, identifier = entry.identity_model, entry.identifier
    if model == "de-identified" and (
        identifier not in ("none", UNKNOWN) or entry.linkage_by not in ("none", UNKNOWN)
    ):
        read.problem("a de-identified registry holds no identifier and cannot be linked")
    if model == "pseudonymous" and identifier not in ("registry-pseudonym", UNKNOWN):
        read.problem("a pseudonymous registry holds a registry pseudonym, not " + identifier)
    if model == "consent-based" and entry.consent_required is not True:
        read.problem("a consent-based registry must have consent_required = true")
    if model != "consent-based" and entry.consent_required is True:
        read.problem('consent_required = true needs identity_model = "consent-based"')
    if need_evidence:
        for name in CLASSIFIED:
            if not is_unknown(getattr(entry, name)) and name not in entry.evidence:
                read.problem(f"{name} is classified but has no evidence quote")
