"""The linkage quality report: three renderings of the same figures, escaped, deterministic,
and a reconciliation failure that cannot be missed."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from koble.linkage.quality import render_html, render_markdown, verdict, write_quality_report


def _data() -> dict[str, Any]:
    return {
        "project": {"id": "P1", "title": "Hjerte og kar"},
        "route": "distributed",
        "population": {
            "rows": 12000,
            "persons": 11990,
            "invalid": 6,
            "duplicates": 4,
            "unresolved": 0,
            "resolved_from_history": 3,
            "reasons": {"check_digit_2": 4, "invalid_date": 2},
        },
        "registries": [
            {
                "registry": "npr",
                "name": "Norsk pasientregister",
                "route": "distributed",
                "consent_filter": False,
                "persons_sent": 11990,
                "persons_unresolved": 0,
                "persons_without_consent": 0,
                "persons_found": 8123,
                "source_rows": 1234567,
                "rows_delivered": 1200000,
                "rows_outside_period": 34567,
                "duplicate_rows": 0,
                "file": "npr.csv",
                "period": [2015, 2024],
            },
            {
                "registry": "hkr",
                "name": "Hjerte- og karregisteret",
                "route": "ttp-pseudonym",
                "consent_filter": True,
                "persons_sent": 11990,
                "persons_unresolved": 2,
                "persons_without_consent": 17,
                "persons_found": 4321,
                "source_rows": 9876,
                "rows_delivered": 9000,
                "rows_outside_period": 876,
                "duplicate_rows": 1,
                "file": "hkr.csv",
                "period": [2010, 2020],
            },
        ],
        "refusals": [{"registry": "abortregisteret", "reason": "de-identified registry"}],
        "anonymity": None,
        "reconciliation": [
            {"check": "population rows = keyed + rejected", "ok": True, "detail": "12000 = ..."},
            {"check": "delivered = source - outside - duplicates", "ok": True, "detail": "ok"},
        ],
    }


def test_all_three_outputs_are_written_with_the_numbers(tmp_path: Path) -> None:
    data = _data()
    files = write_quality_report(data, tmp_path / "report")
    assert {name: path.name for name, path in files.items()} == {
        "markdown": "quality.md",
        "json": "quality.json",
        "html": "quality.html",
    }
    text = files["json"].read_text(encoding="utf-8")
    assert json.loads(text) == data
    assert text.endswith("}\n")
    markdown = files["markdown"].read_text(encoding="utf-8")
    html = files["html"].read_text(encoding="utf-8")
    for figure in ("12,000", "11,990", "8,123", "1,234,567", "1,200,000", "34,567", "67.7%"):
        assert figure in markdown
        assert figure in html
    row = "| npr | 2015–2024 | 1,234,567 | 1,200,000 | 34,567 | – | – | – | 0 | npr.csv |"
    assert row in markdown
    assert "|---|---|---:|---:|---:|---:|---:|---|---:|---|" in markdown
    assert "abortregisteret" in markdown
    assert "No anonymity gate" in markdown
    assert "PASS: 2 of 2" in markdown
    assert html.count("<svg") == 3  # persons, rows, rejection reasons
    assert '<p class="verdict pass">' in html
    assert "<script" not in html
    assert "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_reconciliation_failure_is_red(tmp_path: Path) -> None:
    data = _data()
    data["reconciliation"][1] = {"check": "rows add up", "ok": False, "detail": "9000 != 8999"}
    assert verdict(data) == (False, "FAIL: 1 of 2 reconciliation checks do not hold")
    markdown = render_markdown(data)
    assert "**Reconciliation:** FAIL" in markdown
    assert "| rows add up | FAIL | 9000 != 8999 |" in markdown
    html = render_html(data)
    assert '<p class="verdict failed">FAIL: 1 of 2' in html
    assert '<td class="fail">FAIL</td>' in html
    assert '<td class="ok">OK</td>' in html
    assert ".failed{background:#cf222e}" in html
    assert verdict({**data, "reconciliation": []})[0] is False


def test_html_and_markdown_escape_names(tmp_path: Path) -> None:
    data = _data()
    data["registries"][0]["name"] = "<script>alert(1)</script> | x"
    data["registries"][0]["registry"] = "<b>npr</b>"
    data["project"]["title"] = "A & <i>B</i>"
    html = render_html(data)
    assert "<script" not in html
    assert "<b>" not in html and "<i>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; | x" in html
    assert "&lt;b&gt;npr&lt;/b&gt;" in html  # also in the chart labels
    assert "A &amp; &lt;i&gt;B&lt;/i&gt;" in html
    markdown = render_markdown(data)
    assert "<script" not in markdown
    assert "&lt;script&gt;alert(1)&lt;/script&gt; \\| x" in markdown


def test_anonymity_section_when_the_gate_ran() -> None:
    data = _data()
    data["route"] = "central-anonymous"
    data["anonymity"] = {
        "k": 5,
        "quasi_identifiers": ["age", "kommune"],
        "levels": {"age": "5-year bands", "kommune": "fylke"},
        "suppressed": 12,
        "rows": 4321,
        "min_class_size": 6,
        "min_class_persons": 5,
        "meets": True,
    }
    markdown = render_markdown(data)
    expected = "k = 5 (in persons): met; smallest class 6 rows, 5 persons; 12 of 4,321 rows"
    assert expected + " withheld." in markdown
    assert "| kommune | fylke |" in markdown
    data["anonymity"]["meets"] = False
    assert "k = 5 (in persons): NOT met" in render_html(data)


def test_empty_job_renders() -> None:
    data = _data()
    data.update(registries=[], refusals=[], reconciliation=[])
    data["population"]["reasons"] = {}
    markdown = render_markdown(data)
    assert "No registries." in markdown
    assert "FAIL: no reconciliation checks" in markdown
    assert "<svg" not in render_html(data)


def test_output_is_deterministic(tmp_path: Path) -> None:
    data = _data()
    reordered = copy.deepcopy(data)
    reordered["population"] = dict(reversed(list(data["population"].items())))
    first = write_quality_report(data, tmp_path / "a")
    second = write_quality_report(reordered, tmp_path / "b")
    for name in ("markdown", "json", "html"):
        assert first[name].read_bytes() == second[name].read_bytes(), name
    again = write_quality_report(data, tmp_path / "a")
    assert again["html"].read_bytes() == first["html"].read_bytes()


def test_the_gates_added_quasi_identifiers_are_listed_and_lone_gt_stays_readable() -> None:
    data = _data()
    data["route"] = "central-anonymous"
    data["anonymity"] = {
        "k": 5, "quasi_identifiers": ["kommune"], "rows": 10, "suppressed": 0,
        "levels": {"kommune": "fylke", "nus_level": "*"}, "min_class_size": 6, "meets": True,
        "model": "person-set 5-anonymity", "person_constant_quasi_identifiers": ["nus_level"],
    }  # fmt: skip
    data["reconciliation"] = [{"check": "npr: rows delivered > 0", "ok": True, "detail": "1 > 0"}]
    markdown = render_markdown(data)
    assert "| nus_level | * |" in markdown  # coarsened by the gate: the report says so
    assert "rows delivered > 0" in markdown and "&gt;" not in markdown
