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
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

from koble.anonymity.charts import bar_chart, paired_bar_chart
from koble.files import OutputSet
from koble.linkage.delivery_records import QualityReport
from koble.linkage.quality_sections import RECEIVED, rejection_reasons, sections
from koble.linkage.quality_tables import (
    Cell,
    Report,
    Table,
    as_json,
    cell_text,
    is_central,
    verdict,
)
from koble.linkage.reports import read_report

__all__ = [
    "read_quality_report",
    "render_html",
    "render_markdown",
    "verdict",
    "write_quality_report",
]


def _md(value: Cell) -> str:
    """A cell or paragraph for Markdown: no table breaks, no raw HTML."""
    text = cell_text(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
    if "<" not in text:  # a lone ">" starts no tag: "rows delivered > 0" stays readable
        return text
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _title(data: Mapping[str, Any]) -> str:
    project = data["project"]
    return f"Linkage quality report: {project['id']} {project.get('title') or ''}".strip()


def render_markdown(data: Report) -> str:
    """The report as Markdown (numbers right-aligned, with thousands separators)."""
    data = as_json(data)
    lines = [f"# {_md(_title(data))}", "", f"**Route:** {_md(data['route'])}", ""]
    lines += [f"**Reconciliation:** {verdict(data)[1]}", ""]
    for heading, blocks in sections(data):
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


def _html_table(table: Table) -> str:
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
            cells.append(f"<td{cls}>{escape(cell_text(cell))}</td>")
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
    if charts and is_central(data):  # the central route's registries deliver to the operator
        rows = {
            "extracted": [r.get("rows_delivered") or 0 for r in registries],
            "outside period": [r.get("rows_outside_period") or 0 for r in registries],
        }
        charts[1] = paired_bar_chart("Rows extracted for linkage and outside the period",
                                     labels, rows)  # fmt: skip
    if reasons := rejection_reasons(data):
        charts.append(bar_chart("Rejected population rows by reason", *zip(*reasons, strict=True)))
    return charts


def render_html(data: Report) -> str:
    """The report as one self-contained HTML page: verdict banner, charts and tables."""
    data = as_json(data)
    ok, message = verdict(data)
    parts = []
    for heading, blocks in sections(data):
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
    directory, data = Path(directory), as_json(data)
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
