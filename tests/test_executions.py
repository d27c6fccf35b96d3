"""Pipeline definitions and executions through the real `custseg` command line and the
Python API: deploy (upsert), run (deploying first when missing or stale), per-step records,
Train caching and why a step re-ran, executions list/describe/graph, the DeployEndpoint
records, `deploy.require_approval`, `load_model("GROUP/VERSION")`, and S3 artifacts."""

from __future__ import annotations

import getpass
import hashlib
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.csv as pacsv
import pytest

import custseg
from custseg.core.sample import generate_customers
from custseg.pipeline.graph import STATUS_COLOURS

if TYPE_CHECKING:
    from tests.conftest import StoreProject

GROUP = "clustering-model-model-group"
STEPS = ["Train", "CreateModel", "RegisterModel", "DeployEndpoint"]
EDGES = {("Train", "CreateModel"), ("CreateModel", "RegisterModel"),
         ("CreateModel", "DeployEndpoint")}
CONFIG_NAME = r"clustering-model-endpoint-config-{env}-\d{{8}}-\d{{6}}(-\d+)?"
SVG = "{http://www.w3.org/2000/svg}"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rewrite_data(path: Path, rows: int, seed: int) -> None:
    table, _ = generate_customers(rows, 3, seed)
    pacsv.write_csv(table, path)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


# -- a history of runs, shared by the tests that read it -------------------------------------

@dataclass
class History:
    project: StoreProject
    runs: dict[str, dict[str, Any]]  # label -> `custseg run --json`
    records: dict[str, dict[str, Any]]  # label -> its record in `executions list --json`
    listed: list[dict[str, Any]]  # `executions list --json`, as printed
    deploy_stdout: str
    failed: subprocess.CompletedProcess[str]
    data_sha: dict[str, str]  # "old" / "new" data content


LABELS = ["first", "cached", "k4", "no-cache", "new-data", "new-data-cached", "redeployed"]


@pytest.fixture(scope="module")
def history(store_project: Callable[..., StoreProject]) -> History:
    """One project, one store, these runs in order:

    first            a fresh store: deploys v1 first, trains
    (deploy)         unchanged: no new version
    cached           Train from cache (first)
    k4               -p n_clusters=4: trains (parameters changed), no redeploy
    no-cache         --no-cache: trains
    new-data         the CSV rewritten: trains (data changed)
    new-data-cached  Train from cache (new-data)
    redeployed       environment: prod in the config: deploys v2, Train still cached
    failed           -p data_file=nope.csv: Train fails
    """
    project = store_project("history")
    old_sha = _sha(project.data)
    runs = {"first": project.json("run")}
    deploy_stdout = project.ok("deploy").stdout
    runs["cached"] = project.json("run")
    runs["k4"] = project.json("run", "-p", "n_clusters=4")
    runs["no-cache"] = project.json("run", "--no-cache")
    _rewrite_data(project.data, 600, seed=1)
    runs["new-data"] = project.json("run")
    runs["new-data-cached"] = project.json("run")
    project.update_config(environment="prod")
    runs["redeployed"] = project.json("run")
    failed = project.cli("run", "-p", "data_file=nope.csv")
    listed = project.json("executions", "list")
    by_id = {r["id"]: r for r in listed}
    records = {label: by_id[run["id"]] for label, run in runs.items()}
    assert len(listed) == len(LABELS) + 1
    records["failed"] = next(r for r in listed if r["id"] not in {x["id"] for x in runs.values()})
    return History(project, runs, records, listed, deploy_stdout, failed,
                   {"old": old_sha, "new": _sha(project.data)})


def _step(record: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in record["steps"] if s["name"] == name)


# -- deploy ----------------------------------------------------------------------------------

def test_run_deploys_a_missing_or_stale_definition_first_and_says_so(history: History) -> None:
    runs = history.runs
    assert runs["first"]["notes"] == ["deployed pipeline clustering-model v1 (it was missing)"]
    assert history.deploy_stdout.strip() == "Pipeline clustering-model v1 is up to date (unchanged)"
    assert runs["redeployed"]["notes"] == [
        'deployed pipeline clustering-model v2 (changed: settings.environment "dev" -> "prod")']
    assert all(runs[label]["notes"] == [] for label in LABELS[1:-1])
    assert {label: r["pipeline_version"] for label, r in history.records.items()} == {
        **dict.fromkeys(LABELS, 1), "redeployed": 2, "failed": 2}
    # an override (-p) is for one run: it is recorded, but the definition stays
    assert history.records["k4"]["parameters"]["n_clusters"] == 4
    rows = history.project.query("SELECT version, definition FROM pipelines WHERE name = ? "
                                 "ORDER BY version", ("clustering-model",))
    assert [r["version"] for r in rows] == [1, 2]
    first, second = (json.loads(r["definition"]) for r in rows)
    assert first["steps"] == [
        {"name": "Train", "depends_on": []},
        {"name": "CreateModel", "depends_on": ["Train"]},
        {"name": "RegisterModel", "depends_on": ["CreateModel"]},
        {"name": "DeployEndpoint", "depends_on": ["CreateModel"]}]
    assert first["parameters"] == {
        "n_clusters": 3, "n_components": 1, "data_file": "customers.csv",
        "training_instance_type": "ml.m5.large", "inference_instance_type": "ml.t2.medium"}
    assert first["settings"]["environment"] == "dev"
    assert second["settings"]["environment"] == "prod"
    assert {k: v for k, v in second.items() if k != "settings"} == {
        k: v for k, v in first.items() if k != "settings"}


def test_deploy_validates_and_upserts_the_definition(
        store_project: Callable[..., StoreProject]) -> None:
    project = store_project()
    assert project.ok("deploy").stdout.strip() == "Pipeline clustering-model v1 created"
    assert project.json("deploy") == {"pipeline": "clustering-model", "version": 1,
                                      "created": False, "changes": []}
    project.update_config(n_clusters=4, tuning={"metric": "davies_bouldin"})
    assert project.ok("deploy").stdout.strip() == (
        "Pipeline clustering-model v2 created; changed: parameters.n_clusters 3 -> 4, "
        'settings.tuning.metric "silhouette" -> "davies_bouldin"')
    good = project.config
    project.update_config(n_cluster=5)  # invalid: refused before anything is stored
    bad = project.cli("deploy")
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown key 'n_cluster'" in lines[0]
    project.write_config(good)
    run = project.json("run")
    assert run["notes"] == [] and run["pipeline_version"] == 2
    assert run["metrics"]["k"] == 4
    assert [r["version"] for r in project.query("SELECT version FROM pipelines")] == [1, 2]
    assert len(project.query("SELECT id FROM executions")) == 1  # deploy runs nothing


# -- executions: records, caching, reasons ---------------------------------------------------

def test_executions_list_records_every_step_with_times_and_outputs(history: History) -> None:
    listed = history.listed
    starts = [_time(r["started_at"]) for r in listed]
    assert starts == sorted(starts, reverse=True)  # newest first
    assert listed[0]["id"] == history.records["failed"]["id"]
    for label in LABELS:
        record, run = history.records[label], history.runs[label]
        assert record["status"] == run["status"] == "Succeeded"
        assert record["error"] is None
        assert record["user"] == getpass.getuser() and isinstance(record["pid"], int)
        assert _time(record["started_at"]) <= _time(record["ended_at"])
        assert [s["name"] for s in record["steps"]] == STEPS
        assert [s["position"] for s in record["steps"]] == [0, 1, 2, 3]
        for step in record["steps"]:
            assert step["status"] in ("Succeeded", "Cached")
            assert step["error"] is None
            assert _time(record["started_at"]) <= _time(step["started_at"])
            assert _time(step["started_at"]) <= _time(step["ended_at"])
            assert _time(step["ended_at"]) <= _time(record["ended_at"])
            assert step["seconds"] >= 0
            assert step["outputs"] == run["steps"][step["name"]]["outputs"]
        train = _step(record, "Train")["outputs"]
        assert set(train) >= {"model_uri", "metrics", "inputs", "schema", "data", "engine"}
        assert set(train["inputs"]) == {"data_sha256", "parameters", "code"}
        assert train["model_uri"] == run["model_uri"] and train["metrics"] == run["metrics"]
        created = _step(record, "CreateModel")["outputs"]
        assert created["model_uri"] == run["model_uri"]
        assert created["model_name"] == f"clustering-model-model-{record['id']}"
        assert created["input_schema"]["numeric"] == ["Age", "Income", "Purchases"]
        registered = _step(record, "RegisterModel")["outputs"]
        assert registered == {"group": GROUP, "version": run["model_version"],
                              "approval_status": "PendingManualApproval",
                              "ref": f"{GROUP}/{run['model_version']}"}
    assert [history.runs[label]["model_version"] for label in LABELS] == list(
        range(1, len(LABELS) + 1))


TRAIN = [  # label, status, cached from (label), reason (a template)
    ("first", "Succeeded", None, "no earlier successful run"),
    ("cached", "Cached", "first", "inputs match execution {first}"),
    ("k4", "Succeeded", None, "parameters changed: n_clusters 3 -> 4"),
    ("no-cache", "Succeeded", None, "--no-cache"),
    ("new-data", "Succeeded", None, "data content changed (sha256 {old} -> {new})"),
    ("new-data-cached", "Cached", "new-data", "inputs match execution {new-data}"),
    ("redeployed", "Cached", "new-data", "inputs match execution {new-data}"),
]


@pytest.mark.parametrize(("label", "status", "source", "reason"), TRAIN,
                         ids=[t[0] for t in TRAIN])
def test_train_is_served_from_cache_or_says_why_it_ran(
        history: History, label: str, status: str, source: str | None, reason: str) -> None:
    ids = {k: r["id"] for k, r in history.records.items()}
    expected_reason = reason.replace("{old}", history.data_sha["old"][:12]).replace(
        "{new}", history.data_sha["new"][:12])
    for name, value in ids.items():
        expected_reason = expected_reason.replace("{" + name + "}", value)
    train = _step(history.records[label], "Train")
    assert train["status"] == status
    assert train["cached_from"] == (ids[source] if source else None)
    assert train["reason"] == expected_reason
    in_run = history.runs[label]["steps"]["Train"]
    assert (in_run["status"], in_run["cached_from"], in_run["reason"]) == (
        status, train["cached_from"], expected_reason)
    data = "old" if label in ("first", "cached", "k4", "no-cache") else "new"
    assert train["outputs"]["inputs"]["data_sha256"] == history.data_sha[data]
    if source:  # the very outputs of the run it came from
        assert train["outputs"] == _step(history.records[source], "Train")["outputs"]


def test_a_cached_train_reuses_its_artifact_and_still_registers_a_version(
        history: History) -> None:
    runs = history.runs
    assert runs["cached"]["model_uri"] == runs["first"]["model_uri"]
    assert runs["redeployed"]["model_uri"] == runs["new-data"]["model_uri"]
    lineage = {r["version"]: json.loads(r["lineage"]) for r in history.project.query(
        "SELECT version, lineage FROM model_packages WHERE group_name = ?", (GROUP,))}
    assert sorted(lineage) == list(range(1, len(LABELS) + 1))  # none from the failed run
    for label in LABELS:
        run, record = runs[label], history.records[label]
        source = _step(record, "Train")["cached_from"] or record["id"]
        assert lineage[run["model_version"]]["execution_id"] == record["id"]
        assert lineage[run["model_version"]]["trained_by_execution"] == source
    trained = {history.records[label]["id"] for label in ("first", "k4", "no-cache", "new-data")}
    folders = {p.parent.name for p in
               (history.project.store / "artifacts" / "executions").glob("*/model")}
    assert folders == trained  # one artifact per real training, none for cache hits


def test_the_train_cache_is_kept_to_its_model_group(store_project: Any) -> None:
    """Segment ids are matched to the group's latest version: a retrain in one group on
    data another group trained on trains (its ids matched to its own versions), rather
    than taking the other group's model, ids and all."""
    project = store_project("two-groups", rows=600, seed=3, n_clusters=3)
    first = project.json("run", "-p", "project_name=shop-a")
    again = project.json("run", "-p", "project_name=shop-a")
    other = project.json("run", "-p", "project_name=shop-b")
    assert again["steps"]["Train"]["status"] == "Cached"
    assert again["steps"]["Train"]["cached_from"] == first["id"]
    train = other["steps"]["Train"]
    assert (train["status"], train["cached_from"], train["reason"]) == (
        "Succeeded", None, "no earlier successful run")
    assert other["model_uri"] != first["model_uri"]


DESCRIBE = [
    ("cached", ["Execution {cached}: Succeeded", "Pipeline: clustering-model v1",
                "- Train: Cached (", "    cached from execution {first}",
                "    why: inputs match execution {first}"]),
    ("k4", ["- Train: Succeeded (", "    why: parameters changed: n_clusters 3 -> 4",
            f"    ref: {GROUP}/3"]),
    ("new-data", ["    why: data content changed (sha256 "]),
    ("failed", ["Execution {failed}: Failed", "Pipeline: clustering-model v2",
                "Error: data not found: ", "- Train: Failed (", "    error: data not found: ",
                "- CreateModel: Skipped (-)", "- DeployEndpoint: Skipped (-)"]),
]


@pytest.mark.parametrize(("label", "expected"), DESCRIBE, ids=[d[0] for d in DESCRIBE])
def test_executions_describe_says_what_happened_and_why(
        history: History, label: str, expected: list[str]) -> None:
    record = history.records[label]
    out = history.project.ok("executions", "describe", record["id"]).stdout
    lines = out.splitlines()
    for line in expected:
        for name, other in history.records.items():
            line = line.replace("{" + name + "}", other["id"])
        assert any(x.startswith(line) for x in lines), f"{line!r} not in:\n{out}"
    assert f"By: {getpass.getuser()} on " in out


def test_describe_takes_a_unique_id_prefix_and_refuses_an_unknown_id(history: History) -> None:
    project, record = history.project, history.records["k4"]
    assert project.json("executions", "describe", record["id"][:-1]) == record
    result = project.cli("executions", "describe", "no-such-execution")
    assert result.returncode == 6
    assert result.stderr.strip().splitlines() == [
        f"error: no execution 'no-such-execution' in {project.db} (see `custseg executions "
        "list`)"]


def test_executions_list_prints_a_table_of_every_run(history: History) -> None:
    result = history.project.cli("executions", "list", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    for record in history.listed:
        row = next(line for line in result.stdout.splitlines() if record["id"] in line)
        assert record["status"] in row and _step(record, "Train")["status"] in row


# -- DeployEndpoint --------------------------------------------------------------------------

def test_deploy_endpoint_creates_then_updates_the_stable_endpoint(history: History) -> None:
    dev = LABELS[:-1]
    outputs = [_step(history.records[label], "DeployEndpoint")["outputs"] for label in dev]
    configs = [o["endpoint_config_name"] for o in outputs]
    assert all(re.fullmatch(CONFIG_NAME.format(env="dev"), c) for c in configs), configs
    assert len(set(configs)) == len(configs)
    assert {o["endpoint_name"] for o in outputs} == {"clustering-model-endpoint-dev"}
    assert [o["action"] for o in outputs] == ["created"] + ["updated"] * (len(dev) - 1)
    assert [o["previous_config_name"] for o in outputs] == [None, *configs[:-1]]
    prod = _step(history.records["redeployed"], "DeployEndpoint")["outputs"]
    assert prod["endpoint_name"] == "clustering-model-endpoint-prod"
    assert prod["action"] == "created" and prod["previous_config_name"] is None
    assert re.fullmatch(CONFIG_NAME.format(env="prod"), prod["endpoint_config_name"])
    assert history.runs["redeployed"]["endpoint"] == "clustering-model-endpoint-prod"
    endpoints = {r["name"]: r for r in history.project.query("SELECT * FROM endpoints")}
    assert set(endpoints) == {"clustering-model-endpoint-dev", "clustering-model-endpoint-prod"}
    assert endpoints["clustering-model-endpoint-dev"]["config_name"] == configs[-1]
    assert endpoints["clustering-model-endpoint-dev"]["previous_config_name"] == configs[-2]
    kept = {r["name"]: r for r in history.project.query("SELECT * FROM endpoint_configs")}
    assert set(kept) == {*configs, prod["endpoint_config_name"]}  # every config is kept
    for label in LABELS:
        run = history.runs[label]
        config = kept[_step(history.records[label], "DeployEndpoint")["outputs"][
            "endpoint_config_name"]]
        assert (config["group_name"], config["version"], config["artifact_uri"],
                config["execution_id"]) == (GROUP, run["model_version"], run["model_uri"],
                                            run["id"])


def test_require_approval_skips_deploy_until_the_version_is_approved(
        store_project: Callable[..., StoreProject]) -> None:
    project = store_project(deploy={"require_approval": True})
    endpoint = "clustering-model-endpoint-dev"

    def current() -> tuple[str, int] | None:
        rows = project.query("SELECT c.name, c.version FROM endpoints e JOIN endpoint_configs c"
                             " ON c.name = e.config_name WHERE e.name = ?", (endpoint,))
        return (rows[0]["name"], rows[0]["version"]) if rows else None

    first = project.ok("run").stdout
    assert re.search(r"^DeployEndpoint: Skipped \(", first, re.MULTILINE), first
    assert (f"Endpoint: not deployed (deploy.require_approval: {GROUP}/1 is "
            "PendingManualApproval; `custseg models approve 1` deploys it)") in first
    [record] = project.json("executions", "list")
    assert record["status"] == "Succeeded"
    deploy_step = _step(record, "DeployEndpoint")
    assert deploy_step["status"] == "Skipped" and deploy_step["outputs"] == {}
    assert deploy_step["reason"].startswith("deploy.require_approval: ")
    assert current() is None and project.query("SELECT * FROM endpoint_configs") == []

    approved = project.ok("models", "approve", "1", "--comment", "looks right").stdout
    assert re.search(rf"^Endpoint: {endpoint} -> ({CONFIG_NAME.format(env='dev')}) \(created",
                     approved, re.MULTILINE), approved
    config_1 = current()
    assert config_1 is not None and config_1[1] == 1

    second = project.json("run")
    assert second["steps"]["DeployEndpoint"]["status"] == "Skipped"
    assert second["endpoint"] is None and second["model_version"] == 2
    assert current() == config_1  # still serving the approved version

    project.ok("models", "reject", "2", "--comment", "not yet")
    assert current() == config_1
    approved = project.ok("models", "approve", "2").stdout
    assert f"Endpoint: {endpoint} -> " in approved and "(updated" in approved
    config_2 = current()
    assert config_2 is not None and config_2[1] == 2
    [row] = project.query("SELECT previous_config_name FROM endpoints")
    assert row["previous_config_name"] == config_1[0]
    assert len(project.query("SELECT * FROM endpoint_configs")) == 2


# -- the execution graph ---------------------------------------------------------------------

GRAPHS = {"first": dict.fromkeys(STEPS, "Succeeded"),
          "cached": {**dict.fromkeys(STEPS, "Succeeded"), "Train": "Cached"},
          "failed": {**dict.fromkeys(STEPS, "Skipped"), "Train": "Failed"}}
DURATION = re.compile(r"^(\w+) · (\d+ ms|\d+\.\d\d s|\d+\.\d min|-)$")


@pytest.fixture(scope="module")
def graphs(history: History) -> dict[str, ET.Element]:
    out = {}
    for label in GRAPHS:
        path = history.project.root / f"graph-{label}.svg"
        record = history.records[label]
        result = history.project.ok("executions", "graph", record["id"], "-o", path)
        assert result.stdout.strip() == f"Wrote {path}"
        out[label] = ET.parse(path).getroot()  # well-formed XML, or this raises
    return out


def _boxes(svg: ET.Element) -> dict[str, dict[str, Any]]:
    boxes = {}
    for g in svg.iter(f"{SVG}g"):
        if "data-step" not in g.attrib:
            continue
        rect = g.find(f"{SVG}rect")
        assert rect is not None
        texts = [t.text for t in g.findall(f"{SVG}text")]
        title = g.find(f"{SVG}title")
        boxes[g.attrib["data-step"]] = {
            "status": g.attrib["data-status"], "fill": rect.attrib["fill"],
            "stroke": rect.attrib["stroke"], "texts": texts,
            "title": title.text if title is not None else None,
            **{k: float(rect.attrib[k]) for k in ("x", "y", "width", "height")}}
    return boxes


def _edges(svg: ET.Element, boxes: dict[str, dict[str, Any]]) -> set[tuple[str, str]]:
    """The arrows of the picture, as (from, to) steps: each path starts at the middle of a
    box's right side and ends just left of the middle of another box's left side."""
    found = set()
    for path in svg.iter(f"{SVG}path"):
        if "marker-end" not in path.attrib:
            continue
        numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", path.attrib["d"])]
        (x1, y1), (x2, y2) = numbers[:2], numbers[-2:]
        source = [n for n, b in boxes.items()
                  if abs(b["x"] + b["width"] - x1) < 1 and abs(b["y"] + b["height"] / 2 - y1) < 1]
        target = [n for n, b in boxes.items()
                  if 0 <= b["x"] - x2 < 12 and abs(b["y"] + b["height"] / 2 - y2) < 1]
        assert len(source) == len(target) == 1, path.attrib["d"]
        found.add((source[0], target[0]))
    return found


@pytest.mark.parametrize("label", list(GRAPHS))
def test_the_graph_is_an_svg_of_the_dag_coloured_by_status_with_durations(
        history: History, graphs: dict[str, ET.Element], label: str) -> None:
    svg, record = graphs[label], history.records[label]
    assert svg.tag == f"{SVG}svg" and float(svg.attrib["width"]) > 0
    text = " ".join(t.text or "" for t in svg.iter(f"{SVG}text"))
    assert record["id"] in text and "clustering-model" in text
    boxes = _boxes(svg)
    assert {n: b["status"] for n, b in boxes.items()} == GRAPHS[label]
    assert _edges(svg, boxes) == EDGES
    for name, box in boxes.items():
        step = _step(record, name)
        assert (box["stroke"], box["fill"]) == STATUS_COLOURS[box["status"]]
        assert box["texts"][0] == name
        match = DURATION.match(box["texts"][1] or "")
        assert match and match.group(1) == box["status"], box["texts"]
        assert (match.group(2) == "-") == (step["seconds"] is None)
        if match.group(2).endswith(" s"):
            assert float(match.group(2)[:-2]) == pytest.approx(step["seconds"], abs=0.006)
    if label == "failed":
        assert "data not found" in boxes["Train"]["title"]


def test_the_graph_colours_tell_the_statuses_apart(graphs: dict[str, ET.Element]) -> None:
    seen: dict[str, set[tuple[str, str]]] = {}
    for svg in graphs.values():
        for box in _boxes(svg).values():
            seen.setdefault(box["status"], set()).add((box["fill"], box["stroke"]))
    assert set(seen) == {"Succeeded", "Cached", "Failed", "Skipped"}
    assert all(len(colours) == 1 for colours in seen.values())  # one look per status
    fills = [next(iter(seen[s]))[0] for s in ("Succeeded", "Cached", "Failed")]
    strokes = [next(iter(seen[s]))[1] for s in ("Succeeded", "Cached", "Failed")]
    assert len(set(fills)) == 3 and len(set(strokes)) == 3


def test_graph_writes_next_to_the_caller_by_default_and_refuses_an_unknown_id(
        history: History) -> None:
    project, record = history.project, history.records["first"]
    result = project.ok("executions", "graph", record["id"])
    path = project.root / f"execution-{record['id']}.svg"
    assert result.stdout.strip() == f"Wrote {path.name}" and path.is_file()
    assert ET.parse(path).getroot().tag == f"{SVG}svg"
    missing = project.cli("executions", "graph", "nope", "-o", "nope.svg")
    assert missing.returncode == 6 and "no execution 'nope'" in missing.stderr
    assert not (project.root / "nope.svg").exists()


# -- the Python API --------------------------------------------------------------------------

def test_python_api_run_caches_and_loads_a_model_by_group_and_version(
        store_project: Callable[..., StoreProject]) -> None:
    project = store_project()
    cfg = custseg.load_config(str(project.config_path))
    first = custseg.run(cfg)
    assert first.status == "Succeeded" and first.model_version == 1
    assert [s.status for s in first.steps.values()] == ["Succeeded"] * 4
    assert first.endpoint == "clustering-model-endpoint-dev"
    assert first.metrics is not None and first.metrics["k"] == 3
    second = custseg.run(cfg)
    train = second.steps["Train"]
    assert (train.status, train.cached_from) == ("Cached", first.id)
    assert second.model_uri == first.model_uri and second.model_version == 2
    assert second.metrics == first.metrics

    by_ref = custseg.load_model(f"{GROUP}/2", store=str(project.store))
    direct = custseg.load_model(str(first.model_uri))
    assert by_ref.uri == first.model_uri
    table = pacsv.read_csv(project.data)
    np.testing.assert_array_equal(by_ref.predict(table), direct.predict(table))
    with pytest.raises(custseg.RegistryError, match=r"has no version 7 \(versions: 1, 2\)"):
        custseg.load_model(f"{GROUP}/7", store=str(project.store))
    with pytest.raises(custseg.StoreError, match="no store at"):
        custseg.load_model(f"{GROUP}/1", store=str(project.root / "elsewhere"))

    # the CLI sees what the API recorded; and in another process, with no store given,
    # load_model uses the store that ./pipeline_config.yaml names
    assert [r["id"] for r in project.json("executions", "list")] == [second.id, first.id]
    code = f"import custseg; m = custseg.load_model('{GROUP}/1'); print(m.uri, m.k)"
    out = subprocess.run([sys.executable, "-c", code], cwd=project.root, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert out.split() == [str(first.model_uri), "3"]


# -- artifacts on S3 (a real moto server) ----------------------------------------------------

def test_artifacts_on_s3_are_registered_cached_and_loaded_by_version(
        store_project: Callable[..., StoreProject], make_bucket: Callable[..., str],
        s3: Any, moto_server: str) -> None:
    bucket = make_bucket()
    project = store_project(artifacts=f"s3://{bucket}/models",
                            s3={"endpoint_url": moto_server})
    first = project.json("run")
    uri = first["model_uri"]
    assert uri == f"s3://{bucket}/models/executions/{first['id']}/model"
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="models/")["Contents"]}
    prefix = uri.removeprefix(f"s3://{bucket}/")
    assert keys == {f"{prefix}/{n}" for n in ("arrays.npz", "manifest.json", "model.json")}
    assert not (project.store / "artifacts").exists()  # nothing written locally

    second = project.json("run")  # the cached artifact is checked on S3, then reused
    assert second["steps"]["Train"]["status"] == "Cached"
    assert second["steps"]["Train"]["cached_from"] == first["id"]
    assert project.json("models", "describe", "2")["artifact_uri"] == uri

    model = custseg.load_model(f"{GROUP}/2", store=str(project.store),
                               s3_endpoint_url=moto_server)
    table = pacsv.read_csv(project.data)
    expected = custseg.load_model(uri, s3_endpoint_url=moto_server).predict(table)
    np.testing.assert_array_equal(model.predict(table), expected)
    assert sorted(np.bincount(expected)) == sorted(first["metrics"]["cluster_sizes"])
    code = f"import custseg; print(custseg.load_model('{GROUP}/1').uri)"  # endpoint: config
    out = subprocess.run([sys.executable, "-c", code], cwd=project.root, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert out.strip() == uri
