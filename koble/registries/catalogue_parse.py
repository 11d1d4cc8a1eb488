"""Reading one registry catalogue entry from a TOML table, collecting every problem.

Problems are never raised one at a time: :func:`parse_registry` appends one line per problem to
the list it is given, prefixed with where the entry is (file and id) and naming the key, and
the caller raises them all at once.

A source is a seed passage (a string, or a table with ``quote``) or a legal source (a table with
``law``: :class:`LegalSource`). Regimes, the successor and reservations are read by
:mod:`.catalogue_parse_law`.
"""

from __future__ import annotations

import datetime
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
    LegalSource,
    Part,
    Period,
    Registry,
    Source,
    Year,
    is_unknown,
)
from koble.registries.catalogue_parse_law import read_law

__all__ = ["parse_registry"]

_REQUIRED = ("id", "name", *CLASSIFIED, "source")
_OPTIONAL = (
    "short",
    "notes",
    "see_also",
    "evidence",
    "part",
    "unknown",
    "regimes",
    "continued_by",
    "reservations",
)
#: Keys of ``[registry.unknown]``: a classified field, or a fact the entry records elsewhere.
UNKNOWN_KEYS = (
    *CLASSIFIED,
    "period.start",
    "period.end",
    "regimes",
    "continued_by",
    "reservations",
)
_LEGAL_KEYS = ("law", "section", "instrument", "in_force", "url", "checked", "note")
_IN_FORCE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
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

    def evidence(self, value: object, name: str, default_seed: str) -> Source | None:
        """A seed passage (a quote, or ``{ seed, quote }``) or a legal source (``{ law, ... }``)."""
        if isinstance(value, str) and value.strip():
            return Evidence(default_seed, value.strip())
        if isinstance(value, Mapping) and "law" in value:
            return self.legal_source(value, name)
        if isinstance(value, Mapping):
            seed, quote = value.get("seed", default_seed), value.get("quote")
            if isinstance(seed, str) and seed and isinstance(quote, str) and quote.strip():
                return Evidence(seed, quote.strip())
        self.problem(
            f"{name} must be a quote, a table {{ seed = ..., quote = ... }} or a legal source "
            "{ law = ..., section = ..., url = ..., checked = ... }"
        )
        return None

    def legal_source(self, value: Mapping[str, Any], name: str) -> LegalSource | None:
        """A cited statute or regulation; every bad key is reported."""
        before = len(self.problems)
        for key in sorted(set(value) - set(_LEGAL_KEYS)):
            self.problem(f"{name}: unknown key {key!r} in a legal source (cite, do not quote)")
        texts: dict[str, str | None] = {}
        for key in ("law", "section", "url", "instrument", "note"):
            raw = value.get(key)
            if raw is None and key in ("instrument", "note"):
                texts[key] = None
            elif not isinstance(raw, str) or not raw.strip():
                self.problem(f"{name}.{key} must be a non-empty string")
            else:
                texts[key] = raw.strip()
        url = texts.get("url")
        if url is not None and not re.fullmatch(r"https://[^\s/]+\.[^\s/]+(/\S*)?", url):
            self.problem(f"{name}.url must be an https:// address")
        in_force = value.get("in_force")
        if isinstance(in_force, datetime.date):
            in_force = in_force.isoformat()
        if in_force is not None and not (isinstance(in_force, str) and _IN_FORCE.match(in_force)):
            self.problem(f"{name}.in_force must be a date (2002-01-01), a year or absent")
            in_force = None
        checked = value.get("checked")
        if not isinstance(checked, datetime.date) or isinstance(checked, datetime.datetime):
            self.problem(f"{name}.checked must be a date (checked = 2026-11-01)")
            checked = None
        elif checked > datetime.date.today():
            self.problem(f"{name}.checked ({checked.isoformat()}) is in the future")
        if len(self.problems) > before or checked is None:
            return None
        return LegalSource(
            law=cast(str, texts["law"]),
            section=cast(str, texts["section"]),
            instrument=texts["instrument"],
            in_force=in_force,
            url=cast(str, url),
            checked=checked,
            note=texts["note"] or "",
        )

    def year(self, value: object, name: str, *, end: bool = False) -> Any:
        """A year (or ``"unknown"``; ``"present"`` too for an end), else a problem."""
        if value == UNKNOWN or (end and value == "present") or _year(value):
            return value
        allowed = 'a year, "present" or "unknown"' if end else 'a year or "unknown"'
        self.problem(f"{name} is {value!r}; {allowed}")
        return UNKNOWN

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
    source: Evidence | None = None
    if not isinstance(source_raw, Mapping) or "seed" not in source_raw or "law" in source_raw:
        read.problem("missing field 'source' (a table { seed = ..., quote = ... })")
    else:
        found = read.evidence(source_raw, "source", "")
        source = found if isinstance(found, Evidence) else None
    default_seed = source.seed if source else ""
    evidence: dict[str, Source] = {}
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
    reasons = _unknown_reasons(raw.get("unknown", {}), read)
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
        unknown_reasons=reasons,
    )
    registry = read_law(registry, raw, read, default_seed)
    _check_consistency(registry, read, need_evidence=need_evidence)
    return registry


def _unknown_reasons(value: object, read: _Reader) -> dict[str, str]:
    """``[registry.unknown]``: field = reason, for values the sources leave unconfirmed."""
    if not isinstance(value, Mapping):
        read.problem("field 'unknown' must be a table (field = \"reason\")")
        return {}
    reasons: dict[str, str] = {}
    for key, reason in value.items():
        if key not in UNKNOWN_KEYS:
            read.problem(f"unknown.{key}: not a field; use one of {', '.join(UNKNOWN_KEYS)}")
        elif not isinstance(reason, str) or not reason.strip():
            read.problem(f"unknown.{key} must be a non-empty reason")
        else:
            reasons[key] = reason.strip()
    return reasons


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
    for key in sorted(entry.unknown_reasons):
        if key in CLASSIFIED and not is_unknown(getattr(entry, key)):
            read.problem(f"unknown.{key}: the field has a value; a reason is for unknown ones")
        if key.startswith("period.") and getattr(entry.period, key[7:]) != UNKNOWN:
            read.problem(f"unknown.{key}: the year is known; a reason is for unknown ones")
    if need_evidence:
        for name in CLASSIFIED:
            if not is_unknown(getattr(entry, name)) and name not in entry.evidence:
                read.problem(f"{name} is classified but has no evidence quote")
