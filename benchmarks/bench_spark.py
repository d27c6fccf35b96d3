"""Spark engine benchmark: the local engine against Spark on the same customers, 1M to 50M rows.

Data, for each size N (`--rows`, default 1M): `custseg.core.sample.iter_customer_chunks(N,
3, 0)` written chunk by chunk (1M rows at a time, never the whole table in memory), in a
child process, to `benchmarks/.cache/customers_{N}_s3_seed0.parquet` (what Spark reads)
and `.csv` (`custseg sample`, the same rows: the local engine reads CSV only). Both are
cached: a size is generated once (50M rows: ~1.5 GB of CSV, ~0.4 GB of Parquet; the
Parquet writer's peak RSS stays ~360 MB whatever the rows: 3M and 6M measured the same).

Runs: for each size and engine (`--engines`, default local spark), `--repeat` whole
`custseg run -c CONFIG --json --no-cache -p engine=E` processes, each in a new empty
store, config: `n_clusters: 3`, `n_components: 2`, `tuning.n_init: 2`, the schema
inferred, no endpoint server, `spark.master` (`--master`, default `local[2]`) and
`spark.driver.memory` (`--driver-memory`, default 2g: in local mode Spark's executors
work inside the driver's heap).

Measured from outside, as `bench_train.py` does: each run is a child process started with
`subprocess.Popen` and reaped with `os.wait4`, which gives its wall time and `ru_maxrss`,
the peak RSS of the `custseg` process (or of a descendant it waited for, if larger: the
driver does not wait for Spark's JVM, so the JVM is not in it). Linux carries the
spawning process's peak RSS (VmHWM) into a child's `ru_maxrss` at exec, so this harness
stays lean until the runs are done (data is generated in child processes; numpy, pyarrow
and custseg are imported only afterwards, for the ARI) and records its VmHWM as each
run's `floor_mb`. Besides, every 0.2 s the RSS of the run and all its descendants is
summed (psutil): `peak_tree_mb`, the driver and the JVM (which holds the executors in
local mode) together.

Outcomes: `ok` (wall, peak RSS, k, silhouette), `refused` (the local engine's memory
check said the data does not fit: its message is kept, the harness carries on),
`failed` (another non-zero exit: the last stderr line), `timeout` (killed after
`--timeout` seconds, default 3600). When both engines succeed for a size, their models
are compared by ARI on the first 100,000 rows.

How to run (the lead's quiet machine; each 50M run takes tens of minutes on 2 cores):

    uv sync --extra spark                      # pyspark; Spark needs Java 17+
    uv run --no-sync python benchmarks/bench_spark.py --rows 10000000 50000000
    uv run --no-sync python benchmarks/bench_spark.py --rows 1000000 --repeat 1   # quick

Writes `benchmarks/out/bench_spark-<UTC time>.json` (every run: command, outcome, wall,
peaks, floor, stderr tail) and a `.md` table beside it, and prints the table.
`--generate N PATH` (used by the harness) writes the Parquet file alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CUSTSEG = Path(sys.executable).parent / "custseg"
CACHE = HERE / ".cache"
OUT = HERE / "out"
MB = 1 << 20
ARI_ROWS = 100_000


# -- data ----------------------------------------------------------------------------------


def write_parquet(rows: int, path: Path) -> None:
    """The customers of `custseg sample --rows rows --segments 3 --seed 0`, one chunk at a
    time, to a Parquet file (a row group per chunk), atomically."""
    import pyarrow.parquet as pq

    from custseg.core.sample import iter_customer_chunks

    tmp = path.with_name(f".{path.name}.tmp")
    writer = None
    try:
        for table, _ in iter_customer_chunks(rows, 3, 0):
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
        if writer is not None:
            writer.close()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def data_files(rows: int) -> dict[str, Path]:
    """The cached Parquet and CSV files of a size, generated (in child processes) when
    missing."""
    CACHE.mkdir(exist_ok=True)
    files = {"parquet": CACHE / f"customers_{rows}_s3_seed0.parquet",
             "csv": CACHE / f"customers_{rows}_s3_seed0.csv"}
    if not files["parquet"].exists():
        print(f"generating {files['parquet']}", flush=True)
        subprocess.run([sys.executable, __file__, "--generate", str(rows),
                        str(files["parquet"])], check=True)
    if not files["csv"].exists():
        print(f"generating {files['csv']}", flush=True)
        subprocess.run([str(CUSTSEG), "sample", "--rows", str(rows), "--segments", "3",
                        "--seed", "0", "-o", str(files["csv"])], check=True)
    return files


# -- one run -------------------------------------------------------------------------------


@dataclass
class Run:
    rows: int
    engine: str
    repeat: int
    command: list[str]
    outcome: str = ""  # ok, refused, failed, timeout
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0  # ru_maxrss: the custseg process (not Spark's JVM)
    peak_tree_mb: float = 0.0  # sampled: the process and all its descendants together
    floor_mb: float = 0.0  # this harness's VmHWM at spawn: ru_maxrss is never below it
    exit_code: int = 0
    message: str = ""
    result: dict[str, Any] = field(default_factory=dict)


def _self_peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        proc = psutil.Process(pid)
        return int(proc.memory_info().rss + sum(
            c.memory_info().rss for c in proc.children(recursive=True)))
    except psutil.Error:
        return 0


def measure(run: Run, timeout_s: float) -> Run:
    """Run the command, time it, read its peaks; never raises for the run's failure."""
    floor = _self_peak_kib()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        done, timed_out = threading.Event(), threading.Event()
        start = time.perf_counter()
        proc = subprocess.Popen(run.command, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True)
        tree = [0]

        def watch() -> None:
            while not done.wait(0.2):
                tree[0] = max(tree[0], _tree_rss(proc.pid))
                if time.perf_counter() - start > timeout_s and not timed_out.is_set():
                    timed_out.set()
                    os.killpg(proc.pid, signal.SIGKILL)  # the run and Spark's JVM

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        run.wall_s = time.perf_counter() - start
        done.set()
        watcher.join()
        proc.returncode = run.exit_code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    run.peak_rss_mb, run.floor_mb = usage.ru_maxrss / 1024, floor / 1024
    run.peak_tree_mb = tree[0] / MB
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if timed_out.is_set():
        run.outcome, run.message = "timeout", f"killed after {timeout_s:.0f} s"
    elif run.exit_code == 0:
        run.outcome = "ok"
        execution = json.loads(stdout)
        run.result = {"model_uri": execution["model_uri"], "k": execution["metrics"]["k"],
                      "silhouette": execution["metrics"]["silhouette"]["value"]}
    elif run.engine == "local" and run.exit_code == 3 and "needs about" in stderr:
        run.outcome, run.message = "refused", " ".join(" ".join(lines).split())
    else:
        run.outcome, run.message = "failed", lines[-1] if lines else ""
    run.result["stderr_tail"] = stderr[-2000:]
    return run


def command(rows: int, engine: str, files: dict[str, Path], folder: Path,
            args: argparse.Namespace) -> list[str]:
    import yaml

    data = files["csv"] if engine == "local" else files[args.spark_format]
    config = folder / "pipeline_config.yaml"
    config.write_text(yaml.safe_dump({
        "data_uri": str(data), "store": str(folder / "store"),
        "n_clusters": 3, "n_components": 2, "tuning": {"n_init": 2},
        "spark": {"master": args.master,
                  "conf": {"spark.driver.memory": args.driver_memory}},
        "endpoint": {"autostart": False}}))
    return [str(CUSTSEG), "run", "-c", str(config), "--json", "--no-cache",
            "-p", f"engine={engine}"]


# -- comparing and reporting ---------------------------------------------------------------


def ari(files: dict[str, Path], runs: list[Run]) -> float | None:
    """ARI of the two engines' models on the first `ARI_ROWS` rows (None: not both ok)."""
    ok = {r.engine: r for r in runs if r.outcome == "ok"}
    if len(ok) < 2:
        return None
    import pyarrow.parquet as pq

    import custseg
    from custseg.core.quality import adjusted_rand

    batch = next(pq.ParquetFile(files["parquet"]).iter_batches(batch_size=ARI_ROWS))
    import pyarrow as pa

    part = pa.Table.from_batches([batch])
    a, b = (custseg.load_model(r.result["model_uri"]).predict(part) for r in ok.values())
    return float(adjusted_rand(a, b))


def markdown(runs: list[Run], aris: dict[int, float | None], meta: dict[str, Any]) -> str:
    lines = [f"# bench_spark {meta['started']}", "",
             f"{meta['machine']}; master {meta['master']}, spark.driver.memory "
             f"{meta['driver_memory']}, Spark reads {meta['spark_format']}, local reads csv", "",
             "| rows | engine | repeat | outcome | wall s | peak RSS MB (ru_maxrss) | "
             "peak tree MB (sampled) | floor MB | k | note |",
             "|---:|---|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in runs:
        note = r.message[:160].replace("|", "/")
        lines.append(f"| {r.rows:,} | {r.engine} | {r.repeat} | {r.outcome} | {r.wall_s:.1f} "
                     f"| {r.peak_rss_mb:,.0f} | {r.peak_tree_mb:,.0f} | {r.floor_mb:.0f} | "
                     f"{r.result.get('k', '')} | {note} |")
    lines.append("")
    for rows, value in aris.items():
        lines.append(f"- {rows:,} rows: ARI local vs spark on the first {ARI_ROWS:,} rows: "
                     + ("n/a (not both ok)" if value is None else f"{value:.4f}"))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--engines", nargs="+", default=["local", "spark"],
                        choices=["local", "spark"])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="2g")
    parser.add_argument("--spark-format", choices=["parquet", "csv"], default="parquet")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    parser.add_argument("--generate", nargs=2, metavar=("ROWS", "PATH"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        write_parquet(int(args.generate[0]), Path(args.generate[1]))
        return
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ")
    runs: list[Run] = []
    files_of = {}
    for rows in args.rows:
        files_of[rows] = files = data_files(rows)
        for repeat in range(args.repeat):
            for engine in args.engines:
                with tempfile.TemporaryDirectory() as tmp:
                    run = measure(Run(rows, engine, repeat,
                                      command(rows, engine, files, Path(tmp), args)),
                                  args.timeout)
                    if run.outcome == "ok":  # the model outlives the store's folder
                        keep = OUT / f"bench_spark-{started}-models" / f"{rows}-{engine}"
                        keep.parent.mkdir(parents=True, exist_ok=True)
                        shutil.move(run.result["model_uri"], keep)
                        run.result["model_uri"] = str(keep)
                runs.append(run)
                print(json.dumps({k: v for k, v in asdict(run).items() if k != "result"}
                                 | {"k": run.result.get("k")}), flush=True)
    aris = {rows: ari(files_of[rows], [r for r in runs if r.rows == rows and r.repeat == 0])
            for rows in args.rows}
    meta = {"started": started, "machine": f"{platform.node()}, {os.cpu_count()} cores",
            "master": args.master, "driver_memory": args.driver_memory,
            "spark_format": args.spark_format}
    OUT.mkdir(exist_ok=True)
    base = OUT / f"bench_spark-{started}"
    base.with_suffix(".json").write_text(json.dumps(
        {"meta": meta, "runs": [asdict(r) for r in runs], "ari": aris}, indent=2))
    table = markdown(runs, aris, meta)
    base.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
