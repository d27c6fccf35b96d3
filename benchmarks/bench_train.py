"""Training benchmark: `custseg run` against a seed-style pandas + scikit-learn baseline.

What is measured, for each data size (default 1M and 10M rows of `custseg sample --rows N
--segments 3 --seed 0`, cached in `benchmarks/.cache/`):

* baseline: `python benchmarks/baseline_train.py CSV` (pandas read_csv, scikit-learn
  ColumnTransformer + PCA(1) + KMeans(k=3, n_init=10) + scikit-learn metrics);
* custseg k=3: `custseg run -c CONFIG --json` on a temporary config with the same
  features, n_clusters: 3 and n_components: 1;
* custseg sweep: the same with `-p 'n_clusters={min: 2, max: 10}'`;
* references, once: `custseg --help` (interpreter + CLI imports) and a bare
  `python -c "import custseg.cli.commands, custseg.pipeline.runner"` (the imports
  `custseg run` needs
  before it reads any data), to show how much of a peak RSS is fixed overhead.

How: every command is a separate process started with `subprocess.Popen` and reaped with
`os.wait4(pid, 0)`, which gives its wall time (perf_counter around spawn and reap) and its
own peak RSS (`ru_maxrss`, KiB on Linux). Linux carries the spawning process's peak RSS
(its VmHWM) into the child's `ru_maxrss` at exec time, so this harness stays lean while
it measures (about 16 MB: numpy, pyarrow and rich are imported only afterwards) and
records its own VmHWM as the `floor` of every measurement; a measurement at its floor
would be meaningless and is flagged. The CSV is read once beforehand, so every run
starts from a warm page cache. Within a repeat, baseline and custseg run back to back
(the order alternates between repeats), because other work may share the machine: the
ratios are the robust figures.

Quality: custseg's inertia must be <= 1.01 x the baseline's in the SAME feature space.
The baseline saves its 1-D PCA coordinates; the harness loads custseg's model
(`custseg.load_model`), predicts every row, and computes the within-cluster sum of
squares of custseg's labels on the baseline's coordinates (centres = cluster means;
sign-invariant), next to the baseline's `kmeans.inertia_` and custseg's own inertia.

Targets: custseg k=3 >= 5x faster than the baseline (whole-process wall time); the k
sweep 2..10 within 3x of custseg's k=3 time; custseg's peak RSS <= 3x the float64
feature matrix (rows x 6 features x 8 bytes).

Usage: uv sync --compile-bytecode   # once: byte-compiled imports, for both sides alike
       uv run python benchmarks/bench_train.py [--sizes 1000000 10000000] [--repeat 1]
Prints the tables and writes benchmarks/out/bench_train-<UTC time>.json (everything,
including each command's stderr tail and custseg's stage timings) and a .md of the tables.
Exit status 0 when every target passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
CACHE_DIR = BENCH_DIR / ".cache"
OUT_DIR = BENCH_DIR / "out"
BASELINE_SCRIPT = BENCH_DIR / "baseline_train.py"
# not resolved: the venv's python is a symlink, and resolving it would leave the venv
PYTHON = sys.executable
CUSTSEG = str(Path(sys.executable).parent / "custseg")

N_FEATURES = 6  # Age, Income, Purchases + Gender one-hot (Female, Male, Other)
K = 3
SWEEP_PARAM = "n_clusters={min: 2, max: 10}"
SPEED_TARGET = 5.0  # baseline wall / custseg k=3 wall >=
SWEEP_TARGET = 3.0  # custseg sweep wall / custseg k=3 wall <=
RSS_TARGET = 3.0  # custseg peak RSS / float64 feature matrix bytes <=
INERTIA_TOLERANCE = 1.01  # custseg WCSS in baseline space / baseline inertia <=
MB = 1e6


class BenchError(RuntimeError):
    """A benchmarked command failed or produced unusable output."""


# -- measuring one process -------------------------------------------------------------

@dataclass(frozen=True)
class Measurement:
    """One child process: wall time, peak RSS, exit code and captured output."""

    name: str
    command: list[str]
    wall_s: float
    peak_rss_kib: int
    floor_kib: int  # the harness's VmHWM at spawn: a lower bound of this ru_maxrss
    exit_code: int
    stdout: str = field(repr=False)
    stderr_tail: str = field(repr=False)

    @property
    def peak_rss_bytes(self) -> int:
        return self.peak_rss_kib * 1024

    @property
    def at_floor(self) -> bool:
        return self.peak_rss_kib <= self.floor_kib


def _self_peak_kib() -> int:
    """This process's own peak RSS (VmHWM of its address space), in KiB.

    Not getrusage(RUSAGE_SELF).ru_maxrss: that also carries the peak of whatever exec'd
    this process (e.g. `uv run`, ~35 MB), which a child of ours does not inherit.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def measure(name: str, command: list[str], *, timeout_s: float) -> Measurement:
    """Run `command` as a child process; time it and read its peak RSS with os.wait4."""
    floor = _self_peak_kib()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        reaped, timed_out = threading.Event(), threading.Event()

        start = time.perf_counter()
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err)

        def kill_on_timeout() -> None:
            if not reaped.is_set():
                timed_out.set()
                os.kill(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout_s, kill_on_timeout)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        reaped.set()
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr_tail = err.read().decode(errors="replace")[-2000:]
    result = Measurement(name, command, wall, int(usage.ru_maxrss), floor, proc.returncode,
                         stdout, stderr_tail)
    if result.exit_code != 0:
        why = f"killed after the {timeout_s:.0f} s timeout" if timed_out.is_set() else (
            f"exited with {result.exit_code} after {wall:.1f} s")
        raise BenchError(f"{name} {why}:\n{stderr_tail}")
    return result


# -- inputs ------------------------------------------------------------------------------

def csv_path(rows: int) -> Path:
    return CACHE_DIR / f"customers_{rows}.csv"


def ensure_csv(rows: int) -> Path:
    """The cached sample CSV for `rows`, generated with `custseg sample` when missing."""
    path = csv_path(rows)
    if not path.exists():
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        print(f"generating {path.name} ...", flush=True)
        subprocess.run([CUSTSEG, "sample", "--rows", str(rows), "--segments", str(K),
                        "--seed", "0", "-o", str(path)], check=True, stdout=subprocess.DEVNULL)
    return path


def warm_page_cache(path: Path) -> None:
    """Read the file once (1 MiB buffer, so the harness's RSS stays small)."""
    buf = bytearray(1 << 20)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass


def write_config(folder: Path, csv: Path) -> Path:
    """A custseg pipeline config for `csv`, with the store in `folder` (JSON is YAML)."""
    config = {
        "data_uri": str(csv.parent),
        "data_file": csv.name,
        "n_clusters": K,
        "n_components": 1,
        "features": {"numeric": ["Age", "Income", "Purchases"], "categorical": ["Gender"],
                     "ignore": ["CustomerID"]},
        "store": str(folder / "store"),
        # training is measured, not the endpoint server `custseg run` would start
        "endpoint": {"autostart": False},
    }
    path = folder / "pipeline_config.yaml"
    path.write_text(json.dumps(config, indent=2))
    return path


# -- one repeat at one size --------------------------------------------------------------

@dataclass
class Repeat:
    """Baseline, custseg k=3 and custseg sweep, measured back to back on one CSV."""

    baseline: Measurement
    fixed: Measurement
    sweep: Measurement
    baseline_summary: dict[str, Any]
    fixed_execution: dict[str, Any]
    sweep_execution: dict[str, Any]


def _parse_execution(m: Measurement) -> dict[str, Any]:
    try:
        execution: dict[str, Any] = json.loads(m.stdout)
    except json.JSONDecodeError as exc:
        raise BenchError(f"{m.name}: stdout is not the execution JSON: {m.stdout[:500]!r}") from exc
    if execution.get("status") != "Succeeded" or not execution.get("model_uri"):
        raise BenchError(f"{m.name}: execution did not succeed: {execution}")
    return execution


def run_repeat(rows: int, csv: Path, work: Path, index: int, timeout_s: float) -> Repeat:
    """Measure the three commands; the order alternates between repeats."""
    folder = work / f"rows{rows}-r{index}"
    folder.mkdir(parents=True)
    config = write_config(folder, csv)
    summary_path = folder / "baseline.json"
    commands = {
        "baseline": [PYTHON, str(BASELINE_SCRIPT), str(csv), "--json-out", str(summary_path),
                     "--pca-out", str(CACHE_DIR / f"baseline_pca_{rows}.npy"),
                     "--labels-out", str(CACHE_DIR / f"baseline_labels_{rows}.npy")],
        "custseg k=3": [CUSTSEG, "run", "-c", str(config), "--json"],
        "custseg sweep 2..10": [CUSTSEG, "run", "-c", str(config), "--json", "-p", SWEEP_PARAM],
    }
    order = list(commands) if index % 2 == 0 else [*list(commands)[1:], "baseline"]
    done: dict[str, Measurement] = {}
    for name in order:
        print(f"  [{rows:,} rows, repeat {index + 1}] {name} ...", end=" ", flush=True)
        done[name] = measure(name, commands[name], timeout_s=timeout_s)
        print(f"{done[name].wall_s:.2f} s, {done[name].peak_rss_bytes / MB:.0f} MB", flush=True)
    return Repeat(
        baseline=done["baseline"], fixed=done["custseg k=3"], sweep=done["custseg sweep 2..10"],
        baseline_summary=json.loads(summary_path.read_text()),
        fixed_execution=_parse_execution(done["custseg k=3"]),
        sweep_execution=_parse_execution(done["custseg sweep 2..10"]),
    )


def measure_references(repeat: int, timeout_s: float) -> dict[str, Measurement]:
    """Fixed overheads: `custseg --help` and importing what `custseg run` needs.

    Each is run three times per repeat; the run with the median wall time is kept.
    """
    commands = {
        "custseg --help": [CUSTSEG, "--help"],
        "imports of custseg run": [PYTHON, "-c",
                                   "import custseg.cli.commands, custseg.pipeline.runner"],
    }
    refs = {}
    for name, command in commands.items():
        runs = sorted((measure(name, command, timeout_s=timeout_s) for _ in range(3 * repeat)),
                      key=lambda m: m.wall_s)
        refs[name] = runs[len(runs) // 2]
    return refs


# -- quality (after all measurements: this loads numpy, pyarrow and custseg) -------------

def within_cluster_ss(z: Any, labels: Any, k: int) -> float:
    """Sum of squared distances of rows of `z` to their cluster's mean."""
    import numpy as np

    total = 0.0
    sizes = np.maximum(np.bincount(labels, minlength=k), 1)
    for j in range(z.shape[1]):
        means = np.bincount(labels, weights=z[:, j], minlength=k) / sizes
        d = z[:, j] - means[labels]
        total += float(d @ d)
    return total


def label_agreement(a: Any, b: Any, k: int) -> float:
    """Fraction of rows with the same cluster under the best matching of cluster ids."""
    from itertools import permutations

    import numpy as np

    confusion = np.bincount(a.astype(np.int64) * k + b, minlength=k * k).reshape(k, k)
    best = max(sum(confusion[i, p[i]] for i in range(k)) for p in permutations(range(k)))
    return float(best) / len(a)


def custseg_labels(model_uri: str, csv: Path) -> Any:
    """custseg's cluster of every CSV row, from its saved model."""
    import pyarrow.csv as pacsv

    import custseg

    # strings_can_be_null as custseg's own reader: an empty Gender is missing (imputed
    # with the mode), not an unknown category
    table = pacsv.read_csv(csv, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    return custseg.load_model(model_uri).predict(table)


def check_quality(rows: int, csv: Path, repeats: list[Repeat]) -> list[dict[str, Any]]:
    """custseg's k=3 inertia in the baseline's PCA space, for each repeat's model."""
    import numpy as np

    z = np.load(CACHE_DIR / f"baseline_pca_{rows}.npy")
    base_labels = np.load(CACHE_DIR / f"baseline_labels_{rows}.npy")
    base_wcss = within_cluster_ss(z, base_labels, K)
    checks = []
    for r in repeats:
        labels = custseg_labels(r.fixed_execution["model_uri"], csv)
        if len(labels) != len(z):
            raise BenchError(f"custseg scored {len(labels)} rows, the baseline {len(z)}")
        wcss = within_cluster_ss(z, labels, K)
        base_inertia = float(r.baseline_summary["inertia"])
        checks.append({
            "baseline_inertia": base_inertia,
            "baseline_wcss_recomputed": base_wcss,
            "custseg_reported_inertia": float(r.fixed_execution["metrics"]["inertia"]),
            "custseg_wcss_in_baseline_space": wcss,
            "ratio": wcss / base_inertia,
            "ratio_vs_baseline_wcss": wcss / base_wcss,
            "label_agreement": label_agreement(labels, base_labels, K),
            "passed": wcss <= INERTIA_TOLERANCE * base_inertia,
        })
    return checks


# -- verdicts ----------------------------------------------------------------------------

@dataclass
class SizeResult:
    rows: int
    csv: str
    repeats: list[Repeat]
    quality: list[dict[str, Any]] = field(default_factory=list)

    def _measurements(self, which: str) -> list[Measurement]:
        """`which` is "baseline", "fixed" or "sweep"."""
        return [getattr(r, which) for r in self.repeats]

    def median_wall(self, which: str) -> float:
        return statistics.median(m.wall_s for m in self._measurements(which))

    def max_rss(self, which: str) -> int:
        return max(m.peak_rss_bytes for m in self._measurements(which))

    @property
    def matrix_bytes(self) -> int:
        return self.rows * N_FEATURES * 8


def verdicts(result: SizeResult) -> list[dict[str, Any]]:
    """The targets at one size: speed-up, sweep cost, peak RSS, inertia."""
    speedup = result.median_wall("baseline") / result.median_wall("fixed")
    sweep = result.median_wall("sweep") / result.median_wall("fixed")
    rss_fixed = result.max_rss("fixed") / result.matrix_bytes
    rss_sweep = result.max_rss("sweep") / result.matrix_bytes
    inertia = max(q["ratio"] for q in result.quality)
    return [
        {"target": "speed-up vs baseline (k=3)", "value": speedup, "limit": f">= {SPEED_TARGET}x",
         "passed": speedup >= SPEED_TARGET},
        {"target": "sweep 2..10 / k=3 wall", "value": sweep, "limit": f"<= {SWEEP_TARGET}x",
         "passed": sweep <= SWEEP_TARGET},
        {"target": "peak RSS k=3 / feature matrix", "value": rss_fixed,
         "limit": f"<= {RSS_TARGET}x", "passed": rss_fixed <= RSS_TARGET},
        {"target": "peak RSS sweep / feature matrix", "value": rss_sweep,
         "limit": f"<= {RSS_TARGET}x", "passed": rss_sweep <= RSS_TARGET},
        {"target": "WCSS in baseline space / baseline inertia", "value": inertia,
         "limit": f"<= {INERTIA_TOLERANCE}", "passed": inertia <= INERTIA_TOLERANCE},
    ]


# -- environment and output --------------------------------------------------------------

def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


_CODE_PROBE = """
import hashlib, pathlib, custseg
src = pathlib.Path(custseg.__file__).parent
digest = hashlib.sha256()
for module in sorted(src.glob("*.py")):
    digest.update(module.name.encode() + b"\\0" + module.read_bytes())
print(src, digest.hexdigest())
"""


def code_version() -> dict[str, Any]:
    """Which custseg the venv runs: its source folder, a hash of its modules, git state.

    The hashing runs in a child process, keeping hashlib (OpenSSL) out of the harness.
    """
    probe = subprocess.run([PYTHON, "-c", _CODE_PROBE], capture_output=True, text=True,
                           check=True).stdout.split()
    src, digest = probe[0], probe[1]

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=src, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    return {"custseg_src": src, "src_sha256": digest,
            "git_commit": git("rev-parse", "HEAD") or None,
            "git_uncommitted": git("status", "--porcelain", "--", ".").splitlines()}


def machine_info() -> dict[str, Any]:
    from importlib.metadata import version

    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "mem_total_gb": round(_mem_total_gb(), 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {name: version(name) for name in
                     ("custseg", "numpy", "pyarrow", "pandas", "scikit-learn")},
    }


def _measurement_json(m: Measurement, refs: dict[str, Measurement] | None = None
                      ) -> dict[str, Any]:
    out = asdict(m)
    out.pop("stdout")
    out["peak_rss_mb"] = m.peak_rss_bytes / MB
    out["at_floor"] = m.at_floor
    for name, ref in (refs or {}).items():
        out[f"peak_rss_minus_{name.replace(' ', '_')}_mb"] = (
            (m.peak_rss_bytes - ref.peak_rss_bytes) / MB)
    return out


def _custseg_timings(execution: dict[str, Any]) -> dict[str, Any]:
    """In-process stage timings recorded in the model artifact (model.json)."""
    model_json = Path(execution["model_uri"]) / "model.json"
    meta = json.loads(model_json.read_text())
    return {"steps": {n: s["seconds"] for n, s in execution["steps"].items()},
            "stages": meta.get("timings", {})}


def results_json(context: dict[str, Any], refs: dict[str, Measurement],
                 results: list[SizeResult]) -> dict[str, Any]:
    return {
        "benchmark": "bench_train",
        **context,
        "references": {n: _measurement_json(m) for n, m in refs.items()},
        "sizes": [{
            "rows": r.rows,
            "csv": r.csv,
            "feature_matrix_mb": r.matrix_bytes / MB,
            "repeats": [{
                "baseline": _measurement_json(rep.baseline, refs),
                "custseg_k3": _measurement_json(rep.fixed, refs),
                "custseg_sweep": _measurement_json(rep.sweep, refs),
                "baseline_summary": rep.baseline_summary,
                "custseg_k3_execution": rep.fixed_execution,
                "custseg_k3_timings": _custseg_timings(rep.fixed_execution),
                "custseg_sweep_execution": rep.sweep_execution,
                "custseg_sweep_timings": _custseg_timings(rep.sweep_execution),
            } for rep in r.repeats],
            "quality": r.quality,
            "verdicts": verdicts(r),
        } for r in results],
    }


def _in_process_s(which: str, rep: Repeat) -> float:
    """Seconds spent inside the program (baseline stage timings, custseg step timings)."""
    if which == "baseline":
        return float(sum(rep.baseline_summary["timings"].values()))
    execution = rep.fixed_execution if which == "fixed" else rep.sweep_execution
    return float(sum(s["seconds"] or 0.0 for s in execution["steps"].values()))


# -- tables (shared by the terminal report and the Markdown file) ------------------------

Rows = list[list[str]]
REFERENCE_HEADER = ["command", "wall s", "peak RSS MB", "harness floor MB"]
SIZE_HEADER = ["#", "command", "wall s", "in-process s", "baseline wall / this",
               "peak RSS MB", "RSS - help MB", "RSS - imports MB", "RSS / matrix", "k"]
QUALITY_HEADER = ["#", "baseline inertia_", "baseline WCSS", "custseg reported inertia",
                  "custseg WCSS (baseline space)", "ratio to inertia_", "ratio to WCSS",
                  "label agreement", "verdict"]
VERDICT_HEADER = ["rows", "target", "measured", "limit", "verdict"]
TEXT_COLUMNS = {"command", "target"}


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / MB:.0f}"


def reference_rows(refs: dict[str, Measurement]) -> Rows:
    return [[m.name, f"{m.wall_s:.2f}",
             f"{m.peak_rss_bytes / MB:.1f}" + (" (at floor!)" if m.at_floor else ""),
             f"{m.floor_kib * 1024 / MB:.1f}"] for m in refs.values()]


def size_rows(r: SizeResult, refs: dict[str, Measurement]) -> Rows:
    help_rss = refs["custseg --help"].peak_rss_bytes
    import_rss = refs["imports of custseg run"].peak_rss_bytes
    rows = []
    for i, rep in enumerate(r.repeats, 1):
        for which, m, execution in (("baseline", rep.baseline, None),
                                    ("fixed", rep.fixed, rep.fixed_execution),
                                    ("sweep", rep.sweep, rep.sweep_execution)):
            rows.append([
                str(i), m.name, f"{m.wall_s:.2f}", f"{_in_process_s(which, rep):.2f}",
                f"{rep.baseline.wall_s / m.wall_s:.2f}x",
                _mb(m.peak_rss_bytes) + (" (at floor!)" if m.at_floor else ""),
                _mb(m.peak_rss_bytes - help_rss), _mb(m.peak_rss_bytes - import_rss),
                f"{m.peak_rss_bytes / r.matrix_bytes:.2f}x",
                str(execution["metrics"]["k"] if execution else K),
            ])
    return rows


def quality_rows(r: SizeResult) -> Rows:
    return [[str(i), f"{q['baseline_inertia']:.2f}", f"{q['baseline_wcss_recomputed']:.2f}",
             f"{q['custseg_reported_inertia']:.2f}", f"{q['custseg_wcss_in_baseline_space']:.2f}",
             f"{q['ratio']:.6f}", f"{q['ratio_vs_baseline_wcss']:.6f}",
             f"{q['label_agreement']:.6f}", "PASS" if q["passed"] else "FAIL"]
            for i, q in enumerate(r.quality, 1)]


def verdict_rows(results: list[SizeResult]) -> Rows:
    return [[f"{r.rows:,}", v["target"], f"{v['value']:.3f}", v["limit"],
             "PASS" if v["passed"] else "FAIL"] for r in results for v in verdicts(r)]


def report_sections(refs: dict[str, Measurement], results: list[SizeResult]
                    ) -> list[tuple[str, list[str], Rows]]:
    """(title, header, rows) of every table of the report."""
    sections = [("Fixed overheads (median wall of the runs)", REFERENCE_HEADER,
                 reference_rows(refs))]
    for r in results:
        sections.append((f"{r.rows:,} rows (float64 feature matrix {_mb(r.matrix_bytes)} MB)",
                         SIZE_HEADER, size_rows(r, refs)))
        sections.append((f"Inertia check, {r.rows:,} rows, k=3", QUALITY_HEADER,
                         quality_rows(r)))
    sections.append(("Targets (median wall over repeats, max peak RSS over repeats)",
                     VERDICT_HEADER, verdict_rows(results)))
    return sections


def print_report(sections: list[tuple[str, list[str], Rows]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    for title, header, rows in sections:
        table = Table(title=title)
        for col in header:
            table.add_column(col, justify="left" if col in TEXT_COLUMNS else "right")
        for row in rows:
            style = {"PASS": "green", "FAIL": "red"}.get(row[-1])
            table.add_row(*row, style=style)
        console.print(table)


def markdown(sections: list[tuple[str, list[str], Rows]]) -> str:
    out = []
    for title, header, rows in sections:
        out += [f"**{title}**", "", "| " + " | ".join(header) + " |",
                "|" + "|".join("---" if c in TEXT_COLUMNS else "---:" for c in header) + "|"]
        out += ["| " + " | ".join(row) + " |" for row in rows]
        out.append("")
    return "\n".join(out)


# -- main --------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="custseg training benchmark vs a "
                                                 "pandas + scikit-learn baseline")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000],
                        help="numbers of rows (default: 1000000 10000000)")
    parser.add_argument("--repeat", type=int, default=1, help="repeats per size (default 1)")
    parser.add_argument("--timeout", type=float, default=1200.0,
                        help="seconds before a benchmarked command is killed (default 1200)")
    args = parser.parse_args(argv)
    if args.repeat < 1 or any(n < 1000 for n in args.sizes):
        parser.error("--repeat must be >= 1 and every size >= 1000 rows")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    context: dict[str, Any] = {
        "command": " ".join(["uv run python benchmarks/bench_train.py", *argv]),
        "started_utc": started, "code": code_version(), "loadavg": {"start": os.getloadavg()},
    }
    csvs = {rows: ensure_csv(rows) for rows in args.sizes}
    work = Path(tempfile.mkdtemp(prefix="bench_train-"))
    try:
        refs = measure_references(args.repeat, args.timeout)
        results = []
        for rows, csv in csvs.items():
            warm_page_cache(csv)
            repeats = [run_repeat(rows, csv, work, i, args.timeout) for i in range(args.repeat)]
            results.append(SizeResult(rows, str(csv), repeats))
        context["loadavg"]["end_of_measurements"] = os.getloadavg()
        context["code_at_end"] = code_version()
        if context["code_at_end"] != context["code"]:
            print("WARNING: custseg's code changed during the measurements (see 'code' and "
                  "'code_at_end' in the JSON): these figures mix versions", flush=True)
        # everything below may grow this process: no measurement after this point
        context["machine"] = machine_info()
        for r in results:
            r.quality = check_quality(r.rows, Path(r.csv), r.repeats)
        report = results_json(context, refs, results)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sections = report_sections(refs, results)
    print_report(sections)
    OUT_DIR.mkdir(exist_ok=True)
    out = OUT_DIR / f"bench_train-{started.replace(':', '').replace('+0000', 'Z')}.json"
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(markdown(sections))
    print(f"results written to {out} and {out.with_suffix('.md').name}")
    return 0 if all(v["passed"] for r in results for v in verdicts(r)) else 1


if __name__ == "__main__":
    sys.exit(main())
