"""The linkage quality report: Markdown, JSON and a self-contained HTML page with charts.

The delivery step collects the figures of a job in a typed
:class:`~koble.linkage.delivery_records.QualityReport` (population rows and rejections,
persons sent to and found in each registry, rows delivered and dropped, refusals, the
anonymity gate, and the reconciliation checks that every person and row is accounted for);
this module only presents them, from the report's JSON form (so a ``quality.json`` renders
as it was written), and reads ``quality.json`` back as that type. All three renderings come
from the same table structures, so they cannot disagree. Output is byte-identical for
equal input, so a report can be hashed and compared, and the HTML page opens offline on an
air-gapped registry machine.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from koble.anonymity.charts import bar_chart, paired_bar_chart
from koble.files import OutputSet
from koble.linkage.delivery_records import QualityReport
from koble.linkage.reports import read_report

__all__ = [
    "read_quality_report",
    "render_html",
    "render_markdown",
    "verdict",
    "write_quality_report",
]

Cell = str | int | float | bool | None


@dataclass(frozen=True)
class _Table:
    """A table: ``align`` has one letter per column, ``l`` (text) or ``r`` (number)."""

    headers: Sequence[str]
    align: str
    rows: Sequence[Sequence[Cell]]


Block = str | _Table

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


def _text(value: Cell) -> str:
    """One cell as text: numbers with thousands separators, booleans as yes/no, None as –."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return value


def _share(part: int | None, whole: int | None) -> str | None:
    return f"{part / whole:.1%}" if part is not None and whole else None


Report = QualityReport | Mapping[str, Any]


def _json(data: Report) -> Mapping[str, Any]:
    """The report's JSON form, which the renderings read."""
    return data.to_json() if isinstance(data, QualityReport) else data


def verdict(data: Report) -> tuple[bool, str]:
    """Whether every reconciliation check holds (and there is at least one), and why not."""
    data = _json(data)
    checks = data.get("reconciliation") or []
    failed = sum(1 for c in checks if not c["ok"])
    if not checks:
        return False, "FAIL: no reconciliation checks were recorded"
    if failed:
        return False, f"FAIL: {failed} of {len(checks)} reconciliation checks do not hold"
    return True, f"PASS: {len(checks)} of {len(checks)} reconciliation checks hold"


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
_CHECKS = (("check", "check", "l"), ("result", "result", "l"), ("detail", "detail", "l"))


def _records(
    columns: Sequence[tuple[str, str, str]], records: Sequence[Mapping[str, Any]]
) -> _Table:
    """A table with one row per record and the given (header, key, align) columns."""
    rows = [[record.get(key) for _, key, _ in columns] for record in records]
    return _Table([h for h, _, _ in columns], "".join(a for _, _, a in columns), rows)


def _reasons(data: Mapping[str, Any]) -> list[tuple[str, int]]:
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


def _central(data: Mapping[str, Any]) -> bool:
    return str(data.get("route", "")).startswith("central")


def _received(data: Mapping[str, Any]) -> list[Block]:
    """The files the researcher receives and their rows: in the central route the anonymous
    delivery, after the anonymity gate (never the operator's extracts)."""
    files = data.get("delivery")
    anon = data.get("anonymity")
    if files is None:  # a report written before the delivery was recorded
        if _central(data) and anon:
            files = [{"file": None, "rows": anon["rows"] - anon["suppressed"], "from": None}]
        else:
            files = [{"file": r.get("file"), "rows": r.get("file_rows"), "from": r["registry"]}
                     for r in data.get("registries") or []]  # fmt: skip
    if not files:
        return ["None: no data files were delivered."]
    blocks: list[Block] = []
    if _central(data) and anon:
        names = ", ".join(r["registry"] for r in data.get("registries") or [])
        blocks.append(
            f"The registries' extracts ({names}) went to the operator only; linked, "
            f"{anon['rows']:,} rows, of which the anonymity gate withheld "
            f"{anon['suppressed']:,}: the researcher receives "
            f"{anon['rows'] - anon['suppressed']:,} rows."
        )
    return [*blocks, _records(_DELIVERY, files)]


def _sections(data: Mapping[str, Any]) -> list[tuple[str, list[Block]]]:
    """The report's sections as (heading, paragraphs and tables), shared by every renderer."""
    pop = {**data["population"], "rejected": _rejected(data["population"])}
    population = _Table(("population", "count"), "lr", [(t, pop.get(k)) for t, k in _POPULATION])
    reasons: Block = (
        _Table(("rejection reason", "rows"), "lr", _reasons(data))
        if _reasons(data)
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
    persons = _records(_PERSONS, registries)
    rows = _records(_ROWS_CENTRAL if _central(data) else _ROWS, registries)
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
            _Table(("quasi-identifier", "level"), "ll", qis),
        ]
    checks = data.get("reconciliation") or []
    results = [{**c, "result": "OK" if c["ok"] else "FAIL"} for c in checks]
    return [
        ("Population", [population, reasons]),
        *_linkage(data),
        ("Persons per registry", [persons] if registries else ["No registries."]),
        ("Rows per registry", [rows] if registries else ["No registries."]),
        *_periods(data),
        (RECEIVED, _received(data)),
        ("Refusals", [_records(_REFUSALS, refusals)] if refusals else ["None."]),
        ("Anonymity", anonymity),
        ("Reconciliation", [verdict(data)[1], _records(_CHECKS, results)]),
    ]


def _linkage(data: Mapping[str, Any]) -> list[tuple[str, list[Block]]]:
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
        blocks: list[Block] = [text, _Table(("outcome", "records"), "lr", rows)]
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
        blocks.append(_Table(headers, "llrrrr", groups))
        out.append((f"Linkage: {scope}", blocks))
    return out


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.2%}"


def _points(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.1f} points"


def _periods(data: Mapping[str, Any]) -> list[tuple[str, list[Block]]]:
    """The section on requests split by identity regime (NPR before and from 2008) or handed
    on to a successor (Reseptregisteret, then Legemiddelregisteret): which rows came from
    which registry and regime. Absent when no request is split."""
    parts = data.get("periods") or []
    asked = [p["requested"] for p in parts]
    split = {r for r in asked if asked.count(r) > 1}
    split |= {p["requested"] for p in parts if p["registry"] != p["requested"]}
    if not split:
        return []
    central = _central(data)  # the extracts go to the operator only: name no file
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
    return [("Periods by identity model", [text, _records(_PERIODS, records)])]


def _md(value: Cell) -> str:
    """A cell or paragraph for Markdown: no table breaks, no raw HTML."""
    text = _text(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
    if "<" not in text:  # a lone ">" starts no tag: "rows delivered > 0" stays readable
        return text
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _title(data: Mapping[str, Any]) -> str:
    project = data["project"]
    return f"Linkage quality report: {project['id']} {project.get('title') or ''}".strip()


def render_markdown(data: Report) -> str:
    """The report as Markdown (numbers right-aligned, with thousands separators)."""
    data = _json(data)
    lines = [f"# {_md(_title(data))}", "", f"**Route:** {_md(data['route'])}", ""]
    lines += [f"**Reconciliation:** {verdict(data)[1]}", ""]
    for heading, blocks in _sections(data):
        lines += [f"## {heading}", ""]
        for block in blocks:
            if isinstance(block, str):
                lines += [_md(block), ""]
                continue
            lines.append("| " + " | ".join(block.headers) + " |")
            lines.append("|" + "|".join("---:" if a == "r" else "---" for a in block.align) + "|")
            lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in block.rows]
            lines.append("")
    return "\n".join(lines)


def _html_table(table: _Table) -> str:
    """A table with numbers right-aligned and OK/FAIL results coloured."""
    head = "".join(f"<th>{escape(h)}</th>" for h in table.headers)
    body = []
    for row in table.rows:
        cells = []
        for header, align, cell in zip(table.headers, table.align, row, strict=True):
            marks = ["num"] if align == "r" else []
            if header == "result":
                marks.append("ok" if cell == "OK" else "fail")
            cls = f' class="{" ".join(marks)}"' if marks else ""
            cells.append(f"<td{cls}>{escape(_text(cell))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


#: The paired charts: (title, (series name, key) for each of the two bars).
_CHARTS = (
    ("Persons sent and found per registry", ("sent", "persons_sent"), ("found", "persons_found")),
    (
        "Rows delivered and outside the period",
        ("delivered", "rows_delivered"),
        ("outside period", "rows_outside_period"),
    ),
)


def _charts(data: Mapping[str, Any]) -> list[str]:
    """Inline SVG charts: persons and rows per registry, population rejections by reason."""
    registries = data.get("registries") or []
    labels = [r["registry"] for r in registries]
    charts = [
        paired_bar_chart(
            title, labels, {name: [r.get(key) or 0 for r in registries] for name, key in bars}
        )
        for title, *bars in (_CHARTS if registries else ())
    ]
    if charts and _central(data):  # the central route's registries deliver to the operator
        rows = {
            "extracted": [r.get("rows_delivered") or 0 for r in registries],
            "outside period": [r.get("rows_outside_period") or 0 for r in registries],
        }
        charts[1] = paired_bar_chart("Rows extracted for linkage and outside the period",
                                     labels, rows)  # fmt: skip
    if reasons := _reasons(data):
        charts.append(bar_chart("Rejected population rows by reason", *zip(*reasons, strict=True)))
    return charts


def render_html(data: Report) -> str:
    """The report as one self-contained HTML page: verdict banner, charts and tables."""
    data = _json(data)
    ok, message = verdict(data)
    parts = []
    for heading, blocks in _sections(data):
        section = ' id="received"' if heading == RECEIVED else ""
        parts.append(f"<section{section}><h2>{escape(heading)}</h2>")
        parts += [f"<p>{escape(b)}</p>" if isinstance(b, str) else _html_table(b) for b in blocks]
        parts.append("</section>")
    charts = "\n".join(f"<figure>{c}</figure>" for c in _charts(data))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(_title(data))}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}
table{{border-collapse:collapse;margin:1rem 0}}th,td{{border:1px solid #ccc;padding:.25rem .5rem}}
th{{background:#f6f6f6;text-align:left}}.num{{text-align:right}}figure{{margin:1.5rem 0}}
.verdict{{padding:.75rem 1rem;font-weight:bold;color:#fff}}.pass{{background:#1a7f37}}
.failed{{background:#cf222e}}.ok{{color:#1a7f37}}.fail{{color:#cf222e;font-weight:bold}}</style>
</head><body><h1>{escape(_title(data))}</h1><p><strong>Route:</strong> {escape(data["route"])}</p>
<p class="verdict {"pass" if ok else "failed"}">{escape(message)}</p>
{charts}
{"".join(parts)}
</body></html>
"""


def write_quality_report(data: Report, directory: str | Path) -> dict[str, Path]:
    """Write quality.md, quality.json and quality.html into ``directory``; return their paths."""
    directory, data = Path(directory), _json(data)
    text = json.dumps(dict(data), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    outputs = [("markdown", "md", render_markdown(data)), ("json", "json", text),
               ("html", "html", render_html(data))]  # fmt: skip
    files = {name: directory / f"quality.{suffix}" for name, suffix, _ in outputs}
    with OutputSet() as staged:  # the three together or none
        for name, _, content in outputs:
            with staged.file(files[name]) as temp:
                temp.write_bytes(content.encode("utf-8"))
    return files


def read_quality_report(path: Path) -> QualityReport:
    """The quality report at ``path`` (a delivery's ``quality.json``) as its type; a file
    lacking a field or holding an unknown one is a FileFormatError naming it and the field."""
    return read_report(path, QualityReport)
