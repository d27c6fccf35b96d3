"""`Model.to_sklearn()`: the same model as a fitted scikit-learn Pipeline.

The pipeline is ColumnTransformer(numeric: [dates as days] + median impute + [clip and
log] + StandardScaler; categorical: canonical strings + most-frequent impute +
OneHotEncoder(handle_unknown="ignore") + [one-hot weights]) -> PCA -> KMeans; the
bracketed steps appear only when the model uses them (`features.transform: none` gives
plain scikit-learn). Each estimator is fitted on a tiny stand-in frame (so that every private
attribute scikit-learn expects exists) and its learned state is then replaced by ours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from custseg.core.preprocessing import category_key

if TYPE_CHECKING:
    from custseg.artifact.scorer import Model

__all__ = ["as_category_strings", "as_numbers", "build_pipeline", "clip_and_log", "weigh"]


def as_numbers(x: Any, dates: dict[int, tuple[str, float]]) -> np.ndarray:
    """Numeric columns as floats (missing -> NaN); date columns (by position) as days
    before the training reference, as the scorer does."""
    from custseg.core.preprocessing import date_days

    arr = np.asarray(x, dtype=object)
    out = np.empty(arr.shape, dtype=np.float64)
    for (i, j), v in np.ndenumerate(arr):
        if j in dates:
            fmt, ref = dates[j]
            out[i, j] = ref - date_days(None if v != v else v, fmt)
        else:
            out[i, j] = np.nan if v is None or v == "" else float(v)
    return out


def clip_and_log(x: Any, low: np.ndarray, high: np.ndarray, functions: list[str],
                 scales: np.ndarray) -> np.ndarray:
    """Clip each column to its bounds, then apply its skew transform."""
    from custseg.core.preprocessing import forward

    out = np.clip(np.asarray(x, dtype=np.float64), low, high)
    for j, (fn, s) in enumerate(zip(functions, scales.tolist(), strict=True)):
        out[:, j] = forward(out[:, j], fn, s)
    return out


def weigh(x: Any, weights: np.ndarray) -> np.ndarray:
    """Scale each one-hot column by its categorical column's weight."""
    return np.asarray(np.asarray(x, dtype=np.float64) * weights)


def as_category_strings(x: Any) -> np.ndarray:
    """Map values to the canonical category strings (missing -> NaN), as the scorer does."""
    arr = np.asarray(x, dtype=object)
    out = np.empty(arr.shape, dtype=object)
    for idx, v in np.ndenumerate(arr):
        key = category_key(v)
        out[idx] = np.nan if key is None or key == "" else key
    return out


def _example_date(fmt: str, offset: int = 0) -> str:
    from datetime import datetime, timedelta

    day = datetime(2020, 1, 2) + timedelta(days=offset)
    return day.isoformat() if fmt == "iso" else day.strftime(fmt)


def _stand_in_numbers(low: float, high: float, rows: int, rng: np.random.Generator
                      ) -> np.ndarray:
    """Values that vary inside the clip bounds (clipped to one value, every stand-in
    column would be constant and scikit-learn's PCA would warn of a zero variance)."""
    if np.isfinite(low) and np.isfinite(high) and high > low:
        return np.linspace(low, high, rows)
    return rng.normal(size=rows)


def build_pipeline(model: Model) -> Any:
    import pandas as pd
    from sklearn.cluster import KMeans
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    t, p = model.transform, model.projection
    parts = []
    if t.numeric:
        steps: list[tuple[str, Any]] = []
        if t.dates:
            dates = {j: (t.dates[c], t.date_reference[c]) for j, c in enumerate(t.numeric)
                     if c in t.dates}
            steps.append(("dates", FunctionTransformer(
                as_numbers, kw_args={"dates": dates}, feature_names_out="one-to-one")))
        steps.append(("impute", SimpleImputer(strategy="median")))
        if not t.plain:
            steps.append(("transform", FunctionTransformer(
                clip_and_log, kw_args={"low": t.clip_low, "high": t.clip_high,
                                       "functions": t.functions, "scales": t.log_scales},
                feature_names_out="one-to-one")))
        steps.append(("scale", StandardScaler()))
        parts.append(("num", Pipeline(steps), t.numeric))
    if t.categorical:
        parts.append(
            (
                "cat",
                Pipeline(
                    [
                        (
                            "keys",
                            FunctionTransformer(
                                as_category_strings, feature_names_out="one-to-one"
                            ),
                        ),
                        ("impute", SimpleImputer(strategy="most_frequent")),
                        (
                            "onehot",
                            OneHotEncoder(
                                categories=[list(c) for c in t.categories],
                                handle_unknown="ignore",
                                sparse_output=False,
                            ),
                        ),
                        (
                            "weights",
                            FunctionTransformer(
                                weigh, kw_args={"weights": np.concatenate(
                                    [np.full(len(c), w) for c, w in
                                     zip(t.categories, t.weights.tolist(), strict=True)])},
                                feature_names_out="one-to-one",
                            ),
                        ),
                    ]
                ),
                t.categorical,
            )
        )
    columns = ColumnTransformer(parts, sparse_threshold=0.0)
    d = t.n_features
    rows = max(d, model.k, p.n_components, *(len(c) for c in t.categories or [[]])) + 2
    rng = np.random.default_rng(0)
    stand_in = pd.DataFrame(
        {
            **{name: ([_example_date(t.dates[name], i) for i in range(rows)]
                      if name in t.dates
                      else _stand_in_numbers(float(t.clip_low[j]), float(t.clip_high[j]),
                                             rows, rng))
               for j, name in enumerate(t.numeric)},
            **{
                name: [cats[i % len(cats)] for i in range(rows)]
                for name, cats in zip(t.categorical, t.categories, strict=True)
            },
        }
    )
    x = columns.fit_transform(stand_in)
    if t.numeric:
        num = columns.named_transformers_["num"]
        num.named_steps["impute"].statistics_ = t.medians.astype(float).copy()
        scaler = num.named_steps["scale"]
        scaler.mean_, scaler.scale_ = t.means.copy(), t.scales.copy()
        scaler.var_ = t.scales**2
    if t.categorical:
        cat = columns.named_transformers_["cat"]
        cat.named_steps["impute"].statistics_ = np.array(t.modes, dtype=object)
    pca = PCA(n_components=p.n_components).fit(x)
    pca.components_ = p.components.copy()
    pca.mean_ = p.mean.copy()
    pca.explained_variance_ = p.explained_variance.copy()
    pca.explained_variance_ratio_ = p.explained_variance_ratio.copy()
    pca.singular_values_ = p.singular_values.copy()
    pca.noise_variance_ = p.noise_variance
    pca.n_samples_ = p.n_samples
    kmeans = KMeans(n_clusters=model.k, init=model.centers, n_init=1).fit(model.centers)
    kmeans.cluster_centers_ = model.centers.copy()
    return Pipeline([("features", columns), ("pca", pca), ("kmeans", kmeans)])
