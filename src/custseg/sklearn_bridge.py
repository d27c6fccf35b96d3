"""`Model.to_sklearn()`: the same model as a fitted scikit-learn Pipeline.

The pipeline is ColumnTransformer(numeric: median impute + StandardScaler; categorical:
canonical strings + most-frequent impute + OneHotEncoder(handle_unknown="ignore")) ->
PCA -> KMeans. Each estimator is fitted on a tiny stand-in frame (so that every private
attribute scikit-learn expects exists) and its learned state is then replaced by ours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from custseg.preprocessing import category_key

if TYPE_CHECKING:
    from custseg.model import Model

__all__ = ["as_category_strings", "build_pipeline"]


def as_category_strings(x: Any) -> np.ndarray:
    """Map values to the canonical category strings (missing -> NaN), as the scorer does."""
    arr = np.asarray(x, dtype=object)
    out = np.empty(arr.shape, dtype=object)
    for idx, v in np.ndenumerate(arr):
        key = category_key(v)
        out[idx] = np.nan if key is None or key == "" else key
    return out


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
        parts.append(
            (
                "num",
                Pipeline(
                    [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
                ),
                t.numeric,
            )
        )
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
            **{name: rng.normal(size=rows) for name in t.numeric},
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
