"""The model artifact (save/load, sha256 manifest) and its fast scorer.

An artifact is a folder (local or `s3://`) of plain data, never pickle:

* `model.json`: format version, schema, feature names and categories, parameters,
  metrics, the candidate table, data lineage, library versions;
* `arrays.npz`: the numeric state (imputation, scaling, PCA, centroids), read with
  `allow_pickle=False`;
* `manifest.json`: the sha256 of each file, checked on every load.

A local save writes into a temporary sibling folder and renames it into place, so a
failed or killed save never leaves a half-written model.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from custseg.core.preprocessing import (
    Encoded,
    FeatureTransform,
    category_key,
    date_days,
    encode,
    schema_rows,
)
from custseg.core.schema import Schema
from custseg.core.train import Projection, category_tables, project
from custseg.errors import DataError, ModelError

__all__ = ["FORMAT", "FORMAT_VERSION", "Model", "load_model", "save_model"]

FORMAT = "custseg-model"
FORMAT_VERSION = 2  # 2: skew transforms, clipping, dates, one-hot weights
READABLE_VERSIONS = (1, 2)
FILES = ("model.json", "arrays.npz")
_CHUNK = 1 << 20


@dataclass
class Model:
    """A fitted segmentation model: feature transform, PCA and centroids, plus metadata."""

    schema: Schema
    transform: FeatureTransform
    projection: Projection
    centers: np.ndarray  # (k, p)
    meta: dict[str, Any] = field(default_factory=dict)
    uri: str | None = None

    def __post_init__(self) -> None:
        self._tables = category_tables(self.transform, self.projection)
        self._lookup = [{c: i for i, c in enumerate(cats)} for cats in self.transform.categories]
        # the same, with missing values (None, "") mapped to the imputed mode
        self._lookup_missing = [
            {**lookup, None: lookup[mode], "": lookup[mode]}
            for lookup, mode in zip(self._lookup, self.transform.modes, strict=True)
        ]
        self._plain = _PlainScorer(self)

    @property
    def k(self) -> int:
        return int(self.centers.shape[0])

    @property
    def input_columns(self) -> list[str]:
        return self.transform.numeric + self.transform.categorical

    # -- scoring -------------------------------------------------------------------------
    def _assign(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        labels = np.empty(len(z), dtype=np.int32)
        dist = np.empty(len(z))
        for s in range(0, len(z), _CHUNK):
            block = z[s : s + _CHUNK]
            d2 = ((block[:, None, :] - self.centers[None, :, :]) ** 2).sum(axis=2)
            lab = d2.argmin(axis=1)
            labels[s : s + _CHUNK] = lab
            dist[s : s + _CHUNK] = np.sqrt(d2[np.arange(len(block)), lab])
        return labels, dist

    def score_record(self, record: Mapping[str, Any]) -> tuple[int, float]:
        """One record's cluster id and distance, in plain Python (no numpy per call: a
        single record scores several times faster). Bad input raises the same DataError
        as `encode_records`."""
        try:
            return self._plain.score(record)
        except (KeyError, TypeError, ValueError):
            self._encode_records_checked([record])  # raises the precise DataError
            raise

    def score_encoded(self, enc: Encoded) -> tuple[np.ndarray, np.ndarray]:
        """Cluster ids and distances to the assigned centroid for encoded rows."""
        return self._assign(project(enc, self.transform, self.projection, self._tables))

    def encode_records(self, records: Sequence[Mapping[str, Any]]) -> Encoded:
        """Encode JSON-like records (the path of every endpoint request).

        Column-wise and vectorised when the records are well-formed; otherwise the
        record-by-record path finds and names the bad record and field.
        """
        t = self.transform
        if len(records) <= 8:  # per record is faster than numpy's per-call overhead here
            return self._encode_records_checked(records)
        try:
            num = np.empty((len(records), len(t.numeric)))
            for j, name in enumerate(t.numeric):
                fmt = t.dates.get(name)
                if fmt is None:
                    raw = [rec[name] for rec in records]
                    column = np.array(raw, dtype=np.float64)
                    if not t.accepts_bool(name):  # true/false would pass as 1/0
                        for i in np.flatnonzero((column == 0) | (column == 1)).tolist():
                            if type(raw[i]) is bool:
                                raise ValueError(name)
                else:
                    column = t.date_reference[name] - np.array(
                        [date_days(rec[name], fmt) for rec in records], dtype=np.float64)
                np.copyto(column, t.medians[j], where=np.isnan(column))
                num[:, j] = t.finish(column, j)
            if not np.isfinite(num).all():
                raise ValueError("infinite value")
            codes = np.empty((len(records), len(t.categorical)), dtype=np.int32)
            for j, name in enumerate(t.categorical):
                lookup = self._lookup_missing[j]
                codes[:, j] = [
                    lookup.get(v, -1) if v is None or type(v) is str
                    else lookup.get(_scalar_key(v), -1)
                    for v in (rec[name] for rec in records)
                ]
        except (KeyError, TypeError, ValueError):
            return self._encode_records_checked(records)
        return Encoded(num=num, codes=codes)

    def _encode_records_checked(self, records: Sequence[Mapping[str, Any]]) -> Encoded:
        """Encode record by record, raising DataError at the first bad record and field.

        Raises DataError naming the record and field for a missing field or a value that
        is not a number.
        """
        t = self.transform
        n = len(records)
        num = np.empty((n, len(t.numeric)))
        codes = np.empty((n, len(t.categorical)), dtype=np.int32)
        for i, rec in enumerate(records):
            if not isinstance(rec, Mapping):
                raise DataError(
                    f"record {i}: expected an object of fields, found {type(rec).__name__}"
                )
            for j, name in enumerate(t.numeric):
                if name not in rec:
                    kind = "a date" if name in t.dates else "a number"
                    raise DataError(f"record {i}: field {name!r} is missing (expected {kind})")
                v = rec[name]
                if name in t.dates:
                    fmt = t.dates[name]
                    try:
                        x = t.date_reference[name] - date_days(v, fmt)
                    except (TypeError, ValueError):
                        raise DataError(f"record {i}: field {name!r} must be a date "
                                        f"({fmt}), found {v!r}") from None
                    if x != x:
                        x = t.medians[j]
                elif v is None or (isinstance(v, str) and not v.strip()):
                    x = t.medians[j]
                elif isinstance(v, bool):
                    if not t.accepts_bool(name):
                        raise DataError(f"record {i}: field {name!r} must be a number, found "
                                        f"{'true' if v else 'false'} (a true/false value is "
                                        f"taken only for a 0/1 column)")
                    x = float(v)
                else:
                    try:
                        x = float(v)
                    except (TypeError, ValueError):
                        raise DataError(
                            f"record {i}: field {name!r} must be a number, found {v!r}"
                        ) from None
                    if x != x:
                        x = t.medians[j]
                    elif x in (float("inf"), float("-inf")):
                        raise DataError(f"record {i}: field {name!r} must be finite, found {v!r}")
                num[i, j] = t.finish(np.array([x]), j)[0]
            for j, name in enumerate(t.categorical):
                if name not in rec:
                    raise DataError(f"record {i}: field {name!r} is missing (expected a category)")
                if isinstance(rec[name], Mapping | list | tuple):
                    raise DataError(f"record {i}: field {name!r} must be a category (text or a "
                                    f"number), found {type(rec[name]).__name__}")
                key = category_key(rec[name])
                if key is None or key == "":
                    key = t.modes[j]
                codes[i, j] = self._lookup[j].get(key, -1)
        return Encoded(num=num, codes=codes)

    def _encode_any(self, data: Any) -> Encoded:
        if (
            isinstance(data, Mapping)
            and data
            and not all(isinstance(v, list | tuple | np.ndarray) for v in data.values())
        ):
            return self.encode_records([data])
        if isinstance(data, list | tuple):
            return self.encode_records(data)
        if isinstance(data, pa.Table):
            return encode(data, self.transform)
        if isinstance(data, Mapping):
            return encode(
                pa.table({k: _arrow_column(list(v)) for k, v in data.items()}), self.transform
            )
        if hasattr(data, "to_arrow") and not hasattr(data, "iloc"):  # polars
            return encode(data.to_arrow(), self.transform)
        if hasattr(data, "iloc"):  # pandas
            cols = {str(c): _arrow_column(data[c]) for c in data.columns}
            return encode(pa.table(cols) if cols else pa.table({}), self.transform)
        raise DataError(
            f"cannot score {type(data).__name__}: pass a record dict, a list of records, "
            f"a dict of columns, a pandas/polars DataFrame or an Arrow table"
        )

    def predict(self, data: Any) -> np.ndarray:
        """Cluster id of each row (a record, records, columns, DataFrame or Arrow table)."""
        return self.score(data)[0]

    def score(self, data: Any) -> tuple[np.ndarray, np.ndarray]:
        """Cluster ids and distances to the assigned centroid."""
        return self.score_encoded(self._encode_any(data))

    def to_sklearn(self) -> Any:
        """An equivalent, fitted scikit-learn Pipeline (ColumnTransformer, PCA, KMeans)."""
        from custseg.artifact.sklearn_bridge import build_pipeline

        return build_pipeline(self)


class _PlainScorer:
    """The model's whole chain folded into one affine map, as Python floats:
    z = bias + sum_j x_j * w_j + sum_c vector[category], then the nearest centre."""

    def __init__(self, model: Model) -> None:
        t, p = model.transform, model.projection
        w = p.components  # (p, d)
        a = len(t.numeric)
        scaled = w[:, :a] / t.scales  # the numeric weights per transformed unit
        bias = -p.mean @ w.T - scaled @ t.means
        # per column: name, median, weights, then (low, high, function, log scale, date
        # format, date reference) when the column is more than a plain number
        self.numeric = []
        for j, (name, median, weights) in enumerate(zip(
                t.numeric, t.medians.tolist(), scaled.T.tolist(), strict=True)):
            extra = None
            if not t.plain or name in t.dates:
                extra = (float(t.clip_low[j]), float(t.clip_high[j]), t.functions[j],
                         float(t.log_scales[j]), t.dates.get(name),
                         t.date_reference.get(name, 0.0))
            self.numeric.append((name, median, weights, extra))
        self.bias = bias.tolist()
        self.flags = {name: t.accepts_bool(name) for name in t.numeric}
        self.categorical = []
        tables = category_tables(t, p)
        for j, (name, cats) in enumerate(zip(t.categorical, t.categories, strict=True)):
            vectors: dict[Any, list[float]] = {c: tables[j][i].tolist() for i, c in
                                               enumerate(cats)}
            mode = vectors[t.modes[j]]
            vectors[None] = vectors[""] = mode
            self.categorical.append((name, vectors, [0.0] * w.shape[0]))
        self.centers = model.centers.tolist()

    def score(self, record: Mapping[str, Any]) -> tuple[int, float]:
        z = list(self.bias)
        for name, median, weights, extra in self.numeric:
            v = record[name]
            if extra is not None and extra[4] is not None:  # a date column
                x = extra[5] - date_days(v, extra[4])
                if x != x:
                    x = median
            elif v is None or v == "":
                x = median
            else:
                if type(v) is bool and not self.flags.get(name, True):
                    raise ValueError(name)
                x = float(v)
                if x != x:
                    x = median
                elif x in (math.inf, -math.inf):
                    raise ValueError(name)
            if extra is not None:
                x = min(max(x, extra[0]), extra[1])
                if extra[2] == "log1p":
                    x = math.log1p(x / extra[3])
                elif extra[2] == "signed_log":
                    x = math.copysign(math.log1p(abs(x) / extra[3]), x)
            for c, wc in enumerate(weights):
                z[c] += x * wc
        for name, vectors, zeros in self.categorical:
            v = record[name]
            key = v if v is None or type(v) is str else _scalar_key(v)
            for c, vc in enumerate(vectors.get(key, zeros)):
                z[c] += vc
        best, best_d2 = 0, math.inf
        for i, center in enumerate(self.centers):
            d2 = 0.0
            for zc, cc in zip(z, center, strict=True):
                d2 += (zc - cc) * (zc - cc)
            if d2 < best_d2:
                best, best_d2 = i, d2
        return best, math.sqrt(best_d2)


def _scalar_key(value: Any) -> str | None:
    """category_key of a scalar; a list or an object raises TypeError (the checked path
    then names the record and field)."""
    if isinstance(value, Mapping | list | tuple):
        raise TypeError("not a category")
    return category_key(value)


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _arrow_column(values: Any) -> pa.Array:
    """An Arrow column from a list or pandas Series (NaN is missing); mixed types as text."""
    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if _is_missing(v) else str(v) for v in values], type=pa.string())


# -- artifact I/O ----------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


RESERVED_KEYS = frozenset({"format", "format_version", "schema", "features", "pca", "kmeans"})


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


def save_model(model: Model, uri: str, *, s3_endpoint_url: str | None = None) -> str:
    """Write the artifact at `uri` (a folder path or s3:// prefix); never half-written."""
    files = artifact_files(model)
    try:
        saved = (
            _save_s3(files, uri, s3_endpoint_url)
            if uri.startswith("s3://")
            else _save_local(files, Path(uri))
        )
    except ModelError:
        raise
    except Exception as exc:  # the artifact store's own errors, reported with the place
        raise ModelError(f"cannot write the model artifact to {uri}: {exc}") from exc
    model.uri = saved
    return saved


def _save_s3(files: dict[str, bytes], uri: str, s3_endpoint_url: str | None) -> str:
    from custseg.io.data import s3_filesystem

    fs = s3_filesystem(s3_endpoint_url)
    base = uri.removeprefix("s3://").rstrip("/")
    bucket = base.split("/", 1)[0]
    if not fs.exists(bucket):
        raise ModelError(f"cannot write the model artifact to {uri}: bucket {bucket!r} not found")
    for name in (*FILES, "manifest.json"):  # the manifest last: it marks completion
        with fs.open(f"{base}/{name}", "wb") as f:
            f.write(files[name])
    return uri


def _save_local(files: dict[str, bytes], dest: Path) -> str:
    if dest.exists():
        raise ModelError(f"model artifact already exists at {dest}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        for name, data in files.items():
            with open(tmp / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return str(dest)


def _read(uri: str, name: str, s3_endpoint_url: str | None) -> bytes:
    if uri.startswith("s3://"):
        from custseg.io.data import s3_filesystem

        fs = s3_filesystem(s3_endpoint_url)
        try:
            with fs.open(f"{uri.removeprefix('s3://').rstrip('/')}/{name}", "rb") as f:
                return f.read()  # type: ignore[no-any-return]
        except FileNotFoundError:
            raise ModelError(f"model artifact {uri} is missing {name}") from None
        except Exception as exc:  # S3 permission, network, bucket errors
            raise ModelError(f"cannot read model artifact {uri}/{name}: {exc}") from exc
    path = Path(uri) / name
    try:
        return path.read_bytes()
    except FileNotFoundError:
        if not Path(uri).is_dir():
            raise ModelError(f"no model artifact at {uri}") from None
        raise ModelError(
            f"model artifact {uri} is missing {name} (incomplete or not a model)"
        ) from None
    except OSError as exc:  # not a folder, permissions
        raise ModelError(f"no model artifact at {uri} ({exc.strerror or exc})") from None


def load_model(uri: str | os.PathLike[str], *, s3_endpoint_url: str | None = None) -> Model:
    """Load and verify an artifact folder. Raises ModelError when anything is off."""
    uri = str(uri)
    try:
        manifest = json.loads(_read(uri, "manifest.json", s3_endpoint_url))
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
        data = _read(uri, name, s3_endpoint_url)
        if name not in expected or _sha256(data) != expected[name]:
            raise ModelError(
                f"model artifact {uri}: {name} does not match its sha256 in manifest.json "
                f"(the file was changed or corrupted); retrain or restore it"
            )
        blobs[name] = data
    try:
        return _parse_artifact(blobs, uri)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        detail = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ModelError(f"model artifact {uri}: model.json or arrays.npz is not a valid "
                         f"{FORMAT} v{FORMAT_VERSION} model ({detail})") from exc


def _parse_artifact(blobs: dict[str, bytes], uri: str) -> Model:
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
