"""`custseg monitor` on real parts: a model trained by `custseg run`, served by
`custseg serve` with data capture on, traffic replayed over HTTP and captured, the
real CLI reading the capture files and recording its reports in the store, /metrics
showing the last figures; `--data` files; an artifact from before baselines."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from custseg.core.sample import iter_customer_chunks
from test_inference import ENDPOINT, Project, make_project, post_json, request, serving

INPUTS = ["Age", "Income", "Purchases", "Gender"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """Trained on 2,000 customers (seed 1), capturing every request."""
    p = make_project(tmp_path_factory.mktemp("monitor"), capture={"sample": 1.0})
    result = p.cli("run")
    assert result.returncode == 0, result.stderr
    return p


@pytest.fixture()
def server(project: Project) -> Iterator[Project]:
    """The project served; its capture files removed after the test."""
    try:
        with serving(project):
            yield project
    finally:
        shutil.rmtree(project.root / "store" / "artifacts" / "capture", ignore_errors=True)


def customers(rows: int, part: int) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Other customers of the training population (its seed, 1): chunk `part` >= 1 of a
    generation cut in chunks of `rows` (training took the first rows of chunk 0)."""
    chunks = iter_customer_chunks(rows * (part + 1), segments=3, seed=1, chunk_rows=rows)
    table, labels = list(chunks)[part]
    return table.select(INPUTS).to_pylist(), np.asarray(labels)


def shifted(kind: str, part: int = 7) -> list[dict[str, Any]]:
    """A month of traffic with one change: a numeric column moved, a new category, or
    one latent segment crowding out the others."""
    records, labels = customers(1500, part)
    if kind == "numeric":
        return [{**r, "Income": r["Income"] and r["Income"] * 1.8} for r in records]
    if kind == "category":
        return [{**r, "Gender": "Nonbinary"} if i % 4 == 0 else r
                for i, r in enumerate(records)]
    one = [r for r, label in zip(records, labels, strict=True) if label == labels[0]]
    rest = [r for r, label in zip(records, labels, strict=True) if label != labels[0]]
    return one * 3 + rest[: len(one) // 2]


def replay(project: Project, records: list[dict[str, Any]]) -> None:
    for start in range(0, len(records), 100):
        status, _, body = post_json(f"{project.url}/endpoints/{ENDPOINT}/invocations",
                                    records[start:start + 100])
        assert status == 200, body


def monitor(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return project.cli("monitor", ENDPOINT, *args)


def judged(project: Project, records: list[dict[str, Any]], *args: str
           ) -> tuple[int, dict[str, Any]]:
    """Serve, replay `records`, stop gracefully, then `custseg monitor --json`."""
    with serving(project):
        replay(project, records)
    try:
        result = monitor(project, "--json", *args)
        assert "Traceback" not in result.stderr, result.stderr
        return result.returncode, json.loads(result.stdout) if result.stdout else {}
    finally:
        shutil.rmtree(project.root / "store" / "artifacts" / "capture", ignore_errors=True)


def flagged(report: dict[str, Any]) -> dict[str, list[str]]:
    return {f["feature"]: f["drift"] for f in report["features"] if f["drift"]}


# -- captured traffic ------------------------------------------------------------------------

def test_unshifted_traffic_is_not_flagged(project: Project) -> None:
    records, _ = customers(1500, part=11)  # the same population, other customers
    code, report = judged(project, records, "--fail-on-drift")
    assert code == 0, report
    assert report["records"] == 1500 and report["drift"] is False and report["alerts"] == []
    assert report["model_version"] == "clustering-model-model-group/1"
    assert all(f["psi"] < 0.1 for f in report["features"])
    assert report["segments"]["psi"] < 0.1
    assert 0.0 < report["distance"]["far_share"] < 0.1
    assert report["schema"] == {"missing_columns": [], "extra_columns": [], "wrong_types": {},
                                "drift": []}


def test_a_shifted_numeric_column_is_flagged_and_fails_the_build(project: Project) -> None:
    code, report = judged(project, shifted("numeric"), "--fail-on-drift")
    assert code == 1
    assert "psi" in flagged(report)["Income"]
    assert "Age" not in flagged(report) and "Gender" not in flagged(report)
    assert any(a.startswith("Income: PSI") for a in report["alerts"])


def test_a_new_category_is_flagged_as_unseen(project: Project) -> None:
    code, report = judged(project, shifted("category"), "--fail-on-drift")
    assert code == 1
    gender = next(f for f in report["features"] if f["feature"] == "Gender")
    assert gender["unseen_share"] == pytest.approx(0.25, abs=0.01)
    assert "unseen" in gender["drift"]
    assert "Income" not in flagged(report)


def test_a_change_in_segment_shares_is_flagged(project: Project) -> None:
    code, report = judged(project, shifted("segments"))
    assert code == 0  # without --fail-on-drift
    segments = report["segments"]
    assert "psi" in segments["drift"] and "chi2" in segments["drift"]
    assert segments["p_value"] < 1e-6
    assert max(segments["shares"]) > max(segments["training_shares"]) + 0.2


def test_reports_are_kept_per_endpoint_and_metrics_show_the_last(project: Project,
                                                                 server: Project) -> None:
    rows = sqlite3.connect(project.root / "store" / "custseg.db").execute(
        "SELECT endpoint_name, drift, max_psi, records FROM drift_reports ORDER BY id"
    ).fetchall()
    assert len(rows) >= 4 and {r[0] for r in rows} == {ENDPOINT}
    _, _, body = request("GET", f"{server.url}/metrics")
    text = body.decode()
    last = rows[-1]
    assert f'custseg_drift_flagged{{endpoint="{ENDPOINT}",' in text
    flag = next(line for line in text.splitlines()
                if line.startswith("custseg_drift_flagged{"))
    assert flag.endswith(f" {last[1]}")
    assert 'custseg_drift_feature_psi{endpoint="' + ENDPOINT + '",feature="Income"}' in text


def test_an_empty_window_says_how_to_capture(project: Project) -> None:
    result = monitor(project, "--since", "5m")
    assert result.returncode == 3
    assert "no captured records" in result.stderr and "endpoint.capture" in result.stderr
    assert "Traceback" not in result.stderr
    bad = monitor(project, "--since", "yesterday")
    assert bad.returncode == 2 and "--since: expected a positive duration" in bad.stderr


# -- a file ----------------------------------------------------------------------------------

def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    table = pa.Table.from_pylist(records)
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        pacsv.write_csv(table, path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_data_file_is_scored_and_judged(project: Project, tmp_path: Path, suffix: str
                                          ) -> None:
    calm = _write(tmp_path / f"calm{suffix}", customers(1500, part=12)[0])
    result = monitor(project, "--data", str(calm), "--fail-on-drift", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["alerts"] == []
    moved = _write(tmp_path / f"moved{suffix}", shifted("numeric"))
    html = tmp_path / "drift.html"
    result = monitor(project, "--data", str(moved), "--fail-on-drift", "--html", str(html))
    assert result.returncode == 1
    assert "Income: PSI" in result.stdout and "Drift" in result.stdout
    page = html.read_text()
    assert "<h2>Drift of " + ENDPOINT in page and "drift: psi" in page


def test_the_training_data_itself_matches_its_baseline(project: Project) -> None:
    """The baseline read back: on the training rows every PSI is ~0, the segment shares
    are the training sizes and 5% of the rows lie beyond the 95th percentile."""
    result = monitor(project, "--data", str(project.root / "customers.csv"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["records"] == 2000 and report["alerts"] == []
    assert all(f["psi"] < 1e-3 for f in report["features"])
    assert all(f["missing_share"] == pytest.approx(f["training_missing_share"])
               for f in report["features"])
    assert report["segments"]["shares"] == pytest.approx(report["segments"]["training_shares"])
    assert report["distance"]["far_share"] == pytest.approx(0.05, abs=0.002)
    assert report["schema"]["extra_columns"] == ["CustomerID"]


def test_schema_violations_in_a_file(project: Project, tmp_path: Path) -> None:
    records = customers(600, part=13)[0]
    for i, r in enumerate(records):
        del r["Purchases"]
        r["Note"] = "x"
        r["Age"] = "unknown" if i % 5 == 0 else None if r["Age"] is None else str(r["Age"])
    path = tmp_path / "broken.csv"
    _write(path, records)
    result = monitor(project, "--data", str(path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["schema"]["missing_columns"] == ["Purchases"]
    assert report["schema"]["extra_columns"] == ["Note"]
    assert report["schema"]["wrong_types"] == {"Age": pytest.approx(0.2)}
    assert set(report["schema"]["drift"]) == {"missing_columns", "wrong_types"}
    assert report["segments"] is None  # cannot be scored without Purchases


# -- a model from before baselines -----------------------------------------------------------

def test_a_model_without_a_baseline_gets_a_clear_message(tmp_path: Path) -> None:
    p = make_project(tmp_path / "old")
    assert p.cli("run").returncode == 0
    model_dir = next((p.root / "store" / "artifacts" / "executions").glob("*/model"))
    meta = json.loads((model_dir / "model.json").read_text())
    del meta["baseline"]
    meta["format_version"] = 2
    data = json.dumps(meta).encode()
    (model_dir / "model.json").write_bytes(data)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    manifest["format_version"] = 2
    manifest["files"]["model.json"] = hashlib.sha256(data).hexdigest()
    (model_dir / "manifest.json").write_text(json.dumps(manifest))
    path = _write(tmp_path / "calm.csv", customers(300, part=3)[0])
    result = p.cli("monitor", ENDPOINT, "--data", str(path))
    assert result.returncode == 5, result.stderr
    assert "has no training baseline" in result.stderr and "custseg run" in result.stderr
    assert "Traceback" not in result.stderr
    unknown = p.cli("monitor", "nope", "--data", str(path))
    assert unknown.returncode == 8 and f"endpoints: {ENDPOINT}" in unknown.stderr



# -- tied values on a decile (counts, codes): the edges are read back through the transform --

def _sessions(rows: int, seed: int) -> pa.Table:
    """Web sessions with skewed integer counts (log-transformed by schema inference, so
    the baseline's deciles are counts read back through expm1), a skewed duration and a
    visitor type."""
    rng = np.random.default_rng(seed)
    pages = rng.geometric(0.12, rows) - 1  # 0, 1, 2, ... with a long tail
    visits = rng.geometric(0.35, rows) - 1
    return pa.table({"Pages": pages, "Visits": visits,
                     "Duration": np.round(rng.lognormal(5, 1.2, rows) * (pages + 1), 2),
                     "Visitor": rng.choice(["Returning", "New"], rows, p=[0.85, 0.15])})


def test_tied_counts_fall_in_their_training_bins(cli: Any, write_config: Any, tmp_path: Path
                                                 ) -> None:
    """Sessions from the training population, judged by `custseg monitor --data`: every
    PSI is near 0. (The deciles of a count like Visits land on tied values that read back
    a few ULPs low, 3.9999999999999996 for 4; binned against those, every 4 of the
    traffic fell one bin above the training 4s and Visits scored a PSI near 0.4.)"""
    train = tmp_path / "sessions.csv"
    pacsv.write_csv(_sessions(3000, seed=0), train)
    config = write_config({"data_uri": str(tmp_path), "data_file": train.name,
                           "n_clusters": 3})
    assert cli("run", "-c", config).returncode == 0
    model = next((tmp_path / "store" / "artifacts" / "executions").glob("*/model"))
    edges = json.loads((model / "model.json").read_text())["baseline"]["numeric"]
    assert any(e != round(e) and abs(e - round(e)) < 1e-9
               for name in ("Pages", "Visits") for e in edges[name]["edges"]), edges
    for source, rows, seed in ((train, None, None), (tmp_path / "later.csv", 2000, 1)):
        if rows is not None:
            pacsv.write_csv(_sessions(rows, seed), source)
        result = cli("monitor", ENDPOINT, "-c", config, "--data", source, "--json",
                     "--fail-on-drift")
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads(result.stdout)
        limit = 1e-3 if rows is None else 0.05  # the training rows; a later sample
        assert {f["feature"]: f["psi"] for f in report["features"]
                if f["psi"] > limit} == {}
