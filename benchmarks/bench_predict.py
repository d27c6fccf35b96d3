"""Batch scoring benchmark: `custseg predict` on a 10M-row CSV, peak memory and speed.

Target (issue 5): a 10M-row file scored with peak RSS under 500 MB, whatever the size.
What is measured: a model is trained once on 100k rows (`custseg run`, autostart off),
then `custseg predict` scores the 10M-row sample CSV (`custseg sample --rows 10000000
--segments 3 --seed 0`, cached in benchmarks/.cache/) to Parquet and to CSV, each as a
whole process reaped with `os.wait4` for its own peak RSS (`ru_maxrss`). A 1M-row run
beside it shows that memory does not grow with the file.

Usage: uv run python benchmarks/bench_predict.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
CACHE = BENCH_DIR / ".cache"
CUSTSEG = Path(sys.executable).parent / "custseg"
TARGET_MB = 500


def sample(rows: int) -> Path:
    path = CACHE / f"customers_{rows}.csv"
    if not path.exists():
        CACHE.mkdir(exist_ok=True)
        subprocess.run([str(CUSTSEG), "sample", "--rows", str(rows), "--segments", "3",
                        "--seed", "0", "-o", str(path)], check=True)
    return path


def measure(args: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen([str(CUSTSEG), *args], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"custseg {' '.join(args)} failed: {proc.stderr.read().decode()}")
    return wall, usage.ru_maxrss * 1024 / 1e6


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        root = Path(tmp)
        (root / "pipeline_config.yaml").write_text(
            f"data_uri: {sample(100_000)}\nstore: store\nendpoint: {{autostart: false}}\n")
        subprocess.run([str(CUSTSEG), "run"], cwd=root, check=True, capture_output=True)
        rows_ok = True
        print(f"{'rows':>12} {'output':>8} {'wall s':>8} {'rows/s':>12} {'peak RSS MB':>12}")
        for rows, fmt in [(1_000_000, "parquet"), (10_000_000, "parquet"), (10_000_000, "csv")]:
            source = sample(rows)
            wall, rss = measure(["predict", "--model", "clustering-model-model-group/1",
                                 "--input", str(source), "--output", str(root / f"o.{fmt}")],
                                root)
            print(f"{rows:>12,} {fmt:>8} {wall:>8.2f} {rows / wall:>12,.0f} {rss:>12.1f}")
            if rows == 10_000_000:
                rows_ok &= rss < TARGET_MB
        print(f"target: peak RSS < {TARGET_MB} MB at 10M rows: {'PASS' if rows_ok else 'FAIL'}")
        return 0 if rows_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
