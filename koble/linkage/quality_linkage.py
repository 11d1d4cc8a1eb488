"""The quality report's sections on identity recovery and on requests split by period.

Identity recovery (design.md §1.5): records by how they were linked, the model's estimates
and the link rate by group. A request split by identity regime or handed on to a successor:
which rows came from which registry and regime. Both as (heading, blocks) for every
rendering (:mod:`koble.linkage.quality_sections`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from koble.linkage.quality_tables import Block, Table, is_central, record_table

__all__ = ["linkage_sections", "period_sections"]

#: A request split by identity regime or handed on to a successor: one row per part.
_PERIODS = (
    ("asked", "requested", "l"),
    ("years", "years", "l"),
    ("held by", "registry", "l"),
    ("identity model", "identity_model", "l"),
    ("route", "route", "l"),
    ("rows", "rows_delivered", "r"),
    ("file or reason", "where", "l"),
)


def linkage_sections(data: Mapping[str, Any]) -> list[tuple[str, list[Block]]]:
    """Identity recovery (design.md §1.5), one section per set of records resolved at the
    TTP: records by how they were linked, the model's estimated precision and recall at
    the thresholds, and the link rate by group beside the whole (cells under 5 hidden)."""
    out: list[tuple[str, list[Block]]] = []
    for section in data.get("linkage") or []:
        scope = section["scope"]
        rows = [(outcome, n) for outcome, n in section["by_outcome"].items()]
        model = section.get("model") or {}
        low, high = section["thresholds"]
        text = (
            f"{section['rows']:,} records; thresholds {low} (review from) and {high} (linked "
            f"from). Estimated at the thresholds by the model: precision "
            f"{_rate(model.get('estimated_precision'))}, recall "
            f"{_rate(model.get('estimated_recall'))}"
            + (f"; trained on {model['n_training_pairs']:,} exactly linked records"
               if model.get("n_training_pairs") else "; no probabilistic model was needed")
            + "."
        )  # fmt: skip
        bias = section.get("bias") or {}
        groups = [
            (g["by"], g["group"], "hidden" if g["hidden"] else g["rows"],
             "hidden" if g["hidden"] else g["linked"], _rate(g["rate"]),
             _points(g["difference"]))
            for g in bias.get("groups", [])
        ]  # fmt: skip
        blocks: list[Block] = [text, Table(("outcome", "records"), "lr", rows)]
        blocks.append(
            f"Link rate by group ({bias.get('rows', 0):,} records, {_rate(bias.get('rate'))} "
            "linked overall; groups from the records' own fields, ages "
            + ("at death for the deceased, else " if bias.get("ages_at_death") else "")
            + f"at {bias.get('reference_date')}"
            + (f"; not carried: {', '.join(bias['not_carried'])}" if bias.get("not_carried")
               else "")
            + (f"; left out, one group for every record: {', '.join(bias['single_group'])}"
               if bias.get("single_group") else "")
            + "; a cell with 1-4 records, linked or unlinked, is hidden, and one more beside "
            "it so that it cannot be recomputed from the total):"
        )  # fmt: skip
        headers = ("by", "group", "records", "linked", "link rate", "difference")
        blocks.append(Table(headers, "llrrrr", groups))
        out.append((f"Linkage: {scope}", blocks))
    return out


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.2%}"


def _points(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.1f} points"


def period_sections(data: Mapping[str, Any]) -> list[tuple[str, list[Block]]]:
    """The section on requests split by identity regime (NPR before and from 2008) or handed
    on to a successor (Reseptregisteret, then Legemiddelregisteret): which rows came from
    which registry and regime. Absent when no request is split."""
    parts = data.get("periods") or []
    asked = [p["requested"] for p in parts]
    split = {r for r in asked if asked.count(r) > 1}
    split |= {p["requested"] for p in parts if p["registry"] != p["requested"]}
    if not split:
        return []
    central = is_central(data)  # the extracts go to the operator only: name no file
    records = [
        {
            **p,
            "years": f"{p['period'][0]}–{p['period'][1]}",
            "where": p.get("reason")
            if p["route"] == "refused"
            else "linked centrally"
            if central
            else p.get("file"),
        }
        for p in parts
        if p["requested"] in split
    ]
    text = (
        "A request whose years span more than one identity model or holder is planned part "
        "by part, each under the request's approval; every part's rows are in its own "
        "registry's file."
    )
    if central:
        text = (
            "A request whose years span more than one identity model or holder is planned "
            "part by part, each under the request's approval; the parts' rows are stacked "
            "before central linkage (rows here are those extracted for linkage)."
        )
    return [("Periods by identity model", [text, record_table(_PERIODS, records)])]
