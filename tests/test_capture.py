"""Data capture on a real server: `custseg serve` on a free port, real HTTP requests,
a graceful stop (SIGTERM), then the Parquet files it wrote, read back; a queue of one
that must drop (and count) rather than slow a request; unseen categories in /metrics."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from custseg.config import load_config
from custseg.serving.settings import ServerSettings
from test_inference import ENDPOINT, RECORD, Project, make_project, post_json, request, serving

KEY = "capture-test-key-0123"


def _serve(project: Project) -> AbstractContextManager[subprocess.Popen[bytes]]:
    return serving(project, env={"CAPTURE_KEY": KEY})


def _log(project: Project) -> str:
    return (project.root / "serve.log").read_text(errors="replace")


def _captured(project: Project) -> list[dict[str, Any]]:
    """Every captured record, from the files as written: a row per record (endpoints
    with PII fields), or a row per request with its body, parsed here as `custseg
    monitor` parses it."""
    from custseg.serving.capture_table import expand_requests, is_requests_table
    from test_inference import model_of

    folder = project.root / "store" / "artifacts" / "capture" / ENDPOINT
    rows: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*/*.parquet")):
        table = pq.read_table(path)
        if is_requests_table(table):
            assert table.column_names == ["time", "model_version", "request", "content_type",
                                          "body", "cluster", "distance", "segment_names"]
            table = expand_requests(table, model_of(project).input_columns)
        for row in table.to_pylist():
            fields = {k.removeprefix("input."): v for k, v in row.items()
                      if k.startswith("input.") and v is not None}
            rows.append({k: v for k, v in row.items() if not k.startswith("input.")}
                        | {"input": fields})
    return rows


def _metric(url: str, name: str, **labels: str) -> float:
    _, _, body = request("GET", f"{url}/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Project:
    project = make_project(tmp_path_factory.mktemp("capture"))
    result = project.cli("run")
    assert result.returncode == 0, result.stderr
    return project


def _configure(project: Project, **capture: Any) -> None:
    config = yaml.safe_load(project.config.read_text())
    config["endpoint"]["capture"] = capture
    project.config.write_text(yaml.safe_dump(config))


@pytest.fixture()
def project(trained: Project) -> Iterator[Project]:
    """The trained project; the capture files of the test removed after it."""
    yield trained
    for path in (trained.root / "store" / "artifacts" / "capture").glob("**/*.parquet"):
        path.unlink()


def test_a_sample_of_requests_is_captured_with_the_pii_hashed_and_flushed_at_shutdown(
        project: Project) -> None:
    _configure(project, sample=0.3, pii=["Email"], pii_key_env="CAPTURE_KEY")
    with _serve(project):
        for i in range(400):
            record = {**RECORD, "Age": 20 + i % 50, "Email": f"user{i}@example.com"}
            status, headers, _ = post_json(f"{project.url}/endpoints/{ENDPOINT}/invocations",
                                           record)
            assert status == 200
        status, _, _ = post_json(f"{project.url}/invocations", [RECORD] * 3)
        assert status == 200
    rows = _captured(project)
    assert "Traceback" not in _log(project)
    singles = [r for r in rows if r["input"].get("Email") is not None]
    assert 0.2 * 400 < len(singles) < 0.4 * 400  # sampled at 0.3 (p of failing ~1e-5)
    version = headers["x-custseg-model-version"]
    assert {r["model_version"] for r in rows} == {version}
    emails = {f"user{i}@example.com" for i in range(400)}
    for row in singles:
        assert row["input"]["Email"] not in emails
        assert row["input"]["Age"] in {float(20 + i % 50) for i in range(400)}
        assert row["time"] is not None and row["distance"] >= 0
    row = singles[0]
    sent = next(e for e in emails if hmac.new(KEY.encode(), e.encode(), hashlib.sha256
                                              ).hexdigest() == row["input"]["Email"])
    assert sent  # keyed sha256 of the value: equal values stay equal, guesses need the key
    assert hashlib.sha256(sent.encode()).hexdigest() != row["input"]["Email"]
    expected = serving_model_prediction(project, row["input"])
    assert (row["cluster"], pytest.approx(row["distance"])) == expected


def serving_model_prediction(project: Project, record: dict[str, Any]) -> tuple[int, Any]:
    from test_inference import model_of

    model = model_of(project)
    label, distance = model.score_record({k: record[k] for k in model.input_columns})
    return label, pytest.approx(distance)


def test_omitted_pii_fields_are_not_written(project: Project) -> None:
    _configure(project, sample=1.0, pii=["Email", "Phone"], pii_action="omit")
    with _serve(project):
        records = [{**RECORD, "Email": "a@b.c", "Phone": "555"}] * 5
        status, _, _ = post_json(f"{project.url}/invocations", records)
        assert status == 200
    rows = _captured(project)
    assert len(rows) == 5
    assert all(set(r["input"]) == set(RECORD) for r in rows)
    assert "a@b.c" not in json.dumps(rows, default=str)


def test_a_full_queue_drops_and_counts_and_never_fails_a_request(project: Project) -> None:
    # one worker, a queue of one and files written on every record: requests outrun the
    # writer thread, and what does not fit is dropped
    _configure(project, sample=1.0, queue_size=1, file_records=1)
    config = yaml.safe_load(project.config.read_text())
    config["endpoint"]["workers"] = 1
    project.config.write_text(yaml.safe_dump(config))
    statuses: list[int] = []
    with _serve(project):
        def send() -> None:
            for _ in range(60):
                statuses.append(post_json(f"{project.url}/invocations", [RECORD] * 50)[0])

        threads = [threading.Thread(target=send) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        dropped = _metric(project.url, "custseg_capture_records_total", outcome="dropped")
        captured = _metric(project.url, "custseg_capture_records_total", outcome="captured")
    assert statuses == [200] * 240
    assert dropped > 0 and dropped % 50 == 0  # whole requests
    assert captured + dropped <= 240 * 50
    # what was counted, and the one request the queue held at the stop, written by it
    assert captured <= len(_captured(project)) <= captured + 50


def test_unseen_categories_are_counted_per_feature(project: Project) -> None:
    _configure(project, sample=0.01)
    with _serve(project):
        url = f"{project.url}/invocations"
        assert post_json(url, {**RECORD, "Gender": "Martian"})[0] == 200
        assert post_json(url, [{**RECORD, "Gender": "Venusian"}] * 12 + [RECORD])[0] == 200
        assert post_json(url, {**RECORD, "Gender": None})[0] == 200  # missing: the mode
        unseen = _metric(project.url, "custseg_unseen_categories_total", feature="Gender")
    assert unseen == 13


def test_the_server_runs_with_the_configs_capture_settings(trained: Project) -> None:
    _configure(trained, sample=0.5, max_mb=1, pii=["Email"])
    cfg = load_config(trained.config)
    settings = ServerSettings.from_config(cfg, "db", "artifacts")
    path = settings.write(trained.root / "settings.json")
    assert ServerSettings.read(path) == settings
    assert settings.capture is not None and settings.capture.pii == ("Email",)
    recorded = settings.record()
    assert settings.differences(recorded) == []
    _configure(trained, sample=0.2, max_mb=1, pii=["Email"])
    changed = ServerSettings.from_config(load_config(trained.config), "db", "artifacts")
    assert changed.differences(recorded) == ["capture.sample 0.5 -> 0.2"]
    config = yaml.safe_load(trained.config.read_text())
    del config["endpoint"]["capture"]
    trained.config.write_text(yaml.safe_dump(config))
    off = ServerSettings.from_config(load_config(trained.config), "db", "artifacts")
    assert off.differences(recorded) == ["capture on -> off"]


@pytest.mark.parametrize(("capture", "message"), [
    ({"sample": 1.5}, "endpoint.capture.sample: Input should be less than or equal to 1"),
    ({"sample": 0}, "endpoint.capture.sample: Input should be greater than 0"),
    ({"pii_action": "mask"}, "endpoint.capture.pii_action: Input should be 'hash' or 'omit'"),
    ({"max_md": 5}, "unknown key 'endpoint.capture.max_md'; did you mean 'max_mb'?"),
])
def test_capture_settings_are_validated_with_the_key_named(tmp_path: Path, capture: Any,
                                                            message: str) -> None:
    from custseg.config import config_from_dict
    from custseg.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        config_from_dict({"data_uri": "x.csv", "endpoint": {"capture": capture}})


def test_a_missing_pii_key_variable_stops_serve_with_one_line(project: Project) -> None:
    _configure(project, pii=["Email"], pii_key_env="NO_SUCH_CAPTURE_KEY")
    result = project.cli("serve")
    assert result.returncode == 2
    assert ("endpoint.capture.pii_key_env names the environment variable "
            "'NO_SUCH_CAPTURE_KEY', which is not set") in result.stderr
    assert "Traceback" not in result.stderr
