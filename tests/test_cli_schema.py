"""What custseg decided, as the real `custseg` command line shows it: `custseg schema`
(table, --json, --yaml round trip), the run summary of an `n_clusters: auto` run (schema
lines, candidates, sentence, the seed's metric lines, the feature-space line, warnings),
`run --json`, `models describe`, unknown keys under features/tuning, `value_labels`, and
the warning of a fixed k under `tuning.min_share`.

One small CSV written here (300 rows, two planted segments) holds a column of each kind
the schema rules decide on: an id, a constant, a '04-09-2012' style date, a coded
integer, a skewed money column, an integer and a 0/1 target.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import yaml

if TYPE_CHECKING:
    from tests.conftest import StoreProject

ROWS = 300
HEADER = ["CustomerID", "Country", "Dt_Customer", "Channel", "MntWines", "Age", "Response"]
# column -> (role, part of its transform, part of its reason)
EXPECTED = {
    "CustomerID": ("ignored", "-", "identifier (by name)"),
    "Country": ("ignored", "-", "constant (every row is 'PT')"),
    "Dt_Customer": ("date", "days before 2013-", "date: parsed as %d-%m-%Y"),
    "Channel": ("categorical", "one-hot (2 levels, weight 0.", "integer code with 2 values (1-2)"),
    "MntWines": ("numeric", "log1p(x / ", "float"),
    "Age": ("numeric", "standardise", "integer"),
    "Response": ("profile_only", "described only", "target-like name"),
}
CONFIG: dict[str, Any] = {
    "data_uri": "data/",
    "store": "store",
    "n_clusters": "auto",
    "endpoint": {"autostart": False},
    "value_labels": {"Channel": {1: "Horeca", 2: "Retail"}},
}
NUMBER = r"-?\d+\.\d{6}"
SEED_LINES = {  # the seed's three metric lines, exactly
    "silhouette": rf"^Silhouette Score: ({NUMBER}) \(exact\)$",
    "calinski_harabasz": rf"^Calinski-Harabasz Index: ({NUMBER})$",
    "davies_bouldin": rf"^Davies-Bouldin Index: ({NUMBER})$",
}


def write_shop(path: Path, seed: int = 0) -> Path:
    """Two planted segments: young Horeca (Channel 1) customers spending little on wine,
    older Retail (Channel 2) ones spending a lot; 5% cross the channel."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for i in range(ROWS):
            retail = bool(rng.random() < 0.5)
            channel = 2 if retail != bool(rng.random() < 0.05) else 1
            day = dt.date(2012, 1, 1) + dt.timedelta(days=int(rng.integers(0, 600)))
            writer.writerow([
                i + 1, "PT", day.strftime("%d-%m-%Y"), channel,
                round(float(rng.lognormal(6.0 if retail else 3.0, 0.6)), 2),
                int(rng.normal(60 if retail else 30, 4)), int(rng.random() < 0.2),
            ])
    return path


def lines(text: str) -> list[str]:
    return text.splitlines()


def index_of(out: list[str], pattern: str) -> int:
    found = [i for i, line in enumerate(out) if re.search(pattern, line)]
    assert len(found) == 1, f"{pattern!r} matched {len(found)} lines in:\n" + "\n".join(out)
    return found[0]


def model_meta(stdout: str) -> dict[str, Any]:
    folder = re.findall(r"^Model: (.+)$", stdout, flags=re.MULTILINE)
    assert len(folder) == 1, stdout
    return json.loads((Path(folder[0].strip()) / "model.json").read_text())  # type: ignore[no-any-return]


def essentials(columns: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    return [(c["name"], c["role"], c["transform"], c["reason"]) for c in columns]


# -- fixtures: one project, run once per module ------------------------------------------------


@pytest.fixture(scope="module")
def shop(store_project: Callable[..., StoreProject]) -> StoreProject:
    project = store_project("shop", data=False)
    write_shop(project.data)
    project.write_config(CONFIG)  # no features key: every role is inferred
    return project


@pytest.fixture(scope="module")
def schema_json(shop: StoreProject) -> dict[str, Any]:
    return shop.json("schema")  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def auto_run(shop: StoreProject) -> tuple[list[str], dict[str, Any]]:
    """The first `custseg run` of the project (model version 1): stdout lines, model.json."""
    result = shop.ok("run")
    return lines(result.stdout), model_meta(result.stdout)


@pytest.fixture(scope="module")
def pasted(shop: StoreProject, store_project: Callable[..., StoreProject],
           ) -> tuple[StoreProject, str]:
    """A second project whose config is the first one (without value_labels) with the
    `schema --yaml -o` block pasted in as text; returns it and the block."""
    block_file = shop.root / "features.yaml"
    result = shop.ok("schema", "--yaml", "-o", block_file)
    assert result.stdout.strip() == f"Wrote the features block to {block_file}"
    block = block_file.read_text()
    project = store_project("pasted", data=False)
    project.data.parent.mkdir(parents=True)
    shutil.copy(shop.data, project.data)
    base = {k: v for k, v in CONFIG.items() if k != "value_labels"}
    project.config_path.write_text(yaml.safe_dump(base, sort_keys=False) + block)
    return project, block


# -- custseg schema ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXPECTED)
def test_schema_json_gives_each_column_a_role_transform_and_reason(
        schema_json: dict[str, Any], name: str) -> None:
    role, transform, reason = EXPECTED[name]
    column = next(c for c in schema_json["columns"] if c["name"] == name)
    assert column["role"] == role
    assert transform in column["transform"]
    assert reason in column["reason"]
    assert column["declared"] is False


def test_schema_json_lists_every_column_in_file_order(schema_json: dict[str, Any]) -> None:
    assert [c["name"] for c in schema_json["columns"]] == HEADER
    assert schema_json["rows"] == ROWS
    date = next(c for c in schema_json["columns"] if c["name"] == "Dt_Customer")
    assert date["date_format"] == "%d-%m-%Y"


def test_schema_table_prints_what_json_gives(shop: StoreProject,
                                             schema_json: dict[str, Any]) -> None:
    result = shop.cli("schema", env={"COLUMNS": "250"})
    assert result.returncode == 0, result.stderr
    printed = [tuple(cell.strip() for cell in line.split("│")[1:-1])
               for line in lines(result.stdout) if line.startswith("│")]
    assert printed == essentials(schema_json["columns"])


def test_the_yaml_block_declares_every_column_as_inferred(
        shop: StoreProject, pasted: tuple[StoreProject, str],
        schema_json: dict[str, Any]) -> None:
    _, block = pasted
    assert shop.ok("schema", "--yaml").stdout == block  # -o writes what --yaml prints
    features = yaml.safe_load(block)["features"]
    by_role = {"numeric": "numeric", "categorical": "categorical", "dates": "date",
               "profile_only": "profile_only", "ignore": "ignored"}
    for key, role in by_role.items():
        assert features[key] == [c["name"] for c in schema_json["columns"]
                                 if c["role"] == role], key
    for column in schema_json["columns"]:  # one comment line per column, with its reason
        assert f"# {column['name']}: {column['role']} ({column['reason']};" in block


def test_the_pasted_block_gives_the_same_roles_and_trains(
        pasted: tuple[StoreProject, str], schema_json: dict[str, Any]) -> None:
    project, _ = pasted
    again = project.json("schema")
    assert [(c["name"], c["role"]) for c in again["columns"]] == \
        [(c["name"], c["role"]) for c in schema_json["columns"]]
    assert all(c["declared"] for c in again["columns"])
    # the same transforms are learned from the declared roles
    assert [c["transform"] for c in again["columns"]] == \
        [c["transform"] for c in schema_json["columns"]]
    meta = model_meta(project.ok("run").stdout)
    assert {c["name"]: c["role"] for c in meta["schema"]["columns"]} == \
        {c["name"]: c["role"] for c in schema_json["columns"]}
    # without value_labels, a coded level reads as its column and code
    assert any(re.search(r"\bChannel [12]\b", name) for name in meta["segment_names"]), \
        meta["segment_names"]
    assert not any("Retail" in name or "Horeca" in name for name in meta["segment_names"])


# -- custseg run with n_clusters: auto ----------------------------------------------------------


def test_run_summary_reads_in_order(auto_run: tuple[list[str], dict[str, Any]],
                                    schema_json: dict[str, Any]) -> None:
    out, meta = auto_run
    head = index_of(out, r"^Schema \(custseg schema --yaml")
    for offset, column in enumerate(schema_json["columns"], start=1):
        assert out[head + offset].split()[:2] == [column["name"], column["role"]]
    table = index_of(out, r"^Candidates \(\* chosen, x not eligible\):$")
    k = meta["metrics"]["k"]
    ks = [c["k"] for c in meta["candidates"]]
    assert ks == list(range(2, 11))
    rows = out[table + 2 : table + 2 + len(ks)]
    assert [int(re.match(r"^\s+(\d+)", row).group(1)) for row in rows] == ks  # type: ignore[union-attr]
    marks = [re.match(r"^\s+\d+([*x ]?)", row).group(1) for row in rows]  # type: ignore[union-attr]
    assert marks == ["*" if c["k"] == k else (" " if c["eligible"] else "x")
                     for c in meta["candidates"]]
    for row, c in zip(rows, meta["candidates"], strict=True):
        assert f"{c['min_share']:.1%}" in row and f"{c['stability']:.2f}" in row
        assert row.endswith(c["note"])
    sentence = table + 2 + len(ks)
    assert out[sentence] == meta["selection"]["sentence"]
    assert out[sentence].startswith(f"k={k} ")
    positions = [index_of(out, pattern) for pattern in SEED_LINES.values()]
    space = index_of(out, r"^In the feature space: ")
    warnings = [i for i, line in enumerate(out) if line.startswith("warning: ")]
    assert sentence < positions[0] < positions[1] < positions[2] < space < min(warnings)
    assert max(warnings) < index_of(out, rf"^Segments \(k={k}, chosen by silhouette\):$")


def test_run_prints_the_seed_metric_lines_exactly(
        auto_run: tuple[list[str], dict[str, Any]]) -> None:
    out, meta = auto_run
    metrics = meta["metrics"]
    for key, pattern in SEED_LINES.items():
        value = float(re.match(pattern, out[index_of(out, pattern)]).group(1))  # type: ignore[union-attr]
        recorded = metrics[key]["value"] if key == "silhouette" else metrics[key]
        assert value == pytest.approx(recorded, abs=5e-7), key
    chosen = next(c for c in meta["candidates"] if c["k"] == metrics["k"])
    assert metrics["silhouette"]["value"] == chosen["silhouette"]


def test_run_prints_the_feature_space_metrics(
        auto_run: tuple[list[str], dict[str, Any]]) -> None:
    out, meta = auto_run
    fs = meta["metrics"]["feature_space"]
    line = out[index_of(out, r"^In the feature space: ")]
    assert line == (
        f"In the feature space: silhouette {fs['silhouette']['value']:.6f} (exact), "
        f"Calinski-Harabasz {fs['calinski_harabasz']:.6f}, "
        f"Davies-Bouldin {fs['davies_bouldin']:.6f} (above: {meta['metrics']['space']})")


@pytest.mark.parametrize("pattern", [
    r"^warning: target-like column Response kept out of distances",
    r"^warning: skewed column log-transformed: MntWines \(features\.transforms",
    r"^warning: ignored: Country \(constant",
])
def test_run_warns(auto_run: tuple[list[str], dict[str, Any]], pattern: str) -> None:
    out, _ = auto_run
    index_of(out, pattern)


def test_run_warnings_are_stored_with_the_model(
        auto_run: tuple[list[str], dict[str, Any]]) -> None:
    out, meta = auto_run
    assert [line for line in out if line.startswith("warning: ")] == \
        [f"warning: {w}" for w in meta["warnings"]]


def test_run_json_carries_warnings_and_feature_space_metrics(
        shop: StoreProject, auto_run: tuple[list[str], dict[str, Any]]) -> None:
    _, meta = auto_run
    out = shop.json("run")  # the same inputs: Train comes from the cache
    assert out["status"] == "Succeeded"
    assert out["warnings"] == meta["warnings"]
    assert out["metrics"]["feature_space"] == meta["metrics"]["feature_space"]
    assert out["steps"]["Train"]["outputs"]["warnings"] == meta["warnings"]


# -- custseg models describe ------------------------------------------------------------------


def test_models_describe_json_carries_schema_and_warnings(
        shop: StoreProject, auto_run: tuple[list[str], dict[str, Any]],
        schema_json: dict[str, Any]) -> None:
    _, meta = auto_run
    described = shop.json("models", "describe", "1")
    assert essentials(described["schema"]["columns"]) == essentials(schema_json["columns"])
    assert described["warnings"] == meta["warnings"]


def test_models_describe_prints_the_warnings(
        shop: StoreProject, auto_run: tuple[list[str], dict[str, Any]]) -> None:
    _, meta = auto_run
    out = lines(shop.ok("models", "describe", "1").stdout)
    assert [line for line in out if line.startswith("warning: ")] == \
        [f"warning: {w}" for w in meta["warnings"]]


# -- value_labels ------------------------------------------------------------------------------


def test_value_labels_name_the_coded_levels(shop: StoreProject,
                                            auto_run: tuple[list[str], dict[str, Any]]) -> None:
    out, meta = auto_run
    names = meta["segment_names"]
    assert any("Channel: Retail" in n for n in names) and \
        any("Channel: Horeca" in n for n in names), names
    assert not any(re.search(r"\bChannel:? [12]\b", n) for n in names), names
    for name in names:  # the summary prints them
        index_of(out, rf"^  \d: {re.escape(name)} - ")
    report = Path(out[index_of(out, r"^Report: ")].removeprefix("Report: ")).read_text()
    assert "Channel: Retail" in report and "Channel: Horeca" in report
    assert not re.search(r"Channel:? [12]\b", report)


# -- config errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(("section", "key", "hint"), [
    ("tuning", "min_shar", "min_share"),
    ("tuning", "tolerence", "tolerance"),
    ("features", "numerc", "numeric"),
])
def test_an_unknown_key_is_one_line_with_a_hint(
        store_project: Callable[..., StoreProject], section: str, key: str,
        hint: str) -> None:
    project = store_project("typo", data=False)
    write_shop(project.data)
    project.write_config(CONFIG | {section: {key: 0.1}})
    result = project.cli("run")
    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"unknown key '{section}.{key}'; did you mean '{hint}'?" in result.stderr
    assert not project.store.exists()  # refused before any work


# -- a fixed k under tuning.min_share ---------------------------------------------------------

MIN_SHARE = 0.17  # six segments cannot all hold 1/6 = 16.7% or more: one at least is under


@pytest.fixture(scope="module")
def fixed_run(store_project: Callable[..., StoreProject]) -> tuple[list[str], dict[str, Any]]:
    """A run with n_clusters: 6 (no stability threshold, so only min_share can object)."""
    project = store_project("fixed", data=False)
    write_shop(project.data)
    project.write_config(CONFIG | {"n_clusters": 6,
                                   "tuning": {"min_share": MIN_SHARE, "stability": 0.0}})
    result = project.ok("run")
    return lines(result.stdout), model_meta(result.stdout)


def test_a_fixed_k_under_min_share_warns(fixed_run: tuple[list[str], dict[str, Any]]) -> None:
    out, meta = fixed_run
    share = min(meta["metrics"]["cluster_sizes"]) / ROWS
    assert share < MIN_SHARE
    warning = f"k=6: smallest segment {share:.1%} < 17% (tuning.min_share, tuning.stability)"
    assert f"warning: {warning}" in out
    assert warning in meta["warnings"]
    assert meta["candidates"][0]["eligible"] is False
    assert not any(line.startswith("Candidates") for line in out)  # a fixed k has no table
    assert "Segments (k=6, fixed):" in out


def test_a_fixed_k_warning_names_the_segments_under_min_share(
        fixed_run: tuple[list[str], dict[str, Any]]) -> None:
    _, meta = fixed_run
    sizes = meta["metrics"]["cluster_sizes"]
    under = {i for i, size in enumerate(sizes) if size / ROWS < MIN_SHARE}
    assert under
    named = {int(i) for w in meta["warnings"]
             for m in re.finditer(r"\bsegments? (\d+(?:, \d+)*)\b(?!\.\d|%)", w)
             for i in m.group(1).split(", ")}
    assert named == under, meta["warnings"]
