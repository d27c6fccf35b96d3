"""The Spark engine on real Spark (`local[2]`), differential against the local engine.

One SparkSession for the whole test session (a JVM start costs ~6 s on this machine's 2
cores); the data stays at tens of thousands of rows, but for the driver-memory test.
Skipped when pyspark or java is missing, unless CUSTSEG_REQUIRE_SPARK=1 (CI), where
that is a failure.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import write_customers
from custseg.config import config_from_dict
from custseg.core.quality import adjusted_rand
from custseg.core.sample import generate_customers
from custseg.engines import engine_for, java
from custseg.engines.base import TrainRequest
from custseg.engines.local import train_local
from custseg.errors import ConfigError, DataError
from custseg.io.data import read_data

CUSTSEG = Path(sys.executable).parent / "custseg"
MASTER = "local[2]"
RESULT_CAP_MB = 16  # spark.driver.maxResultSize of the test session (see the memory test)
# the session's settings; a config naming the running session must agree with them
SESSION_CONF = {"spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false",
                "spark.ui.showConsoleProgress": "false",
                "spark.driver.maxResultSize": f"{RESULT_CAP_MB}m"}


def _missing() -> str | None:
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (uv sync --extra spark)"
    if java() is None:
        return "java is not installed (no java on PATH or in JAVA_HOME)"
    return None


@pytest.fixture(scope="session")
def spark(moto_server: str) -> Iterator[Any]:
    """The session's SparkSession; started after the moto server, so that its JVM (and the
    Python workers it starts) has the fake AWS credentials the S3 tests need."""
    reason = _missing()
    if reason is not None:
        if os.environ.get("CUSTSEG_REQUIRE_SPARK") == "1":
            pytest.fail(f"CUSTSEG_REQUIRE_SPARK=1, but {reason}")
        pytest.skip(reason)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(MASTER).appName("custseg-tests")
    for key, value in SESSION_CONF.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


class Progress:
    def __init__(self) -> None:
        self.stages: list[str] = []
        self.notes: list[str] = []

    def stage(self, name: str, fraction: float) -> None:
        self.stages.append(name)

    def note(self, message: str) -> None:
        self.notes.append(message)


def _config(data: Path, **overrides: Any) -> Any:
    return config_from_dict({"data_uri": str(data), "n_components": 2, "engine": "spark",
                             "spark": {"master": MASTER}, "tuning": {"n_init": 2},
                             **overrides})


def _both(data: Path, **overrides: Any) -> tuple[Any, Any, Progress]:
    cfg = _config(data, **overrides)
    request = TrainRequest("test", None, None, {})
    progress = Progress()
    return engine_for(cfg).train(cfg, request, progress), train_local(cfg, request,
                                                                      Progress()), progress


# -- Spark == local ------------------------------------------------------------------------

def _write_with_dates(path: Path, rows: int, segments: int, seed: int) -> Path:
    """Customers plus two date columns that follow the segments: `LastVisit` as text
    (`%d/%m/%Y`, some missing) and `Joined` as ISO dates (typed by the CSV reader)."""
    table, truth = generate_customers(rows, segments, seed)
    rng = np.random.default_rng(seed)
    ago = np.rint(rng.normal(np.array([20, 300, 700, 120, 500])[truth], 15)).clip(0)
    last = np.datetime64("2024-06-30") - ago.astype("timedelta64[D]")
    text = [None if rng.random() < 0.01 else
            f"{d.astype(object).day:02d}/{d.astype(object).month:02d}/{d.astype(object).year}"
            for d in last]
    joined = np.datetime64("2015-01-01") + rng.integers(0, 3000, rows).astype("timedelta64[D]")
    table = table.append_column("LastVisit", pa.array(text, pa.string()))
    table = table.append_column("Joined", pa.array(joined.astype(str).tolist()))
    pacsv.write_csv(table, path)
    return path


@pytest.mark.parametrize(("segments", "n_clusters", "dates"), [
    (3, 3, False),
    (4, {"min": 2, "max": 5}, False),
    (3, 3, True),
])
def test_spark_and_local_train_the_same_model(spark: Any, tmp_path: Path, segments: int,
                                              n_clusters: Any, dates: bool) -> None:
    """Same schema and transform (medians exact, the rest to 1e-9: Spark sums in another
    order); the same k; ARI >= 0.99 on every row; metrics within the stated tolerances:
    CH, DB and inertia 1e-4 relative (Spark's KMeans stops at its own tolerance), sizes
    within 0.2% of the rows, silhouette 0.01 (the same estimator on the same rows)."""
    path = tmp_path / "customers.csv"
    data = (_write_with_dates(path, 20_000, segments, seed=segments) if dates else
            write_customers(path, rows=20_000, segments=segments, seed=segments))
    zone = spark.conf.get("spark.sql.session.timeZone")
    if dates:  # a session in another time zone reads the dates in UTC for the training
        spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        on_spark, local, progress = _both(data, n_clusters=n_clusters)
        if dates:
            assert spark.conf.get("spark.sql.session.timeZone") == "America/New_York"
    finally:
        spark.conf.set("spark.sql.session.timeZone", zone)
    assert on_spark.schema.to_dict() == local.schema.to_dict()
    a, b = on_spark.transform, local.transform
    assert (a.dates, a.date_reference) == (b.dates, b.date_reference)
    if dates:
        assert a.dates == {"LastVisit": "%d/%m/%Y", "Joined": "iso"}
    assert (a.numeric, a.categorical, a.categories, a.modes, a.functions, a.flags) == (
        b.numeric, b.categorical, b.categories, b.modes, b.functions, b.flags)
    np.testing.assert_array_equal(a.medians, b.medians)  # exact, as numpy's
    for name in ("means", "scales", "log_scales", "clip_low", "clip_high", "weights"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-9,
                                   err_msg=name)
    assert on_spark.k == local.k
    table = pacsv.read_csv(data)
    assert adjusted_rand(on_spark.predict(table), local.predict(table)) >= 0.99
    ms, ml = on_spark.meta["metrics"], local.meta["metrics"]
    for name in ("calinski_harabasz", "davies_bouldin", "inertia"):
        assert ms[name] == pytest.approx(ml[name], rel=1e-4), name
    assert np.abs(np.subtract(ms["cluster_sizes"], ml["cluster_sizes"])).max() <= 0.002 * 20_000
    assert ms["silhouette"]["value"] == pytest.approx(ml["silhouette"]["value"], abs=0.01)
    assert ms["silhouette"]["n"] == 20_000
    assert -1 <= ms["spark_silhouette_squared_euclidean"] <= 1
    assert [c["k"] for c in on_spark.meta["candidates"]] == [
        c["k"] for c in local.meta["candidates"]]
    assert on_spark.meta["segment_names"] == local.meta["segment_names"]
    assert on_spark.meta["engine"] == "spark"
    details = on_spark.meta["engine_details"]
    assert details["master"] == MASTER and details["spark_version"] == spark.version
    assert on_spark.meta["versions"]["pyspark"] == spark.version
    assert on_spark.meta["data"]["rows"] == 20_000
    assert on_spark.meta["data"]["sha256"] == local.meta["data"]["sha256"]
    assert "PCA (Spark)" in progress.stages
    bs, bl = on_spark.meta["baseline"], local.meta["baseline"]  # what monitoring reads
    assert bs["categorical"] == bl["categorical"] and bs["rows"] == bl["rows"]
    for name, numeric in bl["numeric"].items():
        assert bs["numeric"][name]["edges"] == pytest.approx(numeric["edges"], rel=1e-6)
        assert bs["numeric"][name]["missing_share"] == numeric["missing_share"]
    assert sorted(bs["segments"]) == pytest.approx(sorted(bl["segments"]), abs=0.002)
    assert bs["distance"]["p95"] == pytest.approx(bl["distance"]["p95"], rel=0.01)


def test_a_retrain_on_spark_keeps_the_previous_versions_segment_ids(spark: Any,
                                                                    tmp_path: Path) -> None:
    """Stable ids: a Spark retrain of a local model's data matches its segments."""
    data = write_customers(tmp_path / "customers.csv", rows=5000, segments=3, seed=11)
    cfg = _config(data, n_clusters=3)
    first = train_local(cfg, TrainRequest("t1", None, None, {}), Progress())
    again = engine_for(cfg).train(cfg, TrainRequest("t2", None, first, {}), Progress())
    stability = again.meta["stability"]
    assert stability is not None and stability["agreement"] >= 0.99
    table = pacsv.read_csv(data)
    assert (again.predict(table) == first.predict(table)).mean() >= 0.99  # the same ids


def test_bad_values_are_named_as_the_local_engine_names_them(spark: Any, tmp_path: Path
                                                            ) -> None:
    data = tmp_path / "customers.csv"
    table, _ = generate_customers(3000, 3, seed=5)
    income = table.column("Income").cast(pa.string()).to_pylist()
    income[2500] = "lots"  # far from the sample's start: found by the pass over every row
    income[:3] = ["1e3", "2e3", "3e3"]  # still numbers
    pacsv.write_csv(table.set_column(2, "Income", pa.array(income)), data)
    cfg = _config(data, features={"numeric": ["Age", "Income", "Purchases"],
                                  "categorical": ["Gender"]})
    with pytest.raises(DataError, match=r"column 'Income' should be numeric.*'lots'"):
        engine_for(cfg).train(cfg, TrainRequest("t", None, None, {}), Progress())


def test_a_bad_date_is_named_as_the_local_engine_names_it(spark: Any, tmp_path: Path
                                                          ) -> None:
    data = _write_with_dates(tmp_path / "customers.csv", 3000, 3, seed=7)
    table = pacsv.read_csv(data, convert_options=pacsv.ConvertOptions(
        column_types={"LastVisit": pa.string(), "Joined": pa.string()}))
    visits = table.column("LastVisit").to_pylist()
    visits[2900] = "31/02/2024"  # no such day
    pacsv.write_csv(table.set_column(5, "LastVisit", pa.array(visits)), data)
    cfg = _config(data)
    request = TrainRequest("t", None, None, {})
    with pytest.raises(DataError) as local:
        train_local(cfg, request, Progress())
    with pytest.raises(DataError) as on_spark:
        engine_for(cfg).train(cfg, request, Progress())
    said = "column 'LastVisit' should be a date (%d/%m/%Y), but "
    assert str(local.value).startswith(said) and str(on_spark.value).startswith(said)
    assert str(on_spark.value).endswith("holds '31/02/2024'")


def test_a_constant_column_is_refused_with_the_local_engines_message(spark: Any,
                                                                    tmp_path: Path) -> None:
    data = tmp_path / "customers.csv"
    table, _ = generate_customers(2000, 3, seed=6)
    pacsv.write_csv(table.append_column("Plan", pa.array(["basic"] * 2000)), data)
    cfg = _config(data, features={"numeric": ["Age", "Income"], "categorical": ["Plan"]})
    request = TrainRequest("t", None, None, {})
    with pytest.raises(DataError) as on_spark:
        engine_for(cfg).train(cfg, request, Progress())
    with pytest.raises(DataError) as local:
        train_local(cfg, request, Progress())
    assert str(on_spark.value) == str(local.value)


# -- the driver never holds the data --------------------------------------------------------

def test_the_driver_never_collects_the_data(spark: Any, tmp_path: Path) -> None:
    """The session caps what the driver may receive (spark.driver.maxResultSize, 16 MB:
    in local mode the executors share the driver's JVM, so this is the cap that shows
    what crosses to the driver). 500,000 rows cannot be collected under it; the engine
    trains on them holding a sample of at most 200,000 rows, and agrees with the local
    engine (which reads them all)."""
    data = write_customers(tmp_path / "customers.csv", rows=500_000, segments=3, seed=3)
    with pytest.raises(Exception, match="maxResultSize"):
        spark.read.option("header", True).csv(str(data)).toArrow()  # all of it: over the cap
    cfg = _config(data, n_clusters=3, tuning={"n_init": 1})
    request = TrainRequest("t", None, None, {})
    model = engine_for(cfg).train(cfg, request, Progress())
    assert model.meta["data"]["rows"] == 500_000
    held = model.meta["engine_details"]["driver_sample_rows"]
    assert 190_000 < held <= 200_000
    assert sum(model.meta["metrics"]["cluster_sizes"]) == 500_000
    assert model.meta["metrics"]["silhouette"]["n"] == 500_000
    table = pacsv.read_csv(data)
    local = train_local(cfg, request, Progress())
    np.testing.assert_array_equal(model.transform.medians, local.transform.medians)
    assert adjusted_rand(model.predict(table), local.predict(table)) >= 0.99
    # segment sizes, means and shares over every row, not the sample's
    by_size = sorted(local.meta["segments"], key=lambda p: -p["size"])
    for ours, theirs in zip(model.meta["segments"], by_size, strict=True):
        assert ours["exact_over_rows"] == 500_000
        assert abs(ours["size"] - theirs["size"]) <= 0.002 * 500_000
        for name in ("Age", "Income", "Purchases"):
            assert ours["numeric"][name]["mean"] == pytest.approx(
                theirs["numeric"][name]["mean"], rel=3e-4)
        for level, share in theirs["categorical"]["Gender"].items():
            assert ours["categorical"]["Gender"][level] == pytest.approx(share, abs=3e-4)


# -- refusals -------------------------------------------------------------------------------

def test_a_master_other_than_the_running_sessions_is_refused(spark: Any, tmp_path: Path
                                                            ) -> None:
    data = write_customers(tmp_path / "customers.csv", rows=500)
    cfg = _config(data, spark={"master": "spark://127.0.0.1:7077"})
    with pytest.raises(ConfigError, match=r"already running in this process on 'local\[2\]'"):
        engine_for(cfg).train(cfg, TrainRequest("t", None, None, {}), Progress())


def test_spark_remote_beside_a_running_classic_session_is_refused(spark: Any,
                                                                   tmp_path: Path) -> None:
    """pyspark runs one kind of session a process: a Connect config does not silently
    train on the classic session (nor record it as the remote)."""
    data = write_customers(tmp_path / "customers.csv", rows=500)
    cfg = _config(data, spark={"remote": "sc://127.0.0.1:9"})
    with pytest.raises(ConfigError, match=r"spark.remote points at a Spark Connect server "
                                          r"\(127.0.0.1:9\), but a classic SparkSession is "
                                          r"already running in this process on 'local\[2\]'"):
        engine_for(cfg).train(cfg, TrainRequest("t", None, None, {}), Progress())


def test_a_runtime_spark_conf_is_applied_to_the_running_session(spark: Any, tmp_path: Path
                                                                ) -> None:
    data = write_customers(tmp_path / "customers.csv", rows=2000)
    before = spark.conf.get("spark.sql.shuffle.partitions")
    cfg = _config(data, spark={"master": MASTER, "conf": {"spark.sql.shuffle.partitions": 3}})
    try:
        model = engine_for(cfg).train(cfg, TrainRequest("t", None, None, {}), Progress())
        assert spark.conf.get("spark.sql.shuffle.partitions") == "3"
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", before)
    assert model.meta["parameters"]["spark"]["conf"] == {"spark.sql.shuffle.partitions": "3"}


def test_a_static_spark_conf_the_running_session_lacks_is_refused(spark: Any,
                                                                  tmp_path: Path) -> None:
    data = write_customers(tmp_path / "customers.csv", rows=500)
    cfg = _config(data, spark={"master": MASTER, "conf": {"spark.driver.maxResultSize": "1g"}})
    with pytest.raises(ConfigError, match=r"spark.conf.spark.driver.maxResultSize is '1g'"):
        engine_for(cfg).train(cfg, TrainRequest("t", None, None, {}), Progress())


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_s3_without_the_s3a_connector_is_read_through_custsegs_data_source(
        spark: Any, tmp_path: Path, moto_server: str, make_bucket: Any,
        monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """pyspark's wheel has no S3A connector (hadoop-aws), nor has this test session's
    Spark: s3:// on a real moto server is read through `spark_s3` instead, a CSV cut into
    five pieces mid-line (or a Parquet file's five row groups) read on the executors;
    the model is the local engine's on the same rows, and the lineage says what read."""
    from custseg.engines import spark_s3
    from custseg.engines.spark_data import s3a_connector

    if s3a_connector(spark) is not None:
        pytest.skip("hadoop-aws is on the classpath here: Spark reads s3a:// itself")
    data = write_customers(tmp_path / "customers.csv", rows=20_000, segments=3, seed=7)
    if kind == "csv":
        body = data.read_bytes()
        monkeypatch.setattr(spark_s3, "SPLIT_BYTES", len(body) // 5 + 1)
    else:
        out = io.BytesIO()
        pq.write_table(pacsv.read_csv(data), out, row_group_size=4000)
        body = out.getvalue()
    bucket = make_bucket({f"data/customers.{kind}": body})
    cfg = config_from_dict({"data_uri": f"s3://{bucket}/data/",
                            "data_file": f"customers.{kind}", "n_components": 2,
                            "engine": "spark", "spark": {"master": MASTER},
                            "tuning": {"n_init": 2}, "n_clusters": 3,
                            "s3": {"endpoint_url": moto_server}})
    on_spark = engine_for(cfg).train(cfg, TrainRequest("t", None, None, {}), Progress())
    local = train_local(_config(data, n_clusters=3), TrainRequest("t", None, None, {}),
                        Progress())
    assert on_spark.meta["engine_details"]["reader"] == spark_s3.NAME
    assert on_spark.meta["data"]["rows"] == 20_000
    assert on_spark.meta["data"]["files"] == [f"s3://{bucket}/data/customers.{kind}"]
    assert (on_spark.transform.numeric, on_spark.transform.categorical) == (
        local.transform.numeric, local.transform.categorical)
    np.testing.assert_array_equal(on_spark.transform.medians, local.transform.medians)
    table = pacsv.read_csv(data)
    assert adjusted_rand(on_spark.predict(table), local.predict(table)) >= 0.99


@pytest.fixture(scope="session")
def s3a_jars() -> str:
    """The S3A connector's jars (hadoop-aws and the AWS SDK bundle it was built against),
    comma-separated, as `.ci/s3a-jars` prints them into CUSTSEG_S3A_JARS."""
    jars = os.environ.get("CUSTSEG_S3A_JARS", "")
    if not jars:
        if os.environ.get("CUSTSEG_REQUIRE_SPARK") == "1":
            pytest.fail("CUSTSEG_REQUIRE_SPARK=1, but CUSTSEG_S3A_JARS is not set "
                        "(export CUSTSEG_S3A_JARS=$(.ci/s3a-jars))")
        pytest.skip("CUSTSEG_S3A_JARS is not set: export CUSTSEG_S3A_JARS=$(.ci/s3a-jars)")
    missing = [jar for jar in jars.split(",") if not Path(jar).is_file()]
    assert not missing, f"CUSTSEG_S3A_JARS names jars that are not there: {missing}"
    return jars


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_spark_reads_s3a_itself_with_the_connector_from_spark_jars(
        spark: Any, s3a_jars: str, tmp_path: Path, moto_server: str, make_bucket: Any,
        kind: str) -> None:
    """`custseg run -p engine=spark` (its own JVM) with hadoop-aws in `spark.jars`: Spark
    reads s3a:// on a real moto server itself (`data_uri` given as s3a:// or s3://), with
    fs.s3a.* from `s3.endpoint_url` and the credentials from the environment; the model is
    the local engine's on the same rows.
    The jars are hadoop-aws 3.3.1 (AWS SDK v1) on pyspark's Hadoop 3.4+ client, which
    reads only with the settings custseg adapts for it."""
    data = write_customers(tmp_path / "customers.csv", rows=20_000, segments=3, seed=7)
    if kind == "csv":
        body = data.read_bytes()
    else:
        out = io.BytesIO()
        pq.write_table(pacsv.read_csv(data), out, row_group_size=4000)
        body = out.getvalue()
    bucket = make_bucket({f"data/customers.{kind}": body})
    scheme = "s3a" if kind == "csv" else "s3"  # the same objects, as Spark users name them
    config = tmp_path / "pipeline_config.yaml"
    config.write_text(yaml.safe_dump({
        "data_uri": f"{scheme}://{bucket}/data/", "data_file": f"customers.{kind}",
        "store": str(tmp_path / "store"), "n_components": 2, "n_clusters": 3,
        "tuning": {"n_init": 2}, "s3": {"endpoint_url": moto_server},
        "spark": {"master": MASTER, "conf": {"spark.jars": s3a_jars,
                                             "spark.sql.shuffle.partitions": 4}}}))
    run = subprocess.run([str(CUSTSEG), "run", "-c", str(config), "-p", "engine=spark",
                          "--json"], capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    import custseg

    on_spark = custseg.load_model(json.loads(run.stdout)["model_uri"])
    details = on_spark.meta["engine_details"]
    assert details["reader"] == "spark"
    assert details["s3a_connector"] == "hadoop-aws 3.3.1"
    assert on_spark.meta["data"]["rows"] == 20_000
    assert on_spark.meta["data"]["files"] == [f"s3://{bucket}/data/customers.{kind}"]
    local = train_local(_config(data, n_clusters=3), TrainRequest("t", None, None, {}),
                        Progress())
    assert (on_spark.transform.numeric, on_spark.transform.categorical) == (
        local.transform.numeric, local.transform.categorical)
    np.testing.assert_array_equal(on_spark.transform.medians, local.transform.medians)
    table = pacsv.read_csv(data)
    assert adjusted_rand(on_spark.predict(table), local.predict(table)) >= 0.99


@pytest.mark.parametrize("step", [1, 5, 10, 26, 37, 99, 400, 1000])
def test_csv_pieces_cut_anywhere_give_every_line_once(step: int) -> None:
    """A piece holds the lines that start in its byte range, the last one read whole past
    its end: pieces cut at any size give back the file, every line once and in order."""
    from custseg.engines.spark_s3 import piece_lines

    text = b"".join(f"{i:0{(i % 7) + 1}d},x\n".encode() for i in range(60))[:-1]  # no last \n
    pieces = [piece_lines(io.BytesIO(text), start, min(start + step, len(text)))
              for start in range(0, len(text), step)]
    assert b"".join(pieces) == text
    held = [piece for piece in pieces if piece]
    assert all(piece.endswith(b"\n") for piece in held[:-1])  # whole lines only


@pytest.mark.parametrize(("override", "says"), [
    ("spark.master=nonsense", "spark.master: expected a Spark master URL"),
    ("spark.master=local[0]", "spark.master: expected a Spark master URL"),
    ("spark.conf={executor.memory: 4g}", "spark.conf: expected Spark settings (spark.*)"),
])
def test_a_bad_spark_setting_is_a_one_line_config_error(tmp_path: Path, override: str,
                                                        says: str) -> None:
    data = write_customers(tmp_path / "customers.csv", rows=300)
    config = tmp_path / "pipeline_config.yaml"
    config.write_text(yaml.safe_dump({"data_uri": str(data), "store": str(tmp_path / "s"),
                                      "engine": "spark"}))
    result = subprocess.run([str(CUSTSEG), "run", "-c", str(config), "-p", override],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert says in result.stderr
    assert not (tmp_path / "s").exists()


# -- registered and served like a local model -----------------------------------------------

def _post(url: str, payload: Any) -> Any:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def test_the_local_engine_refuses_parquet_with_a_hint(tmp_path: Path) -> None:
    table, _ = generate_customers(100, 3, seed=1)
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data" / "part-0.parquet")
    with pytest.raises(DataError, match=r"Parquet files: the local engine reads CSV; train "
                                        r"them with engine: spark"):
        read_data(str(tmp_path / "data"))


def test_a_spark_model_is_registered_and_served_like_its_sklearn_twin(spark: Any,
                                                                     tmp_path: Path) -> None:
    """`custseg run -p engine=spark` (its own JVM) on a folder of Parquet files, then the
    real endpoint server: every row's cluster equals the scikit-learn twin's."""
    from test_inference import free_port, wait_for

    table, _ = generate_customers(3000, 3, seed=9)
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(table.slice(0, 1800), data / "part-0.parquet")
    pq.write_table(table.slice(1800), data / "part-1.parquet")
    port = free_port()
    config = tmp_path / "pipeline_config.yaml"
    config.write_text(yaml.safe_dump({
        "data_uri": str(data), "data_file": None, "store": str(tmp_path / "store"),
        "n_clusters": 3,
        "tuning": {"n_init": 2},
        "spark": {"master": MASTER, "conf": {"spark.sql.shuffle.partitions": 4}},
        "endpoint": {"port": port, "workers": 1, "autostart": False}}))
    run = subprocess.run([str(CUSTSEG), "run", "-c", str(config), "-p", "engine=spark",
                          "--json"], capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    execution = json.loads(run.stdout)
    assert execution["status"] == "Succeeded"
    described = subprocess.run([str(CUSTSEG), "models", "describe", "1", "-c", str(config),
                                "--json"], capture_output=True, text=True, timeout=60,
                               check=True)
    lineage = json.loads(described.stdout)["lineage"]
    assert lineage["engine"] == "spark"
    assert lineage["engine_details"]["master"] == MASTER
    assert lineage["engine_details"]["spark_version"] == spark.version
    shown = subprocess.run([str(CUSTSEG), "models", "describe", "1", "-c", str(config)],
                           capture_output=True, text=True, timeout=60, check=True).stdout
    assert f"Engine: spark (Spark {spark.version} on {MASTER})" in shown
    import custseg

    model = custseg.load_model(execution["model_uri"])
    assert model.meta["engine_details"]["master"] == MASTER
    assert model.meta["data"]["files"] == [str(data / "part-0.parquet"),
                                           str(data / "part-1.parquet")]
    assert model.meta["data"]["rows"] == 3000
    server = subprocess.Popen([str(CUSTSEG), "serve", "-c", str(config)], cwd=tmp_path,
                              start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(url)
        records = table.drop_columns(["CustomerID"]).to_pylist()
        served = []
        for s in range(0, len(records), 1000):
            body = _post(f"{url}/endpoints/clustering-model-endpoint-dev/invocations",
                         records[s:s + 1000])
            served += [p["cluster"] for p in body["predictions"]]
        twin = model.to_sklearn().predict(table.to_pandas())
        np.testing.assert_array_equal(np.asarray(served), twin)
        assert len(set(served)) == 3
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)


def test_a_jvm_that_dies_is_reported_once_with_what_to_try(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """When Spark's JVM dies (at 50M rows on local[2] with a 2 GB driver, measured by
    bench_spark), stopping the session fails too: that second error must not hide the
    first, which comes back as a TrainError with a hint on driver memory."""
    pytest.importorskip("pyspark")
    from py4j.protocol import Py4JError

    from custseg.engines import spark as spark_engine
    from custseg.engines.spark_session import SparkHandle
    from custseg.errors import TrainError

    class Gone:
        def stop(self) -> None:
            raise Py4JError("org.apache.spark.sql.classic.SparkSession does not exist in the JVM")

    def died(*_args: Any) -> Any:
        raise Py4JError("Answer from Java side is empty")

    monkeypatch.setattr(spark_engine, "open_session", lambda _opts: SparkHandle(Gone(), True,
                                                                                "local[2]"))
    monkeypatch.setattr(spark_engine, "_train", died)
    data = write_customers(tmp_path / "customers.csv", rows=300)
    cfg = config_from_dict({"data_uri": str(data), "store": str(tmp_path / "s"),
                            "engine": "spark"}, config_dir=tmp_path)
    request = TrainRequest(execution_id="x", data_sha256="0" * 64, previous=None,
                           code_version={})
    with pytest.raises(TrainError, match=r"Spark failed: Answer from Java side is empty "
                                         r"\(Spark's JVM ran out of memory or stopped: raise "
                                         r"spark.driver.memory"):
        spark_engine.train_spark(cfg, request, None)  # type: ignore[arg-type]
