"""The local engine past its memory: a clear refusal before reading, a clear error when
an allocation fails while training (engines/memory), on real processes."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import StoreProject, write_customers
from custseg.engines.memory import (
    SAMPLE_BYTES,
    Need,
    Room,
    _cgroup_rooms,
    _meminfo,
    available,
    check_fits,
    estimate_csv,
)
from custseg.errors import MemoryLimitError

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and rlimits")
MB = 1 << 20


# -- the estimate --------------------------------------------------------------------------


def test_a_file_within_the_sample_has_its_exact_rows(tmp_path: Path) -> None:
    path = write_customers(tmp_path / "c.csv", rows=2_000)
    need = estimate_csv([str(path)])
    assert need is not None and need.rows_exact and need.rows == 2_000
    assert need.source == str(path)


@pytest.mark.parametrize("name", ["c.csv", "c.csv.gz"])
def test_a_larger_file_has_its_rows_estimated_from_a_sample(tmp_path: Path, name: str) -> None:
    path = write_customers(tmp_path / name, rows=200_000)
    assert path.stat().st_size > SAMPLE_BYTES or name.endswith(".gz")
    need = estimate_csv([str(path)])
    assert need is not None and not need.rows_exact
    # ids grow longer down the file (the head's rows are shorter), and a gzip sample's
    # compression ratio is approximate: near, not exact
    assert 0.85 * 200_000 <= need.rows <= 1.2 * 200_000


def test_the_need_grows_with_rows_and_columns_read(tmp_path: Path) -> None:
    small = estimate_csv([str(write_customers(tmp_path / "a.csv", rows=100_000))])
    big = estimate_csv([str(write_customers(tmp_path / "b.csv", rows=300_000))])
    fewer = estimate_csv([str(tmp_path / "b.csv")], include=["Age", "Income"])
    assert small is not None and big is not None and fewer is not None
    assert small.resident < big.resident < big.address_space
    assert fewer.resident < big.resident


def test_folders_count_every_file(tmp_path: Path) -> None:
    one = write_customers(tmp_path / "d" / "1.csv", rows=100_000)
    two = write_customers(tmp_path / "d" / "2.csv", rows=100_000, seed=1)
    alone = estimate_csv([str(one)])
    both = estimate_csv([str(one), str(two)])
    assert alone is not None and both is not None
    assert both.rows == pytest.approx(2 * alone.rows, rel=0.05)
    assert both.source.startswith("2 files")


def test_an_unparseable_sample_gives_no_estimate(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"a,b\n1,2\n3\n")  # a row short of a field: reading says where
    assert estimate_csv([str(bad)]) is None
    gz = tmp_path / "bad.csv.gz"
    gz.write_bytes(b"not gzip at all")
    assert estimate_csv([str(gz)]) is None


def test_the_refusal_names_file_rows_estimate_room_and_what_to_do() -> None:
    need = Need("data/big.csv", 12_345_678, False, 900 * MB, 3_000 * MB)
    rooms = [Room(4_000 * MB, "MemAvailable (/proc/meminfo)", "resident"),
             Room(500 * MB, "the cgroup memory limit", "resident"),
             Room(5_000 * MB, "RLIMIT_AS (ulimit -v)", "address space")]
    with pytest.raises(MemoryLimitError) as caught:
        check_fits(need, rooms)
    message = str(caught.value)
    for part in ("data/big.csv", "about 12,345,678 rows", "900 MB of resident", "500 MB is "
                 "available", "the cgroup memory limit", "-p engine=spark", "sample"):
        assert part in message, (part, message)
    assert caught.value.exit_code == 3
    check_fits(need, rooms[:1])  # fits: no error
    check_fits(need, [])  # nothing known (not Linux): no error


# -- what is available ---------------------------------------------------------------------


def test_meminfo_gives_mem_available(tmp_path: Path) -> None:
    (tmp_path / "meminfo").write_text("MemTotal: 100 kB\nMemFree: 10 kB\nMemAvailable: 2048 kB\n")
    room = _meminfo(tmp_path / "meminfo")
    assert room is not None and room.bytes == 2048 * 1024 and room.kind == "resident"
    assert _meminfo(tmp_path / "missing") is None


def test_cgroup_v2_limits_less_working_set_at_every_level(tmp_path: Path) -> None:
    (tmp_path / "proc").write_text("0::/outer/inner\n")
    inner, outer = tmp_path / "cg" / "outer" / "inner", tmp_path / "cg" / "outer"
    inner.mkdir(parents=True)
    for folder, limit, current, inactive in ((inner, "max", 10, 0),
                                             (outer, str(1000 * MB), 600 * MB, 100 * MB)):
        (folder / "memory.max").write_text(limit + "\n")
        (folder / "memory.current").write_text(f"{current}\n")
        (folder / "memory.stat").write_text(f"anon 5\ninactive_file {inactive}\n")
    rooms = _cgroup_rooms(tmp_path / "proc", tmp_path / "cg")
    assert [r.bytes for r in rooms] == [500 * MB]  # 1000 - (600 - 100); "max": no limit
    assert "memory.max" in rooms[0].what


def test_cgroup_v1_memory_controller(tmp_path: Path) -> None:
    (tmp_path / "proc").write_text("4:memory:/job\n3:cpu:/\n")
    job = tmp_path / "cg" / "memory" / "job"
    job.mkdir(parents=True)
    (job / "memory.limit_in_bytes").write_text(f"{512 * MB}\n")
    (job / "memory.usage_in_bytes").write_text(f"{200 * MB}\n")
    (job / "memory.stat").write_text(f"total_inactive_file {50 * MB}\n")
    (tmp_path / "cg" / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (tmp_path / "cg" / "memory" / "memory.usage_in_bytes").write_text("1\n")
    rooms = _cgroup_rooms(tmp_path / "proc", tmp_path / "cg")
    assert [r.bytes for r in rooms] == [362 * MB]  # the root's "unlimited" is no limit


@linux
def test_available_here_includes_mem_available() -> None:
    assert any(r.what.startswith("MemAvailable") and r.bytes > 0 for r in available())


# -- real `custseg run` processes ----------------------------------------------------------

ROWS = 300_000


@pytest.fixture(scope="module")
def big_project(store_project: Callable[..., StoreProject]) -> StoreProject:
    """A project over 300,000 customers."""
    return store_project("memory", rows=ROWS)


def _run(project: StoreProject, *args: str, preexec: object = None,
         python: str | None = None) -> subprocess.CompletedProcess[str]:
    command = project.command("run", "--no-cache", *args)
    if python is not None:  # the same command through a wrapper script
        command = [sys.executable, "-c", python, *command[1:]]
    return subprocess.run(command, cwd=project.root, capture_output=True, text=True,
                          timeout=300, check=False, preexec_fn=preexec,  # type: ignore[arg-type]
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})


def _artifacts(project: StoreProject) -> list[str]:
    folder = project.store / "artifacts"
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def _executions(project: StoreProject) -> list[dict[str, object]]:
    return project.query("SELECT id, status, error FROM executions ORDER BY started_at")


@linux
def test_a_low_address_space_limit_is_refused_before_reading(big_project: StoreProject) -> None:
    before = _artifacts(big_project)
    limit = 900 * MB  # starts custseg, far below what 300,000 rows need (~1.2 GB measured)

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    result = _run(big_project, preexec=low_limit)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    for part in (str(big_project.data), "about", "rows) needs about", "MB of address space",
                 "is available (RLIMIT_AS", "-p engine=spark"):
        assert part in message, (part, message)
    assert _artifacts(big_project) == before  # nothing half-written
    last = _executions(big_project)[-1]
    assert last["status"] == "Failed" and "needs about" in str(last["error"])
    # the store is sound: the same run without the limit trains and registers
    again = _run(big_project, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["status"] == "Succeeded"
    assert _executions(big_project)[-1]["status"] == "Succeeded"


# Runs `custseg run` with the address space limited, from the moment PCA starts, to what
# the process holds plus 64 MB, and PCA asking for 1 GB more than it does today: a real
# allocation failing under a real limit, in training, whatever the machine's overcommit.
TIGHT_IN_PCA = """
import resource, sys
import numpy as np
import custseg.core.train as core_train
from custseg.cli.commands import main

real = core_train.fit_pca

def fit_pca(*args, **kwargs):
    size = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status")
                if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (size + (64 << 20), resource.RLIM_INFINITY))
    np.ones(1 << 27)  # 1 GB
    return real(*args, **kwargs)

core_train.fit_pca = fit_pca
sys.argv = ["custseg", *sys.argv[1:]]
main()
"""


@linux
def test_an_allocation_failing_in_training_is_the_same_clear_error(
        big_project: StoreProject) -> None:
    before = _artifacts(big_project)
    result = _run(big_project, python=TIGHT_IN_PCA)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    for part in ("ran out of memory training on", str(big_project.data), "Unable to allocate",
                 "is available (", "-p engine=spark"):
        assert part in message, (part, message)
    assert _artifacts(big_project) == before
    last = _executions(big_project)[-1]
    assert last["status"] == "Failed" and "ran out of memory" in str(last["error"])
    steps = big_project.query("SELECT name, status FROM steps WHERE execution_id = ?",
                              (str(last["id"]),))
    assert {s["name"]: s["status"] for s in steps}["Train"] == "Failed"


def test_a_prepared_estimate_is_taken_by_train_on_that_config_only(tmp_path: Path) -> None:
    """The runner has the local engine estimate the memory while the run records itself
    (`prepare`); Train takes that estimate, or makes its own for another config, and a
    data error found on the way is Train's, as without preparing."""
    import custseg
    from custseg.engines.base import TrainRequest
    from custseg.engines.local import LocalEngine
    from custseg.errors import DataError
    from custseg.pipeline.runner import _Silent

    write_customers(tmp_path / "data" / "customers.csv", rows=300)
    (tmp_path / "pipeline_config.yaml").write_text("data_uri: data/\nstore: store\n")
    cfg = custseg.load_config(str(tmp_path / "pipeline_config.yaml"))
    request = TrainRequest("e1", None, None, {})
    engine = LocalEngine()
    engine.prepare(cfg)
    assert engine.train(cfg, request, _Silent()).k == 3
    assert engine._need is None  # taken
    engine.prepare(cfg)
    other = custseg.load_config(str(tmp_path / "pipeline_config.yaml"),
                                overrides={"data_file": "missing.csv"})
    with pytest.raises(DataError, match=r"missing\.csv"):
        engine.train(other, request, _Silent())
    engine.prepare(other)
    with pytest.raises(DataError, match=r"missing\.csv"):
        engine.train(other, request, _Silent())
