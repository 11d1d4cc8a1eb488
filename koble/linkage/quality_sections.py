"""What the quality report says: its sections, as (heading, paragraphs and tables).

:func:`sections` is shared by every rendering (:mod:`koble.linkage.quality`): the
population and its rejections, identity recovery, persons and rows per registry, periods,
what the researcher receives, refusals, the anonymity gate and the reconciliation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from koble.linkage.quality_linkage import linkage_sections, period_sections
from koble.linkage.quality_tables import Block, Table, is_central, record_table, verdict

__all__ = ["RECEIVED", "rejection_reasons", "sections"]

#: The section on what the researcher receives (its HTML id is ``received``).
RECEIVED = "What the researcher receives"


def _person_level(anon: Mapping[str, Any]) -> str:
    """The model the gate met, and persons singled out by their set of rows before/after."""
    text = f"Model: {anon.get('model', 'row')}"
    if constant := anon.get("person_constant_quasi_identifiers"):
        text += f" (constant within every person, so quasi-identifiers too: {', '.join(constant)})"
    figures = anon.get("person_level") or {}
    before, after = figures.get("before"), figures.get("after")
    if before and after:
        text += (
            f". Persons singled out by their set of rows: {before['unique']:,} of "
            f"{before['persons']:,} in the linked file, {after['unique']:,} of "
            f"{after['persons']:,} released ({after['under_k']:,} in sets shared by fewer "
            f"than k)"
        )
    if anon.get("persons_withheld"):
        text += f"; {anon['persons_withheld']:,} persons withheld whole"
    return text + "."


def _share(part: int | None, whole: int | None) -> str | None:
    return f"{part / whole:.1%}" if part is not None and whole else None


#: Rows of the population table: (label, key); the rejected rows are those the
#: reconciliation counts (rows = persons keyed + rows rejected), then their reasons.
_POPULATION = (
    ("rows in the population file", "rows"),
    ("distinct persons keyed", "persons"),
    ("rows rejected", "rejected"),
    ("invalid identifiers", "invalid"),
    ("duplicate rows", "duplicates"),
    ("not resolved to a current identifier", "unresolved"),
    ("resolved through the identifier history", "resolved_from_history"),
)
#: Columns of the two per-registry tables: (header, key, l = text or r = number).
_PERSONS = (
    ("registry", "registry", "l"),
    ("name", "name", "l"),
    ("route", "route", "l"),
    ("consent filter", "consent_filter", "l"),
    ("reservation filter", "reservation_filter", "l"),
    ("sent", "persons_sent", "r"),
    ("unresolved", "persons_unresolved", "r"),
    ("without consent", "persons_without_consent", "r"),
    ("found", "persons_found", "r"),
    ("found share", "found_share", "r"),
)
_ROWS = (
    ("registry", "registry", "l"),
    ("period", "period_text", "l"),
    ("source rows", "source_rows", "r"),
    ("delivered", "rows_delivered", "r"),
    ("outside period", "rows_outside_period", "r"),
    ("without consent", "rows_without_consent", "r"),
    ("withheld for reservation", "rows_withheld_reservation", "r"),
    ("values nulled for reservation", "nulled_text", "l"),
    ("duplicates", "duplicate_rows", "r"),
    ("file", "file", "l"),
)
#: The central route's registries deliver to the operator, for linkage, not to the researcher.
_ROWS_CENTRAL = tuple(
    ("extracted for linkage", key, a) if key == "rows_delivered" else (h, key, a)
    for h, key, a in _ROWS
    if key != "file"
)
_DELIVERY = (("file", "file", "l"), ("rows", "rows", "r"), ("from", "from", "l"))
_REFUSALS = (("registry", "registry", "l"), ("reason", "reason", "l"))
_CHECKS = (("check", "check", "l"), ("result", "result", "l"), ("detail", "detail", "l"))


def rejection_reasons(data: Mapping[str, Any]) -> list[tuple[str, int]]:
    """Population rejection reasons, most frequent first."""
    reasons = data["population"].get("reasons") or {}
    return sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))


def _rejected(pop: Mapping[str, Any]) -> int | None:
    """The population rows rejected, as the reconciliation counts them."""
    parts = [pop.get(key) for key in ("invalid", "duplicates", "unresolved")]
    return None if any(p is None for p in parts) else sum(parts)  # type: ignore[arg-type]


def _nulled(report: Mapping[str, Any]) -> str | None:
    """The values a registry's reservation filter nulled, per variable (counts, never who)."""
    if not report.get("reservation_filter"):
        return None
    nulled = report.get("values_nulled_reservation") or {}
    return "; ".join(f"{v}: {n:,}" for v, n in sorted(nulled.items())) or "none"


def _received(data: Mapping[str, Any]) -> list[Block]:
    """The files the researcher receives and their rows: in the central route the anonymous
    delivery, after the anonymity gate (never the operator's extracts)."""
    files = data.get("delivery")
    anon = data.get("anonymity")
    if files is None:  # a report written before the delivery was recorded
        if is_central(data) and anon:
            files = [{"file": None, "rows": anon["rows"] - anon["suppressed"], "from": None}]
        else:
            files = [{"file": r.get("file"), "rows": r.get("file_rows"), "from": r["registry"]}
                     for r in data.get("registries") or []]  # fmt: skip
    if not files:
        return ["None: no data files were delivered."]
    blocks: list[Block] = []
    if is_central(data) and anon:
        names = ", ".join(r["registry"] for r in data.get("registries") or [])
        blocks.append(
            f"The registries' extracts ({names}) went to the operator only; linked, "
            f"{anon['rows']:,} rows, of which the anonymity gate withheld "
            f"{anon['suppressed']:,}: the researcher receives "
            f"{anon['rows'] - anon['suppressed']:,} rows."
        )
    return [*blocks, record_table(_DELIVERY, files)]


def sections(data: Mapping[str, Any]) -> list[tuple[str, list[Block]]]:
    """The report's sections as (heading, paragraphs and tables), shared by every renderer."""
    pop = {**data["population"], "rejected": _rejected(data["population"])}
    population = Table(("population", "count"), "lr", [(t, pop.get(k)) for t, k in _POPULATION])
    reasons: Block = (
        Table(("rejection reason", "rows"), "lr", rejection_reasons(data))
        if rejection_reasons(data)
        else "Rejected population rows by reason: none."
    )
    registries = [
        {
            **r,
            "found_share": _share(r.get("persons_found"), r.get("persons_sent")),
            "period_text": "–".join(map(str, r["period"])) if r.get("period") else None,
            "nulled_text": _nulled(r),
        }
        for r in data.get("registries") or []
    ]
    persons = record_table(_PERSONS, registries)
    rows = record_table(_ROWS_CENTRAL if is_central(data) else _ROWS, registries)
    refusals = [
        {**r, "registry": f"{r['registry']} {r['period'][0]}–{r['period'][1]}"}
        if r.get("period")
        else r
        for r in data.get("refusals") or []
    ]
    anonymity: list[Block] = ["No anonymity gate on this route."]
    if anon := data.get("anonymity"):
        levels = anon.get("levels") or {}
        # the job's quasi-identifiers, then those the gate added (person-constant columns)
        names = list(anon.get("quasi_identifiers", []))
        names += [q for q in levels if q not in names]
        qis = [(qi, levels.get(qi)) for qi in names]
        anonymity = [
            f"k = {anon['k']} (in persons): {'met' if anon['meets'] else 'NOT met'}; "
            f"smallest class {anon['min_class_size']:,} rows"
            + (
                f", {anon['min_class_persons']:,} persons"
                if anon.get("min_class_persons") is not None
                else ""
            )
            + f"; {anon['suppressed']:,} of {anon['rows']:,} rows withheld.",
            _person_level(anon),
            Table(("quasi-identifier", "level"), "ll", qis),
        ]
    checks = data.get("reconciliation") or []
    results = [{**c, "result": "OK" if c["ok"] else "FAIL"} for c in checks]
    return [
        ("Population", [population, reasons]),
        *linkage_sections(data),
        ("Persons per registry", [persons] if registries else ["No registries."]),
        ("Rows per registry", [rows] if registries else ["No registries."]),
        *period_sections(data),
        (RECEIVED, _received(data)),
        ("Refusals", [record_table(_REFUSALS, refusals)] if refusals else ["None."]),
        ("Anonymity", anonymity),
        ("Reconciliation", [verdict(data)[1], record_table(_CHECKS, results)]),
    ]
