"""The anonymisation report as one self-contained HTML page.

A registry owner opens ``report.html`` first and looks for a handful of figures: whether k
(and every other requirement) is met, the smallest class, what was withheld, the risk left,
the loss and the model. They stand in a summary panel at the top; below come the charts,
then the details as HTML tables (rendered from the same Markdown as ``report.md``, so the
two cannot disagree) and the certificate as a table, with a link to ``certificate.json``.
When nothing was released the page says why instead, and shows no chosen levels.

No scripts, no external resources: the page opens offline on an air-gapped machine.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from html import escape
from typing import Any

from koble.anonymity.charts import bar_chart, level_chart, number, paired_bar_chart

__all__ = ["certificate_rows", "markdown_to_html", "render_html", "summary"]

_STYLE = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
table{border-collapse:collapse;margin:1rem 0}th,td{border:1px solid #ccc;padding:.25rem .5rem}
th{background:#f6f6f6;text-align:left}.num{text-align:right}figure{margin:1.5rem 0}
td{overflow-wrap:anywhere}code{font-size:.9em}
.verdict{padding:.75rem 1rem;font-weight:bold;color:#fff}.pass{background:#1a7f37}
.failed{background:#cf222e}.summary th{width:14rem}.summary{min-width:36rem}
caption{font-weight:bold;font-size:1.2em;text-align:left;padding:.25rem 0}"""


def _inline(text: str) -> str:
    """One line of the report's Markdown as HTML: escaped, then ``**bold**`` and ``code``."""
    html = escape(text.replace("\\|", "|"), quote=False)
    html = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html)
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html)


def _cells(line: str) -> list[str]:
    """The cells of a Markdown table row (``\\|`` is a literal bar)."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def _table(lines: list[str]) -> str:
    head, rule, *rows = lines
    right = [c.endswith(":") for c in _cells(rule)]
    out = ["<table><thead><tr>"]
    out += [f"<th>{_inline(c)}</th>" for c in _cells(head)]
    out.append("</tr></thead><tbody>")
    for row in rows:
        cells = _cells(row)
        out.append("<tr>")
        for cell, number_cell in zip(cells, right, strict=False):
            out.append(f'<td class="num">{_inline(cell)}</td>' if number_cell
                       else f"<td>{_inline(cell)}</td>")  # fmt: skip
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _blocks(lines: list[str]) -> Iterator[tuple[str, list[str]]]:
    """Runs of lines of one kind: ``table``, ``list``, ``heading`` or ``para``."""
    kind_of = {"|": "table", "-": "list", "#": "heading"}
    run: list[str] = []
    kind = ""
    for line in [*lines, ""]:
        this = kind_of.get(line[:1], "para") if line.strip() else ""
        if run and (this != kind or kind == "heading"):
            yield kind, run
            run = []
        if this:
            run.append(line)
        kind = this
    if run:
        yield kind, run


def markdown_to_html(markdown: str, *, shift: int = 0) -> str:
    """The report's own Markdown (headings, pipe tables, bullet lists, paragraphs, bold and
    code spans) as HTML, headings ``shift`` levels deeper. Not a general Markdown parser:
    it renders what :mod:`koble.anonymity.report` writes, escaping every text."""
    out = []
    for kind, run in _blocks(markdown.split("\n")):  # not splitlines: U+2028 is text
        if kind == "heading":
            marks, _, text = run[0].partition(" ")
            level = min(len(marks) + shift, 6)
            out.append(f"<h{level}>{_inline(text)}</h{level}>")
        elif kind == "table":
            out.append(_table(run))
        elif kind == "list":
            out.append(
                "<ul>" + "".join(f"<li>{_inline(x[1:].strip())}</li>" for x in run) + "</ul>"
            )
        else:
            out.append(f"<p>{_inline(' '.join(run))}</p>")
    return "\n".join(out)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return number(value)
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value) or "none"
    return str(value)


def certificate_rows(cert: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """The certificate flattened to (dotted field, readable value) rows, in key order."""
    rows: list[tuple[str, str]] = []
    for key in sorted(cert):
        value, name = cert[key], f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows += certificate_rows(value, f"{name}.")
        else:
            rows.append((name, "none" if value == {} else _cell(value)))
    return rows


def summary(data: dict[str, Any]) -> list[tuple[str, str]]:
    """The figures a registry owner looks for first, as (label, text) rows."""
    cert = data["certificate"]
    figures, params, after = cert["figures"], cert["parameters"], data["after"]
    rows = cert["input"]["rows"]
    unit = "persons" if params.get("person") else "records"
    out = [("model", cert["model"]["used"] if cert["model"]["tried"] else "row"),
           ("requirements", ", ".join(figures["criteria"]))]  # fmt: skip
    if after is None:
        out.append(("k", f"k = {params['k']:,} ({unit}): NOT met, nothing released"))
        out += [("why", reason) for reason in data["why"]]
        out.append(("records in", f"{rows:,}"))
        return out
    failures = after["failures"]
    out.append(("k", f"k = {params['k']:,} ({unit}): "
                + ("met" if not failures else "NOT met: " + "; ".join(failures))))  # fmt: skip
    smallest = f"{after['smallest_class']:,} records"
    if after.get("smallest_class_persons") is not None:
        smallest += f", {after['smallest_class_persons']:,} persons"
    out.append(("smallest class", smallest))
    withheld = cert["withheld"]
    text = (f"{withheld['rows']:,} of {rows:,} records ({withheld['rows'] / rows:.1%}; "
            f"limit {params['suppression']:.1%}, {figures['allowed']:,} records)")  # fmt: skip
    out.append(("suppressed", text))
    if withheld["persons"] is not None:
        out.append(("persons withheld whole", f"{withheld['persons']:,}"))
    prosecutor = after["risk"]["prosecutor"]
    out.append(("risk (prosecutor)", f"highest {prosecutor['highest']:.3f}, average "
                f"{prosecutor['average']:.4f}; {prosecutor['records_at_risk']:,} records "
                f"above the threshold {params['risk_threshold']:g}"))  # fmt: skip
    out.append(("loss", f"{figures['loss']:.6g} ({figures['metric']})"))
    out.append(("released", f"{after['rows']:,} records in {figures['classes']:,} classes, "
                f"file {cert['output']['path']}"))  # fmt: skip
    return out


def _charts(data: dict[str, Any]) -> list[str]:
    cert = data["certificate"]
    released = data["after"] is not None
    before = data["before"]["class_sizes"]
    sizes: dict[str, Sequence[float]] = {"before": list(before.values())}
    if released:
        sizes["after"] = [data["after"]["class_sizes"].get(b, 0) for b in before]
    charts = [paired_bar_chart("Records by equivalence-class size", list(before), sizes)]
    if cert["levels"]:
        rows = [(name, v["level"], v.get("height", v["level"]), v["name"])
                for name, v in cert["levels"].items()]  # fmt: skip
        charts.append(level_chart("Chosen level per quasi-identifier", rows))
    for name, dist in data["distributions"].items():
        for when in ("before", "after"):
            values = dist[when]
            charts.append(bar_chart(f"{name}: most frequent values {when}", list(values),
                                    list(values.values())))  # fmt: skip
    risks = [(w, data[w]["risk"]["prosecutor"]) for w in ("before", "after") if data[w]]
    charts.append(bar_chart("Records at risk (prosecutor model)", [w for w, _ in risks],
                            [p["records_at_risk"] for _, p in risks]))  # fmt: skip
    levels_by = {w: data[w]["person_level"] for w in ("before", "after")
                 if data[w] and data[w].get("person_level")}  # fmt: skip
    if levels_by:
        kinds = {"by set": "by_set", "by multiset": "by_multiset",
                 "with person-constant columns": "by_set_with_constant"}  # fmt: skip
        charts.append(paired_bar_chart(
            "Persons in person-level groups under k", list(kinds),
            {w: [v[key]["under_k"] for key in kinds.values()] for w, v in levels_by.items()},
        ))  # fmt: skip
    return charts


def _rows_table(rows: list[tuple[str, str]], cls: str, headers: tuple[str, str] | None) -> str:
    """A two-column table of (label, text) rows; without ``headers``, captioned by ``cls``."""
    body = "".join(f"<tr><th>{escape(a)}</th><td>{escape(b)}</td></tr>" for a, b in rows)
    if headers is None:
        top = f"<caption>{escape(cls.capitalize())}</caption>"
    else:
        top = "<thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in headers) + "</tr></thead>"
    return f'<table class="{cls}">{top}<tbody>{body}</tbody></table>'


def render_html(data: dict[str, Any], markdown: str) -> str:
    """The page: verdict and summary panel, charts, details (``markdown`` below its title,
    as HTML), and the certificate as a table with a link to ``certificate.json``."""
    released = data["after"] is not None
    verdict = "Released" if released else f"Nothing released: {data['verdict']}"
    details = markdown.split("\n## ", 1)[1] if "\n## " in markdown else ""
    charts = "\n".join(f"<figure>{c}</figure>" for c in _charts(data))
    panel = _rows_table(summary(data), "summary", None)
    cert = _rows_table(certificate_rows(data["certificate"]), "certificate", ("field", "value"))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>koble anonymisation report</title>
<style>{_STYLE}</style></head>
<body><h1>Anonymisation report</h1>
<p class="verdict {"pass" if released else "failed"}">{escape(verdict)}</p>
<section id="summary">{panel}</section>
<h2>Charts</h2>
{charts}
<h2>Details</h2>
{markdown_to_html("## " + details, shift=1) if details else ""}
<h2>Certificate</h2>
<p>The machine-readable certificate, for an auditor to re-run the release and compare it bit
for bit: <a href="certificate.json">certificate.json</a>.</p>
{cert}
</body></html>
"""
