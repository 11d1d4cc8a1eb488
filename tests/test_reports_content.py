"""What the HTML and Markdown reports say (issue 14, item 2), one fault per test; the pages
themselves are rendered in a real browser by test_reports_browser.py."""

from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from koble.anonymity.charts import paired_bar_chart
from koble.anonymity.config import AnonymiseConfig
from koble.anonymity.release import Release
from koble.anonymity.report import anonymise_with_report
from koble.anonymity.report_html import markdown_to_html
from koble.linkage.quality import render_html, render_markdown


def _release(tmp_path: Path, frame: pl.DataFrame, k: int, **qis: str) -> tuple[Release, Path]:
    source = tmp_path / "in.parquet"
    frame.write_parquet(source)
    config = AnonymiseConfig(k=k, quasi_identifiers=dict(qis), suppression=0.02)
    release, files = anonymise_with_report(source, config, tmp_path / "out.parquet",
                                           tmp_path / "report")  # fmt: skip
    return release, files["html"].parent


def _ages(n: int = 3000) -> pl.DataFrame:
    """Ages skewed so that the most frequent band is not the first, with a column unique
    per row (it can only be released as ``*``)."""
    rng = np.random.default_rng(7)
    ages = np.concatenate([rng.integers(60, 70, n // 2), rng.integers(0, 100, n - n // 2)])
    return pl.DataFrame({
        "age": ages,
        "sex": rng.choice(["M", "F"], n),
        "code": [f"c{i}" for i in range(n)],
    })  # fmt: skip


def test_html_summary_panel_comes_first_and_details_are_tables(tmp_path: Path) -> None:
    _, report = _release(tmp_path, _ages(), 5, age="age", sex="sex")
    html = (report / "report.html").read_text()
    summary = html.index('id="summary"')
    assert summary < html.index("<svg") and summary < html.index("<h2>Details")
    panel = html[summary : html.index("</section>", summary)]
    for label in ("k</th>", "smallest class", "suppressed", "risk (prosecutor)", "loss", "model"):
        assert label in panel, label
    assert "<pre>" not in html and "| quasi-identifier |" not in html
    assert "<th>quasi-identifier</th>" in html and "<th>prosecutor max</th>" in html
    assert '<a href="certificate.json">certificate.json</a>' in html
    certificate = json.loads((report / "certificate.json").read_text())
    assert f"<th>input.sha256</th><td>{certificate['input']['sha256']}</td>" in html


def test_level_bars_are_drawn_against_their_own_hierarchy(tmp_path: Path) -> None:
    _, report = _release(tmp_path, _ages(), 5, age="age", code="categorical")
    certificate = json.loads((report / "certificate.json").read_text())
    assert certificate["levels"]["code"] == {"level": 1, "name": "*", "height": 1}
    assert certificate["levels"]["age"]["height"] == 5
    html = (report / "report.html").read_text()
    chart = re.search(r'<svg[^>]*aria-label="Chosen level per quasi-identifier".*?</svg>', html,
                      re.S)  # fmt: skip
    assert chart is not None
    tracks = [
        float(w) for w in re.findall(r'width="([\d.]+)" height="\d+" fill="#e6e6e6"', chart[0])
    ]
    bars = [float(w) for w in re.findall(r'width="([\d.]+)" height="\d+" fill="#4C72B0"', chart[0])]
    age = certificate["levels"]["age"]
    assert bars[0] / tracks[0] == age["level"] / 5 and bars[1] == tracks[1]  # `*` fills its bar
    assert f"{age['name']} (level {age['level']} of 5)" in chart[0]
    assert "* (level 1 of 1)" in chart[0]


def test_ordered_hierarchies_are_shown_in_their_order(tmp_path: Path) -> None:
    release, _ = _release(tmp_path, _ages(), 5, age="age", sex="sex")
    after = list(release.distributions["age"]["after"])
    starts = [int(label.split("-")[0].rstrip("+")) for label in after]
    assert starts == sorted(starts) and len(after) > 3
    before = [int(v) for v in release.distributions["age"]["before"]]
    assert before == sorted(before)
    counts = list(release.distributions["sex"]["after"].values())  # unordered: by frequency
    assert counts == sorted(counts, reverse=True)


def test_nothing_released_says_why_and_shows_no_levels(tmp_path: Path) -> None:
    release, report = _release(tmp_path, _ages(), 50_000, age="age", sex="sex")
    assert not release.result.feasible
    markdown = (report / "report.md").read_text()
    html = (report / "report.html").read_text()
    for text in (markdown, html):
        assert "k = 50,000 exceeds the 3,000 records" in text
        assert "3,000 of 3,000 records fail the requirements" in text
        assert "inf" not in text.replace("information", "")
        assert "None" not in text and "Chosen generalisation" not in text
    assert "output: none (nothing released)" in markdown
    assert "Chosen level per quasi-identifier" not in html and "level 0" not in html
    assert json.loads((report / "certificate.json").read_text())["levels"] == {}


def test_suppression_beyond_the_limit_is_explained(tmp_path: Path) -> None:
    # one diagnosis for everyone: no class can be 2-diverse, at any level
    frame = pl.DataFrame({"sex": ["M", "F"] * 1500, "dx": ["a"] * 3000})
    source = tmp_path / "in.parquet"
    frame.write_parquet(source)
    config = AnonymiseConfig(k=5, quasi_identifiers={"sex": "sex"}, suppression=0.01,
                             sensitive="dx", l=2)  # fmt: skip
    release, files = anonymise_with_report(source, config, tmp_path / "o.parquet", tmp_path / "r")
    assert not release.result.feasible
    markdown = files["markdown"].read_text()
    assert (
        "3,000 of 3,000 records fail the requirements (5-anonymity, distinct 2-diversity"
        in markdown
    )
    assert "the suppression limit of 1.0% allows 30" in markdown
    assert "exceeds" not in markdown


def test_chart_figures_have_thousands_separators() -> None:
    svg = paired_bar_chart("t", ["a", "b"], {"x": [44751, 0.25], "y": [1_234_567, 3]})
    assert ">44,751<" in svg and ">1,234,567<" in svg and ">0.25<" in svg
    assert "44751" not in svg and "e+06" not in svg


def _quality(route: str = "central-anonymous", reasons: dict[str, int] | None = None) -> Any:
    registry = {"registry": "iplos", "name": "IPLOS", "route": "ttp-pseudonym",
                "persons_sent": 6654, "persons_found": 1729, "rows_delivered": 2847,
                "rows_outside_period": 264, "source_rows": 7090, "period": [2015, 2024],
                "file": "iplos_extract.parquet", "file_rows": 2847}  # fmt: skip
    rejected = sum((reasons or {}).values())
    return {
        "project": {"id": "P1", "title": "t"},
        "route": route,
        "population": {
            "rows": 6654 + rejected,
            "persons": 6654,
            "invalid": rejected,
            "duplicates": 0,
            "unresolved": 0,
            "resolved_from_history": 0,
            "reasons": reasons or {},
        },
        "registries": [registry],
        "anonymity": {
            "k": 5,
            "meets": True,
            "min_class_size": 6,
            "suppressed": 136,
            "rows": 2847,
            "quasi_identifiers": [],
            "levels": {},
        },
        "delivery": [{"file": "delivery.dta", "rows": 2711, "from": "operator"}],
        "reconciliation": [{"check": "c", "ok": True, "detail": "d"}],
    }


def test_central_quality_report_names_what_the_researcher_receives() -> None:
    data = _quality()
    for text in (render_markdown(data), render_html(data)):
        assert "delivery.dta" in text and "2,711" in text
        assert "iplos_extract.parquet" not in text
        assert "the researcher receives 2,711 rows" in text
    html = render_html(data)
    received = html[html.index('<section id="received">') :]
    assert "<td>delivery.dta</td>" in received[: received.index("</section>")]
    # the distributed route delivers the registries' own files
    data = {
        **_quality("distributed"),
        "anonymity": None,
        "delivery": [{"file": "iplos_extract.dta", "rows": 2847, "from": "registry:iplos"}],
    }
    assert "<td>iplos_extract.dta</td>" in render_html(data)  # fmt: skip


def test_quality_chart_labels_have_separators_like_the_tables() -> None:
    html = render_html(_quality())
    assert ">6,654<" in html and ">6654<" not in html


def test_quality_population_table_has_the_rejected_rows_and_empty_tables_say_none() -> None:
    data = _quality()
    html, markdown = render_html(data), render_markdown(data)
    assert "<th>rejection reason</th>" not in html
    assert "Rejected population rows by reason: none." in markdown
    assert "| rows rejected | 0 |" in markdown
    data = _quality(reasons={"invalid checksum": 40, "empty": 2})
    markdown = render_markdown(data)
    # the population table holds the rows the reconciliation rejects: 6,696 = 6,654 + 42
    assert "| rows in the population file | 6,696 |" in markdown
    assert "| rows rejected | 42 |" in markdown and "| invalid checksum | 40 |" in markdown


CELL = st.characters(blacklist_categories=["Cs"], blacklist_characters="|\n`*\\")


@given(st.text(alphabet=CELL, min_size=1))
def test_markdown_tables_render_every_cell_escaped(cell: str) -> None:
    html = markdown_to_html(f"## h\n\n| a | b |\n|---|---:|\n| {cell} | 1 |\n\n- {cell}\n")
    assert "<script" not in html.lower()
    if cell.strip():
        assert f"<td>{escape(cell.strip(), quote=False)}</td>" in html
    assert '<td class="num">1</td>' in html and "<h2>h</h2>" in html
