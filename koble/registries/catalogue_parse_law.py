"""Reading an entry's identity regimes, successor and reservation rights, and checking them.

These record what the law says about a registry over time (design.md §1.3): which identity
model holds for which data years (``[[registry.regimes]]``), which registry holds the data
from a year on (``continued_by``), and what persons may opt out of
(``[[registry.reservations]]``). Problems go to the reader's list, naming the key.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from koble.registries.catalogue_model import (
    IDENTIFIERS,
    IDENTITY_MODELS,
    LINKAGE_BY,
    RESERVATION_PURPOSES,
    RESERVATION_SCOPES,
    UNKNOWN,
    Flag,
    Regime,
    Registry,
    Reservation,
    Succession,
)

if TYPE_CHECKING:
    from koble.registries.catalogue_parse import _Reader

__all__ = ["read_law"]

_REGIME_KEYS = (
    "start",
    "end",
    "identity_model",
    "identifier",
    "anonymous_output",
    "linkage_by",
    "evidence",
)
_SUCCESSION_KEYS = ("registry", "start", "confirmed", "evidence")
_RESERVATION_KEYS = ("scope", "variables", "purposes", "evidence")


def read_law(entry: Registry, raw: Mapping[str, Any], read: _Reader, seed: str) -> Registry:
    """``entry`` with the regimes, successor and reservations of ``raw``, checked."""
    regimes = tuple(
        r
        for n, table in enumerate(_tables(raw, "regimes", read), start=1)
        if (r := _regime(table, f"regimes {n}", read, seed)) is not None
    )
    reservations = tuple(
        v
        for n, table in enumerate(_tables(raw, "reservations", read), start=1)
        if (v := _reservation(table, f"reservations {n}", read, seed)) is not None
    )
    succession = None
    if "continued_by" in raw:
        succession = _succession(raw["continued_by"], read, seed)
    entry = dataclasses.replace(
        entry, regimes=regimes, reservations=reservations, continued_by=succession
    )
    _check_regimes(entry, read)
    return entry


def _tables(raw: Mapping[str, Any], key: str, read: _Reader) -> list[Mapping[str, Any]]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(t, Mapping) for t in value):
        read.problem(f"{key!r} must be an array of tables ([[registry.{key}]])")
        return []
    return value


def _unknown_keys(
    table: Mapping[str, Any], allowed: tuple[str, ...], where: str, read: _Reader
) -> None:
    for key in sorted(set(table) - set(allowed)):
        read.problem(f"{where}: unknown key {key!r}")


def _choice(
    table: Mapping[str, Any],
    key: str,
    allowed: tuple[str, ...],
    where: str,
    read: _Reader,
    default: str | None = None,
) -> Any:
    value = table.get(key, default)
    if value not in allowed:
        what = "missing" if value is None else f"is {value!r}"
        read.problem(f"{where}: {key} {what}; allowed: {', '.join(allowed)}")
        return UNKNOWN
    return value


def _regime(table: Mapping[str, Any], where: str, read: _Reader, seed: str) -> Regime | None:
    before = len(read.problems)
    _unknown_keys(table, _REGIME_KEYS, where, read)
    start = read.year(table.get("start"), f"{where}: start")
    end = read.year(table.get("end"), f"{where}: end", end=True)
    if isinstance(start, int) and isinstance(end, int) and end < start:
        read.problem(f"{where}: ends ({end}) before it starts ({start})")
    model = _choice(table, "identity_model", IDENTITY_MODELS, where, read)
    identifier = _choice(table, "identifier", IDENTIFIERS, where, read)
    linkage = _choice(table, "linkage_by", LINKAGE_BY, where, read, UNKNOWN)
    flag = table.get("anonymous_output", UNKNOWN)
    if not (isinstance(flag, bool) or flag == UNKNOWN):
        read.problem(f'{where}: anonymous_output is {flag!r}; allowed: true, false, "unknown"')
    evidence = read.evidence(table.get("evidence"), f"{where}: evidence", seed)
    if evidence is None or len(read.problems) > before:
        return None
    regime = Regime(start, end, model, identifier, evidence, cast(Flag, flag), linkage)
    if model == "de-identified" and (
        identifier not in ("none", UNKNOWN) or linkage not in ("none", UNKNOWN)
    ):
        read.problem(f"{where}: a de-identified regime holds no identifier and cannot be linked")
    if model == "pseudonymous" and identifier not in ("registry-pseudonym", UNKNOWN):
        read.problem(f"{where}: a pseudonymous regime holds a registry pseudonym")
    return regime


def _succession(value: object, read: _Reader, seed: str) -> Succession | None:
    where = "continued_by"
    if not isinstance(value, Mapping):
        read.problem(
            f"{where} must be a table "
            "{ registry = ..., start = ..., confirmed = ..., evidence = ... }"
        )
        return None
    before = len(read.problems)
    _unknown_keys(value, _SUCCESSION_KEYS, where, read)
    registry, start, confirmed = value.get("registry"), value.get("start"), value.get("confirmed")
    if not isinstance(registry, str) or not registry.strip():
        read.problem(f"{where}: registry must be a registry id")
    if read.year(start, f"{where}: start") == UNKNOWN:
        read.problem(f"{where}: start must be the successor's first data year")
    if not isinstance(confirmed, bool):
        read.problem(f"{where}: confirmed must be true or false")
    evidence = read.evidence(value.get("evidence"), f"{where}: evidence", seed)
    if evidence is None or len(read.problems) > before:
        return None
    return Succession(
        cast(str, registry).strip(), cast(int, start), evidence, cast(bool, confirmed)
    )


def _strings(table: Mapping[str, Any], key: str, where: str, read: _Reader) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        read.problem(f"{where}: {key} must be a list of names")
        return ()
    return tuple(v.strip() for v in value)


def _reservation(
    table: Mapping[str, Any], where: str, read: _Reader, seed: str
) -> Reservation | None:
    before = len(read.problems)
    _unknown_keys(table, _RESERVATION_KEYS, where, read)
    scope = _choice(table, "scope", RESERVATION_SCOPES, where, read)
    variables = _strings(table, "variables", where, read)
    purposes = _strings(table, "purposes", where, read)
    if scope == "variables" and not variables:
        read.problem(f'{where}: scope "variables" needs the variables it withholds')
    if scope == "persons" and variables:
        read.problem(f'{where}: scope "persons" withholds whole records; list no variables')
    if not purposes:
        read.problem(f"{where}: purposes must name what the person may opt out of")
    for purpose in purposes:
        if purpose not in RESERVATION_PURPOSES:
            read.problem(
                f"{where}: purpose {purpose!r}; allowed: {', '.join(RESERVATION_PURPOSES)}"
            )
    evidence = read.evidence(table.get("evidence"), f"{where}: evidence", seed)
    if evidence is None or len(read.problems) > before:
        return None
    return Reservation(scope, variables, purposes, evidence)


def _check_regimes(entry: Registry, read: _Reader) -> None:
    """Regimes in order without overlap; only the first open to the past and the last to the
    future; the entry's own fields are its last (current) regime's; the successor comes after."""
    regimes = entry.regimes
    for n, (a, b) in enumerate(itertools.pairwise(regimes), start=1):
        if b.first <= a.last:
            read.problem(
                f"regimes {n} ({a.start}–{a.end}) and {n + 1} ({b.start}–{b.end}) "
                "overlap or are out of order"
            )
    if regimes:
        last = regimes[-1]
        for name in ("identity_model", "identifier"):
            if getattr(last, name) != getattr(entry, name):
                read.problem(
                    f"{name} is {getattr(entry, name)!r} but the last regime's is "
                    f"{getattr(last, name)!r}; the entry's fields describe its current regime"
                )
        start, end = entry.period.start, entry.period.end
        if isinstance(start, int) and regimes[0].first < start:
            read.problem(f"regimes 1 starts before the period ({start})")
        if isinstance(end, int) and last.last > end:
            read.problem(f"regimes {len(regimes)} ends after the period ({end})")
    succ = entry.continued_by
    if succ is not None:
        if succ.registry == entry.id:
            read.problem("continued_by names the registry itself")
        for n, regime in enumerate(regimes, start=1):
            if regime.first >= succ.start:
                read.problem(
                    f"regimes {n} starts in or after the successor's first year ({succ.start})"
                )
