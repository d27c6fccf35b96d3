"""The model registry: versions in `{project_name}-model-group`, lineage recorded by real
runs, approval changes (and refusals) with their audit, through the Python API and the
real `custseg models ...` command line."""

from __future__ import annotations

import getpass
import hashlib
import re
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import custseg
from custseg.errors import RegistryError
from custseg.pipeline.steps import PACKAGE, source_files, source_sha256
from custseg.store import registry
from custseg.store.database import Store
from custseg.store.registry import ApprovalStatus

if TYPE_CHECKING:
    from tests.conftest import StoreProject

GROUP = "clustering-model-model-group"
PENDING, APPROVED, REJECTED = "PendingManualApproval", "Approved", "Rejected"
ROOT = Path(__file__).resolve().parents[1]
# the tests run from a checkout (CI clones main): the lineage names its commit
HEAD = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                      text=True, check=True).stdout.strip()
LINEAGE_KEYS = {"execution_id", "trained_by_execution", "data_uri", "data_sha256", "rows",
                "parameters", "metrics", "code_version", "engine", "previous_version",
                "model_name"}


def _lineage(k: int = 3) -> dict[str, Any]:
    metrics = {"k": k, "silhouette": {"value": 0.5, "exact": True}, "calinski_harabasz": 90.0,
               "davies_bouldin": 0.6, "inertia": 12.0, "cluster_sizes": [5] * k}
    return {"metrics": metrics, "rows": 5 * k, "data_uri": "d",
            "data_sha256": "0" * 64, "parameters": {"n_clusters": k}, "engine": "local",
            "code_version": {"package": custseg.__version__, "git_commit": None,
                             "git_dirty": None},
            "execution_id": None, "trained_by_execution": None}


def _register(store: Store, group: str = GROUP, n: int = 1) -> list[int]:
    return [registry.register(store, group, execution_id=None, artifact_uri=f"/models/{i}",
                              lineage=_lineage(), status=ApprovalStatus.PENDING, user="ci")
            for i in range(n)]


def _iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0
    return parsed


@pytest.fixture(scope="module")
def two_runs(
        store_project: Callable[..., StoreProject]) -> tuple[StoreProject, list[dict[str, Any]]]:
    """A project with two real runs: version 1 (k=3) and version 2 (-p n_clusters=4)."""
    project = store_project("registry")
    runs = [project.json("run"), project.json("run", "-p", "n_clusters=4")]
    return project, runs


# -- versions and lineage --------------------------------------------------------------------

def test_versions_increase_from_1_in_each_group(tmp_path: Any) -> None:
    store = Store.open(str(tmp_path / "s"))
    assert _register(store, "a-model-group", 3) == [1, 2, 3]
    assert _register(store, "b-model-group", 2) == [1, 2]
    assert _register(store, "a-model-group") == [4]
    found = registry.packages(store, "a-model-group")
    assert [p.version for p in found] == [1, 2, 3, 4]
    assert [p.lineage["previous_version"] for p in found] == [None, 1, 2, 3]
    assert [p.ref for p in found][-1] == "a-model-group/4"
    assert {p.approval_status for p in found} == {ApprovalStatus.PENDING}
    assert len(registry.packages(store)) == 6  # every group
    first = found[0].history
    assert len(first) == 1 and first[0]["from_status"] is None
    assert first[0]["to_status"] == PENDING and first[0]["by"] == "ci"
    assert registry.group_name("shop") == "shop-model-group"


def test_models_list_and_describe_show_the_lineage_of_real_runs(
        two_runs: tuple[StoreProject, list[dict[str, Any]]]) -> None:
    project, runs = two_runs
    listed = project.json("models", "list")
    assert [(m["group"], m["version"], m["approval_status"]) for m in listed] == [
        (GROUP, 1, PENDING), (GROUP, 2, PENDING)]
    data_sha = hashlib.sha256(project.data.read_bytes()).hexdigest()
    for version, run, k in ((1, runs[0], 3), (2, runs[1], 4)):
        pkg = project.json("models", "describe", str(version))
        assert {k: v for k, v in pkg.items() if k not in ("schema", "warnings")} == \
            listed[version - 1]
        assert pkg["schema"] == pkg["lineage"]["schema"]
        assert {c["name"]: c["role"] for c in pkg["schema"]["columns"]}["CustomerID"] == \
            "ignored"
        assert all(set(c) >= {"name", "role", "transform", "reason"}
                   for c in pkg["schema"]["columns"])
        assert pkg["ref"] == f"{GROUP}/{version}"
        assert pkg["execution_id"] == run["id"] and pkg["artifact_uri"] == run["model_uri"]
        lineage = pkg["lineage"]
        assert set(lineage) >= LINEAGE_KEYS
        assert lineage["execution_id"] == lineage["trained_by_execution"] == run["id"]
        assert lineage["data_uri"] == str(project.data)
        assert lineage["data_sha256"] == data_sha
        assert lineage["rows"] == 600
        assert lineage["parameters"] == run["parameters"]
        assert lineage["parameters"]["n_clusters"] == k
        assert lineage["metrics"] == run["metrics"] and lineage["metrics"]["k"] == k
        assert lineage["engine"] == "local"
        assert lineage["previous_version"] == (None if version == 1 else 1)
        code = lineage["code_version"]
        assert code["package"] == custseg.__version__
        assert code["git_commit"] == HEAD and code["source_sha256"] == source_sha256()
        model = custseg.load_model(pkg["artifact_uri"])
        assert model.meta["code_version"] == code and model.k == k
        assert pkg["created_by"] == getpass.getuser()
        _iso(pkg["created_at"])


def test_models_describe_text_names_the_lineage(
        two_runs: tuple[StoreProject, list[dict[str, Any]]]) -> None:
    project, runs = two_runs
    out = project.ok("models", "describe", "2").stdout
    data_sha = hashlib.sha256(project.data.read_bytes()).hexdigest()
    for expected in (f"Model {GROUP}/2: {PENDING}", f"Execution: {runs[1]['id']}",
                     f"Data: {project.data} (600 rows, sha256 {data_sha})",
                     "Engine: local; previous version: 1", "Metrics: k=4",
                     f"custseg {custseg.__version__}", '"n_clusters": 4',
                     f"(new) -> {PENDING} (registered by execution {runs[1]['id']})"):
        assert expected in out, out
    table = project.ok("models", "list").stdout
    assert re.search(rf"\b1\b.*{PENDING}", table) and re.search(rf"\b2\b.*{PENDING}", table)


def test_models_describe_takes_group_slash_version_like_report_and_predict(
        two_runs: tuple[StoreProject, list[dict[str, Any]]]) -> None:
    project, _ = two_runs
    assert project.json("models", "describe", f"{GROUP}/2") == \
        project.json("models", "describe", "2")
    assert project.ok("models", "describe", f"{GROUP}/1").stdout == \
        project.ok("models", "describe", "1").stdout
    other = project.cli("models", "describe", "other-model-group/1")
    assert other.returncode == 7
    assert other.stderr.strip().splitlines() == [
        "error: model group 'other-model-group' has no version 1 (no versions)"]
    neither = project.cli("models", "describe", "latest")
    assert neither.returncode == 7
    assert neither.stderr.strip().splitlines() == [
        "error: expected a version number or GROUP/VERSION, found 'latest' (see `custseg "
        "models list`)"]


def test_models_describe_says_how_the_silhouette_was_computed_and_in_which_space(
        store_project: Callable[..., StoreProject],
        two_runs: tuple[StoreProject, list[dict[str, Any]]]) -> None:
    """The facts `run` and the report give: sampled (of how many rows, with its 95% CI)
    or exact, and the space KMeans ran in."""
    project = store_project("sampled", tuning={"silhouette_sample_size": 200})
    run = project.json("run")
    sil, space = run["metrics"]["silhouette"], run["metrics"]["space"]
    assert sil["exact"] is False and sil["sample_size"] == 200 and sil["n"] == 600
    assert space.startswith("PCA, 1 component (")
    out = project.ok("models", "describe", "1").stdout.splitlines()
    low, high = sil["ci95"]
    metrics = next(line for line in out if line.startswith("Metrics:"))
    assert metrics.startswith(
        f"Metrics: k=3, silhouette {sil['value']:.4f} (sampled: 200 of 600 rows, 95% CI "
        f"{low:.4f} to {high:.4f}), Calinski-Harabasz "), metrics
    assert f"Space: {space}" in out
    exact = two_runs[0].ok("models", "describe", "1").stdout
    assert re.search(r"^Metrics: k=3, silhouette -?\d\.\d{4} \(exact\), "
                     r"Calinski-Harabasz", exact, flags=re.MULTILINE), exact
    assert f"Space: {two_runs[1][0]['metrics']['space']}" in exact.splitlines()


@pytest.mark.parametrize(("args", "expected"), [
    (("models", "describe", "9"), f"model group '{GROUP}' has no version 9 (versions: 1, 2)"),
    (("models", "describe", "1", "--group", "other-model-group"),
     "model group 'other-model-group' has no version 1 (no versions)"),
    (("models", "approve", "9"), f"model group '{GROUP}' has no version 9"),
], ids=["describe-unknown-version", "describe-unknown-group", "approve-unknown-version"])
def test_an_unknown_version_is_a_one_line_error(
        two_runs: tuple[StoreProject, list[dict[str, Any]]], args: tuple[str, ...],
        expected: str) -> None:
    project, _ = two_runs
    result = project.cli(*args)
    assert result.returncode == 7, result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {expected}"]


def test_models_list_of_another_group_is_empty(
        two_runs: tuple[StoreProject, list[dict[str, Any]]]) -> None:
    project, _ = two_runs
    assert project.json("models", "list", "--group", "other-model-group") == []


# -- approval --------------------------------------------------------------------------------

TRANSITIONS = [  # (changes, index of the refused change or None)
    ([APPROVED], None),
    ([REJECTED], None),
    ([APPROVED, REJECTED], None),
    ([REJECTED, APPROVED], None),
    ([APPROVED, REJECTED, APPROVED], None),
    ([APPROVED, APPROVED], 1),
    ([REJECTED, REJECTED], 1),
    ([PENDING], 0),
    ([APPROVED, PENDING], 1),
    ([REJECTED, PENDING], 1),
]


@pytest.mark.parametrize(("changes", "refused"), TRANSITIONS,
                         ids=["-".join(c) + ("-refused" if r is not None else "")
                              for c, r in TRANSITIONS])
def test_approval_changes_are_audited_and_illegal_ones_refused(
        tmp_path: Any, changes: list[str], refused: int | None) -> None:
    store = Store.open(str(tmp_path / "s"))
    _register(store, n=2)
    status = PENDING
    for i, to in enumerate(changes):
        if i == refused:
            with pytest.raises(RegistryError,
                               match=rf"{GROUP}/1 is {status}; it cannot become {to}"):
                registry.set_approval(store, GROUP, 1, ApprovalStatus(to), by="ann")
            break
        pkg = registry.set_approval(store, GROUP, 1, ApprovalStatus(to), by=f"user{i}",
                                    comment=f"change {i}")
        assert pkg.approval_status == to
        status = to
    pkg = registry.package(store, GROUP, 1)
    assert pkg.approval_status == status  # a refusal changes nothing
    done = changes if refused is None else changes[:refused]
    history = pkg.history
    tos = [PENDING, *done]
    assert [(h["from_status"], h["to_status"]) for h in history] == list(
        zip([None, *tos[:-1]], tos, strict=True))
    assert [h["by"] for h in history[1:]] == [f"user{i}" for i in range(len(done))]
    assert [h["comment"] for h in history[1:]] == [f"change {i}" for i in range(len(done))]
    times = [_iso(h["at"]) for h in history]
    assert times == sorted(times)
    assert registry.package(store, GROUP, 2).approval_status == PENDING  # untouched
    assert len(registry.package(store, GROUP, 2).history) == 1


def test_cli_approve_and_reject_record_who_when_and_why(
        store_project: Callable[..., StoreProject]) -> None:
    project = store_project(data=False)
    _register(Store.open(str(project.store)), n=2)
    approve = project.ok("models", "approve", "1", "--comment", "silhouette is fine")
    assert approve.stdout.splitlines()[0] == (
        f"Model {GROUP}/1: {PENDING} -> {APPROVED} (by {getpass.getuser()})")
    project.ok("models", "reject", "2", "--comment", "too few rows", "--by", "alice")
    project.ok("models", "reject", "1", "--by", "bob", "--comment", "drift")
    illegal = project.cli("models", "reject", "2", "--by", "carol")
    assert illegal.returncode == 7
    assert illegal.stderr.strip().splitlines() == [
        f"error: {GROUP}/2 is {REJECTED}; it cannot become {REJECTED} "
        f"(allowed from {REJECTED}: {APPROVED})"]
    one, two = project.json("models", "describe", "1"), project.json("models", "describe", "2")
    assert one["approval_status"] == REJECTED and two["approval_status"] == REJECTED
    assert [(h["from_status"], h["to_status"], h["by"], h["comment"])
            for h in one["history"][1:]] == [
        (PENDING, APPROVED, getpass.getuser(), "silhouette is fine"),
        (APPROVED, REJECTED, "bob", "drift")]
    assert [(h["from_status"], h["to_status"], h["by"], h["comment"])
            for h in two["history"][1:]] == [(PENDING, REJECTED, "alice", "too few rows")]
    text = project.ok("models", "describe", "1").stdout
    assert f"{PENDING} -> {APPROVED} (silhouette is fine)" in text
    assert f"bob: {APPROVED} -> {REJECTED} (drift)" in text


def test_two_processes_approving_the_same_version_one_wins(
        store_project: Callable[..., StoreProject]) -> None:
    project = store_project(data=False)
    _register(Store.open(str(project.store)))
    procs = [project.popen("models", "approve", "1", "--by", name) for name in ("ann", "ben")]
    results = [(*p.communicate(timeout=60), p.returncode) for p in procs]
    results = [(code, out, err) for out, err, code in results]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 7], results
    assert not any("locked" in err for _, _, err in results)
    loser = next(err for code, _, err in results if code == 7)
    assert f"{GROUP}/1 is {APPROVED}; it cannot become {APPROVED}" in loser
    history = project.json("models", "describe", "1")["history"]
    assert [h["to_status"] for h in history] == [PENDING, APPROVED]
    assert project.query("SELECT COUNT(*) AS n FROM endpoint_configs")[0]["n"] == 0


def test_the_train_cache_hashes_every_module_of_custseg() -> None:
    """An edit to any module (the core included) must invalidate cached Train steps."""
    hashed = {p.relative_to(PACKAGE).as_posix() for p in source_files()}
    for module in ("core/kmeans.py", "core/preprocessing.py", "artifact/scorer.py",
                   "io/data.py", "pipeline/steps.py", "config.py"):
        assert module in hashed
    assert len(hashed) == len(list((ROOT / "src" / "custseg").rglob("*.py")))


def test_rejecting_the_live_version_says_it_stays_live_and_how_to_roll_back(
        store_project: Callable[..., StoreProject]) -> None:
    project = store_project()
    project.ok("run")  # version 1, deployed (no server runs: the endpoint records it)
    project.ok("run", "--no-cache", "-p", "random_state=3")  # version 2, deployed
    old = project.cli("models", "reject", "1")
    assert old.returncode == 0 and "warning" not in old.stderr  # not live
    live = project.cli("models", "reject", "2", "--comment", "bad segments")
    assert live.returncode == 0, live.stderr
    assert live.stderr.strip() == (
        f"warning: {GROUP}/2 stays live on endpoint clustering-model-endpoint-dev: rejecting "
        f"a version does not undeploy it; `custseg endpoints rollback "
        f"clustering-model-endpoint-dev` returns the endpoint to the config it served before")
