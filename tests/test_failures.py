"""Failure semantics with real processes: a failing step, a run killed in the middle of
Train, runs at the same time on one store, and corrupted or edited model artifacts.

A failed or killed run must leave a true record (Failed, with its error), no registered
version, no half-written artifact and the endpoint as it was."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.csv as pacsv
import pytest

from custseg.core.sample import generate_customers
from custseg.store import registry
from custseg.store.database import Store

if TYPE_CHECKING:
    from tests.conftest import StoreProject

GROUP = "clustering-model-model-group"
STEPS = ["Train", "CreateModel", "RegisterModel", "DeployEndpoint"]
HEADER = "CustomerID,Age,Income,Purchases,Gender\n"


def _csv_with_bad_income(row: int) -> str:
    lines = [f"{i + 1},{20 + i % 50},{'abc' if i == row else 20_000 + 97 * i},{i % 31},"
             f"{('Female', 'Male')[i % 2]}\n" for i in range(100)]
    return HEADER + "".join(lines)


def _manifests(folder: Path) -> list[Path]:
    return sorted(folder.rglob("manifest.json")) if folder.exists() else []


def _endpoint_state(project: StoreProject) -> tuple[list[dict[str, Any]], list[str]]:
    endpoints = project.query("SELECT name, config_name, previous_config_name FROM endpoints")
    configs = [r["name"] for r in project.query("SELECT name FROM endpoint_configs")]
    return endpoints, configs


def _only_new_execution(project: StoreProject, known: set[str]) -> dict[str, Any]:
    [record] = [r for r in project.json("executions", "list") if r["id"] not in known]
    return record


# -- a failing step --------------------------------------------------------------------------

@dataclass(frozen=True)
class Failing:
    code: int
    expected: str  # in the error line, the execution's error and the Train step's error
    args: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    s3: bool = False


FAILING = {
    "data-file-missing": Failing(3, "data not found", args=("-p", "data_file=nope.csv")),
    "bad-value": Failing(3, "'Income'", args=("-p", "data_file=bad.csv"),
                         files={"data/bad.csv": _csv_with_bad_income(41)}),
    "cannot-train": Failing(4, "n_components=7", args=("-p", "n_components=7")),
    "artifact-store-missing": Failing(5, "custseg-no-such-bucket", s3=True, args=("--no-cache",),
                                      config={"artifacts": "s3://custseg-no-such-bucket/m"}),
}


@pytest.mark.parametrize("case_id", list(FAILING))
def test_a_failing_step_fails_the_execution_and_registers_nothing(
        store_project: Callable[..., StoreProject], request: pytest.FixtureRequest,
        case_id: str) -> None:
    case = FAILING[case_id]
    project = store_project()
    good = project.json("run")  # a version and a live endpoint config before the failure
    before = _endpoint_state(project)
    for name, text in case.files.items():
        (project.root / name).write_text(text)
    if case.s3:
        moto = request.getfixturevalue("moto_server")
        project.update_config(**case.config, s3={"endpoint_url": moto})
    result = project.cli("run", *case.args)
    assert result.returncode == case.code, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and case.expected in line
    assert "Model version" not in result.stdout

    record = _only_new_execution(project, {good["id"]})
    assert record["status"] == "Failed" and record["ended_at"] is not None
    assert record["error"] == line.removeprefix("error: ")
    steps = {s["name"]: s for s in record["steps"]}
    assert steps["Train"]["status"] == "Failed"
    assert steps["Train"]["error"] == record["error"]
    assert steps["Train"]["started_at"] is not None and steps["Train"]["ended_at"] is not None
    for name in STEPS[1:]:
        assert steps[name]["status"] == "Skipped" and steps[name]["started_at"] is None
        assert steps[name]["outputs"] == {}
    assert [m["version"] for m in project.json("models", "list")] == [1]  # nothing new
    assert _endpoint_state(project) == before  # the endpoint stays as it was
    assert _manifests(project.store) == [Path(good["model_uri"]) / "manifest.json"]


# -- a run killed in the middle of Train -----------------------------------------------------

@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1M customers: with a k sweep 2..12 and n_init 30, Train takes a few seconds."""
    path = tmp_path_factory.mktemp("big") / "customers.csv"
    table, _ = generate_customers(1_000_000, 3, 0)
    pacsv.write_csv(table, path)
    return path


def _slow_project(store_project: Callable[..., StoreProject], big_csv: Path) -> StoreProject:
    return store_project(data_uri=str(big_csv), n_clusters={"min": 2, "max": 12},
                         tuning={"n_init": 30})


def _wait_until_training(project: StoreProject, proc: subprocess.Popen[str]) -> str:
    """Poll the store's SQLite file until the run's Train step is Executing."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"custseg run ended before Train ran: {proc.communicate()}")
        if project.db.exists():
            try:
                rows = project.query(
                    "SELECT s.execution_id FROM steps s JOIN executions e ON e.id = "
                    "s.execution_id WHERE s.name = 'Train' AND s.status = 'Executing' AND "
                    "e.pid = ?", (proc.pid,))
            except sqlite3.OperationalError:  # the store is being created
                rows = []
            if rows:
                return str(rows[0]["execution_id"])
        time.sleep(0.01)
    proc.kill()
    pytest.fail("Train never started")


def _start_and_interrupt(project: StoreProject, sig: int) -> tuple[str, Any, str]:
    proc = project.popen("run")
    try:
        execution_id = _wait_until_training(project, proc)
        # the next command does not mistake a live run for an interrupted one
        Store.open(str(project.store))
        [row] = project.query("SELECT status FROM executions WHERE id = ?", (execution_id,))
        assert row["status"] == "Executing"
        time.sleep(0.3)  # well inside Train: reading, sweeping k
        assert proc.poll() is None, "Train ended before the signal; make it slower"
        os.kill(proc.pid, sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return execution_id, proc.returncode, stderr


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT],
                         ids=["SIGKILL", "SIGTERM", "SIGINT"])
def test_a_run_killed_in_train_is_failed_interrupted_and_leaves_no_version(
        store_project: Callable[..., StoreProject], big_csv: Path, sig: int) -> None:
    project = _slow_project(store_project, big_csv)
    execution_id, code, _ = _start_and_interrupt(project, sig)
    assert code != 0
    if sig != signal.SIGINT:
        assert code == -sig  # killed outright: nothing ran after the signal
    [record] = project.json("executions", "list")  # the next command notices
    assert record["id"] == execution_id
    assert record["status"] == "Failed" and "interrupted" in record["error"]
    assert record["ended_at"] is not None
    steps = {s["name"]: s for s in record["steps"]}
    assert steps["Train"]["status"] == "Failed" and steps["Train"]["error"]
    assert [steps[n]["status"] for n in STEPS[1:]] == ["Skipped"] * 3
    assert project.json("models", "list") == []
    assert project.query("SELECT * FROM endpoints") == []
    assert _manifests(project.store) == []
    assert not (project.store / "artifacts" / "executions" / execution_id / "model").exists()
    # the store is fine afterwards: the next run gets version 1 and trains afresh
    after = project.json("run", "-p", "data_uri=data/", "-p", "n_clusters=3")
    assert after["model_version"] == 1
    assert after["steps"]["Train"]["status"] == "Succeeded"
    assert after["steps"]["Train"]["reason"] == "no earlier successful run"


def test_an_interrupted_run_says_so_on_stderr(
        store_project: Callable[..., StoreProject], big_csv: Path) -> None:
    project = _slow_project(store_project, big_csv)
    _, code, stderr = _start_and_interrupt(project, signal.SIGINT)
    assert code != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "interrupted" in lines[0], repr(stderr)


# -- runs at the same time -------------------------------------------------------------------

@pytest.mark.parametrize("n", [2, 3])
def test_runs_started_together_all_succeed_with_distinct_versions(
        store_project: Callable[..., StoreProject], n: int) -> None:
    project = store_project()
    procs = [project.popen("run", "--no-cache", "--json") for _ in range(n)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        results.append((proc.returncode, out, err))
    for code, _, err in results:
        assert code == 0, err
        assert "locked" not in err and "Traceback" not in err
    runs = [json.loads(out) for _, out, _ in results]
    assert sorted(r["model_version"] for r in runs) == list(range(1, n + 1))
    assert len({r["model_uri"] for r in runs}) == n
    assert all(r["steps"]["Train"]["status"] == "Succeeded" for r in runs)
    listed = project.json("executions", "list")
    assert sorted(r["id"] for r in listed) == sorted(r["id"] for r in runs)
    assert all(r["status"] == "Succeeded" for r in listed)
    versions = project.json("models", "list")
    assert [v["version"] for v in versions] == list(range(1, n + 1))
    assert [v["lineage"]["previous_version"] for v in versions] == [None, *range(1, n)]
    configs = {r["steps"]["DeployEndpoint"]["outputs"]["endpoint_config_name"] for r in runs}
    assert {r["name"] for r in project.query("SELECT name FROM endpoint_configs")} == configs
    [endpoint] = project.query("SELECT config_name, previous_config_name FROM endpoints")
    assert endpoint["config_name"] in configs and endpoint["previous_config_name"] in configs
    actions = sorted(r["steps"]["DeployEndpoint"]["outputs"]["action"] for r in runs)
    assert actions == ["created"] + ["updated"] * (n - 1)
    with sqlite3.connect(project.db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# -- corrupted or edited artifacts -----------------------------------------------------------

def _flip_byte(model: Path) -> None:
    data = bytearray((model / "arrays.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (model / "arrays.npz").write_bytes(bytes(data))


def _edit_model_json(model: Path) -> None:
    meta = json.loads((model / "model.json").read_text())
    meta["kmeans"]["k"] = 7
    (model / "model.json").write_text(json.dumps(meta))


def _resign(model: Path, name: str, data: bytes) -> None:
    """Replace a file and update the manifest to match (an edit that passes the sha256)."""
    (model / name).write_bytes(data)
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["files"][name] = hashlib.sha256(data).hexdigest()
    (model / "manifest.json").write_text(json.dumps(manifest))


def _pickled_array(model: Path) -> None:
    with np.load(model / "arrays.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["centers"] = np.array([{"not": "numbers"}], dtype=object)  # needs pickle to load
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _resign(model, "arrays.npz", buf.getvalue())


def _model_json_without_pca(model: Path) -> None:
    meta = json.loads((model / "model.json").read_text())
    del meta["pca"]
    _resign(model, "model.json", json.dumps(meta).encode())


CORRUPTIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "arrays-byte-flipped": (_flip_byte, "arrays.npz does not match its sha256 in manifest.json"),
    "model-json-edited": (_edit_model_json, "model.json does not match its sha256"),
    "arrays-deleted": (lambda m: (m / "arrays.npz").unlink(), "is missing arrays.npz"),
    "manifest-deleted": (lambda m: (m / "manifest.json").unlink(), "is missing manifest.json"),
    "manifest-garbled": (lambda m: (m / "manifest.json").write_text("{\"files\": "),
                         "manifest.json is unreadable"),
    "pickled-array-resigned": (_pickled_array, "arrays.npz"),
    "model-json-missing-key-resigned": (_model_json_without_pca, "model.json"),
}
LOAD_ALL = """
import json, sys
import custseg
out = {}
for version in sys.argv[2:]:
    try:
        custseg.load_model(f"GROUP/{version}", store=sys.argv[1])
        out[version] = ["ok", ""]
    except Exception as exc:
        out[version] = [type(exc).__name__, str(exc)]
print(json.dumps(out))
""".replace("GROUP", GROUP)


@pytest.fixture(scope="module")
def corrupted_loads(store_project: Callable[..., StoreProject]
                    ) -> dict[str, tuple[str, str, str]]:
    """One trained artifact, copied once per corruption (and once intact), each copy
    registered as a version; then one real process loads every version by GROUP/VERSION.
    Returns {case: (artifact uri, exception type, message)}."""
    project = store_project("corrupt")
    trained = Path(project.json("run")["model_uri"])
    store = Store.open(str(project.store))
    versions = {}
    for case in ["intact", *CORRUPTIONS]:
        copy = project.store / "copies" / case / "model"
        shutil.copytree(trained, copy)
        if case != "intact":
            CORRUPTIONS[case][0](copy)
        versions[case] = (str(copy), registry.register(
            store, GROUP, execution_id=None, artifact_uri=str(copy), lineage={},
            status=registry.ApprovalStatus.PENDING, user="test"))
    result = subprocess.run(
        [sys.executable, "-c", LOAD_ALL, str(project.store),
         *(str(v) for _, v in versions.values())],
        capture_output=True, text=True, timeout=120, check=True)
    loaded = json.loads(result.stdout)
    return {case: (uri, *loaded[str(v)]) for case, (uri, v) in versions.items()}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_a_corrupted_or_edited_artifact_is_refused_on_load_with_a_clear_message(
        corrupted_loads: dict[str, tuple[str, str, str]], case: str) -> None:
    assert corrupted_loads["intact"][1:] == ("ok", "")
    uri, kind, message = corrupted_loads[case]
    assert kind == "ModelError", (kind, message)
    assert f"model artifact {uri}" in message and CORRUPTIONS[case][1] in message, message


@pytest.fixture(scope="module")
def rerun_after_corruption(store_project: Callable[..., StoreProject]
                           ) -> Callable[[str], tuple[dict[str, Any], Any]]:
    """For a corruption: run, corrupt the artifact in place, run again (the cache would
    serve the corrupted artifact). Returns (first run, second run's CompletedProcess)."""
    done: dict[str, tuple[dict[str, Any], Any]] = {}

    def get(case: str) -> tuple[dict[str, Any], Any]:
        if case not in done:
            project = store_project(f"rerun-{case}")
            first = project.json("run")
            CORRUPTIONS[case][0](Path(first["model_uri"]))
            done[case] = (first, project.cli("run", "--json"))
        return done[case]

    return get


@pytest.mark.parametrize("case", [
    "arrays-byte-flipped", "arrays-deleted",
    "pickled-array-resigned"])
def test_run_retrains_instead_of_serving_an_unusable_cached_artifact(
        rerun_after_corruption: Callable[[str], tuple[dict[str, Any], Any]],
        case: str) -> None:
    first, result = rerun_after_corruption(case)
    assert result.returncode == 0, result.stderr
    second = json.loads(result.stdout)
    train = second["steps"]["Train"]
    assert train["status"] == "Succeeded" and train["cached_from"] is None
    assert second["model_uri"] != first["model_uri"]
    assert (Path(second["model_uri"]) / "manifest.json").is_file()
    assert second["metrics"] == first["metrics"]  # the same data and parameters


@pytest.mark.parametrize(("case", "expected"), [
    ("arrays-deleted", "missing"),
    ("arrays-byte-flipped", "sha256"),
])
def test_the_rerun_reason_says_what_was_wrong_with_the_cached_artifact(
        rerun_after_corruption: Callable[[str], tuple[dict[str, Any], Any]], case: str,
        expected: str) -> None:
    _, result = rerun_after_corruption(case)
    reason = json.loads(result.stdout)["steps"]["Train"]["reason"]
    assert "cached artifact" in reason and expected in reason, reason


def test_a_corrupted_artifact_on_s3_is_refused_and_retrained(
        store_project: Callable[..., StoreProject], make_bucket: Callable[..., str],
        s3: Any, moto_server: str) -> None:
    import custseg

    bucket = make_bucket()
    project = store_project(artifacts=f"s3://{bucket}/models", s3={"endpoint_url": moto_server})
    first = project.json("run")
    key = first["model_uri"].removeprefix(f"s3://{bucket}/") + "/arrays.npz"
    data = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(data))
    with pytest.raises(custseg.ModelError, match=r"arrays\.npz does not match its sha256"):
        custseg.load_model(f"{GROUP}/1", store=str(project.store), s3_endpoint_url=moto_server)
    second = project.json("run")
    assert second["steps"]["Train"]["status"] == "Succeeded"
    assert second["model_uri"] != first["model_uri"]
    model = custseg.load_model(f"{GROUP}/2", store=str(project.store),
                               s3_endpoint_url=moto_server)
    assert model.k == 3
