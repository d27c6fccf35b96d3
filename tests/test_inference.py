"""The endpoint server, as apps see it: real `custseg serve` processes on free ports,
real HTTP (urllib) and the real boto3 sagemaker-runtime client."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.csv as pacsv
import pytest
import yaml

from custseg.core.sample import generate_customers

CUSTSEG = Path(sys.executable).parent / "custseg"
ENDPOINT = "clustering-model-endpoint-dev"
RECORD = {"Age": 30, "Income": 50000, "Purchases": 10, "Gender": "Male"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Project:
    root: Path
    config: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        # these projects say in their config whether `run` starts a server
        base = {k: v for k, v in os.environ.items() if k != "CUSTSEG__ENDPOINT__AUTOSTART"}
        return subprocess.run([str(CUSTSEG), *args, "-c", str(self.config)], cwd=self.root,
                              capture_output=True, text=True, timeout=120, check=False,
                              env={**base, **(env or {})})


def make_project(root: Path, **endpoint: Any) -> Project:
    root.mkdir(parents=True, exist_ok=True)
    table, _ = generate_customers(2000, segments=3, seed=1)
    pacsv.write_csv(table, root / "customers.csv")
    port = free_port()
    config = root / "pipeline_config.yaml"
    config.write_text(yaml.safe_dump({
        "data_uri": "customers.csv", "store": "store",
        "endpoint": {"port": port, "workers": 2, "autostart": False, **endpoint},
    }))
    return Project(root, config, port)


def request(method: str, url: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def post_json(url: str, payload: Any, headers: dict[str, str] | None = None
              ) -> tuple[int, dict[str, str], Any]:
    status, h, body = request("POST", url, json.dumps(payload).encode(),
                              {"Content-Type": "application/json", **(headers or {})})
    return status, h, json.loads(body) if body else None


def wait_for(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/ping", timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"server at {url} did not become healthy")


@contextmanager
def serving(project: Project, env: dict[str, str] | None = None
            ) -> Iterator[subprocess.Popen[bytes]]:
    """`custseg serve` on the project (its output in `serve.log`) until the block ends,
    then stopped gracefully (SIGTERM to its process group) and waited for."""
    with open(project.root / "serve.log", "ab") as log:
        proc = subprocess.Popen([str(CUSTSEG), "serve", "-c", str(project.config)],
                                cwd=project.root, start_new_session=True, stdout=log,
                                stderr=subprocess.STDOUT,
                                env=None if env is None else {**os.environ, **env})
    try:
        wait_for(project.url)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """A trained project and its endpoint served by `custseg serve --workers 2`."""
    project = make_project(tmp_path_factory.mktemp("served"))
    result = project.cli("run")
    assert result.returncode == 0, result.stderr
    with serving(project):
        yield project


def model_of(project: Project) -> Any:
    import custseg

    model_dir = next((project.root / "store" / "artifacts" / "executions").glob("*/model"))
    return custseg.load_model(str(model_dir))


def expected_clusters(project: Project, records: list[dict[str, Any]]) -> list[int]:
    return [int(c) for c in model_of(project).predict(records)]


# -- the wire contract -----------------------------------------------------------------------

@pytest.mark.parametrize("shape", ["record", "list", "instances", "dataframe_records",
                                   "dataframe_split", "csv"])
def test_every_request_shape_scores_like_the_model(served: Project, shape: str) -> None:
    records = [RECORD, {"Age": 62, "Income": 180000, "Purchases": 3, "Gender": "Female"},
               {"Age": 25, "Income": None, "Purchases": 35, "Gender": "Other"}]
    bodies: dict[str, Any] = {
        "record": RECORD, "list": records, "instances": {"instances": records},
        "dataframe_records": {"dataframe_records": records},
        "dataframe_split": {"dataframe_split": {
            "columns": list(RECORD), "data": [[r[c] for c in RECORD] for r in records]}},
    }
    url = f"{served.url}/endpoints/{ENDPOINT}/invocations"
    if shape == "csv":
        text = "Age,Income,Purchases,Gender\n" + "".join(
            f"{r['Age']},{'' if r['Income'] is None else r['Income']},{r['Purchases']},"
            f"{r['Gender']}\n" for r in records)
        status, headers, raw = request("POST", url, text.encode(), {"Content-Type": "text/csv"})
        body = json.loads(raw)
    else:
        status, headers, body = post_json(url, bodies[shape])
    assert status == 200, body
    sent = [RECORD] if shape == "record" else records
    got = [p["cluster"] for p in body["predictions"]]
    assert got == expected_clusters(served, sent)
    names = model_of(served).meta["segment_names"]
    assert all(p["segment"] == names[p["cluster"]] and p["distance"] >= 0
               for p in body["predictions"])
    assert headers["x-custseg-model-version"] == "clustering-model-model-group/1"


def test_a_csv_body_with_a_byte_order_mark_is_read_by_its_header(served: Project) -> None:
    """Excel writes a UTF-8 BOM before the header; it is no part of the first name."""
    text = "\ufeffAge,Income,Purchases,Gender\n30,50000,10,Male\n"
    status, _, raw = request("POST", f"{served.url}/endpoints/{ENDPOINT}/invocations",
                             text.encode(), {"Content-Type": "text/csv"})
    assert status == 200, raw
    assert [p["cluster"] for p in json.loads(raw)["predictions"]] == expected_clusters(
        served, [{"Age": 30, "Income": 50000, "Purchases": 10, "Gender": "Male"}])


def test_csv_response_on_accept(served: Project) -> None:
    status, headers, raw = request(
        "POST", f"{served.url}/invocations", json.dumps([RECORD, RECORD]).encode(),
        {"Content-Type": "application/json", "Accept": "text/csv"})
    assert status == 200 and headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(raw.decode())))
    assert len(rows) == 2 and set(rows[0]) == {"cluster", "segment", "distance"}


@pytest.mark.parametrize(("body", "content_type", "status", "message"), [
    (b'{"Age": 30, "Income": 5', "application/json", 400, "malformed JSON"),
    (json.dumps({**RECORD, "Age": "old"}).encode(), "application/json", 400,
     "field 'Age' must be a number, found 'old'"),
    (json.dumps({"Age": 30, "Income": 1, "Purchases": 2}).encode(), "application/json", 400,
     "field 'Gender' is missing"),
    (b"", "application/json", 400, "empty request body"),
    (b"Age,Income\n1,2,3\n", "text/csv", 400, "CSV row"),
    (b"<xml/>", "application/xml", 415, "unsupported Content-Type"),
    (b"x" * (7 * 1024 * 1024), "application/json", 413, "limit"),
    (b'{"instances": ' * 900 + b"{}" + b"}" * 900, "application/json", 400, "field"),
    (json.dumps({"dataframe_split": {"columns": [[1]], "data": [[1]]}}).encode(),
     "application/json", 400, "column 0 must be a name"),
    (b"Age,Income,Purchases,Gender\n30,50000,10,\"" + b"M" * 140_000 + b"\"\n", "text/csv",
     400, "CSV line"),
    (b"Age,Income,Purchases,Gender\n", "text/csv", 400, "header but no data rows"),
    (json.dumps({**RECORD, "Gender": ["Male"]}).encode(), "application/json", 400,
     "field 'Gender' must be a category (text or a number), found list"),
    (json.dumps({**RECORD, "Gender": {"v": "Male"}}).encode(), "application/json", 400,
     "field 'Gender' must be a category (text or a number), found dict"),
    (json.dumps([RECORD] * 20 + [{**RECORD, "Gender": ["Male"]}]).encode(), "application/json",
     400, "record 20: field 'Gender' must be a category"),
    (json.dumps({**RECORD, "Age": True}).encode(), "application/json", 400,
     "field 'Age' must be a number, found true"),
    (json.dumps([RECORD] * 20 + [{**RECORD, "Purchases": False}]).encode(), "application/json",
     400, "record 20: field 'Purchases' must be a number, found false"),
])
def test_bad_requests_get_specific_errors_and_never_take_a_worker_down(
        served: Project, body: bytes, content_type: str, status: int, message: str) -> None:
    got, headers, raw = request("POST", f"{served.url}/endpoints/{ENDPOINT}/invocations", body,
                                {"Content-Type": content_type})
    assert got == status
    error = json.loads(raw)
    assert message in error["message"]
    assert headers["x-amzn-errortype"]
    ok, _, _ = post_json(f"{served.url}/invocations", RECORD)  # the workers still answer
    assert ok == 200


@pytest.mark.parametrize("body", [
    {**RECORD, "Income": 1e200}, [{**RECORD, "Income": 1e200}] * 12])
def test_huge_values_never_give_a_null_distance(served: Project, body: Any) -> None:
    status, _, payload = post_json(f"{served.url}/invocations", body)
    if status == 200:  # clipped at the training bounds (features.transform: auto)
        assert all(p["distance"] is not None and p["distance"] >= 0
                   for p in payload["predictions"])
    else:
        assert status == 400 and "too large to score" in payload["message"]


def test_an_overflowing_distance_is_refused_by_record_number() -> None:
    from custseg.serving.scoring import check_distances
    from custseg.serving.wire import WireError

    check_distances([0.5, 1.0])
    check_distances(np.array([0.5, 1.0]))
    with pytest.raises(WireError, match="record 1: its values are too large"):
        check_distances([0.5, float("inf")])
    with pytest.raises(WireError, match="record 2: its values are too large"):
        check_distances(np.array([0.5, 1.0, np.nan]))


def _requests_total(metrics: str) -> int:
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in metrics.splitlines()
               if line.startswith("custseg_requests_total{") and 'status="200"' in line)


def test_latency_histogram_is_cumulative_and_merges() -> None:
    from custseg.serving.metrics import BUCKETS, Metrics

    mine, other = Metrics(), Metrics()
    for seconds in (0.0002, 0.0005, 0.003, 0.3, 5.0):  # 0.0005 sits on a bound: le
        mine.observe("e", "g/1", 200, seconds, 1)
    other.observe("e", "g/1", 200, 0.0007, 3)
    other.observe("e", "g/1", 400, 0.0, 0)  # refused: counted, not timed
    mine.add(other.snapshot())
    text = mine.render().decode()
    got = {line.split('le="')[1].split('"')[0]: int(line.rsplit(" ", 1)[1])
           for line in text.splitlines() if line.startswith("custseg_request_seconds_bucket")}
    want = {0.0005: 2, 0.001: 3, 0.0025: 3, 0.005: 4, 0.25: 4, 0.5: 5, 2.5: 5}
    for bound in BUCKETS:
        expected = max((n for b, n in want.items() if b <= bound), default=0)
        assert got[str(bound)] == expected, bound
    assert got["+Inf"] == 6
    assert 'custseg_records_total{endpoint="e",version="g/1"} 8' in text
    assert 'status="400"} 1' in text


def test_metrics_sum_every_worker(served: Project) -> None:
    def scrape() -> str:
        status, _, body = request("GET", served.url + "/metrics")
        assert status == 200
        return body.decode()

    time.sleep(0.5)
    before = _requests_total(scrape())
    for _ in range(40):  # a new connection each: both workers take some
        assert post_json(f"{served.url}/invocations", RECORD)[0] == 200
    time.sleep(0.5)  # each worker shares its counters after its next look at the store
    for _ in range(4):  # whichever worker answers, it sees the whole server
        text = scrape()
        assert "custseg_workers 2" in text
        assert _requests_total(text) == before + 40


@pytest.mark.parametrize(("reason", "uri", "public"), [
    ("model artifact /srv/s/artifacts/e1/model: arrays.npz does not match its sha256",
     "/srv/s/artifacts/e1/model", "model artifact of g/3: arrays.npz does not match its sha256"),
    ("no model artifact at /srv/s/e1/model", "/srv/s/e1/model/", "no model artifact of g/3"),
    ("model artifact s3://bkt/p/model is missing model.json", "s3://bkt/p/model",
     "model artifact of g/3 is missing model.json"),
    ("OSError: [Errno 13] Permission denied: '/srv/s/e1/model/arrays.npz'",
     "/elsewhere/model", "OSError: [Errno 13] Permission denied: '<path>'"),
    ("cannot read s3://other/key (file:///x/y) near ~/z", "", "cannot read <path> (<path>) "
     "near ~/z"),
    ("schema check: field 'Age' changes from categorical to numeric", "/m",
     "schema check: field 'Age' changes from categorical to numeric"),
])
def test_the_reason_an_endpoint_has_no_model_shows_callers_no_server_path(
        reason: str, uri: str, public: str) -> None:
    from custseg.serving.endpoints import public_reason

    assert public_reason(reason, uri, "g/3") == public


@pytest.mark.parametrize(("path", "status"), [
    (f"/endpoints/{ENDPOINT}-nope/invocations", 404), ("/endpoints/..%2Fetc/invocations", 400),
    ("/endpoints/a_b/invocations", 400), ("/nowhere", 404)])
def test_unknown_and_invalid_endpoint_names(served: Project, path: str, status: int) -> None:
    method = "POST" if path.endswith("invocations") else "GET"
    got, _, _ = request(method, served.url + path, b"{}", {"Content-Type": "application/json"})
    assert got == status


def test_ping_endpoints_metrics_and_docs(served: Project) -> None:
    assert request("GET", served.url + "/ping")[0] == 200
    status, _, raw = request("GET", served.url + "/endpoints")
    assert status == 200
    (endpoint,) = json.loads(raw)["endpoints"]
    assert endpoint["name"] == ENDPOINT and endpoint["status"] == "InService"
    assert endpoint["model_version"] == "clustering-model-model-group/1"
    status, _, raw = request("GET", f"{served.url}/endpoints/{ENDPOINT}")
    detail = json.loads(raw)
    assert status == 200 and detail["record"]["history"][0]["version"] == 1
    for _ in range(6):  # both workers see some traffic
        post_json(f"{served.url}/invocations", RECORD)
    status, _, raw = request("GET", served.url + "/metrics")
    text = raw.decode()
    assert status == 200 and "custseg_requests_total" in text
    assert "custseg_request_seconds_bucket" in text
    spec = json.loads(request("GET", served.url + "/openapi.json")[2])
    assert "/endpoints/{name}/invocations" in spec["paths"]
    # the live endpoint's own path, with the fields its model takes
    mine = spec["paths"][f"/endpoints/{ENDPOINT}/invocations"]["post"]
    record = mine["requestBody"]["content"]["application/json"]["schema"]["oneOf"][0]
    model = model_of(served)
    assert sorted(record["properties"]) == sorted(model.input_columns)
    assert record["properties"]["Gender"]["examples"] == model.transform.categories[0]
    assert post_json(f"{served.url}/endpoints/{ENDPOINT}/invocations",
                     record["example"])[0] == 200  # the documented example scores
    status, _, page = request("GET", served.url + "/docs")
    assert status == 200 and ENDPOINT.encode() in page


def test_the_openapi_document_is_the_route_table_and_every_route_answers(
        served: Project) -> None:
    """Generated from the table the app dispatches on: each documented route answers its
    method (never 404/405), and the other methods get 405."""
    from custseg.serving.routes import ROUTES

    spec = json.loads(request("GET", served.url + "/openapi.json")[2])
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert {(r.method, r.path) for r in ROUTES if not r.ui} <= documented
    assert not any(p.startswith("/ui") for p in spec["paths"])  # pages, not the API
    assert ("POST", f"/endpoints/{ENDPOINT}/invocations") in documented  # the live one
    for method, path in sorted(documented):
        url = served.url + path.replace("{name}", ENDPOINT)
        body = json.dumps(RECORD).encode() if method == "POST" else None
        status = request(method, url, body, {"Content-Type": "application/json"})[0]
        assert status == 200, (method, path, status)
        other = "GET" if method == "POST" else "POST"
        assert request(other, url, b"{}")[0] == 405, (other, path)
    assert request("GET", served.url + "/nowhere")[0] == 404


# -- boto3 -----------------------------------------------------------------------------------

@pytest.fixture()
def runtime(served: Project) -> Any:
    import boto3

    return boto3.client("sagemaker-runtime", endpoint_url=served.url, region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="x")


def test_the_seeds_boto3_snippet_works_unchanged(served: Project, runtime: Any) -> None:
    response = runtime.invoke_endpoint(EndpointName=ENDPOINT, ContentType="application/json",
                                       Body=json.dumps(RECORD))
    result = json.loads(response["Body"].read())
    assert [p["cluster"] for p in result["predictions"]] == expected_clusters(served, [RECORD])
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"].startswith(
        "clustering-model-endpoint-config-dev-")


def test_boto3_raises_validation_error_with_our_message(runtime: Any) -> None:
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as info:
        runtime.invoke_endpoint(EndpointName=ENDPOINT, ContentType="application/json",
                                Body=json.dumps({**RECORD, "Income": "lots"}))
    error = info.value.response["Error"]
    assert error["Code"] == "ValidationError"
    assert "field 'Income' must be a number, found 'lots'" in error["Message"]


# -- security --------------------------------------------------------------------------------

def test_api_key_is_required_on_every_invocation(tmp_path: Path) -> None:
    import boto3

    project = make_project(tmp_path, api_key_env="SEG_KEY")
    env = {"SEG_KEY": "s3cret-key"}
    assert project.cli("run", env=env).returncode == 0
    proc = subprocess.Popen([str(CUSTSEG), "serve", "-c", str(project.config)],
                            cwd=project.root, start_new_session=True,
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(project.url)
        url = f"{project.url}/invocations"
        assert post_json(url, RECORD)[0] == 401
        assert post_json(url, RECORD, {"X-Api-Key": "wrong"})[0] == 401
        assert post_json(url, RECORD, {"X-Api-Key": "s3cret-key"})[0] == 200
        assert post_json(url, RECORD, {"Authorization": "Bearer s3cret-key"})[0] == 200
        client = boto3.client("sagemaker-runtime", endpoint_url=project.url,
                              region_name="us-east-1", aws_access_key_id="x",
                              aws_secret_access_key="x")
        response = client.invoke_endpoint(EndpointName=ENDPOINT, Body=json.dumps(RECORD),
                                          ContentType="application/json",
                                          CustomAttributes="api_key=s3cret-key")
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert request("GET", project.url + "/ping")[0] == 200  # health needs no key
        assert request("GET", project.url + "/endpoints")[0] == 401  # names internals
        assert request("GET", project.url + "/endpoints", headers={"X-Api-Key": "s3cret-key"}
                       )[0] == 200
        status, _, body = request("GET", project.url + "/metrics")
        assert status == 401 and b"custseg_" not in body  # versions and worker pids
        status, _, body = request("GET", project.url + "/metrics",
                                  headers={"X-Api-Key": "s3cret-key"})
        assert status == 200 and b"custseg_" in body
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def test_binding_beyond_loopback_without_a_key_is_refused(tmp_path: Path) -> None:
    project = make_project(tmp_path, host="0.0.0.0")
    assert project.cli("run").returncode == 0
    result = subprocess.run([str(CUSTSEG), "serve", "-c", str(project.config)],
                            cwd=project.root, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "refusing to bind 0.0.0.0 without an API key" in result.stderr
    assert "Traceback" not in result.stderr
