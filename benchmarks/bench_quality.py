"""Segment-quality benchmark: `custseg run` with no features block against a careful
practitioner's pandas + scikit-learn script, on real and generated customer tables.

Datasets (`--datasets`, default all four):

* wholesale: /work/shared/data/Wholesale_customers_data.csv (UCI, CC BY 4.0; 440 rows);
* online_shoppers: /work/shared/data/online_shoppers_intention.csv (UCI, CC BY 4.0;
  12,330 sessions, Revenue is the target). Both real sets are skipped, with a message,
  when the folder (`--data-dir`) or the file is absent;
* nuisance: generated (`quality_data.make_nuisance`, 5,000 rows), 4 known segments in Age
  and three log-normal money columns, plus outliers at 50x, an irrelevant 50/50 Gender,
  a MM-DD-YYYY SignupDate, a constant Region, a CustomerID and a target-like Churn;
* mall: generated (`quality_data.make_mall`, 200 rows), 5 known groups in
  Annual Income (k$) x Spending Score (1-100), plus Age, an irrelevant 56/44 Gender and a
  CustomerID numbered in income order.

The practitioner (this file, `practitioner_fit`): drops the ids and targets and any
column they know to be irrelevant (all written by hand per dataset in `PRACTITIONER`),
drops constant columns, imputes (median / most frequent), log1p-transforms the columns
they know to be skewed, standard-scales the numerics, one-hot encodes the categoricals
(strings, booleans and the integer-coded columns they know), PCA to 90% of the variance,
KMeans(n_init=10, random_state=0) for k = 2..10, and keeps the k with the best silhouette
in the PCA space (on a seeded 10,000-row sample above 10,000 rows).

custseg, as a user runs it: a pipeline_config.yaml with `data_uri`, `data_file`,
`n_clusters: auto`, `n_components: auto`, `store: <tmp>/store`, `endpoint: {autostart:
false}` and no features block; `custseg run -c CONFIG --json` as a subprocess, then
`custseg.load_model(model_uri).predict(table)` on the pyarrow-read CSV for every row's
label.

Figures, per dataset and tool:

* k: the tool's chosen number of segments;
* silhouette, same space: both tools' labels measured in ONE space, the practitioner's
  full feature space before PCA (imputed, log1p of the skewed columns, standard-scaled
  numerics, 0/1 one-hot categoricals, fitted on the whole dataset), exact (every row);
* silhouette, own space: what each tool reports in the space it clustered in (the
  practitioner's PCA space; custseg's metrics.silhouette), for context only;
* smallest segment: the smallest cluster's share of the rows;
* stability: the benchmark's own measure, identical for both tools. 5 seeded 80%
  subsamples (2 with `--quick`) of the rows; each tool refits with its own procedure at
  its chosen k (the practitioner's script with k fixed; custseg run with `-p
  n_clusters=K` on the subsample CSV, predicting the subsample rows with the subsample's
  model); the adjusted Rand index between the subsample fit's labels and the full fit's
  labels on the subsample rows; mean (and min) over the subsamples;
* ARI to the truth, for the generated sets;
* silhouette in the informative columns (generated sets only, printed under the table):
  the true labels' and each tool's silhouette in the columns the truth lives in (log of
  the money, standard-scaled), and the true labels' same-space silhouette, to show
  whether the same-space silhouette rewards finding the truth on that dataset;
* wall s: whole-process wall time of the full fit (the practitioner's script runs as a
  subprocess too: `python bench_quality.py --practitioner-fit ...`), and the in-process
  seconds (the practitioner's summed stage timings; custseg's summed step timings).

Targets (PASS/FAIL lines; exit status 1 when one fails): on the nuisance data, custseg's
ARI to the truth >= 0.95; on every dataset, custseg's stability >= 0.8, no custseg
segment under 2% of the rows, and custseg's same-space silhouette >= the practitioner's
- 0.02.

Byte-compiled children: the project's shell sets PYTHONDONTWRITEBYTECODE=1, under which
each child process would recompile custseg's own modules (an editable install has no
.pyc) on every start. Timed children therefore run without it, with
PYTHONPYCACHEPREFIX=benchmarks/.cache/pycache (gitignored), so that nothing is written
into src/ or the venv; one untimed warm-up run of each tool fills that cache first.
Commands call the venv's `python` and `custseg` directly, not `uv run` (which adds about
1 s per command; see RESULTS.md).

Usage: uv run python benchmarks/bench_quality.py [--datasets nuisance mall] [--quick]
                                                  [--json PATH] [--data-dir DIR]
Prints Markdown tables and PASS/FAIL lines and writes the JSON with every figure to
`--json` (default benchmarks/out/bench_quality-<UTC time>.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
PYCACHE_DIR = BENCH_DIR / ".cache" / "pycache"
DEFAULT_DATA_DIR = Path("/work/shared/data")
# not resolved: the venv's python is a symlink, and resolving it would leave the venv
PYTHON = sys.executable
CUSTSEG = str(Path(sys.executable).parent / "custseg")

K_RANGE = range(2, 11)
PCA_VARIANCE = 0.9
N_INIT = 10
SELECTION_SAMPLE = 10_000  # the practitioner's silhouette sample when choosing k
SUBSAMPLES, QUICK_SUBSAMPLES = 5, 2
SUBSAMPLE_FRACTION = 0.8
SUBSAMPLE_SEED = 1000  # subsample i uses numpy default_rng(SUBSAMPLE_SEED + i)

TRUTH_ARI_TARGET = 0.95  # on the generated nuisance data
STABILITY_TARGET = 0.8
MIN_SHARE_TARGET = 0.02
SILHOUETTE_TOLERANCE = 0.02


class BenchError(RuntimeError):
    """A benchmarked command failed or produced unusable output."""


# -- what the practitioner knows, by hand -------------------------------------------------

@dataclass(frozen=True)
class Knowledge:
    """One dataset as the practitioner knows it (everything else is read from the data)."""

    ids: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    irrelevant: dict[str, str] = field(default_factory=dict)  # column -> why it is dropped
    coded_categorical: tuple[str, ...] = ()  # integer codes that are categories
    skewed: tuple[str, ...] = ()  # heavy right tails: log1p


PRACTITIONER: dict[str, Knowledge] = {
    "wholesale": Knowledge(
        coded_categorical=("Channel", "Region"),
        skewed=("Fresh", "Milk", "Grocery", "Frozen", "Detergents_Paper", "Delicassen"),
    ),
    "online_shoppers": Knowledge(
        targets=("Revenue",),
        coded_categorical=("OperatingSystems", "Browser", "Region", "TrafficType"),
        skewed=("Administrative", "Administrative_Duration", "Informational",
                "Informational_Duration", "ProductRelated", "ProductRelated_Duration",
                "PageValues"),
    ),
    "nuisance": Knowledge(
        ids=("CustomerID",),
        targets=("Churn",),
        irrelevant={"SignupDate": "a sign-up date, no bearing on behaviour (and a string "
                                  "with thousands of values, not a category)"},
        skewed=("AnnualIncome", "AnnualSpend", "AvgBasket"),
    ),
    "mall": Knowledge(ids=("CustomerID",)),
}
REAL_FILES = {"wholesale": "Wholesale_customers_data.csv",
              "online_shoppers": "online_shoppers_intention.csv"}
DATASETS = ["wholesale", "online_shoppers", "nuisance", "mall"]


# -- the practitioner's procedure (pandas + scikit-learn) ---------------------------------

def read_frame(csv: Path) -> Any:
    import pandas as pd

    return pd.read_csv(csv)


def _log1p_nonneg(x: Any) -> Any:
    import numpy as np

    return np.log1p(np.clip(x, 0.0, None))


@dataclass
class Space:
    """The practitioner's feature space for one frame: roles, the fitted transform, X."""

    numeric: list[str]
    skewed: list[str]
    categorical: list[str]
    dropped: dict[str, str]
    transformer: Any
    x: Any  # (n, d) float64, before PCA

    @property
    def n_features(self) -> int:
        return int(self.x.shape[1])


def feature_space(frame: Any, know: Knowledge) -> Space:
    """Impute, log1p the skewed columns, scale the numerics, one-hot the categoricals."""
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    dropped: dict[str, str] = {}
    for c in frame.columns:
        if c in know.ids:
            dropped[c] = "id"
        elif c in know.targets:
            dropped[c] = "target"
        elif c in know.irrelevant:
            dropped[c] = know.irrelevant[c]
        elif frame[c].nunique(dropna=True) <= 1:
            dropped[c] = "constant"
    kept = [c for c in frame.columns if c not in dropped]
    categorical = [c for c in kept if c in know.coded_categorical
                   or pd.api.types.is_bool_dtype(frame[c])
                   or not pd.api.types.is_numeric_dtype(frame[c])]
    numeric = [c for c in kept if c not in categorical]
    skewed = [c for c in numeric if c in know.skewed]
    plain = [c for c in numeric if c not in skewed]

    data = frame[kept].copy()
    for c in categorical:  # categories as text, missing stays missing
        data[c] = frame[c].map(lambda v: v if pd.isna(v) else str(v)).astype(object)
    for c in numeric:
        data[c] = frame[c].astype(float)

    transformer = ColumnTransformer([
        ("skewed", make_pipeline(SimpleImputer(strategy="median"),
                                 FunctionTransformer(_log1p_nonneg), StandardScaler()), skewed),
        ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), plain),
        ("categorical", make_pipeline(
            SimpleImputer(strategy="most_frequent", missing_values=np.nan),
            OneHotEncoder(handle_unknown="ignore", sparse_output=False)), categorical),
    ])
    x = np.asarray(transformer.fit_transform(data), dtype=np.float64)
    return Space(numeric, skewed, categorical, dropped, transformer, x)


def practitioner_fit(frame: Any, know: Knowledge, k: int | None = None) -> dict[str, Any]:
    """The whole procedure; with `k`, only that k is fitted (the stability refits)."""
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import silhouette_score

    timings: dict[str, float] = {}
    t = time.perf_counter()
    space = feature_space(frame, know)
    timings["features"] = time.perf_counter() - t
    t = time.perf_counter()
    pca = PCA(n_components=PCA_VARIANCE, svd_solver="full")
    z = pca.fit_transform(space.x)
    timings["pca"] = time.perf_counter() - t
    n = len(z)
    sample = SELECTION_SAMPLE if n > SELECTION_SAMPLE else None
    best: tuple[float, int, Any] | None = None
    by_k: dict[str, float] = {}
    for kk in ([k] if k is not None else list(K_RANGE)):
        t = time.perf_counter()
        labels = KMeans(n_clusters=kk, n_init=N_INIT, random_state=0).fit_predict(z)
        timings[f"kmeans_k{kk}"] = time.perf_counter() - t
        if k is not None:
            best = (float("nan"), kk, labels)
            break
        t = time.perf_counter()
        score = float(silhouette_score(z, labels, sample_size=sample, random_state=0))
        timings[f"silhouette_k{kk}"] = time.perf_counter() - t
        by_k[str(kk)] = score
        if best is None or score > best[0]:
            best = (score, kk, labels)
    assert best is not None
    return {
        "k": best[1], "labels": np.asarray(best[2]).astype(int).tolist(),
        "silhouette_pca_space": best[0], "silhouette_by_k": by_k,
        "n_features": space.n_features, "n_components": int(pca.n_components_),
        "numeric": space.numeric, "skewed": space.skewed, "categorical": space.categorical,
        "dropped": space.dropped, "timings": timings,
    }


def practitioner_child(name: str, csv: str, out: str) -> int:
    """`--practitioner-fit NAME CSV OUT`: the timed process of the practitioner."""
    t = time.perf_counter()
    frame = read_frame(Path(csv))
    read_s = time.perf_counter() - t
    result = practitioner_fit(frame, PRACTITIONER[name])
    result["timings"] = {"read": read_s, **result["timings"]}
    Path(out).write_text(json.dumps(result))
    return 0


# -- running things ----------------------------------------------------------------------

def child_env() -> dict[str, str]:
    """The environment of the timed children: byte-compiled imports (module docstring)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE_DIR)
    return env


@dataclass(frozen=True)
class Timed:
    command: list[str]
    wall_s: float
    stdout: str
    stderr_tail: str


def run_timed(command: list[str], timeout_s: float) -> Timed:
    """Run a child process; its whole-process wall time. Raises BenchError on failure."""
    start = time.perf_counter()
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, env=child_env(), timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{command[0]} {command[1]} killed after {timeout_s:.0f} s") from exc
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise BenchError(f"{' '.join(command)} exited with {done.returncode}:\n"
                         f"{done.stderr[-2000:]}")
    return Timed(command, wall, done.stdout, done.stderr[-2000:])


def run_practitioner(name: str, csv: Path, folder: Path, timeout_s: float
                     ) -> tuple[Timed, dict[str, Any]]:
    out = folder / f"practitioner-{name}.json"
    timed = run_timed([PYTHON, str(Path(__file__).resolve()), "--practitioner-fit", name,
                       str(csv), str(out)], timeout_s)
    return timed, json.loads(out.read_text())


def write_config(folder: Path, csv: Path) -> Path:
    """The config a user writes: no features block, k and components chosen by custseg."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        f"data_uri: {json.dumps(str(csv.parent))}",
        f"data_file: {json.dumps(csv.name)}",
        "n_clusters: auto",
        "n_components: auto",
        f"store: {json.dumps(str(folder / 'store'))}",
        "endpoint: {autostart: false}",
    ]
    path = folder / "pipeline_config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def read_table(csv: Path) -> Any:
    import pyarrow.csv as pacsv

    # strings_can_be_null as custseg's own reader: an empty field is missing, not a category
    return pacsv.read_csv(csv, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))


def run_custseg(csv: Path, folder: Path, timeout_s: float, k: int | None = None
                ) -> tuple[Timed, dict[str, Any], Any]:
    """`custseg run` on `csv` (sweep, or `-p n_clusters=k`); its labels for every row."""
    import numpy as np

    import custseg

    config = write_config(folder, csv)
    command = [CUSTSEG, "run", "-c", str(config), "--json"]
    if k is not None:
        command += ["-p", f"n_clusters={k}"]
    timed = run_timed(command, timeout_s)
    try:
        execution: dict[str, Any] = json.loads(timed.stdout)
    except json.JSONDecodeError as exc:
        raise BenchError(f"custseg run: stdout is not the execution JSON: "
                         f"{timed.stdout[:500]!r}") from exc
    if execution.get("status") != "Succeeded" or not execution.get("model_uri"):
        raise BenchError(f"custseg run did not succeed: {execution}")
    try:
        model = custseg.load_model(execution["model_uri"])
        labels = np.asarray(model.predict(read_table(csv)))
    except Exception as exc:  # custseg's or pyarrow's: the run is unusable either way
        raise BenchError(f"custseg predict on {csv}: {type(exc).__name__}: {exc}") from exc
    return timed, execution, labels.astype(int)


# -- measures ----------------------------------------------------------------------------

def subsample_rows(n: int, i: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(SUBSAMPLE_SEED + i)
    return np.sort(rng.choice(n, size=round(SUBSAMPLE_FRACTION * n), replace=False))


def write_subsample(csv: Path, rows: Any, n: int, dest: Path) -> None:
    """The same rows of `csv`, byte for byte (header + the chosen lines).

    A row is a line: true of these files, checked against the `n` rows pandas read.
    """
    lines = csv.read_bytes().splitlines(keepends=True)
    while lines and not lines[-1].strip():
        lines.pop()
    header, data = lines[0], lines[1:]
    if len(data) != n:
        raise BenchError(f"{csv}: {len(data)} data lines but {n} rows: cannot subsample "
                         "by lines")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as f:
        f.write(header)
        for r in rows:
            line = data[r]
            f.write(line if line.endswith(b"\n") else line + b"\n")


def smallest_share(labels: Any) -> float:
    import numpy as np

    counts = np.bincount(labels)
    return float(counts[counts > 0].min() / len(labels))


def same_space_silhouette(x: Any, labels: Any) -> float | None:
    """Exact silhouette in the practitioner's pre-PCA space (None for a single cluster)."""
    import numpy as np
    from sklearn.metrics import silhouette_score

    if len(np.unique(labels)) < 2:
        return None
    return float(silhouette_score(x, labels))


def ari(a: Any, b: Any) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(a, b))


def stability(full_labels: Any, n: int, n_sub: int, fit_rows: Any) -> dict[str, Any]:
    """Mean ARI of subsample refits (`fit_rows(i, rows)` -> labels) to the full fit."""
    import numpy as np

    values = []
    for i in range(n_sub):
        rows = subsample_rows(n, i)
        values.append(ari(full_labels[rows], fit_rows(i, rows)))
    return {"mean": float(np.mean(values)), "min": float(np.min(values)), "each": values}


# -- one dataset -------------------------------------------------------------------------

@dataclass
class Dataset:
    name: str
    csv: Path
    source: str
    truth: Any = None  # true labels for the generated sets
    truth_recoverable_ari: float | None = None
    informative: list[str] = field(default_factory=list)  # where the truth lives
    log_columns: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)


def truth_space(frame: Any, d: Dataset) -> Any:
    """The informative columns of a generated set (log of the money), standard-scaled."""
    import numpy as np

    x = np.column_stack([np.log(frame[c].to_numpy(float)) if c in d.log_columns
                         else frame[c].to_numpy(float) for c in d.informative])
    return (x - x.mean(axis=0)) / x.std(axis=0)


def _tool_summary(labels: Any, x: Any, truth: Any, x_truth: Any) -> dict[str, Any]:
    import numpy as np

    return {
        "k": len(np.unique(labels)),
        "segment_sizes": np.bincount(labels).tolist(),
        "smallest_share": smallest_share(labels),
        "silhouette_same_space": same_space_silhouette(x, labels),
        "ari_to_truth": None if truth is None else ari(truth, labels),
        # context for the generated sets: the silhouette where the truth lives
        "silhouette_truth_space": (None if x_truth is None
                                   else same_space_silhouette(x_truth, labels)),
    }


def bench_dataset(d: Dataset, work: Path, n_sub: int, timeout_s: float) -> dict[str, Any]:
    import numpy as np

    folder = work / d.name
    folder.mkdir(parents=True)
    frame = read_frame(d.csv)
    n = len(frame)
    know = PRACTITIONER[d.name]
    space = feature_space(frame, know)
    started = time.perf_counter()
    loadavg_start = os.getloadavg()
    print(f"[{d.name}] {n:,} rows x {frame.shape[1]} columns; same space: "
          f"{space.n_features} features", flush=True)
    x_truth = None if d.truth is None else truth_space(frame, d)
    result: dict[str, Any] = {
        "name": d.name, "source": d.source, "csv": str(d.csv), "rows": n,
        "columns": list(map(str, frame.columns)), "generator_notes": d.notes,
        "truth_k": None if d.truth is None else int(d.truth.max()) + 1,
        "truth_recoverable_ari": d.truth_recoverable_ari,
        "truth_space": {"columns": d.informative, "log": d.log_columns},
        "truth_silhouette": None if d.truth is None else {
            "same_space": same_space_silhouette(space.x, d.truth),
            "truth_space": same_space_silhouette(x_truth, d.truth)},
        "same_space": {"n_features": space.n_features, "numeric": space.numeric,
                       "log1p": space.skewed, "categorical": space.categorical,
                       "dropped": space.dropped},
        "tools": {},
    }

    # the practitioner: timed full fit as a subprocess, refits in-process
    print(f"[{d.name}] practitioner ...", end=" ", flush=True)
    timed, fit = run_practitioner(d.name, d.csv, folder, timeout_s)
    labels = np.asarray(fit.pop("labels"))
    print(f"k={fit['k']}, {timed.wall_s:.2f} s; stability ...", end=" ", flush=True)
    stab = stability(labels, n, n_sub, lambda i, rows: np.asarray(practitioner_fit(
        frame.iloc[rows].reset_index(drop=True), know, k=fit["k"])["labels"]))
    print(f"{stab['mean']:.3f}", flush=True)
    result["tools"]["practitioner"] = {
        **_tool_summary(labels, space.x, d.truth, x_truth), "stability": stab,
        "wall_s": timed.wall_s, "in_process_s": float(sum(fit["timings"].values())),
        "silhouette_own_space": fit["silhouette_pca_space"], "fit": fit,
    }

    # custseg: timed full sweep, refits at its k on subsample CSVs
    print(f"[{d.name}] custseg ...", end=" ", flush=True)
    try:
        timed, execution, labels = run_custseg(d.csv, folder / "custseg-full", timeout_s)
        k = int(execution["metrics"]["k"])
        print(f"k={k}, {timed.wall_s:.2f} s; stability ...", end=" ", flush=True)

        def refit(i: int, rows: Any) -> Any:
            sub = folder / f"sub{i}" / f"{d.csv.stem}-sub{i}.csv"
            write_subsample(d.csv, rows, n, sub)
            return run_custseg(sub, sub.parent / "custseg", timeout_s, k=k)[2]

        try:
            stab = stability(labels, n, n_sub, refit)
            print(f"{stab['mean']:.3f}", flush=True)
        except BenchError as exc:
            print(f"FAILED: {_headline(exc)}", flush=True)
            stab = {"error": str(exc), "headline": _headline(exc)}
        train = execution["steps"].get("Train", {}).get("outputs", {})
        reported = sorted(execution["metrics"].get("cluster_sizes") or [])
        result["tools"]["custseg"] = {
            # predict() on every row gives the run's own cluster sizes
            "predict_matches_run_sizes": reported == sorted(np.bincount(labels).tolist()),
            **_tool_summary(labels, space.x, d.truth, x_truth), "stability": stab,
            "wall_s": timed.wall_s,
            "in_process_s": float(sum(s.get("seconds") or 0.0
                                      for s in execution["steps"].values())),
            "silhouette_own_space": _own_silhouette(execution["metrics"]),
            "metrics": execution["metrics"], "schema": train.get("schema"),
            "own_stability": execution["metrics"].get("stability", train.get("stability")),
            "model_uri": execution["model_uri"],
            "steps_s": {s: v.get("seconds") for s, v in execution["steps"].items()},
        }
    except BenchError as exc:
        print(f"FAILED: {_headline(exc)}", flush=True)
        result["tools"]["custseg"] = {"error": str(exc), "headline": _headline(exc)}
    result["targets"] = targets(result)
    result["loadavg"] = {"start": loadavg_start, "end": os.getloadavg()}
    result["elapsed_s"] = time.perf_counter() - started
    return result


def _headline(exc: Exception) -> str:
    """The last line of a child's traceback, with the frame it came from."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    where = next((line for line in reversed(lines) if line.startswith("File ")), "")
    return f"{lines[-1]} ({where})" if where else lines[-1]


def _own_silhouette(metrics: dict[str, Any]) -> float | None:
    s = metrics.get("silhouette")
    if isinstance(s, dict):
        s = s.get("value")
    return None if s is None else float(s)


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The PASS/FAIL lines of one dataset."""
    c, p = r["tools"]["custseg"], r["tools"]["practitioner"]
    out = []

    def add(target: str, value: float | None, limit: str, passed: bool) -> None:
        out.append({"dataset": r["name"], "target": target, "value": value, "limit": limit,
                    "passed": bool(passed)})

    if "error" in c:
        add("custseg run succeeds", None, "succeeds", False)
        return out
    if r["name"] == "nuisance":
        add("custseg ARI to the truth", c["ari_to_truth"], f">= {TRUTH_ARI_TARGET}",
            c["ari_to_truth"] >= TRUTH_ARI_TARGET)
    stab = c["stability"].get("mean")
    add("custseg stability (mean ARI)", stab, f">= {STABILITY_TARGET}",
        stab is not None and stab >= STABILITY_TARGET)
    add("custseg smallest segment share", c["smallest_share"], f">= {MIN_SHARE_TARGET}",
        c["smallest_share"] >= MIN_SHARE_TARGET)
    cs, ps = c["silhouette_same_space"], p["silhouette_same_space"]
    limit = None if ps is None else ps - SILHOUETTE_TOLERANCE
    add("custseg same-space silhouette", cs,
        "n/a" if limit is None else f">= {limit:.4f} (practitioner {ps:.4f} - "
                                    f"{SILHOUETTE_TOLERANCE})",
        cs is not None and limit is not None and cs >= limit)
    return out


# -- inputs ------------------------------------------------------------------------------

def load_datasets(names: list[str], data_dir: Path, work: Path, seed: int
                  ) -> tuple[list[Dataset], list[dict[str, str]]]:
    sys.path.insert(0, str(BENCH_DIR))
    import quality_data

    found, skipped = [], []
    for name in names:
        if name in REAL_FILES:
            path = data_dir / REAL_FILES[name]
            if not data_dir.is_dir() or not path.is_file():
                why = (f"folder {data_dir} is absent" if not data_dir.is_dir()
                       else f"{path.name} is not in {data_dir}")
                print(f"SKIP {name}: {why} (the real datasets are not shipped with the "
                      "project; pass --data-dir)", flush=True)
                skipped.append({"name": name, "reason": why})
                continue
            found.append(Dataset(name, path, f"{path} (UCI, CC BY 4.0)"))
        else:
            gen = quality_data.GENERATORS[name](work / "data", seed=seed)
            found.append(Dataset(name, gen.path, f"quality_data.make_{name}(seed={seed})",
                                 truth=gen.truth,
                                 truth_recoverable_ari=quality_data.truth_recoverable_ari(gen),
                                 informative=gen.informative, log_columns=gen.log_columns,
                                 notes=gen.notes))
    return found, skipped


def warm_up(work: Path, timeout_s: float) -> dict[str, Any]:
    """One untimed run of each tool, to fill the byte-code cache of the children."""
    sys.path.insert(0, str(BENCH_DIR))
    import quality_data

    folder = work / "warm-up"
    gen = quality_data.make_nuisance(folder, n=500, n_outliers=1, seed=99)
    t1, _ = run_practitioner("nuisance", gen.path, folder, timeout_s)
    try:
        t2 = run_custseg(gen.path, folder / "custseg", timeout_s)[0]
    except BenchError as exc:  # reported again, per dataset, where it counts
        return {"practitioner_s": t1.wall_s, "custseg_error": _headline(exc)}
    return {"practitioner_s": t1.wall_s, "custseg_s": t2.wall_s}


# -- environment ---------------------------------------------------------------------------

_CODE_PROBE = """
import hashlib, pathlib, custseg
src = pathlib.Path(custseg.__file__).parent
digest = hashlib.sha256()
for module in sorted(src.rglob("*.py")):
    digest.update(str(module.relative_to(src)).encode() + b"\\0" + module.read_bytes())
print(src, digest.hexdigest())
"""


def code_version() -> dict[str, Any]:
    """Which custseg the children run: its source folder, a hash of its modules, git."""
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

    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_model": cpu,
            "python": platform.python_version(), "platform": platform.platform(),
            "versions": {name: version(name) for name in
                         ("custseg", "numpy", "pyarrow", "pandas", "scikit-learn")}}


# -- report --------------------------------------------------------------------------------

SAME_SPACE = ("silhouette, same space = exact silhouette of each tool's labels in the "
              "practitioner's full feature space before PCA (fitted on the whole dataset): "
              "imputed (median / most frequent), log1p of the skewed columns, standard-scaled "
              "numerics, 0/1 one-hot categoricals; ids, targets, known-irrelevant and "
              "constant columns left out")
SUMMARY_HEADER = ["dataset", "rows", "tool", "k", "silhouette, same space",
                  "silhouette, own space", "smallest segment", "stability (mean ARI, min)",
                  "ARI to truth", "wall s", "in-process s"]
TARGET_HEADER = ["dataset", "target", "measured", "limit", "verdict"]
TEXT_COLUMNS = {"dataset", "tool", "target", "limit"}
PLAIN_REASONS = {"integer", "float"}  # custseg's reasons not worth repeating


def _f(v: float | None, fmt: str = ".3f") -> str:
    return "-" if v is None else format(v, fmt)


def summary_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in results:
        for tool in ("practitioner", "custseg"):
            t = r["tools"][tool]
            if "error" in t:
                rows.append([r["name"], f"{r['rows']:,}", tool, "failed", *["-"] * 7])
                continue
            s = t["stability"]
            rows.append([
                r["name"], f"{r['rows']:,}", tool, str(t["k"]),
                _f(t["silhouette_same_space"]), _f(t["silhouette_own_space"]),
                f"{t['smallest_share']:.1%}",
                "failed" if "error" in s else f"{s['mean']:.3f} ({s['min']:.3f})",
                _f(t["ari_to_truth"]), f"{t['wall_s']:.2f}", f"{t['in_process_s']:.2f}",
            ])
    return rows


def target_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    return [[t["dataset"], t["target"], _f(t["value"], ".4f"), t["limit"],
             "**PASS**" if t["passed"] else "**FAIL**"]
            for r in results for t in r["targets"]]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" if c in TEXT_COLUMNS else "---:" for c in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


def _with_reason(col: str, reasons: dict[str, Any]) -> str:
    why = reasons.get(col)
    return f"{col} ({why})" if why and why not in PLAIN_REASONS else col


def schema_lines(results: list[dict[str, Any]]) -> list[str]:
    """What custseg made of each table (roles), beside what the practitioner did."""
    lines = []
    for r in results:
        c = r["tools"]["custseg"]
        schema = c.get("schema") or {}
        if not schema:
            continue
        reasons = {col["name"]: col.get("reason") for col in schema.get("columns") or []
                   if isinstance(col, dict) and "name" in col}
        roles = "; ".join(
            f"{role}: " + ", ".join(_with_reason(col, reasons) for col in value)
            for role, value in schema.items()
            if isinstance(value, list) and value and all(isinstance(v, str) for v in value))
        lines.append(f"* {r['name']}: custseg: {roles}; practitioner dropped "
                     f"{sorted(r['same_space']['dropped'])}")
    return lines


def report(results: list[dict[str, Any]], skipped: list[dict[str, str]]) -> str:
    parts = [markdown_table(SUMMARY_HEADER, summary_rows(results)), "", SAME_SPACE + ".", ""]
    for r in results:
        if r["truth_recoverable_ari"] is None:
            continue
        ts, tools = r["truth_silhouette"], r["tools"]
        by_tool = ", ".join(f"{name} {_f(t.get('silhouette_truth_space'))}"
                            for name, t in tools.items() if "error" not in t)
        parts.append(
            f"* {r['name']}: truth k={r['truth_k']}; KMeans at the true k on the informative "
            f"columns alone ({', '.join(r['truth_space']['columns'])}) reaches ARI "
            f"{r['truth_recoverable_ari']:.3f} (generator check). The true labels score "
            f"{_f(ts['same_space'])} in the same space. Silhouette in the informative "
            f"columns: truth {_f(ts['truth_space'])}, {by_tool}")
    parts += [*schema_lines(results), "", markdown_table(TARGET_HEADER, target_rows(results))]
    parts += [f"\nSkipped {s['name']}: {s['reason']}" for s in skipped]
    return "\n".join(parts)


# -- main ----------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="segment quality: custseg run (no features "
                                                 "block) vs a careful practitioner's script")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=DATASETS,
                        help="datasets to run (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_SUBSAMPLES} subsamples instead of {SUBSAMPLES}")
    parser.add_argument("--json", type=Path, default=None,
                        help="where to write every figure (default benchmarks/out/"
                             "bench_quality-<UTC>.json)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help=f"folder of the real datasets (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--seed", type=int, default=0, help="generators' seed (default 0)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds before a child process is killed (default 600)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--practitioner-fit"]:
        return practitioner_child(*argv[1:4])
    args = parse_args(argv)
    started = datetime.now(UTC)
    stamp = started.strftime("%Y-%m-%dT%H%M%SZ")
    n_sub = QUICK_SUBSAMPLES if args.quick else SUBSAMPLES
    context: dict[str, Any] = {
        "benchmark": "bench_quality",
        "command": " ".join(["uv run python benchmarks/bench_quality.py", *argv]),
        "started_utc": started.isoformat(timespec="seconds"), "code": code_version(),
        "loadavg": {"start": os.getloadavg()},
        "settings": {"subsamples": n_sub, "subsample_fraction": SUBSAMPLE_FRACTION,
                     "subsample_seeds": [SUBSAMPLE_SEED + i for i in range(n_sub)],
                     "k_range": [K_RANGE.start, K_RANGE.stop - 1], "pca_variance": PCA_VARIANCE,
                     "n_init": N_INIT, "selection_silhouette_sample": SELECTION_SAMPLE,
                     "same_space": SAME_SPACE, "generator_seed": args.seed},
        "practitioner_knowledge": {n: {"ids": k.ids, "targets": k.targets,
                                       "irrelevant": k.irrelevant,
                                       "coded_categorical": k.coded_categorical,
                                       "skewed": k.skewed} for n, k in PRACTITIONER.items()},
    }
    work = Path(tempfile.mkdtemp(prefix="bench_quality-"))
    try:
        datasets, skipped = load_datasets(args.datasets, args.data_dir, work, args.seed)
        print("warming up (untimed) ...", end=" ", flush=True)
        context["warm_up"] = warm_up(work, args.timeout)
        print("done", flush=True)
        results = [bench_dataset(d, work, n_sub, args.timeout) for d in datasets]
        context["loadavg"]["end"] = os.getloadavg()
        context["code_at_end"] = code_version()
        if context["code_at_end"]["src_sha256"] != context["code"]["src_sha256"]:
            print("WARNING: custseg's code changed during the run (see 'code' and "
                  "'code_at_end' in the JSON): these figures mix versions", flush=True)
        context["machine"] = machine_info()
        context["elapsed_s"] = (datetime.now(UTC) - started).total_seconds()
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(report(results, skipped))
    every = [t for r in results for t in r["targets"]]
    print()
    for t in every:
        print(f"{'PASS' if t['passed'] else 'FAIL'}  {t['dataset']}: {t['target']} "
              f"{_f(t['value'], '.4f')} ({t['limit']})")
    out = args.json or OUT_DIR / f"bench_quality-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**context, "datasets": results, "skipped": skipped,
                               "targets": every}, indent=2, default=_json_default))
    print(f"\nresults written to {out} ({context['elapsed_s']:.0f} s in all)")
    return 0 if every and all(t["passed"] for t in every) else 1


def _json_default(v: Any) -> Any:
    """numpy scalars and tuples of the knowledge table."""
    if hasattr(v, "tolist"):
        return v.tolist()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


if __name__ == "__main__":
    sys.exit(main())
