"""The Spark engine: Train on Apache Spark, from the data to the same fitted `Model`.

The same config, schema inference, transforms, choice of k and artifact as the local
engine (`engines/local`), with the heavy work on Spark and the driver holding at most
`SAMPLE_ROWS` rows whatever the data's size:

1. read CSV/Parquet as a DataFrame, bring a seeded sample to the driver and infer the
   schema from it with the local `infer_schema` (`spark_data`);
2. fit the `FeatureTransform` from Spark aggregates (`spark_features`);
3. PCA, KMeans (k-means||) and the k sweep on Spark ML, scored over all rows
   (`spark_fit`);
4. on the driver's sample: silhouette, stability, profiles' medians and quartiles,
   correlations, the report sample and the feature-space metrics, with the local
   estimators; segment sizes, means and shares are exact (Spark, `spark_profiles`).

Lineage (`meta["engine_details"]`) records the Spark version, the master and what read the
files (`reader`: `spark`, or `custseg_s3` for S3 without the S3A connector, see
`spark_s3`); over Spark Connect (`spark.remote`) also the server's URL, and the version
and master are the server's.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from typing import Any

from custseg.artifact.scorer import Model
from custseg.config import Config, SparkOptions
from custseg.core import metrics, quality
from custseg.core.baseline import training_baseline
from custseg.core.diagnostics import run_warnings
from custseg.core.profile_only import describe_profile_only, profile_only_columns
from custseg.core.profiles import name_segments, numeric_correlations, profile_segments
from custseg.core.report_sample import report_sample
from custseg.core.schema import infer_schema
from custseg.core.train import Clustering, TrainResult
from custseg.engines.base import Reporter, TrainRequest
from custseg.engines.common import (
    check_column_settings,
    match_previous,
    model_meta,
    original_sd,
    previous_labels,
    relabel,
    unlabelled_codes,
)
from custseg.engines.spark_columns import feature_columns
from custseg.engines.spark_connect import endpoint
from custseg.engines.spark_data import SAMPLE_ROWS, read_spark_data
from custseg.engines.spark_features import fit_features_spark
from custseg.engines.spark_fit import feature_means, fit_pca_spark, fit_sweep_spark, projected
from custseg.engines.spark_profiles import exact_profiles, segment_sums
from custseg.engines.spark_session import SparkHandle, open_session, spark_version
from custseg.errors import ConfigError, CustsegError, DataError, TrainError
from custseg.io.data import fingerprint

__all__ = ["SparkEngine", "train_spark"]


class SparkEngine:
    """Trains on Spark (`spark.master`, or Spark Connect at `spark.remote`)."""

    name = "spark"

    def __init__(self, options: SparkOptions) -> None:
        self.options = options

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "spark_version": spark_version(),
                "master": self.options.master if self.options.remote is None else None,
                "remote": self.options.remote}

    def prepare(self, cfg: Config) -> None:
        return None

    def train(self, cfg: Config, request: TrainRequest, reporter: Reporter) -> Model:
        return train_spark(cfg, request, reporter)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def train_spark(cfg: Config, request: TrainRequest, reporter: Reporter) -> Model:
    """Train on Spark (see the module docstring). Spark's own failures become a
    TrainError (a DataError for a malformed CSV row) with Spark's first line."""
    handle = open_session(cfg.spark)
    try:
        return _train(handle, cfg, request, reporter)
    except CustsegError:
        raise
    except Exception as exc:
        if type(exc).__module__.split(".")[0] not in ("pyspark", "py4j"):
            raise
        line = _first_line(exc)
        if "malformed" in line.lower():
            raise DataError(f"cannot parse {cfg.data_location} as CSV on Spark: {line}"
                            ) from exc
        raise TrainError(f"Spark failed: {line}{_hint(str(exc), cfg.spark)}") from exc
    finally:
        with contextlib.suppress(Exception):  # a JVM (or server) that died cannot be
            handle.close()  # stopped; the failure that killed it is the one to report


MEMORY_SIGNS = ("OutOfMemoryError", "Java heap space", "GC overhead limit",
                "does not exist in the JVM", "Answer from Java side is empty",
                "Connection refused")


CONNECT_SIGNS = ("UNAVAILABLE", "failed to connect", "Connection refused", "Socket closed")


def _hint(text: str, options: SparkOptions) -> str:
    """What to try when Spark's JVM ran out of memory or died (in local mode the
    executors work inside the driver's heap), or the Spark Connect server went away."""
    if options.remote is not None:
        if any(sign in text for sign in (*CONNECT_SIGNS, *MEMORY_SIGNS[:3])):
            return (f" (the Spark Connect server at {endpoint(options.remote)} stopped "
                    "answering or ran out of memory: check its log and its "
                    "spark.driver.memory, then run again)")
        return ""
    if not any(sign in text for sign in MEMORY_SIGNS):
        return ""
    return (" (Spark's JVM ran out of memory or stopped: raise spark.driver.memory in "
            "spark.conf, e.g. {spark.driver.memory: 8g}, or use a cluster)")


def _sha256(cfg: Config) -> str:
    """The data's content hash, as the pipeline computes it (CSV or Parquet files)."""
    return fingerprint(cfg.data_location, s3_endpoint_url=cfg.s3.endpoint_url)[1]


def _train(handle: SparkHandle, cfg: Config, request: TrainRequest, reporter: Reporter
           ) -> Model:
    from pyspark import StorageLevel

    session, cached = handle.session, handle.frames
    version, master, where = spark_version(), handle.master, handle.master
    if handle.connect:  # the server's Spark and master did the work
        version, master = str(session.version), session.conf.get("spark.master", None)
        where = f"the Spark Connect server at {endpoint(handle.master)} ({master})"
    t0 = time.perf_counter()
    rs = cfg.random_state
    reporter.stage("Reading data (Spark)", 0.0)
    data = read_spark_data(session, cfg)
    cached.append(data.frame)
    n = data.rows
    reporter.note(f"Spark {version} on {where}: {n:,} rows; the driver holds a "
                  f"sample of {data.sample.num_rows:,}")
    t_read = time.perf_counter() - t0
    reporter.stage("Feature engineering (Spark)", 0.0)
    source = (data.files[0] if len(data.files) == 1
              else f"{len(data.files)} files at {cfg.data_location}")
    schema = infer_schema(data.sample, cfg.features, source, header=data.header)
    check_column_settings(schema, cfg)
    fitted = fit_features_spark(data, schema, cfg.features)
    transform, enc = fitted.transform, fitted.sample
    described = profile_only_columns(data.sample, schema.profile_only)
    old_labels = previous_labels(request.previous, data.sample, rs)
    centre = feature_means(transform, fitted.counts, n)
    features = data.frame.select([e.alias(f"f{j}") for j, e in
                                  enumerate(feature_columns(data, transform, centre))])
    t_features = time.perf_counter() - t0 - t_read
    reporter.stage("PCA (Spark)", 0.0)
    t = time.perf_counter()
    projection = fit_pca_spark(features, transform, fitted.counts, n, cfg.n_components)
    z = projected(features, projection).persist(StorageLevel.MEMORY_AND_DISK)
    cached.append(z)
    z.count()
    if not data.sampled:  # else read again for the exact profiles
        data.frame.unpersist()
    timings = {"pca": time.perf_counter() - t}
    fit = fit_sweep_spark(
        z, enc, transform, projection, n=n, exact_sample=not data.sampled,
        k_candidates=cfg.k_candidates, metric=cfg.tuning.metric, random_state=rs,
        n_init=cfg.tuning.n_init, silhouette_sample_size=cfg.tuning.silhouette_sample_size,
        min_share=cfg.tuning.min_share, min_stability=cfg.tuning.stability,
        tolerance=cfg.tuning.tolerance, progress=lambda msg, frac: reporter.stage(msg, frac),
        keep=handle.models)
    timings |= fit.timings
    choice = fit.choice
    candidates = [replace(c, eligible=ok, note=note) for c, ok, note in
                  zip(fit.candidates, choice.eligible, choice.notes, strict=True)]
    chosen = candidates[choice.index]
    k = chosen.k
    if cfg.segment_names is not None and len(cfg.segment_names) != k:
        raise ConfigError(f"segment_names has {len(cfg.segment_names)} names, but the model "
                          f"has {k} segments")
    clustering = Clustering(k=k, centers=fit.centres[choice.index], labels=fit.sample_labels,
                            inertia=chosen.inertia, n_iter=0)
    labels = clustering.labels  # of the driver's sample rows
    profiles = profile_segments(enc, transform, labels, k, rs)
    if data.sampled:  # sizes, means and shares over every row (Spark)
        t = time.perf_counter()
        exact_profiles(profiles, segment_sums(data, transform, projection, clustering.centers,
                                              centre), transform)
        timings["profiles"] = time.perf_counter() - t
    describe_profile_only(profiles, described, labels, k)
    correlations = numeric_correlations(enc, transform, rs)
    stability = None
    previous = request.previous
    if previous is not None and previous.meta.get("segments"):
        ids, stability = match_previous(profiles, transform, previous, labels, old_labels,
                                        original_sd(enc, transform, rs))
        clustering, profiles = relabel(clustering, profiles, ids)
    sample = report_sample(enc, transform, projection, clustering.labels, k, rs) | {"of": n}
    baseline = training_baseline(enc, transform, projection, clustering.centers,
                                 clustering.labels, missing=fitted.missing, rows=n,
                                 random_state=rs)
    names = name_segments(profiles, cfg.segment_names, value_labels=cfg.value_labels,
                          correlations=correlations)
    for profile, name in zip(profiles, names, strict=True):
        profile["name"] = name
    t = time.perf_counter()
    fs_index = metrics.silhouette_sample_index(
        enc.n, min(cfg.tuning.silhouette_sample_size, quality.FEATURE_SILHOUETTE_SAMPLE), rs)
    feature_space = quality.feature_space_metrics(enc, transform, clustering.labels, k,
                                                  sample_index=fs_index)
    if data.sampled:
        feature_space["scored_rows"] = enc.n
    timings["metrics_feature_space"] = time.perf_counter() - t
    result = TrainResult(projection=projection, clustering=clustering, chosen=chosen,
                         candidates=candidates, metric=cfg.tuning.metric, timings=timings,
                         sentence=choice.sentence, warnings=choice.warnings,
                         feature_space=feature_space)
    warnings = run_warnings(schema, transform, result, fitted.missing, n, cfg,
                            [p["size"] for p in profiles]) + unlabelled_codes(transform, cfg)
    details = SparkEngine(cfg.spark).describe() | {"master": master, "spark_version": version,
                                                   "driver_sample_rows":
                                                   enc.n, "driver_sample_limit": SAMPLE_ROWS,
                                                   "reader": data.reader}
    if data.s3a_connector is not None:
        details["s3a_connector"] = f"hadoop-aws {data.s3a_connector}"
    meta = model_meta(
        cfg, request, SparkEngine.name, result, profiles=profiles, names=names,
        stability=stability, correlations=correlations, sample=sample, warnings=warnings,
        baseline=baseline,
        data={"files": data.files, "sha256": request.data_sha256 or _sha256(cfg), "rows": n,
              "delimiter": data.delimiter, "missing": fitted.missing},
        timings={"read": t_read, "features": t_features, **timings})
    meta["engine_details"] = details
    meta["metrics"]["spark_silhouette_squared_euclidean"] = fit.spark_silhouette
    meta["versions"] |= {"pyspark": spark_version()}
    return Model(schema=schema, transform=transform, projection=projection,
                 centers=clustering.centers, meta=meta)
