"""The clerical review page rendered in a real headless Chromium, as the other HTML reports
are (tests/test_reports_browser.py): no console errors, the key figures and each pair's
fields visible in the rendered page, the agreement marks coloured, a screenshot kept under
``.pytest_artifacts/reports/review.png``. Fails, never skips, without Chromium."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from selenium.webdriver import Chrome as WebDriver
from selenium.webdriver.common.by import By

from koble.recovery.review import review_html
from tests.recovery.test_review import MODEL, _table
from tests.test_reports_browser import render


def test_review_page_renders_with_its_figures_and_pairs(browser: WebDriver,
                                                        tmp_path: Path) -> None:  # fmt: skip
    page = tmp_path / "review.html"
    page.write_text(review_html(_table(), thresholds=(0.5, 0.99), model=MODEL,
                                csv_name="review.csv", generated=dt.date(2026, 1, 2)),
                    encoding="utf-8")  # fmt: skip
    text = render(browser, page, "review")
    figures = {key: browser.find_element(By.ID, f"figure-{key}").text
               for key in ("pairs", "records", "thresholds", "prior")}  # fmt: skip
    assert figures["pairs"].endswith("3") and figures["records"].endswith("2")
    assert "0.5 – 0.99" in figures["thresholds"] and "-9.96" in figures["prior"]
    sections = browser.find_elements(By.CSS_SELECTOR, "section.pair")
    assert len(sections) == 3 and all(s.is_displayed() for s in sections)
    first = sections[0].text
    assert "Record r1 · candidate 1 of 2" in first and "match probability 0.9" in first
    assert "Lokken" in first and "Løkken" in first and "≈ partly: jaro-winkler>=0.92" in first
    assert "<b>Dahl & co</b>" in sections[2].text  # shown as text, not markup
    howto = browser.find_element(By.ID, "howto")
    assert howto.is_displayed() and "non-match" in howto.text and "--decisions" in text
    agree = sections[0].find_element(By.CSS_SELECTOR, "tr.agree td.mark")
    disagree = sections[2].find_element(By.CSS_SELECTOR, "tr.disagree td.mark")
    assert agree.value_of_css_property("background-color") != (
        disagree.value_of_css_property("background-color")
    )
