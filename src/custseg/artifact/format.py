"""The model artifact's format: a model to files of plain data and back, never pickle.

An artifact is a folder (local or `s3://`) of three files:

* `model.json`: format version, schema, feature names and categories, parameters,
  metrics, the candidate table, data lineage, library versions, and (from version 3)
  the training baseline `custseg monitor` compares traffic with;
* `arrays.npz`: the numeric state (imputation, scaling, PCA, centroids), read with
  `allow_pickle=False`;
* `manifest.json`: the sha256 of each file, checked on every load.

This module turns a `Model` into those files' bytes (`artifact_files`), verifies a
manifest and the files it names (`read_verified`) and parses verified files into a
`Model` (`parse_artifact`). It touches no file, bucket or socket: where the bytes live is
`custseg.artifact.storage`'s business.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from typing import Any

import numpy as np

from custseg.artifact.scorer import Model
from custseg.core.preprocessing import FeatureTransform, schema_rows
from custseg.core.schema import Schema
from custseg.core.train import Projection
from custseg.errors import ModelError

__all__ = [
    "FILES",
    "FORMAT",
    "FORMAT_VERSION",
    "READABLE_VERSIONS",
    "RESERVED_KEYS",
    "artifact_files",
    "parse_artifact",
    "read_verified",
]

FORMAT = "custseg-model"
FORMAT_VERSION = 3  # 2: skew transforms, clipping, dates, one-hot weights; 3: the training
# baseline for monitoring (`baseline` in model.json: `core/baseline`)
READABLE_VERSIONS = (1, 2, 3)
FILES = ("model.json", "arrays.npz")  # what the manifest lists, besides itself
RESERVED_KEYS = frozenset({"format", "format_version", "schema", "features", "pca", "kmeans"})


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- model to files --------------------------------------------------------------------------


def _to_json(model: Model) -> dict[str, Any]:
    t, p = model.transform, model.projection
    clash = RESERVED_KEYS & set(model.meta)
    if clash:
        raise ValueError(f"model metadata may not use the artifact's own keys: {sorted(clash)}")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "schema": model.schema.to_dict() | {"columns": schema_rows(model.schema, t)},
        "features": {
            "numeric": t.numeric,
            "categorical": t.categorical,
            "modes": t.modes,
            "categories": t.categories,
            "names": t.feature_names,
            "functions": t.functions,
            "dates": t.dates,
            "date_reference": t.date_reference,
            "flags": t.flags,
        },
        "pca": {
            "n_components": p.n_components,
            "n_samples": p.n_samples,
            "noise_variance": p.noise_variance,
            "explained_variance_ratio": p.explained_variance_ratio.tolist(),
        },
        "kmeans": {"k": model.k},
        **model.meta,
    }


def _arrays(model: Model) -> dict[str, np.ndarray]:
    t, p = model.transform, model.projection
    return {
        "medians": t.medians,
        "means": t.means,
        "scales": t.scales,
        "log_scales": t.log_scales,
        "clip_low": t.clip_low,
        "clip_high": t.clip_high,
        "category_weights": t.weights,
        "pca_mean": p.mean,
        "pca_components": p.components,
        "pca_explained_variance": p.explained_variance,
        "pca_explained_variance_ratio": p.explained_variance_ratio,
        "pca_singular_values": p.singular_values,
        "centers": model.centers,
    }


def artifact_files(model: Model) -> dict[str, bytes]:
    """The artifact's files as bytes, manifest included."""
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **_arrays(model))
    files = {
        "model.json": json.dumps(_to_json(model), indent=2, sort_keys=False).encode(),
        "arrays.npz": buf.getvalue(),
    }
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "files": {name: _sha256(data) for name, data in files.items()},
    }
    files["manifest.json"] = json.dumps(manifest, indent=2).encode()
    return files


# -- files to model --------------------------------------------------------------------------


def read_verified(uri: str, read: Callable[[str], bytes]) -> dict[str, bytes]:
    """The artifact's files (`FILES`) by name, each checked against the manifest.

    `read(name)` returns a file's bytes from wherever the artifact lives (it raises
    ModelError for a missing file); `uri` names the artifact in errors. Raises ModelError
    for an unreadable manifest, an unsupported format or version, or a file whose sha256
    differs from the manifest's.
    """
    try:
        manifest = json.loads(read("manifest.json"))
        expected = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"model artifact {uri}: manifest.json is unreadable ({exc})") from exc
    if manifest.get("format") != FORMAT or manifest.get("format_version") not in READABLE_VERSIONS:
        raise ModelError(
            f"model artifact {uri}: format {manifest.get('format')!r} version "
            f"{manifest.get('format_version')!r} is not supported "
            f"(expected {FORMAT} v{FORMAT_VERSION})"
        )
    blobs = {}
    for name in FILES:
        data = read(name)
        if name not in expected or _sha256(data) != expected[name]:
            raise ModelError(
                f"model artifact {uri}: {name} does not match its sha256 in manifest.json "
                f"(the file was changed or corrupted); retrain or restore it"
            )
        blobs[name] = data
    return blobs


def parse_artifact(blobs: dict[str, bytes], uri: str) -> Model:
    """The model in verified files (see `read_verified`), recording `uri` as its place.

    Raises ModelError when model.json or arrays.npz is not a valid model.
    """
    try:
        return _parse(blobs, uri)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        detail = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ModelError(f"model artifact {uri}: model.json or arrays.npz is not a valid "
                         f"{FORMAT} v{FORMAT_VERSION} model ({detail})") from exc


def _parse(blobs: dict[str, bytes], uri: str) -> Model:
    meta = json.loads(blobs["model.json"])
    with np.load(io.BytesIO(blobs["arrays.npz"]), allow_pickle=False) as npz:
        arr = {k: npz[k] for k in npz.files}
    feats, schema_d, pca = meta["features"], meta["schema"], meta["pca"]
    for key in RESERVED_KEYS:
        meta.pop(key, None)
    transform = FeatureTransform(
        numeric=feats["numeric"],
        medians=arr["medians"],
        means=arr["means"],
        scales=arr["scales"],
        categorical=feats["categorical"],
        modes=feats["modes"],
        categories=feats["categories"],
        functions=feats.get("functions", []),
        log_scales=arr.get("log_scales", np.zeros(0)),
        clip_low=arr.get("clip_low", np.zeros(0)),
        clip_high=arr.get("clip_high", np.zeros(0)),
        dates=feats.get("dates", {}),
        date_reference=feats.get("date_reference", {}),
        weights=arr.get("category_weights", np.zeros(0)),
        flags=feats.get("flags"),
    )
    for name, fn in zip(transform.numeric, transform.functions, strict=True):
        if fn not in ("none", "log1p", "signed_log"):
            raise ValueError(f"unknown transform {fn!r} of column {name!r}")
    projection = Projection(
        mean=arr["pca_mean"],
        components=arr["pca_components"],
        explained_variance=arr["pca_explained_variance"],
        explained_variance_ratio=arr["pca_explained_variance_ratio"],
        singular_values=arr["pca_singular_values"],
        noise_variance=pca["noise_variance"],
        n_samples=pca["n_samples"],
    )
    schema = Schema.from_dict(schema_d)
    return Model(
        schema=schema,
        transform=transform,
        projection=projection,
        centers=arr["centers"],
        meta=meta,
        uri=uri,
    )
