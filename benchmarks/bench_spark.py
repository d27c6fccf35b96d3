"""Spark engine benchmark: the local engine against Spark `local[2]` on the same CSV.

For each size (`--rows`, default 1M), `custseg sample --rows N --segments 3 --seed 0`
(cached in `benchmarks/.cache/`), then for each engine one whole `custseg run -c CONFIG
--json --no-cache` process in a new empty store (`n_clusters: 3`, `n_components: 2`,
`tuning.n_init: 2`, the schema inferred, no endpoint server). Measured from outside:
wall time of the process, and peak resident memory, sampled every 0.1 s, of the
`custseg` process itself (the driver, for Spark) and of its child processes (Spark's
JVM, which in local mode holds the executors too). The models are compared by ARI on
a seeded 100,000-row slice of the data.

    uv run --extra spark python benchmarks/bench_spark.py --rows 1000000 3000000 \\
        --json /tmp/bench_spark.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow.csv as pacsv
import yaml

HERE = Path(__file__).resolve().parent
CUSTSEG = Path(sys.executable).parent / "custseg"
CACHE = HERE / ".cache"


def data_file(rows: int) -> Path:
    path = CACHE / f"customers_{rows}_s3_seed0.csv"
    if not path.exists():
        CACHE.mkdir(exist_ok=True)
        subprocess.run([str(CUSTSEG), "sample", "--rows", str(rows), "--segments", "3",
                        "--seed", "0", "-o", str(path)], check=True)
    return path


def run(config: Path, engine: str) -> dict[str, Any]:
    """One `custseg run`, its wall time and the peak RSS of it and of its children."""
    cmd = [str(CUSTSEG), "run", "-c", str(config), "--json", "--no-cache",
           "-p", f"engine={engine}"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    me = psutil.Process(proc.pid)
    peak_driver = peak_children = peak_total = 0
    while proc.poll() is None:
        try:
            driver = me.memory_info().rss
            children = sum(c.memory_info().rss for c in me.children(recursive=True))
        except psutil.Error:
            break
        peak_driver, peak_children = max(peak_driver, driver), max(peak_children, children)
        peak_total = max(peak_total, driver + children)
        time.sleep(0.1)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"engine": engine, "ok": False, "exit": proc.returncode,
                "error": err.strip().splitlines()[-1] if err.strip() else "", "wall_s": wall}
    execution = json.loads(out)
    return {"engine": engine, "ok": True, "wall_s": wall, "model_uri": execution["model_uri"],
            "k": execution["metrics"]["k"],
            "silhouette": execution["metrics"]["silhouette"]["value"],
            "peak_driver_mb": peak_driver / 2**20, "peak_children_mb": peak_children / 2**20,
            "peak_total_mb": peak_total / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--engines", nargs="+", default=["local", "spark"])
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import custseg
    from custseg.core.quality import adjusted_rand

    results = []
    for rows in args.rows:
        data = data_file(rows)
        models = {}
        for engine in args.engines:
            with tempfile.TemporaryDirectory() as tmp:
                config = Path(tmp) / "pipeline_config.yaml"
                config.write_text(yaml.safe_dump({
                    "data_uri": str(data), "store": str(Path(tmp) / "store"),
                    "n_clusters": 3, "n_components": 2, "tuning": {"n_init": 2},
                    "spark": {"master": args.master},
                    "endpoint": {"autostart": False}}))
                result = run(config, engine) | {"rows": rows}
                if result["ok"]:
                    models[engine] = custseg.load_model(result["model_uri"])
                results.append(result)
                print(json.dumps(result), flush=True)
        if len(models) == 2:
            table = pacsv.read_csv(data)
            index = np.sort(np.random.default_rng(0).choice(
                table.num_rows, min(100_000, table.num_rows), replace=False))
            part = table.take(index)
            a, b = (m.predict(part) for m in models.values())
            results.append({"rows": rows, "ari_local_spark": adjusted_rand(a, b)})
            print(json.dumps(results[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
