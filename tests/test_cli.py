"""The `custseg` command line, run as a real subprocess: `run` on local and S3 data,
`sample`, the committed quick start, and every kind of bad input (exit code, a one-line
message naming the problem, no traceback, nothing written)."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

import custseg

REPO = Path(__file__).resolve().parents[1]
CUSTSEG = Path(sys.executable).parent / "custseg"
FEATURES = {"numeric": ["Age", "Income", "Purchases"], "categorical": ["Gender"],
            "ignore": ["CustomerID"]}
HEADER = ["CustomerID", "Age", "Income", "Purchases", "Gender"]
Cli = Callable[..., subprocess.CompletedProcess[str]]
NUMBER = r"(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"


def _metric(stdout: str, label: str) -> float:
    found = re.findall(rf"^{re.escape(label)}: {NUMBER}", stdout, flags=re.MULTILINE)
    assert len(found) == 1, f"{label!r} not printed once in:\n{stdout}"
    return float(found[0])


def _model_path(stdout: str) -> Path:
    found = re.findall(r"^Model: (.+)$", stdout, flags=re.MULTILINE)
    assert len(found) == 1, stdout
    return Path(found[0].strip())


def _model_json(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "model.json").read_text())  # type: ignore[no-any-return]


def _manifests(store: Path) -> list[Path]:
    return sorted(store.rglob("manifest.json")) if store.exists() else []


@pytest.fixture
def project(tmp_path: Path, make_customers: Callable[..., Path],
            write_config: Callable[..., Path]) -> Path:
    """A project folder: 600 synthetic customers in data/ and a config next to them."""
    make_customers("data/customers.csv", rows=600, segments=3, seed=0)
    write_config({"data_uri": "data/", "features": FEATURES})
    return tmp_path


def _ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


# -- custseg run -----------------------------------------------------------------------------

def test_run_prints_the_seed_metrics_and_writes_the_model(cli: Cli, project: Path) -> None:
    result = _ok(cli("run", "-c", "pipeline_config.yaml"))
    silhouette = _metric(result.stdout, "Silhouette Score")
    calinski = _metric(result.stdout, "Calinski-Harabasz Index")
    davies = _metric(result.stdout, "Davies-Bouldin Index")
    assert 0.3 < silhouette <= 1.0  # three well-separated synthetic segments
    assert calinski > 0 and davies > 0
    model = _model_path(result.stdout)
    assert model.is_dir()
    assert model.is_relative_to(project / "store")
    assert sorted(p.name for p in model.iterdir()) == ["arrays.npz", "manifest.json",
                                                       "model.json"]
    manifest = json.loads((model / "manifest.json").read_text())
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((model / name).read_bytes()).hexdigest() == digest
    meta = _model_json(model)
    metrics = meta["metrics"]
    assert metrics["k"] == 3 and len(metrics["cluster_sizes"]) == 3
    assert sum(metrics["cluster_sizes"]) == 600
    assert metrics["silhouette"]["value"] == pytest.approx(silhouette, abs=1e-6)
    assert metrics["calinski_harabasz"] == pytest.approx(calinski, abs=1e-6)
    assert metrics["davies_bouldin"] == pytest.approx(davies, abs=1e-6)
    data_file = project / "data" / "customers.csv"
    assert meta["data"]["rows"] == 600
    assert meta["data"]["sha256"] == hashlib.sha256(data_file.read_bytes()).hexdigest()
    assert custseg.load_model(str(model)).k == 3


def test_run_json_output_parses(cli: Cli, project: Path) -> None:
    result = _ok(cli("run", "--json"))  # the default config: ./pipeline_config.yaml
    out = json.loads(result.stdout)
    assert out["status"] == "Succeeded"
    assert {name: step["status"] for name, step in out["steps"].items()} == {
        "Train": "Succeeded", "CreateModel": "Succeeded", "RegisterModel": "Succeeded",
        "DeployEndpoint": "Succeeded"}
    assert out["metrics"]["k"] == 3
    assert -1 <= out["metrics"]["silhouette"]["value"] <= 1
    assert out["parameters"]["n_clusters"] == 3
    assert (Path(out["model_uri"]) / "manifest.json").is_file()
    assert out["steps"]["CreateModel"]["outputs"]["model_uri"] == out["model_uri"]


def test_a_run_with_stderr_not_a_terminal_loads_no_progress_display(project: Path) -> None:
    """stderr piped (CI, scripts, benchmarks): no stage lines, so rich is not imported
    (30 ms of a run's start-up)."""
    code = ("import sys; from custseg.cli import main; sys.argv = ['custseg', 'run', '--json']\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "sys.stderr.write(repr(sorted(m for m in sys.modules "
            "if m.split('.')[0] == 'rich')))")
    result = _ok(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                cwd=project, check=False))
    assert json.loads(result.stdout)["status"] == "Succeeded"
    assert result.stderr == "[]"


def test_the_console_script_collects_rarely_and_freezes_what_is_left_at_the_end(
        project: Path) -> None:
    """The command line sets the collector's young threshold as it loads (before typer
    and the rest), and the command leaves what is alive at its end out of the shutdown
    collections (gc.freeze), on success and on a user error alike."""
    code = ("import gc, sys\n"
            "seen = []\n"
            "import custseg.cli.commands as commands\n"
            "real = commands.app\n"
            "def app():\n"
            "    seen.append(gc.get_threshold()[0])\n"
            "    real()\n"
            "commands.app = app\n"
            "from custseg.cli import main\n"
            "from custseg.cli.startup import GC_THRESHOLD\n"
            "sys.argv = ['custseg', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\n"
            "sys.stderr.write(repr((code, seen == [GC_THRESHOLD], gc.get_freeze_count() > 0)))")
    ok = subprocess.run([sys.executable, "-c", code, "run", "--json"], capture_output=True,
                        text=True, cwd=project, check=False)
    assert json.loads(ok.stdout)["status"] == "Succeeded"
    assert ok.stderr == "(0, True, True)"
    bad = subprocess.run([sys.executable, "-c", code, "run", "-p", "n_clusters=0"],
                         capture_output=True, text=True, cwd=project, check=False)
    assert bad.stderr.endswith("(2, True, True)"), bad.stderr
    assert "Traceback" not in bad.stderr


def test_predict_takes_a_version_number_group_slash_version_or_an_artifact(
        cli: Cli, project: Path) -> None:
    """`--model VERSION` as the spec writes it, resolved as `report` resolves its ref:
    a bare number in the config's model group, GROUP/VERSION, or an artifact path."""
    _ok(cli("run"))
    second = _ok(cli("run", "-p", "n_clusters=4", "--no-cache"))
    outputs = {}
    for ref in ("2", "clustering-model-model-group/2", str(_model_path(second.stdout))):
        out = project / f"scored-{len(outputs)}.csv"
        result = _ok(cli("predict", "--model", ref, "--input", "data/customers.csv",
                         "--output", out))
        assert result.stdout.startswith(f"Scored 600 of 600 rows into {out}")
        outputs[ref] = out.read_text()
    assert len(set(outputs.values())) == 1  # the same model, however named
    clusters = {row["cluster"] for row in csv.DictReader(outputs["2"].splitlines())}
    assert clusters == {"0", "1", "2", "3"}  # version 2 (k=4), not version 1
    unknown = cli("predict", "--model", "9", "--input", "data/customers.csv", "--output",
                  "x.csv")
    assert unknown.returncode == 7, unknown.stderr
    assert unknown.stderr.strip().splitlines() == [
        "error: model group 'clustering-model-model-group' has no version 9 (versions: 1, 2)"]
    assert not (project / "x.csv").exists()


def test_an_override_changes_k(cli: Cli, project: Path) -> None:
    result = _ok(cli("run", "-p", "n_clusters=4"))
    assert "Segments (k=4" in result.stdout
    meta = _model_json(_model_path(result.stdout))
    assert meta["metrics"]["k"] == 4
    assert len(meta["metrics"]["cluster_sizes"]) == 4
    assert meta["parameters"]["n_clusters"] == 4
    sizes = meta["metrics"]["cluster_sizes"]
    assert sizes == sorted(sizes, reverse=True)  # cluster 0 is the largest


def test_a_k_sweep_records_the_candidate_table(cli: Cli, project: Path) -> None:
    result = _ok(cli("run", "-p", "n_clusters={min: 2, max: 5}"))
    meta = _model_json(_model_path(result.stdout))
    candidates = meta["candidates"]
    assert [c["k"] for c in candidates] == [2, 3, 4, 5]
    for c in candidates:
        assert set(c) >= {"k", "inertia", "silhouette", "calinski_harabasz", "davies_bouldin",
                          "sizes"}
        assert sum(c["sizes"]) == 600
    best = max(candidates, key=lambda c: c["silhouette"])
    assert meta["metrics"]["k"] == best["k"]
    assert meta["metrics"]["selection_metric"] == "silhouette"
    assert meta["parameters"]["n_clusters"] == {"min": 2, "max": 5}
    assert _metric(result.stdout, "Silhouette Score") == pytest.approx(best["silhouette"],
                                                                      abs=1e-6)


@pytest.mark.parametrize(
    ("layout", "data_file", "artifacts_on_s3"),
    [
        ({"data/customers.csv": (600, 0)}, "customers.csv", False),
        ({"data/part-0.csv": (300, 1), "data/part-1.csv.gz": (300, 2)}, None, False),
        ({"data/customers.csv": (600, 0)}, "customers.csv", True),
    ],
    ids=["single-file", "prefix-of-parts", "artifacts-on-s3"],
)
def test_run_reads_data_from_s3(
        cli: Cli, tmp_path: Path, make_customers: Callable[..., Path],
        write_config: Callable[..., Path], make_bucket: Callable[..., str], s3: Any,
        moto_server: str, layout: dict[str, tuple[int, int]], data_file: str | None,
        artifacts_on_s3: bool) -> None:
    objects = {key: make_customers(f"upload/{key}", rows=rows, seed=seed).read_bytes()
               for key, (rows, seed) in layout.items()}
    bucket = make_bucket(objects)
    config: dict[str, Any] = {"data_uri": f"s3://{bucket}/data/", "data_file": data_file,
                              "s3": {"endpoint_url": moto_server}, "features": FEATURES}
    if artifacts_on_s3:
        config["artifacts"] = f"s3://{bucket}/models"
    write_config(config)
    result = _ok(cli("run", "--json"))
    out = json.loads(result.stdout)
    assert out["status"] == "Succeeded"
    uri = out["model_uri"]
    if artifacts_on_s3:
        assert uri.startswith(f"s3://{bucket}/models/")
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="models/")["Contents"]}
        prefix = uri.removeprefix(f"s3://{bucket}/")
        assert keys == {f"{prefix}/{n}" for n in ("arrays.npz", "manifest.json", "model.json")}
        meta = json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}/model.json")["Body"].read())
        loaded = custseg.load_model(uri, s3_endpoint_url=moto_server)
        assert loaded.k == 3
    else:
        meta = _model_json(Path(uri))
    assert meta["data"]["rows"] == 600
    assert meta["data"]["files"] == [f"s3://{bucket}/{key}" for key in sorted(layout)]


def test_the_committed_quick_start_runs(cli: Cli, tmp_path: Path) -> None:
    shutil.copy(REPO / "pipeline_config.yaml", tmp_path / "pipeline_config.yaml")
    (tmp_path / "data").mkdir()
    shutil.copy(REPO / "data" / "customers.csv", tmp_path / "data" / "customers.csv")
    result = _ok(cli("run"))  # the config's own store: .custseg next to the config
    model = _model_path(result.stdout)
    assert model.is_relative_to(tmp_path / ".custseg" / "artifacts")
    assert (model / "manifest.json").is_file()
    assert 0 < _metric(result.stdout, "Silhouette Score") <= 1
    assert _model_json(model)["data"]["rows"] == 5000


def test_the_wholesale_example_runs(cli: Cli, tmp_path: Path) -> None:
    example = tmp_path / "wholesale"
    shutil.copytree(REPO / "examples" / "wholesale", example)
    result = _ok(cli("run", "-c", example / "pipeline_config.yaml", "-p", "store=store"))
    meta = _model_json(_model_path(result.stdout))
    assert meta["data"]["rows"] == 440
    assert meta["schema"]["categorical"] == ["Channel", "Region"]  # integer codes
    assert len(meta["schema"]["numeric"]) == 6
    assert [c["k"] for c in meta["candidates"]] == list(range(2, 11))
    eligible = [c for c in meta["candidates"] if c["eligible"]]
    assert eligible and all(c["min_share"] >= 0.02 and c["stability"] >= 0.8 for c in eligible)
    best = max(c["silhouette"] for c in eligible)
    chosen = min(c["k"] for c in eligible if c["silhouette"] >= best - 0.03 * abs(best))
    assert meta["metrics"]["k"] == chosen
    names = " | ".join(meta["segment_names"])
    assert "Channel" in names  # the channel sets these segments apart ...
    assert "Horeca" in names or "Retail" in names  # ... named by value_labels,
    assert "Channel 1" not in names and "Channel 2" not in names  # never by its code


# -- custseg sample --------------------------------------------------------------------------

def test_sample_writes_reproducible_customers(cli: Cli, tmp_path: Path) -> None:
    result = _ok(cli("sample", "--rows", "1000", "--segments", "4", "--seed", "1",
                     "-o", "f.csv"))
    assert "Wrote 1,000 customers in 4 segments to f.csv" in result.stdout
    with open(tmp_path / "f.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == HEADER
    body = rows[1:]
    assert len(body) == 1000
    assert [int(r[0]) for r in body] == list(range(1, 1001))
    assert all(len(r) == 5 for r in body)
    missing = {name: sum(1 for r in body if r[i] == "") for i, name in enumerate(HEADER)}
    assert missing["CustomerID"] == 0 and sum(missing.values()) > 0
    assert {r[4] for r in body} - {""} <= {"Female", "Male", "Other"}
    _ok(cli("sample", "--rows", "1000", "--segments", "4", "--seed", "1", "-o", "g.csv"))
    _ok(cli("sample", "--rows", "1000", "--segments", "4", "--seed", "2", "-o", "h.csv"))
    assert (tmp_path / "g.csv").read_bytes() == (tmp_path / "f.csv").read_bytes()
    assert (tmp_path / "h.csv").read_bytes() != (tmp_path / "f.csv").read_bytes()


def test_sample_into_a_missing_folder_fails_cleanly(cli: Cli, tmp_path: Path) -> None:
    result = cli("sample", "--rows", "10", "-o", "nowhere/f.csv")
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        "error: cannot write nowhere/f.csv: folder nowhere does not exist"]
    assert not (tmp_path / "nowhere").exists()


# -- bad input -------------------------------------------------------------------------------

def _customers(n: int = 60, **columns: Callable[[int], str]) -> str:
    """A small, varied customer CSV; `columns` replaces a column's value function."""
    values: dict[str, Callable[[int], str]] = {
        "CustomerID": lambda i: str(i + 1),
        "Age": lambda i: str(20 + (i * 7) % 50),
        "Income": lambda i: str(20_000 + (i * 3571) % 90_000),
        "Purchases": lambda i: str((i * 5) % 31),
        "Gender": lambda i: ("Female", "Male", "Other")[i % 3],
        **columns,
    }
    lines = [",".join(HEADER)] + [",".join(values[c](i) for c in HEADER) for i in range(n)]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Bad:
    """A bad input: files to write, config changes, CLI arguments, and the expected failure."""

    code: int | None  # None: any non-zero code (no exit code is assigned to this yet)
    expected: tuple[str, ...]
    files: dict[str, str] = field(default_factory=lambda: {"data/customers.csv": _customers()})
    config: dict[str, Any] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    raw_config: str | None = None
    s3: bool = False
    bug: str | None = None  # a known bug in src/: the case is a strict xfail


BAD = {
    # config errors: exit 2
    "n-clusters-below-2": Bad(2, ("n_clusters", "integer >= 2", "found 1"),
                              args=("-p", "n_clusters=1")),
    "malformed-yaml": Bad(2, ("not valid YAML at line 3",),
                          raw_config="data_uri: data/\nn_clusters: [3\nstore: store\n"),
    "unknown-key": Bad(2, ("unknown key 'n_cluster'", "did you mean 'n_clusters'"),
                       config={"n_cluster": 4}),
    "unknown-override": Bad(2, ("unknown key 'tuning.metrc'", "did you mean 'metric'"),
                            args=("-p", "tuning.metrc=silhouette")),
    "bad-override-value": Bad(2, ("tuning.metric", "'silhouette'", "found 'accuracy'"),
                              args=("-p", "tuning.metric=accuracy")),
    "missing-data-uri": Bad(2, ("data_uri: required key is missing",),
                            raw_config="n_clusters: 3\nstore: store\n"),
    "missing-config-file": Bad(2, ("config file not found: nope.yaml",),
                               args=("-c", "nope.yaml")),
    # data errors: exit 3
    "missing-data-file": Bad(3, ("data not found", "nope.csv"),
                             config={"data_file": "nope.csv"}),
    "missing-s3-bucket": Bad(3, ("S3 bucket 'custseg-no-such-bucket' not found",),
                             config={"data_uri": "s3://custseg-no-such-bucket/data/"}, s3=True),
    "empty-file": Bad(3, ("customers.csv is empty",), files={"data/customers.csv": ""}),
    "header-only": Bad(3, ("customers.csv has a header but no data rows",),
                       files={"data/customers.csv": ",".join(HEADER) + "\n"}),
    "declared-column-missing": Bad(
        3, ("'Tenure'", "features.numeric", "missing"),
        config={"features": {**FEATURES, "numeric": ["Age", "Income", "Purchases", "Tenure"]}}),
    "non-numeric-value": Bad(
        3, ("'Income'", "row 7 (line 8)", "'abc'"),
        files={"data/customers.csv": _customers(
            Income=lambda i: "abc" if i == 6 else str(20_000 + i * 100))}),
    "infinite-value": Bad(
        3, ("'Age'", "row 12 (line 13)", "inf", "finite"),
        files={"data/customers.csv": _customers(
            Age=lambda i: "inf" if i == 11 else str(20 + i))}),
    "all-missing-column": Bad(3, ("'Income'", "no values", "all 60 rows"),
                              files={"data/customers.csv": _customers(Income=lambda i: "")}),
    "constant-column": Bad(3, ("'Purchases'", "constant", "every row is 5"),
                           files={"data/customers.csv": _customers(Purchases=lambda i: "5")}),
    "constant-category": Bad(3, ("'Gender'", "constant", "'Female'"),
                             files={"data/customers.csv": _customers(Gender=lambda i: "Female")}),
    "folder-headers-differ": Bad(
        3, ("b.csv has columns", "'Salary'", "share one header"),
        files={"data/a.csv": _customers(),
               "data/b.csv": _customers().replace("Income", "Salary", 1)},
        config={"data_file": None}),
    "bad-value-in-second-file": Bad(
        3, ("b.csv row 4 (line 5)", "'Income'", "'abc'"),
        files={"data/a.csv": _customers(),
               "data/b.csv": _customers(Income=lambda i: "abc" if i == 3 else "1000")},
        config={"data_file": None}),
    "duplicate-column": Bad(
        3, ("Age",),
        files={"data/customers.csv": _customers(  # header: CustomerID,Age,Age,Income,...
            Age=lambda i: f"{20 + i % 50},{25 + i % 40}").replace("Age", "Age,Age", 1)},
        ),
    # train errors: exit 4
    "fewer-distinct-rows-than-k": Bad(
        4, ("only 2 distinct rows", "n_clusters=3"),
        files={"data/customers.csv": _customers(
            Age=lambda i: str(20 + 40 * (i % 2)), Income=lambda i: str(10_000 * (1 + i % 2)),
            Purchases=lambda i: str(3 * (i % 2)), Gender=lambda i: ("Female", "Male")[i % 2])}),
    "n-components-above-features": Bad(4, ("n_components=7", "number of features (6)"),
                                       args=("-p", "n_components=7")),
    # the store or artifact location cannot be written
    "store-is-a-file": Bad(
        6, ("store",), files={"data/customers.csv": _customers(), "store": "not a folder\n"},
        ),
    "artifacts-in-missing-s3-bucket": Bad(
        5, ("custseg-no-such-bucket",), config={"artifacts": "s3://custseg-no-such-bucket/m"},
        s3=True),
}


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
            ) -> Callable[[str], tuple[Path, subprocess.CompletedProcess[str]]]:
    """Run each bad case once (its project folder and the CompletedProcess), shared by the
    tests that look at different sides of the same failure."""
    runs: dict[str, tuple[Path, subprocess.CompletedProcess[str]]] = {}

    def get(case_id: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
        if case_id in runs:
            return runs[case_id]
        case = BAD[case_id]
        root = tmp_path_factory.mktemp(f"bad-{case_id}")
        for name, text in case.files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        if case.raw_config is not None:
            text = case.raw_config
        else:
            config = {"data_uri": "data/", "store": "store", "features": FEATURES,
                      **case.config}
            if case.s3:
                config["s3"] = {"endpoint_url": request.getfixturevalue("moto_server")}
            text = yaml.safe_dump(config, sort_keys=False)
        (root / "pipeline_config.yaml").write_text(text)
        result = subprocess.run([str(CUSTSEG), "run", *case.args], cwd=root,
                                capture_output=True, text=True, timeout=120, check=False)
        runs[case_id] = (root, result)
        return runs[case_id]

    return get


def _bad_params(one_line: bool) -> list[Any]:
    params = []
    for case_id, case in BAD.items():
        reasons = [case.bug] if case.bug else []
        marks = [pytest.mark.xfail(reason="BUG: " + "; ".join(reasons), strict=True)
                 ] if reasons else []
        params.append(pytest.param(case_id, id=case_id, marks=marks))
    return params


@pytest.mark.parametrize("case_id", _bad_params(one_line=False))
def test_bad_input_fails_with_a_specific_message_and_writes_nothing(
        bad_run: Callable[[str], tuple[Path, subprocess.CompletedProcess[str]]],
        case_id: str) -> None:
    case = BAD[case_id]
    root, result = bad_run(case_id)
    assert "Traceback" not in result.stderr, result.stderr
    if case.code is None:
        assert result.returncode != 0, result.stderr
    else:
        assert result.returncode == case.code, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    message = errors[0]
    for part in case.expected:
        assert part in message, message
    assert len(message) < 500, message
    assert "Model:" not in result.stdout and "Silhouette" not in result.stdout
    assert _manifests(root / "store") == []
    assert not (root / ".custseg").exists()


@pytest.mark.parametrize("case_id", _bad_params(one_line=True))
def test_bad_input_stderr_is_the_one_error_line(
        bad_run: Callable[[str], tuple[Path, subprocess.CompletedProcess[str]]],
        case_id: str) -> None:
    _, result = bad_run(case_id)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr


def test_an_s3_folder_without_trailing_slash_is_joined_with_data_file(
        cli: Cli, make_customers: Callable[..., Path], write_config: Callable[..., Path],
        make_bucket: Callable[..., str], moto_server: str) -> None:
    # as for a local folder (data_uri: data), data_file picks one file in it
    bucket = make_bucket({
        "data/customers.csv": make_customers("up/customers.csv", rows=600).read_bytes(),
        "data/old.csv": make_customers("up/old.csv", rows=100, seed=1).read_bytes(),
    })
    write_config({"data_uri": f"s3://{bucket}/data", "data_file": "customers.csv",
                  "s3": {"endpoint_url": moto_server}, "features": FEATURES})
    out = json.loads(_ok(cli("run", "--json")).stdout)
    assert sum(out["metrics"]["cluster_sizes"]) == 600
