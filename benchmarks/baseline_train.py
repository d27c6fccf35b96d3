"""Seed-style training baseline: pandas + scikit-learn, as the original notebook did it.

Reads a customers CSV with pandas, then fits a scikit-learn ColumnTransformer (numeric:
median imputation + standard scaling of Age, Income, Purchases; categorical: most-frequent
imputation + one-hot encoding of Gender; CustomerID and any other column dropped), PCA
(one component as the seed did, or `--n-components N`) and KMeans(n_clusters=3,
n_init=10, random_state=0). Scores the clustering in the PCA space with scikit-learn's
metrics (silhouette on a 10,000-row sample, Calinski-Harabasz and Davies-Bouldin on all
rows) and prints them with the inertia.

For the benchmark harness (`bench_train.py`) it writes a JSON summary (metrics, inertia,
cluster sizes, PCA, per-stage timings) and, optionally, the (rows, N) PCA coordinates
and the KMeans labels as `.npy` files, so that custseg's labels can be scored in this
exact feature space. Usage::

    python benchmarks/baseline_train.py customers.csv --json-out out.json \
        [--n-components N] [--pca-out z.npy] [--labels-out labels.npy]

Benchmark it byte-compiled, as custseg: `uv sync --compile-bytecode`, with
PYTHONDONTWRITEBYTECODE unset (pandas and scikit-learn import hundreds of modules).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

NUMERIC = ["Age", "Income", "Purchases"]
CATEGORICAL = ["Gender"]
DROPPED = ["CustomerID"]
N_CLUSTERS = 3
DEFAULT_N_COMPONENTS = 1  # the seed's
SILHOUETTE_SAMPLE = 10_000
RANDOM_STATE = 0


def build_preprocessor() -> ColumnTransformer:
    """The seed's feature engineering (unlisted columns are dropped)."""
    numeric = Pipeline([
        ("imputer", SimpleImputer(strategy="median")),
        ("scaler", StandardScaler()),
    ])
    categorical = Pipeline([
        ("imputer", SimpleImputer(strategy="most_frequent")),
        ("onehot", OneHotEncoder(handle_unknown="ignore")),
    ])
    return ColumnTransformer(
        [("num", numeric, NUMERIC), ("cat", categorical, CATEGORICAL)], remainder="drop"
    )


def score(z: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The seed's three quality metrics, in the clustering (PCA) space."""
    return {
        "silhouette": float(silhouette_score(z, labels, sample_size=SILHOUETTE_SAMPLE,
                                             random_state=RANDOM_STATE)),
        "calinski_harabasz": float(calinski_harabasz_score(z, labels)),
        "davies_bouldin": float(davies_bouldin_score(z, labels)),
    }


def train(csv_path: Path, n_components: int = DEFAULT_N_COMPONENTS
          ) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Read, transform, project, cluster and score. Returns (summary, z, labels)."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    df = pd.read_csv(csv_path)
    df = df.drop(columns=DROPPED)
    timings["read"] = time.perf_counter() - t

    t = time.perf_counter()
    preprocessor = build_preprocessor()
    x = preprocessor.fit_transform(df)
    timings["preprocess"] = time.perf_counter() - t

    t = time.perf_counter()
    pca = PCA(n_components=n_components)
    z = pca.fit_transform(x)
    timings["pca"] = time.perf_counter() - t

    t = time.perf_counter()
    kmeans = KMeans(n_clusters=N_CLUSTERS, n_init=10, random_state=RANDOM_STATE)
    labels = kmeans.fit_predict(z)
    timings["kmeans"] = time.perf_counter() - t

    t = time.perf_counter()
    metrics = score(z, labels)
    timings["metrics"] = time.perf_counter() - t

    summary = {
        "csv": str(csv_path),
        "rows": len(df),
        "n_features": int(x.shape[1]),
        "feature_names": [str(f) for f in preprocessor.get_feature_names_out()],
        "metrics": metrics,
        "inertia": float(kmeans.inertia_),
        "n_iter": int(kmeans.n_iter_),
        "centers": kmeans.cluster_centers_.tolist(),
        "cluster_sizes": np.bincount(labels, minlength=N_CLUSTERS).tolist(),
        "pca": {"n_components": int(pca.n_components_),
                "components": pca.components_.tolist(),
                "explained_variance_ratio": pca.explained_variance_ratio_.tolist()},
        "timings": timings,
    }
    return summary, z, labels


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path, help="customers CSV (custseg sample format)")
    parser.add_argument("--json-out", type=Path, required=True, help="summary JSON to write")
    parser.add_argument("--n-components", type=int, default=DEFAULT_N_COMPONENTS,
                        help=f"PCA components (default {DEFAULT_N_COMPONENTS}, as the seed)")
    parser.add_argument("--pca-out", type=Path,
                        help="write the (rows, n_components) PCA coordinates here")
    parser.add_argument("--labels-out", type=Path, help="write the KMeans labels here")
    args = parser.parse_args(argv)
    if args.n_components < 1:
        parser.error(f"--n-components must be >= 1, got {args.n_components}")

    summary, z, labels = train(args.csv, args.n_components)
    t = time.perf_counter()
    if args.pca_out:
        np.save(args.pca_out, np.ascontiguousarray(z, dtype=np.float64))
        summary["pca_out"] = str(args.pca_out)
    if args.labels_out:
        np.save(args.labels_out, labels.astype(np.int32))
        summary["labels_out"] = str(args.labels_out)
    summary["timings"]["save"] = time.perf_counter() - t
    args.json_out.write_text(json.dumps(summary, indent=2))

    m = summary["metrics"]
    print(f"Silhouette Score: {m['silhouette']:.6f} (sample of {SILHOUETTE_SAMPLE:,} rows)")
    print(f"Calinski-Harabasz Index: {m['calinski_harabasz']:.6f}")
    print(f"Davies-Bouldin Index: {m['davies_bouldin']:.6f}")
    print(f"Inertia: {summary['inertia']:.6f}")


if __name__ == "__main__":
    main()
