"""The HTML reports people look at, rendered in a real headless Chromium.

Each report (the anonymity report, released and not released, and the linkage quality
report of the central route) is opened from disk in Debian's Chromium through ChromeDriver
(selenium): the page must render with no console errors, and its key figures must be
visible in the rendered page, not only present in the source. A screenshot of each page is
kept under ``.pytest_artifacts/reports/`` (its path is printed) for a person to look at.

Chromium is a test prerequisite that ``make test`` installs: these tests FAIL, never skip,
when it is missing, so CI cannot pass without them having run (the ``browser`` fixture,
in ``tests/conftest.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from selenium.webdriver import Chrome as WebDriver
from selenium.webdriver.common.by import By

from koble.anonymity.config import AnonymiseConfig
from koble.anonymity.report import anonymise_with_report
from koble.cli.main import cli

ARTIFACTS = Path(__file__).resolve().parents[1] / ".pytest_artifacts" / "reports"


def render(browser: WebDriver, page: Path, name: str) -> str:
    """Open ``page``, fail on any console message of level SEVERE (errors, failed loads),
    keep a full-page screenshot as ``name``.png; return the rendered, visible text."""
    browser.get(page.resolve().as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, max(int(height) + 100, 800))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"{name}.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
    return str(browser.find_element(By.TAG_NAME, "body").text)


def _svg_texts(browser: WebDriver, title: str) -> list[str]:
    """The text labels drawn inside the chart whose aria-label is ``title``."""
    chart = browser.find_element(By.CSS_SELECTOR, f'svg[aria-label="{title}"]')
    assert chart.is_displayed() and chart.size["height"] > 40
    return [t.text for t in chart.find_elements(By.TAG_NAME, "text")]


def _people(n: int = 4000) -> pl.DataFrame:
    rng = np.random.default_rng(14)
    return pl.DataFrame({
        "age": rng.integers(0, 100, n),
        "kommune": rng.choice(["0301", "4601", "5001", "1103", "3403", "1806"], n),
        "sex": rng.choice(["M", "F"], n),
        "diagnosis": rng.choice(["a", "b", "c"], n),
    })  # fmt: skip


def _anonymise(tmp_path: Path, k: int) -> Path:
    source = tmp_path / "people.parquet"
    _people().write_parquet(source)
    config = AnonymiseConfig(k=k, suppression=0.02,
                             quasi_identifiers={"age": "age", "kommune": "kommune",
                                                "sex": "sex"})  # fmt: skip
    anonymise_with_report(source, config, tmp_path / "out.parquet", tmp_path / "report")
    return tmp_path / "report" / "report.html"


def test_anonymity_report_released(browser: WebDriver, tmp_path: Path) -> None:
    page = _anonymise(tmp_path, k=10)
    text = render(browser, page, "anonymity-released")
    summary = browser.find_element(By.ID, "summary")
    assert summary.location["y"] < browser.find_element(By.TAG_NAME, "figure").location["y"]
    panel = summary.text
    for figure in ("k = 10 (records): met", "smallest class", "suppressed", "of 4,000 records",
                   "risk (prosecutor)", "loss", "model", "precision"):  # fmt: skip
        assert figure in panel, figure
    # details and certificate as tables, not Markdown and JSON source
    assert "| quasi-identifier |" not in text and '"figures": {' not in text
    headers = [th.text for th in browser.find_elements(By.TAG_NAME, "th")]
    assert {"quasi-identifier", "prosecutor max", "field", "figures.suppressed"} <= set(headers)
    link = browser.find_element(By.LINK_TEXT, "certificate.json")
    assert str(link.get_attribute("href")).endswith("/report/certificate.json")
    # each QI's bar against its own hierarchy's height, labelled with the level's name
    chart = browser.find_element(
        By.CSS_SELECTOR, 'svg[aria-label="Chosen level per quasi-identifier"]'
    )
    certificate = json.loads((page.parent / "certificate.json").read_text())
    heights = {"age": 5, "kommune": 4, "sex": 1}  # the built-in hierarchies' top levels
    tracks = chart.find_elements(By.CSS_SELECTOR, 'rect[fill="#e6e6e6"]')
    bars = chart.find_elements(By.CSS_SELECTOR, "rect:not([fill='#e6e6e6'])")
    texts = _svg_texts(browser, "Chosen level per quasi-identifier")
    for track, bar, (name, chosen) in zip(tracks, bars, certificate["levels"].items(),
                                          strict=True):  # fmt: skip
        level, height = chosen["level"], heights[name]
        assert chosen["height"] == height
        assert f"{chosen['name']} (level {level} of {height})" in texts
        share = float(str(bar.get_attribute("width"))) / float(str(track.get_attribute("width")))
        assert share == pytest.approx(level / height, abs=0.01), name
    # age bands after, in age order, not by frequency
    bands = [t for t in _svg_texts(browser, "age: most frequent values after")[1:]
             if "-" in t]  # fmt: skip
    assert len(bands) >= 5 and bands == sorted(bands, key=lambda band: int(band.split("-")[0]))
    # chart figures with thousands separators, like the tables
    assert "4,000" in _svg_texts(browser, "Records at risk (prosecutor model)") or "4,000" in text


def test_anonymity_report_not_released(browser: WebDriver, tmp_path: Path) -> None:
    page = _anonymise(tmp_path, k=50_000)
    text = render(browser, page, "anonymity-not-released")
    assert "Nothing released" in text
    assert "k = 50,000 exceeds the 4,000 records" in browser.find_element(By.ID, "summary").text
    for wrong in ("inf", "None", "level 0", "Chosen generalisation", "after"):
        assert wrong not in text.replace("information", ""), wrong
    assert not browser.find_elements(
        By.CSS_SELECTOR, 'svg[aria-label="Chosen level per quasi-identifier"]'
    )


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's central route, run once: the researcher's delivery directory."""
    from click.testing import CliRunner

    out = tmp_path_factory.mktemp("demo") / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out / "linkage" / "central" / "researcher" / "delivery"


def test_quality_report_of_the_central_route(browser: WebDriver, central: Path) -> None:
    delivery = sorted(p.name for p in central.iterdir() if p.name.startswith("delivery."))
    assert len(delivery) == 1
    anonymous = pl.read_parquet(central.parents[1] / "operator" / "store" / "anonymous.parquet")
    text = render(browser, central / "quality.html", "quality-central")
    assert "PASS" in text
    # what the researcher receives: the delivery file and its rows after the gate
    received = browser.find_element(By.ID, "received").text
    assert delivery[0] in received and f"{anonymous.height:,}" in received
    assert "_extract.parquet" not in text
    # chart labels with thousands separators, as in the tables
    labels = _svg_texts(browser, "Persons sent and found per registry")
    assert "6,654" in labels and "6654" not in labels
    # an empty rejection table says so; the population table has the rejected rows
    assert "Rejected population rows by reason: none." in text
    assert not [th for th in browser.find_elements(By.TAG_NAME, "th")
                if th.text == "rejection reason"]  # fmt: skip
    rows = {tr.text for tr in browser.find_elements(By.CSS_SELECTOR, "table tr")}
    assert "rows rejected 0" in rows
