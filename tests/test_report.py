"""The segment report: rendered in real headless Chromium (Debian's chromium and
chromium-driver, which `.ci/run` installs), with no console errors and every plot shown."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CUSTSEG = Path(sys.executable).parent / "custseg"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def cli(cwd: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CUSTSEG), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    assert cli(root, "sample", "--rows", "4000", "--segments", "4", "-o", "c.csv").returncode == 0
    (root / "pipeline_config.yaml").write_text(
        "data_uri: c.csv\nstore: store\nn_clusters: {min: 2, max: 6}\nn_components: 2\n"
        "endpoint: {autostart: false}\n")
    result = cli(root, "run")
    assert result.returncode == 0, result.stderr
    path = Path(re.search(r"Report: (\S+)", result.stdout).group(1))  # type: ignore[union-attr]
    assert path.is_file() and path.is_relative_to(root / "store" / "reports")
    again = cli(root, "report", "1", "-o", "by-version.html")
    assert again.returncode == 0, again.stderr
    assert (root / "by-version.html").read_text().count("<figure") == \
        path.read_text().count("<figure")
    return path


def test_the_report_is_self_contained(report: Path) -> None:
    text = report.read_text()
    assert "<script" not in text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing fetched
    assert "@import" not in text and "url(" not in text
    for section in ("Quality", "Candidates", "Metrics by k", "Fit", "Profiles", "Segments"):
        assert f"<h2>{section}</h2>" in text


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")
def test_the_report_renders_in_chromium_without_errors(report: Path, tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1200,900",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get(report.as_uri())
        plots = driver.find_elements(By.CSS_SELECTOR, "figure.plot")
        ids = {p.get_attribute("id") for p in plots}
        assert {"plot-silhouette", "plot-scatter", "plot-heatmap",
                "plot-k-silhouette"} <= ids
        for plot in plots:
            svg = plot.find_element(By.TAG_NAME, "svg")
            assert svg.is_displayed()
            assert svg.size["width"] > 200 and svg.size["height"] > 150, plot.get_attribute("id")
            assert len(svg.find_elements(By.XPATH, "./*")) > 3
        cards = driver.find_elements(By.CSS_SELECTOR, ".card")
        assert len(cards) >= 2 and all(c.is_displayed() for c in cards)
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1200, min(int(height) + 100, 6000))
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
    finally:
        driver.quit()
