"""The Python API of SPEC section 2, and the import-time promise (nothing heavy loaded)."""

from __future__ import annotations

import html
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pytest

import custseg
from custseg.core.sample import generate_customers


@pytest.fixture()
def config_file(tmp_path: Path) -> Path:
    table, _ = generate_customers(3000, segments=3, seed=4)
    (tmp_path / "data").mkdir()
    pacsv.write_csv(table, tmp_path / "data" / "customers.csv")
    cfg = tmp_path / "pipeline_config.yaml"
    cfg.write_text("data_uri: data/\ndata_file: customers.csv\nstore: store\n")
    return cfg


def test_load_config_run_load_model_predict(config_file: Path) -> None:
    cfg = custseg.load_config(str(config_file), overrides={"n_clusters": 4})
    assert cfg.n_clusters == 4
    execution = custseg.run(cfg)
    assert execution.status == "Succeeded"
    assert [s.status for s in execution.steps.values()] == ["Succeeded"] * 4
    assert execution.metrics is not None and execution.metrics["k"] == 4
    assert execution.model_uri is not None
    assert Path(execution.model_uri).is_relative_to(config_file.parent / "store")
    model = custseg.load_model(execution.model_uri)
    labels = model.predict({"Age": 30, "Income": 50000, "Purchases": 10, "Gender": "Male"})
    assert labels.shape == (1,) and 0 <= labels[0] < 4
    table = pacsv.read_csv(config_file.parent / "data" / "customers.csv")
    np.testing.assert_array_equal(model.predict(table), model.to_sklearn().predict(
        table.to_pandas()))
    meta = model.meta
    assert meta["data"]["rows"] == 3000 and len(meta["data"]["sha256"]) == 64
    assert meta["parameters"]["n_clusters"] == 4
    assert meta["versions"]["custseg"] == custseg.__version__
    # the run wrote its segment report, from Python as from the CLI
    assert execution.report is not None
    report = Path(execution.report)
    assert report.parent == config_file.parent / "store" / "reports"
    assert execution.id in report.name and "<svg" in report.read_text(encoding="utf-8")
    names = execution.segment_names or []
    page = report.read_text(encoding="utf-8")
    assert len(names) == 4 and all(html.escape(n) in page for n in names)


def test_failed_run_raises_a_custseg_error_with_the_execution(config_file: Path) -> None:
    cfg = custseg.load_config(str(config_file), overrides={"data_file": "nope.csv"})
    with pytest.raises(custseg.DataError, match=r"nope\.csv") as info:
        custseg.run(cfg)
    execution = info.value.execution  # type: ignore[attr-defined]
    assert execution.status == "Failed"
    assert execution.steps["Train"].status == "Failed"
    assert [s.status for s in list(execution.steps.values())[1:]] == ["Skipped"] * 3
    store = config_file.parent / "store"
    assert not list(store.rglob("manifest.json"))  # no artifact, no half-written model


def test_importing_custseg_loads_no_heavy_or_optional_library() -> None:
    code = ("import sys, custseg, custseg.pipeline.runner, custseg.artifact.storage; "
            "heavy = {'pyspark', 'boto3', 'sagemaker', 'matplotlib', 'sklearn', 'pandas', "
            "'scipy', 'mlflow'}; "
            "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_cli_can_hash_the_data_before_numpy_and_pyarrow_load() -> None:
    """`custseg run` starts the data's content hash (`io.sources`) and the code version
    once the config is read and the target known, so that they run while numpy and
    pyarrow import: neither may come with those modules."""
    code = ("import sys, custseg.cli.commands, custseg.config, custseg.pipeline.targets, "
            "custseg.io.sources, custseg.pipeline.code_version; "
            "print(sorted({'numpy', 'pyarrow'} & {m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("n_components", [1, 3])
def test_a_run_and_a_retrain_load_no_heavy_library(config_file: Path, n_components: int
                                                   ) -> None:
    """pandas (0.15 s), scipy.optimize (0.3 s) and scikit-learn cost more than a whole
    fit at a million rows: training, stable ids and the report stay on numpy/Arrow."""
    config_file.write_text(config_file.read_text() + f"n_components: {n_components}\n"
                           "endpoint: {autostart: false}\n")
    code = ("import sys, custseg; cfg = custseg.load_config(sys.argv[1]); "
            "first = custseg.run(cfg); again = custseg.run(cfg, no_cache=True); "
            "assert again.steps['Train'].outputs.stability is not None; "
            "heavy = {'sklearn', 'pandas', 'scipy', 'matplotlib'}; "
            "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code, str(config_file)], capture_output=True,
                         text=True, check=False, cwd=config_file.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
