"""The Spark engine over Spark Connect (`spark.remote`), against a real server.

The test session starts pyspark's own Spark Connect server (`spark-submit --class
...SparkConnectServer`, the jar ships in pyspark's wheel: no download) on a free port,
`local[2]`, and stops it at the end. Every training goes through the real CLI in its own
process: pyspark marks a process that opened a Connect session as "Connect mode", which
must not leak into the classic session of `test_spark_engine`. Skipped when pyspark or
java is missing, unless CUSTSEG_REQUIRE_SPARK=1 (CI), where that is a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
import pytest
import yaml

from conftest import write_customers
from custseg.config import config_from_dict
from custseg.core.quality import adjusted_rand
from custseg.engines import java
from custseg.engines.base import TrainRequest
from custseg.engines.local import train_local

CUSTSEG = Path(sys.executable).parent / "custseg"
SERVER_MASTER = "local[2]"
START_TIMEOUT = 90  # seconds for the server's JVM to listen (6-8 s on this machine)


def _require(reason: str | None) -> None:
    if reason is None:
        return
    if os.environ.get("CUSTSEG_REQUIRE_SPARK") == "1":
        pytest.fail(f"CUSTSEG_REQUIRE_SPARK=1, but {reason}")
    pytest.skip(reason)


def _no_pyspark() -> str | None:
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (uv sync --extra spark)"
    if importlib.util.find_spec("grpc") is None:
        return "the Spark Connect client (grpcio) is not installed (uv sync --extra spark)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def connect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`sc://127.0.0.1:PORT` of a Spark Connect server on local[2], for the session."""
    _require(_no_pyspark() or (None if java() is not None else
                               "java is not installed (no java on PATH or in JAVA_HOME)"))
    import pyspark

    home = Path(pyspark.__file__).parent
    port = _free_port()
    log = tmp_path_factory.mktemp("connect") / "server.log"
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_CONNECT_MODE": "0"}
    if (j := java()) is not None and "JAVA_HOME" not in env:
        env["JAVA_HOME"] = str(Path(j).resolve().parent.parent)
    command = [str(home / "bin" / "spark-submit"),
               "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
               "--master", SERVER_MASTER, "--name", "custseg-tests-connect",
               "--conf", f"spark.connect.grpc.binding.port={port}",
               "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
               "--conf", "spark.ui.enabled=false",
               "--conf", "spark.sql.shuffle.partitions=4",
               "--conf", "spark.driver.memory=768m"]
    with log.open("wb") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _listening(port):
            if server.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                pytest.fail(f"the Spark Connect server did not start on port {port}:\n{tail}")
            time.sleep(0.3)
        yield f"sc://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)


class Quiet:
    def stage(self, name: str, fraction: float) -> None:
        pass

    def note(self, message: str) -> None:
        pass


def _project(tmp_path: Path, data: Path, spark: dict[str, Any], **keys: Any) -> Path:
    config = tmp_path / "pipeline_config.yaml"
    config.write_text(yaml.safe_dump({
        "data_uri": str(data), "data_file": None, "store": str(tmp_path / "store"),
        "engine": "spark", "spark": spark, "endpoint": {"autostart": False}, **keys}))
    return config


def _custseg(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CUSTSEG), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_a_model_trained_over_spark_connect_equals_the_local_engines(
        connect_server: str, tmp_path: Path) -> None:
    """`custseg run` with spark.remote: a k sweep (several KMeans fits per k, the
    models released when the training ends) on the server; the same schema, k and
    clusters as the local engine (ARI >= 0.99 on every row), metrics as close as the
    classic Spark engine's; lineage records the server, its master and its version; a
    runtime spark.conf key reaches the server's session."""
    data = write_customers(tmp_path / "customers.csv", rows=4000, segments=4, seed=21)
    keys = {"n_clusters": {"min": 2, "max": 5}, "n_components": 2, "tuning": {"n_init": 2}}
    config = _project(tmp_path, data, {"remote": connect_server,
                                       "conf": {"spark.sql.shuffle.partitions": 3}}, **keys)
    run = _custseg("run", "-c", str(config), "--json")
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr and "Warning" not in run.stderr, run.stderr
    execution = json.loads(run.stdout)
    assert execution["status"] == "Succeeded"
    import custseg

    remote = custseg.load_model(execution["model_uri"])
    cfg = config_from_dict({"data_uri": str(data), "engine": "local", **keys})
    local = train_local(cfg, TrainRequest("t", None, None, {}), Quiet())
    assert remote.schema.to_dict() == local.schema.to_dict()
    assert remote.k == local.k == 4
    table = pacsv.read_csv(data)
    assert adjusted_rand(remote.predict(table), local.predict(table)) >= 0.99
    mr, ml = remote.meta["metrics"], local.meta["metrics"]
    for name in ("calinski_harabasz", "davies_bouldin", "inertia"):
        assert mr[name] == pytest.approx(ml[name], rel=1e-4), name
    assert mr["silhouette"]["value"] == pytest.approx(ml["silhouette"]["value"], abs=0.01)
    assert [c["k"] for c in remote.meta["candidates"]] == [2, 3, 4, 5]
    assert remote.meta["parameters"]["spark"]["conf"] == {"spark.sql.shuffle.partitions": "3"}
    import pyspark

    details = remote.meta["engine_details"]
    assert details["remote"] == connect_server
    assert details["master"] == SERVER_MASTER  # the server's, asked over Connect
    assert details["spark_version"] == pyspark.__version__
    described = _custseg("models", "describe", "1", "-c", str(config), "--json", timeout=60)
    lineage = json.loads(described.stdout)["lineage"]
    assert lineage["engine"] == "spark"
    assert lineage["engine_details"]["remote"] == connect_server
    shown = _custseg("models", "describe", "1", "-c", str(config), timeout=60).stdout
    assert (f"Engine: spark (Spark {pyspark.__version__} over Spark Connect at "
            f"{connect_server}, master {SERVER_MASTER})") in shown


def test_a_static_spark_conf_is_refused_over_spark_connect(connect_server: str,
                                                          tmp_path: Path) -> None:
    """A client cannot set the server's static settings: refused with where to set it,
    not pyspark's warning and a run that ignores it."""
    data = write_customers(tmp_path / "customers.csv", rows=300)
    config = _project(tmp_path, data, {"remote": connect_server,
                                       "conf": {"spark.executor.memory": "3g"}})
    run = _custseg("run", "-c", str(config))
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    port = connect_server.rsplit(":", 1)[1]
    assert (f"spark.conf.spark.executor.memory is '3g', but the Spark Connect server at "
            f"127.0.0.1:{port} does not set it and it cannot change at runtime: set it where "
            "the server starts") in run.stderr


@pytest.mark.parametrize(("remote", "where"), [
    ("sc://spark.example.com", "spark.example.com:15002"),
    ("sc://10.0.0.5:443/;use_ssl=true;token=SECRET", "10.0.0.5:443"),
    ("sc://[::1]:15003", "[::1]:15003"),
])
def test_errors_name_the_server_without_the_urls_parameters(remote: str, where: str) -> None:
    """What errors print of spark.remote: host and port, never a token."""
    from custseg.engines.spark_connect import endpoint

    assert endpoint(remote) == where


def test_an_unreachable_spark_connect_server_is_a_one_line_error(tmp_path: Path) -> None:
    """No server at spark.remote: exit code 2 within seconds (not pyspark's minutes of
    retries), naming the address and what to check; the run is recorded as Failed."""
    _require(_no_pyspark())
    data = write_customers(tmp_path / "customers.csv", rows=300)
    port = _free_port()  # nothing listens there
    config = _project(tmp_path, data, {"remote": f"sc://127.0.0.1:{port}"})
    started = time.monotonic()
    run = _custseg("run", "-c", str(config), timeout=120)
    assert time.monotonic() - started < 60
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and "RETRIES_EXCEEDED" not in run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(
        f"error: cannot reach the Spark Connect server at 127.0.0.1:{port} (spark.remote): "
        "UNAVAILABLE")
    assert "Check that a Spark Connect server is running there" in lines[0]
    listed = _custseg("executions", "list", "-c", str(config), "--json", timeout=60)
    executions = json.loads(listed.stdout)
    assert [e["status"] for e in executions] == ["Failed"]
