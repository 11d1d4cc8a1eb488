"""The clerical review: the candidate pairs the model could not decide, shown to a reviewer.

:func:`review_table` makes one row per candidate pair (record, person) with both sides'
fields as the TTP holds them (the record as written; the register person's current name,
earlier names, birth and death date, sex and kommune), and for each compared field how the
model saw it: ``agree_<field>`` (``agree``, ``partial``, ``disagree``, ``missing``), the
level that held (``level_<field>``, e.g. "day and month swapped") and, with the trained
model, the level's weight in bits (``bits_<field>``: log2 of its m/u Bayes factor, before
any term-frequency adjustment). ``decision`` and ``reviewer`` are empty, for the reviewer to
fill: the filled-in CSV is the decisions file (:mod:`koble.recovery.decisions`). Text cells
are made safe to open in a spreadsheet (:func:`csv_safe`): a cell starting with = + - @ TAB
or CR gets a leading ``'`` (never run as a formula), and control and bidi-override
characters become U+FFFD, in the CSV and the HTML page alike.

:func:`review_html` renders the same table as one self-contained HTML page (inline CSS, no
script, no external asset), each pair side by side with the agreeing and disagreeing fields
marked by colour and by a sign (✓ ≈ ✗ –), the weights, and how to fill the decisions file.
Both are built on whole columns; no Python loop over pairs. The review holds names and
birth data: it is the TTP's own and never leaves it.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Sequence
from typing import Any

import polars as pl

from koble.recovery import model as fs_model
from koble.recovery.register import Register

__all__ = ["FIELDS", "csv_safe", "review_html", "review_table", "safe_text"]

#: compared field (Splink's output column) -> (record and register column, label)
FIELDS: tuple[tuple[str, str, str], ...] = (
    ("fn", "first_name", "First name"),
    ("mn", "middle_name", "Middle name"),
    ("ln", "last_name", "Last name"),
    ("bd", "birth_date", "Birth date"),
    ("sex", "sex", "Sex"),
    ("dd", "death_date", "Death date"),
    ("place", "kommune", "Kommune"),
)
_LEVELS = pl.Schema({"comparison": pl.String, "gamma": pl.Int64, "level": pl.String,
                     "agree": pl.String})  # fmt: skip


def _levels() -> pl.DataFrame:
    """Every comparison level of the model (:data:`koble.recovery.model.COMPARISONS`) with
    its gamma as Splink numbers them (strongest = highest, else = 0, null = -1)."""
    rows = []
    for comparison in fs_model.COMPARISONS:
        levels = comparison["comparison_levels"]
        top = sum(1 for lv in levels if not lv.get("is_null_level")) - 1
        gamma = top + 1
        for level in levels:
            if level.get("is_null_level"):
                rows.append((comparison["output_column_name"], -1, "missing", "missing"))
                continue
            gamma -= 1
            kind = "agree" if gamma == top else "disagree" if gamma == 0 else "partial"
            rows.append((comparison["output_column_name"], gamma, level["label_for_charts"], kind))
    return pl.DataFrame(rows, schema=_LEVELS, orient="row")


def _parameters(model: object | None) -> list[dict[str, Any]]:
    """The trained model's levels (``comparison``, ``gamma``, ``bayes_factor``, ...): the
    ``parameters`` of a :class:`koble.recovery.model.ModelReport`, or none."""
    found = getattr(model, "parameters", None)
    if not isinstance(found, tuple | list):
        return []
    return [dict(p) for p in found if isinstance(p, dict)]


def _prior(model: object | None) -> float | None:
    """The model's prior weight in bits, log2(λ / (1 - λ)), or None."""
    lam = getattr(model, "probability_two_random_records_match", None)
    if not isinstance(lam, float) or not 0.0 < lam < 1.0:
        return None
    return math.log2(lam / (1 - lam))


def _bits(model: object | None) -> pl.DataFrame:
    """(comparison, gamma, bits) from the trained model's Bayes factors."""
    schema = {"comparison": pl.String, "gamma": pl.Int64, "bits": pl.Float64}
    rows = [
        (p["comparison"], int(p["gamma"]), math.log2(p["bayes_factor"]))
        for p in _parameters(model)  # one per comparison level: a few dozen
        if isinstance(p.get("bayes_factor"), float) and p["bayes_factor"] > 0
    ]
    return pl.DataFrame(rows, schema=schema, orient="row")


def review_table(
    review: pl.DataFrame, records: pl.DataFrame, register: Register, model: object | None = None
) -> pl.DataFrame:
    """One row per pair of ``review`` (``record_id``, ``person_id``, ``match_probability``,
    ``match_weight``, ``gamma_*``, optionally ``review_reason``), with both sides' fields
    and the per-field agreement (see the module docstring); best candidate first per record."""
    pairs = review.with_columns(pl.col("record_id").cast(pl.String),
                                pl.col("person_id").cast(pl.String))  # fmt: skip
    if "review_reason" not in pairs.columns:
        pairs = pairs.with_columns(review_reason=pl.lit("between_thresholds"))
    order = pl.col("match_weight").rank("ordinal", descending=True).over("record_id")
    pairs = pairs.sort("record_id", "match_weight", "person_id", descending=[False, True, False])
    pairs = pairs.with_columns(
        candidate=order.cast(pl.Int64), candidates=pl.len().over("record_id").cast(pl.Int64)
    )
    columns = [column for _, column, _ in FIELDS]
    wanted = pairs.select("record_id").unique()
    recs = records.join(wanted, on="record_id", how="semi").select(
        "record_id", pl.col("fnr").alias("record_number"),
        *(pl.col(c).alias(f"record_{c}") for c in columns),
    )  # fmt: skip
    who = pairs.select("person_id").unique()
    persons = register.persons.join(who, on="person_id", how="semi")
    people = persons.select("person_id", *(pl.col(c).alias(f"person_{c}") for c in columns))
    table = pairs.join(recs, on="record_id", how="left").join(people, on="person_id", how="left")
    table = table.join(_other_names(register, persons), on="person_id", how="left")
    levels, bits = _levels(), _bits(model)
    extra: list[str] = []
    for field, _, _ in FIELDS:
        gamma = f"gamma_{field}"
        if gamma not in table.columns:
            continue
        these = levels.filter(pl.col("comparison") == field).join(
            bits, on=["comparison", "gamma"], how="left"
        )
        these = these.select(
            pl.col("gamma").alias(gamma), pl.col("agree").alias(f"agree_{field}"),
            pl.col("level").alias(f"level_{field}"), pl.col("bits").alias(f"bits_{field}"),
        )  # fmt: skip
        table = table.join(these, on=gamma, how="left", maintain_order="left")
        extra += [f"agree_{field}", f"level_{field}", f"bits_{field}"]
    head = ["record_id", "person_id", "decision", "reviewer", "candidate", "candidates",
            "review_reason", "match_probability", "match_weight"]  # fmt: skip
    table = table.with_columns(decision=pl.lit(None, pl.String), reviewer=pl.lit(None, pl.String))
    sides = [f"{side}_{c}" for c in columns for side in ("record", "person")]
    gammas = [c for c in table.columns if c.startswith("gamma_")]
    table = table.select(*head, *sides, "record_number", "person_other_names", *extra, *gammas)
    return csv_safe(table).sort("record_id", "candidate")


#: control characters (C0, C1, DEL) and the bidirectional marks, embeddings, overrides and
#: isolates that make a name display as something else (U+202E turns it around)
_CONTROLS = (r"[\p{Cc}\x{061C}\x{200E}\x{200F}\x{202A}-\x{202E}\x{2066}-\x{2069}"
             r"\x{2028}\x{2029}]")  # fmt: skip
#: a cell a spreadsheet would run as a formula (or a DDE command) starts with one of these;
#: a cell starting with ``'`` is prefixed too, so taking one ``'`` off always round-trips
_FORMULA = r"^[=+\-@\t\r']"


def safe_text(text: pl.Expr) -> pl.Expr:
    """``text`` with each control or bidi-override character replaced by U+FFFD."""
    return text.str.replace_all(_CONTROLS, "\ufffd")


def csv_safe(table: pl.DataFrame) -> pl.DataFrame:
    """``table`` with every text cell made safe to open in a spreadsheet: control and bidi
    characters replaced by U+FFFD (:func:`safe_text`), and a ``'`` put before a cell that
    starts with = + - @ TAB or CR, so it is shown as text and never run as a formula (and
    before one starting with ``'``, so that :func:`koble.recovery.decisions.read_decisions`
    taking one ``'`` off the ids gives them back exactly)."""
    text = [c for c, dtype in table.schema.items() if dtype == pl.String]
    cleaned = [safe_text(pl.col(c)) for c in text]
    return table.with_columns(
        pl.when(e.str.contains(_FORMULA)).then(pl.lit("'") + e).otherwise(e).alias(c)
        for c, e in zip(text, cleaned, strict=True)
    )


def _other_names(register: Register, persons: pl.DataFrame) -> pl.DataFrame:
    """``person_id``, ``person_other_names``: every earlier name (first middle last) of
    each person, ``" / "``-joined, or null."""

    def full(frame: pl.DataFrame) -> pl.Expr:
        return pl.concat_str("first_name", "middle_name", "last_name", separator=" ",
                             ignore_nulls=True)  # fmt: skip

    if persons.height == 0:  # nothing under review: the name history is not even read
        return pl.DataFrame(schema={"person_id": pl.String, "person_other_names": pl.String})
    current = persons.select("person_id", full(persons).alias("name"))
    names = register.names.join(persons.select("person_id"), on="person_id", how="semi")
    names = names.select("person_id", full(names).alias("name"))
    return (
        names.join(current, on=["person_id", "name"], how="anti")
        .unique()
        .group_by("person_id")
        .agg(pl.col("name").sort().str.join(" / ").alias("person_other_names"))
    )


# ---------------------------------------------------------------------------------------------
# The HTML page

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:72rem;padding:0 1rem;color:#1b1b1b;line-height:1.4}
h1{font-size:1.5rem}h2{font-size:1.1rem;margin:0 0 .4rem}
.summary{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0}
.figure{border:1px solid #ccc;border-radius:6px;padding:.5rem 1rem;min-width:9rem}
.figure b{display:block;font-size:1.4rem}
.howto{background:#f4f6fb;border-left:4px solid #3559a8;padding:.6rem 1rem;margin:1rem 0}
.private{background:#fff4e5;border-left:4px solid #b35c00;padding:.6rem 1rem}
.pair{border:1px solid #bbb;border-radius:6px;padding:.8rem 1rem;margin:1.2rem 0;
break-inside:avoid}
.meta span{margin-right:1.2rem}
table{border-collapse:collapse;width:100%;margin:.4rem 0;table-layout:fixed}
th,td{border-bottom:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
thead th{background:#eee}td.num{text-align:right;font-variant-numeric:tabular-nums}
.agree .mark{background:#dff3e2;color:#0b5d1e}
.partial .mark{background:#fff1c9;color:#7a5200}
.disagree .mark{background:#fbe0e0;color:#8a1010}
.missing .mark{background:#f0f0f0;color:#555}
code{background:#f3f3f3;padding:0 .2rem;border-radius:3px}
.legend>span{margin-right:1rem}.legend .mark{padding:0 .4rem}
"""

_MARK = {"agree": "✓ agrees", "partial": "≈ partly", "disagree": "✗ disagrees",
         "missing": "– missing"}  # fmt: skip


def _esc(expr: pl.Expr) -> pl.Expr:
    """HTML-escaped text of ``expr`` (any type), control and bidi characters as U+FFFD,
    ``—`` for null."""
    text = safe_text(expr.cast(pl.String))
    for raw, safe in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"),
                      ("'", "&#x27;")):  # fmt: skip
        text = text.str.replace_all(raw, safe, literal=True)
    return text.fill_null("—")


def _number(expr: pl.Expr, digits: int, *, signed: bool = False) -> pl.Expr:
    text = expr.round(digits).cast(pl.String)
    if signed:
        text = pl.when(expr > 0).then(pl.lit("+") + text).otherwise(text)
    return text.fill_null("—")


def _field_row(field: str | None, column: str, label: str, table: pl.DataFrame) -> pl.Expr:
    """One ``<tr>`` per pair for a field: record, register person, agreement, bits."""
    rec, per = pl.col(f"record_{column}"), pl.col(f"person_{column}")
    if field is not None and f"agree_{field}" in table.columns:
        kind = pl.col(f"agree_{field}").fill_null("missing")
        level = pl.col(f"level_{field}")
        bits = _number(pl.col(f"bits_{field}"), 2, signed=True)
    else:  # not a model comparison (the number as written): plain equality
        kind = (
            pl.when(rec.is_null() | per.is_null())
            .then(pl.lit("missing"))
            .when(rec.cast(pl.String) == per.cast(pl.String))
            .then(pl.lit("agree"))
            .otherwise(pl.lit("disagree"))
        )
        level, bits = pl.lit(None, pl.String), pl.lit("—")
    mark = kind.replace_strict(_MARK, default="–", return_dtype=pl.String)
    mark = (
        pl.when(level.is_not_null() & (kind == "partial"))
        .then(mark + pl.lit(": ") + _esc(level))
        .otherwise(mark)
    )
    return pl.concat_str(
        pl.lit('<tr class="'), kind, pl.lit(f'"><th scope="row">{label}</th><td>'), _esc(rec),
        pl.lit("</td><td>"), _esc(per), pl.lit('</td><td class="mark">'), mark,
        pl.lit('</td><td class="num">'), bits, pl.lit("</td></tr>"),
    )  # fmt: skip


def _pair_sections(table: pl.DataFrame) -> pl.Series:
    """The ``<section>`` of every pair, as one string column."""
    rows = [_field_row(field, column, label, table) for field, column, label in FIELDS]
    rows.append(_field_row(None, "number", "Number as written", table))
    earlier = pl.concat_str(
        pl.lit('<tr class="missing"><th scope="row">Earlier names</th><td>—</td><td>'),
        _esc(pl.col("person_other_names")),
        pl.lit('</td><td class="mark">(name history)</td><td class="num">—</td></tr>'),
    )
    frame = table.with_columns(pl.col("person_id").alias("person_number"))
    section = pl.concat_str(
        pl.lit('<section class="pair"><h2>Record <code>'), _esc(pl.col("record_id")),
        pl.lit("</code> · candidate "), pl.col("candidate").cast(pl.String), pl.lit(" of "),
        pl.col("candidates").cast(pl.String), pl.lit(": person <code>"),
        _esc(pl.col("person_id")), pl.lit('</code></h2><p class="meta"><span>match probability '
        '<b class="probability">'), _number(pl.col("match_probability"), 4),
        pl.lit("</b></span><span>match weight <b>"),
        _number(pl.col("match_weight"), 2, signed=True),
        pl.lit(" bits</b></span><span>in review because: "), _esc(pl.col("review_reason")),
        pl.lit("</span></p><table><thead><tr><th>Field</th><th>Record (as written)</th>"
               "<th>Register person</th><th>Agreement</th><th>Weight (bits)</th></tr>"
               "</thead><tbody>"),
        *rows, earlier, pl.lit("</tbody></table></section>"),
    )  # fmt: skip
    return frame.select(section.alias("html"))["html"]


def review_html(
    table: pl.DataFrame,
    *,
    thresholds: Sequence[float] | None = None,
    model: object | None = None,
    csv_name: str = "review.csv",
    generated: dt.date | None = None,
) -> str:
    """The review ``table`` (:func:`review_table`) as one self-contained HTML page.

    ``thresholds`` (low, high) and ``model`` (a :class:`koble.recovery.model.ModelReport`)
    are shown in the summary; ``csv_name`` is the review CSV the reviewer fills in;
    ``generated`` a date to print (passed in: nothing here reads the clock)."""
    records = table["record_id"].n_unique() if table.height else 0
    figures = [("candidate pairs", f"{table.height:,}", "pairs"),
               ("records to decide", f"{records:,}", "records")]  # fmt: skip
    if thresholds is not None:
        low, high = thresholds
        figures.append(("thresholds (low, high)", f"{low} – {high}", "thresholds"))
    prior = _prior(model)
    if prior is not None:
        figures.append(("prior weight (bits)", f"{prior:+.2f}", "prior"))
    summary = "".join(
        f'<div class="figure" id="figure-{key}">{label}<b>{value}</b></div>'
        for label, value, key in figures
    )
    when = f" · {generated.isoformat()}" if generated is not None else ""
    name = html.escape(csv_name)
    sections = (
        "\n".join(_pair_sections(table).to_list())
        if table.height
        else ('<p id="empty">No pair awaits review.</p>')
    )
    legend = "".join(
        f'<span class="{kind}"><span class="mark">{text}</span></span>'
        for kind, text in _MARK.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>koble clerical review</title><style>{_CSS}</style></head>
<body><h1>Clerical review: candidate pairs{when}</h1>
<p class="private"><b>Confidential.</b> This page holds names and birth data from the
population register. It is for the trusted third party's reviewers only: do not send it on.</p>
<div class="summary">{summary}</div>
<div class="howto" id="howto"><h2>How to decide</h2><ol>
<li>Open <code>{name}</code> (semicolon-separated; one row per pair shown here, in the same
order).</li>
<li>For each pair you decide, write <code>match</code> or <code>non-match</code> in its
<code>decision</code> column and your name or user id in <code>reviewer</code>. Leave both
blank for a pair you do not decide: it stays under review.</li>
<li>Match at most one person per record. A record whose candidates are all
<code>non-match</code> is rejected (<code>rejected_in_review</code>).</li>
<li>Save the file and run the same <code>koble resolve</code> command again with
<code>--decisions</code> naming it. Every decision is checked against this review and recorded
in the audit log (who, when, how many; never a name).</li>
</ol>
<p>Weights are in bits (log<sub>2</sub> of the Bayes factor): positive for evidence of the
same person, negative against; a pair's match weight is the prior plus the fields' weights
(plus a term-frequency adjustment for exact name agreement, so a common name counts less).</p>
<p class="legend">{legend}</p></div>
{sections}
</body></html>
"""
