"""The segment report and the profiles CSV.

Pure tests render metadata built here (`make_meta`: any number of features and segments,
long names, every optional field) and read the HTML; one real model is trained with the
real CLI for the end-to-end checks (`custseg run`, `custseg report --profiles-csv`); the
layout is checked in real headless Chromium (Debian's chromium and chromium-driver,
which `.ci/run` installs): every plot shown, no console errors, and nothing in a segment
card outside the card at a 1280 px window.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import needs_chromium
from custseg.report import PROFILE_COLUMNS, profiles_csv, render_report
from custseg.report.base import nice_ticks
from custseg.report.features import feature_rows
from custseg.report.scatter import percentile, robust_limits

CUSTSEG = Path(sys.executable).parent / "custseg"
LONG = ["Very high Monthly Recurring Revenue", "Mostly Enterprise Customers In The Northern "
        "Region", "Frequent weekend purchasers of premium subscriptions"]


def cli(cwd: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CUSTSEG), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False)


# -- metadata built here -----------------------------------------------------------------------

def make_meta(features: int = 30, k: int = 8, seed: int = 0, rows: int = 1500
              ) -> dict[str, Any]:
    """Model metadata with `features` input columns (two thirds numeric, the rest
    categorical, every third of those binary), `k` segments with long names, outliers in
    the scatter sample, and every optional field the report reads."""
    rng = random.Random(seed)
    n_cat = features // 3
    numeric = [f"Numeric feature number {i} with a long name" for i in range(features - n_cat)]
    categorical = [f"Category{i}" for i in range(n_cat)]
    levels = {c: ["yes", "no"] if i % 3 == 0 else [f"L{j}" for j in range(2 + i % 6)]
              for i, c in enumerate(categorical)}
    raw = [rng.random() + 0.2 for _ in range(k)]
    sizes = [int(10_000 * r / sum(raw)) for r in sorted(raw, reverse=True)]
    segments = []
    for sid in range(k):
        num = {c: {"mean": rng.gauss(50_000, 20_000), "median": rng.gauss(48_000, 9_000),
                   "q1": 1_234_567.891, "q3": 9_876_543.21} for c in numeric}
        cat = {}
        for c, lv in levels.items():
            w = [rng.random() for _ in lv]
            cat[c] = {level: x / sum(w) for level, x in zip(lv, w, strict=True)}
        diffs = [{"feature": c, "kind": "numeric", "z": rng.gauss(0, 1)} for c in numeric]
        diffs += [{"feature": f"{c}={level}", "column": c, "category": level,
                   "kind": "categorical", "share": s, "z": rng.gauss(0, 1)}
                  for c, shares in cat.items() for level, s in shares.items()]
        diffs.sort(key=lambda d: -abs(d["z"]))
        segments.append({"id": sid, "size": sizes[sid], "share": sizes[sid] / sum(sizes),
                         "numeric": num, "categorical": cat, "differences": diffs,
                         "name": f"{LONG[sid % 3]} \u00b7 {LONG[(sid + 1) % 3]} #{sid}",
                         "profile_only": {"Churned": {"mean": rng.random()},
                                          "Plan": {"shares": {"basic": 0.7, "pro": 0.3}}}})
    sil = {"value": 0.31, "exact": False, "sample_size": 1000, "n": 10_000,
           "ci95": [0.29, 0.33]}
    labels = [rng.randrange(k) for _ in range(rows)]
    xy = [[rng.gauss(0, 1), rng.gauss(0, 0.5)] for _ in range(rows)]
    xy[:3] = [[400.0, 0.0], [0.0, -300.0], [-250.0, 900.0]]  # outliers
    candidates = [{"k": c, "silhouette": 0.2 + 0.01 * c, "calinski_harabasz": 900.0 + c,
                   "davies_bouldin": 1.2 - 0.01 * c, "inertia": 50_000.0 / c,
                   "sizes": [10_000 // c] * c, "min_share": 1 / c, "stability": 0.9,
                   "eligible": c <= k} for c in range(2, k + 3)]
    columns = [{"name": c, "role": "numeric", "transform": "median imputation, standardised",
                "reason": "float"} for c in numeric]
    columns += [{"name": c, "role": "categorical", "transform": "one-hot", "reason": "text"}
                for c in categorical]
    columns += [{"name": "CustomerID", "role": "ignored", "transform": "-",
                 "reason": "identifier (by name)"},
                {"name": "Churned", "role": "profile_only", "transform": "-",
                 "reason": "declared"}]
    return {
        "metrics": {"k": k, "silhouette": sil, "calinski_harabasz": 1234.5,
                    "davies_bouldin": 1.1, "inertia": 5678.9, "selection_metric": "silhouette",
                    "cluster_sizes": sizes, "space": "PCA, 5 components",
                    "feature_space": {"silhouette": sil | {"value": 0.22},
                                      "calinski_harabasz": 777.0, "davies_bouldin": 1.6}},
        "candidates": candidates,
        "selection": {"sentence": f"k={k}: the best silhouette among stable candidates."},
        "warnings": ["Column Category0 has 40% missing values", "Income <is> skewed & spiky"],
        "segments": segments,
        "segment_names": [s["name"] for s in segments],
        "value_labels": {c: {"yes": f"Yes ({c})", "no": "No"} for c in categorical},
        "schema": {"columns": columns, "numeric": numeric, "categorical": categorical},
        "report_sample": {"rows": rows, "of": 10_000, "labels": labels, "xy": xy,
                          "silhouette": [rng.uniform(-0.3, 0.9) for _ in range(rows)],
                          "axes": [{"label": "PC1 (34% of variance)", "explained": 0.34,
                                    "loadings": [[numeric[0], 0.6], ["Category1=L1", -0.4],
                                                 [numeric[2], 0.3]]},
                                   {"label": "PC2 (12% of variance)", "explained": 0.12,
                                    "loadings": [[numeric[3], 0.7]]}]},
        "data": {"uri": "data/", "rows": 10_000, "sha256": "ab" * 32},
        "parameters": {"n_components": 5},
    }


def render(meta: dict[str, Any]) -> str:
    return render_report(meta, title="Segments <test>", subtitle="built & rendered")


def figure(text: str, plot_id: str) -> str:
    found = re.search(rf'<figure class="plot" id="{plot_id}".*?</figure>', text, re.S)
    assert found, plot_id
    return found.group(0)


# -- the HTML, read directly -------------------------------------------------------------------

@pytest.mark.parametrize(("features", "k"), [(6, 2), (30, 8), (120, 12)])
def test_the_heatmap_shows_at_most_15_rows_titled_by_segment_name(features: int, k: int
                                                                  ) -> None:
    meta = make_meta(features, k)
    heat = figure(render(meta), "plot-heatmap")
    assert heat.count("<rect") <= 15 * k and heat.count("<rect") % k == 0
    assert "segment 0" not in heat
    for p in meta["segments"]:
        assert f"<title>{p['name']}</title>".replace("\u00b7", "\u00b7") in heat


def test_heatmap_rows_are_the_strongest_with_one_row_per_binary_column() -> None:
    meta = make_meta(30, 4)
    strength: dict[str, float] = {}
    for p in meta["segments"]:
        for d in p["differences"]:
            strength[d["feature"]] = max(strength.get(d["feature"], 0.0), abs(d["z"]))
    populations: dict[str, dict[str, float]] = {}
    for p in meta["segments"]:
        for c, shares in p["categorical"].items():
            for level, s in shares.items():
                populations.setdefault(c, {})[level] = (
                    populations.get(c, {}).get(level, 0.0) + s * p["size"])
    modes = {f"{c}={max(lv, key=lv.__getitem__)}" for c, lv in populations.items()
             if len(lv) == 2}
    expected = sorted((f for f in strength if f not in modes), key=lambda f: -strength[f])[:15]
    heat = figure(render(meta), "plot-heatmap")
    shown = re.findall(r'text-anchor="end"><title>([^<]*)</title>', heat)

    def label(f: str) -> str:
        column, _, level = f.partition("=")
        return f"{column}: {meta['value_labels'].get(column, {}).get(level, level)}" if level \
            else f
    assert shown == [label(f) for f in expected]
    assert any(": Yes (" in s or ": No" in s for s in [label(f) for f in strength])


def test_feature_rows_read_a_numeric_flag_as_a_share() -> None:
    meta = make_meta(6, 3)
    flag = next(iter(meta["segments"][0]["numeric"]))
    for p in meta["segments"]:
        p["binary_numeric"] = [flag]
    rows = {r.key: r for r in feature_rows(meta["segments"])}
    assert rows[flag].as_share and not any(r.as_share for k, r in rows.items()
                                           if k != flag and r.kind == "numeric")


def test_warnings_are_shown_first_and_escaped_and_absent_when_empty() -> None:
    text = render(make_meta(6, 3))
    assert text.index("class='warnings'") < text.index("<h2>Run</h2>")
    assert "Income &lt;is&gt; skewed &amp; spiky" in text
    for empty in ([], None):
        assert "class='warnings'" not in render(make_meta(6, 3) | {"warnings": empty})


def test_everything_from_the_model_is_escaped() -> None:
    meta = make_meta(6, 3)
    meta["segments"][0]["name"] = "<script>alert(1)</script>"
    meta["segments"][1]["numeric"]['<img src=x onerror="y">'] = {"mean": 1.0}
    meta["warnings"] = ["<b>bold</b>"]
    text = render(meta)
    assert "<script" not in text and "<img" not in text and "<b>bold" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_quality_candidates_and_features_sections() -> None:
    meta = make_meta(30, 8)
    text = render(meta)
    assert "In the space KMeans ran in: PCA, 5 components" in text
    assert "In the full standardised feature space" in text
    assert "sampled: 1,000 of 10,000 rows, 95% CI 0.2900 to 0.3300" in text
    table = text[text.index("id='candidates'"):text.index("</table>", text.index(
        "id='candidates'"))]
    assert "<th>smallest share</th><th>stability</th>" in table
    assert table.count("not eligible") == 2  # k = 9 and 10
    assert "k=8: the best silhouette among stable candidates." in text
    features = text[text.index("id='features'"):]
    for column in meta["schema"]["columns"]:
        assert f"<td>{column['name']}</td><td>{column['role']}</td>" in features


def test_the_scatter_has_named_axes_loadings_a_legend_and_clamps_outliers() -> None:
    meta = make_meta(30, 8)
    scatter = figure(render(meta), "plot-scatter")
    assert "PC1 (34% of variance)" in scatter and "PC2 (12% of variance)" in scatter
    assert "+0.60 Numeric feature number 0" in scatter and "-0.40 Category1: L1" in scatter
    assert "are drawn hollow at the edge" in scatter
    clamped = int(re.search(r"(\d+) outlying points", scatter).group(1))  # type: ignore[union-attr]
    assert 3 <= clamped <= 0.03 * meta["report_sample"]["rows"]
    assert len(re.findall(r'<circle[^>]*fill="none"', scatter)) == clamped
    assert scatter.count("<li>") == 8 and meta["segments"][7]["name"] in scatter


@pytest.mark.parametrize("seed", range(5))
def test_scatter_limits_show_clean_data_whole_and_clamp_outliers(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.normal(0, 1, 2000).tolist()
    lo, hi = robust_limits(values)
    assert lo < min(values) and hi > max(values)  # nothing clamped
    p1, p99 = np.percentile(values, [1, 99])
    lo, hi = robust_limits([*values, 1000.0, -500.0])
    assert lo > -500 and hi < 1000 and lo < p1 and hi > p99
    assert hi - lo < 2.2 * (p99 - p1)


@pytest.mark.parametrize("seed", range(5))
def test_percentiles_and_ticks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.standard_cauchy(int(rng.integers(1, 500))).tolist()
    for q in (0, 1, 37.5, 99, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))
    lo, hi = sorted(rng.normal(0, 10.0 ** rng.integers(-3, 6), 2).tolist())
    ticks = nice_ticks(lo, hi)
    assert ticks[0] <= lo and ticks[-1] >= hi and 3 <= len(ticks) <= 9
    assert np.allclose(np.diff(ticks), ticks[1] - ticks[0])


def test_metric_curves_have_gridlines_and_labelled_limits() -> None:
    text = render(make_meta(6, 3))
    curve = figure(text, "plot-k-silhouette")
    labels = [float(v) for v in re.findall(r'text-anchor="end">(-?[\d.]+)</text>', curve)]
    values = [c["silhouette"] for c in make_meta(6, 3)["candidates"]]
    assert len(labels) >= 3 and min(labels) <= min(values) and max(labels) >= max(values)
    assert curve.count('stroke="#e3e8eb"') == len(labels)  # a gridline at each label


def test_old_metadata_without_the_new_fields_still_renders() -> None:
    meta = make_meta(6, 3)
    for key in ("warnings", "selection", "value_labels", "schema"):
        meta.pop(key)
    del meta["metrics"]["space"], meta["metrics"]["feature_space"]
    del meta["report_sample"]["axes"]
    for c in meta["candidates"]:
        del c["min_share"], c["stability"], c["eligible"]
    for p in meta["segments"]:
        del p["profile_only"]
    text = render(meta)
    assert "In the full standardised feature space" not in text and "<h2>Features" not in text
    assert "PC1</text>" in text and "not eligible" not in text
    old_schema = {"numeric": ["Age"], "categorical": ["Gender"], "ignored": ["CustomerID"],
                  "inferred": True, "reasons": {"CustomerID": "identifier (by name)"}}
    features = render(meta | {"schema": old_schema}).split("id='features'")[1]
    assert "<td>CustomerID</td><td>ignored</td><td>-</td><td>identifier (by name)" in features
    assert "<td>Gender</td><td>categorical</td>" in features
    assert render_report({"metrics": {"k": 1, "silhouette": {"value": 0.0}}},
                         title="t", subtitle="s").startswith("<!doctype html>")


def test_the_profiles_csv_has_a_row_per_segment_and_feature() -> None:
    meta = make_meta(9, 3)
    rows = list(csv.DictReader(io.StringIO(profiles_csv(meta))))
    per_segment = (len(meta["segments"][0]["numeric"]) + sum(
        len(v) for v in meta["segments"][0]["categorical"].values()) + 1 + 2)
    assert len(rows) == 3 * per_segment and list(rows[0]) == PROFILE_COLUMNS
    kinds = {r["kind"] for r in rows}
    assert kinds == {"numeric", "category", "profile_numeric", "profile_category"}
    yes = next(r for r in rows if r["level"] == "yes")
    assert yes["feature"] == f"{yes['column']}: Yes ({yes['column']})"
    assert all(r["z"] == "" for r in rows if r["kind"].startswith("profile"))


# -- a real model, through the CLI -------------------------------------------------------------

@dataclass
class Trained:
    root: Path
    report: Path
    model: dict[str, Any]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("report")
    assert cli(root, "sample", "--rows", "4000", "--segments", "4", "-o", "c.csv").returncode == 0
    (root / "pipeline_config.yaml").write_text(
        "data_uri: c.csv\nstore: store\nn_clusters: {min: 2, max: 6}\nn_components: 2\n"
        "endpoint: {autostart: false}\n")
    result = cli(root, "run")
    assert result.returncode == 0, result.stderr
    path = Path(re.search(r"Report: (\S+)", result.stdout).group(1))  # type: ignore[union-attr]
    model = Path(re.search(r"^Model: (\S+)$", result.stdout, re.M).group(1))  # type: ignore[union-attr]
    assert path.is_file() and path.is_relative_to(root / "store" / "reports")
    return Trained(root, path, json.loads((model / "model.json").read_text()))


def test_the_report_is_self_contained(trained: Trained) -> None:
    text = trained.report.read_text()
    assert "<script" not in text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing fetched
    assert "@import" not in text and "url(" not in text
    for section in ("Run", "Features", "Quality", "Candidates", "Metrics by k", "Fit",
                    "Profiles", "Segments"):
        assert f"<h2>{section}</h2>" in text


def test_the_report_sample_names_its_axes(trained: Trained) -> None:
    axes = trained.model["report_sample"]["axes"]
    names = trained.model["features"]["names"]
    assert len(axes) == 2 and axes[0]["explained"] >= axes[1]["explained"] > 0
    for i, axis in enumerate(axes):
        assert re.fullmatch(rf"PC{i + 1} \(\d+% of variance\)", axis["label"])
        weights = [w for _, w in axis["loadings"]]
        assert len(weights) == 3 and weights[0] > 0
        assert [abs(w) for w in weights] == sorted((abs(w) for w in weights), reverse=True)
        assert all(name in names for name, _ in axis["loadings"])


def test_report_writes_the_profiles_csv(trained: Trained) -> None:
    result = cli(trained.root, "report", "1", "-o", "again.html", "--profiles-csv", "out/p.csv")
    assert result.returncode == 0, result.stderr
    assert "out/p.csv" in result.stdout
    assert (trained.root / "again.html").read_text().count("<figure") == \
        trained.report.read_text().count("<figure")
    with open(trained.root / "out" / "p.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    segments = trained.model["segments"]
    levels = sum(len(v) for v in segments[0]["categorical"].values())
    assert len(rows) == len(segments) * (len(segments[0]["numeric"]) + levels)
    for p in segments:
        mine = {r["feature"]: r for r in rows if int(r["segment_id"]) == p["id"]}
        assert {int(r["size"]) for r in mine.values()} == {p["size"]}
        for name, stats in p["numeric"].items():
            assert float(mine[name]["mean"]) == stats["mean"]  # full precision
        for d in p["differences"]:
            label = d["feature"] if d["kind"] == "numeric" else \
                f"{d['column']}: {d['category']}"
            assert float(mine[label]["z"]) == d["z"]


# -- in Chromium -------------------------------------------------------------------------------

OUTSIDE_CARD = """
const out = [];
for (const d of document.querySelectorAll('details')) d.open = true;
const cards = [...document.querySelectorAll('.card')];
const outside = (r, box) => r.width + r.height > 0 && (r.left < box.left - 0.5 ||
  r.right > box.right + 0.5 || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5);
for (const card of cards) {
  const box = card.getBoundingClientRect();
  for (const el of card.querySelectorAll('*'))
    if (outside(el.getBoundingClientRect(), box)) out.push(card.id + ' ' + el.tagName);
  const walk = document.createTreeWalker(card, NodeFilter.SHOW_TEXT);
  for (let t = walk.nextNode(); t; t = walk.nextNode()) {
    const range = document.createRange(); range.selectNodeContents(t);
    if (outside(range.getBoundingClientRect(), box)) out.push(card.id + ' text ' + t.data);
  }
}
for (let i = 0; i < cards.length; i++) for (let j = i + 1; j < cards.length; j++) {
  const a = cards[i].getBoundingClientRect(), b = cards[j].getBoundingClientRect();
  if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom)
    out.push('overlap ' + cards[i].id + ' ' + cards[j].id);
}
return out;
"""


def _open(browser: Any, path: Path) -> Callable[[], None]:
    browser.set_window_size(1280, 900)
    browser.get(path.as_uri())

    def no_errors() -> None:
        errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
    return no_errors


@needs_chromium
def test_the_report_renders_in_chromium_without_errors(trained: Trained, browser: Any,
                                                       tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    no_errors = _open(browser, trained.report)
    plots = browser.find_elements(By.CSS_SELECTOR, "figure.plot")
    ids = {p.get_attribute("id") for p in plots}
    assert {"plot-silhouette", "plot-scatter", "plot-heatmap", "plot-sizes",
            "plot-k-silhouette"} <= ids
    for plot in plots:
        svg = plot.find_element(By.TAG_NAME, "svg")
        assert svg.is_displayed()
        assert svg.size["width"] > 200 and svg.size["height"] > 60, plot.get_attribute("id")
        assert len(svg.find_elements(By.XPATH, "./*")) > 3
    cards = browser.find_elements(By.CSS_SELECTOR, ".card")
    assert len(cards) >= 2 and all(c.is_displayed() for c in cards)
    no_errors()
    assert browser.execute_script(OUTSIDE_CARD) == []
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1280, min(int(height) + 100, 6000))
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 20_000


@needs_chromium
@pytest.mark.parametrize(("features", "k"), [(30, 8), (40, 3)])
def test_cards_hold_their_content_at_many_features(browser: Any, tmp_path: Path,
                                                   features: int, k: int) -> None:
    page = tmp_path / "wide.html"
    page.write_text(render(make_meta(features, k)), encoding="utf-8")
    no_errors = _open(browser, page)
    assert browser.execute_script("return document.querySelectorAll('.card').length") == k
    assert browser.execute_script(OUTSIDE_CARD) == []
    widest = browser.execute_script(
        "return Math.max(...[...document.querySelectorAll('figure.plot')].map("
        "f => f.getBoundingClientRect().right))")
    assert widest <= browser.execute_script("return document.body.getBoundingClientRect().right")
    # the check itself sees an overflowing child
    browser.execute_script("const d = document.createElement('div'); d.style.width = '3000px';"
                           "d.textContent = 'x'; document.querySelector('.card').append(d);")
    assert browser.execute_script(OUTSIDE_CARD)
    no_errors()
