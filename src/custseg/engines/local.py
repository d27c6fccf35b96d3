"""The local engine: Train in this process, from the data to a fitted `Model`.

Reads the data (`io/data`), infers the schema, fits the features, PCA and KMeans with
the choice of k (`core/`), profiles and names the segments, and matches their ids to
the previous version's so that a retrain keeps them (`engines/common`, `core/matching`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from custseg.artifact.scorer import Model
from custseg.config import Config
from custseg.core.baseline import training_baseline
from custseg.core.diagnostics import run_warnings
from custseg.core.preprocessing import fit_features
from custseg.core.profile_only import describe_profile_only, profile_only_columns
from custseg.core.profiles import name_segments, numeric_correlations, profile_segments
from custseg.core.report_sample import report_sample
from custseg.core.schema import identifier_by_name, infer_schema
from custseg.core.train import train
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
from custseg.engines.memory import (
    Need,
    available,
    check_fits,
    estimate_csv,
    out_of_memory,
)
from custseg.errors import ConfigError
from custseg.io.data import is_parquet, list_sources, read_data

__all__ = ["LocalEngine", "train_local"]


class LocalEngine:
    """Trains in this process: Arrow reads the data, numpy and scikit-learn fit it."""

    name = "local"

    def __init__(self) -> None:
        self._need: tuple[Config, Future[Need | None]] | None = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def prepare(self, cfg: Config) -> None:
        """Start the memory estimate (a sample of the data read and parsed, 9 ms at 1M
        rows) on a thread; `train` on the same config takes it (and its errors)."""
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="custseg-memory")
        try:
            self._need = cfg, pool.submit(memory_need, cfg)
        finally:
            pool.shutdown(wait=False)

    def train(self, cfg: Config, request: TrainRequest, reporter: Reporter) -> Model:
        """Train here, refusing up front data that clearly needs more memory than this
        process may take, and turning a MemoryError on the way into the same clear error
        (see `engines/memory`)."""
        prepared, self._need = self._need, None
        need = (prepared[1].result() if prepared is not None and prepared[0] is cfg
                else memory_need(cfg))
        if need is not None:
            check_fits(need, available())
        try:
            return self._train(cfg, request, reporter)
        except MemoryError as exc:
            error = out_of_memory(cfg.data_location, need, exc)
        # raised outside the handler: the traceback, and the arrays its frames hold,
        # are gone before the failure is recorded
        raise error

    def _train(self, cfg: Config, request: TrainRequest, reporter: Reporter) -> Model:
        # the row blocks run on a thread per core (core/rowblocks): a BLAS that also
        # starts a thread per core under each of them fights them for the cores (a
        # sampled silhouette measured 4 to 10x slower on a busy machine), so BLAS runs
        # single-threaded for the training
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return train_local(cfg, request, reporter)


def memory_need(cfg: Config) -> Need | None:
    """What training on the config's data will take (None: unknown, e.g. Parquet, which
    reading refuses)."""
    files = list_sources(cfg.data_location, s3_endpoint_url=cfg.s3.endpoint_url)
    if any(is_parquet(f) for f in files):
        return None
    include, exclude = _columns(cfg)
    return estimate_csv(files, delimiter=cfg.csv.delimiter, include=include,
                        exclude=exclude, s3_endpoint_url=cfg.s3.endpoint_url)


def _columns(cfg: Config) -> tuple[list[str] | None, list[str]]:
    """The columns to parse (None: all) and those to skip, as the config declares them."""
    features = cfg.features
    declared = features.numeric is not None or features.categorical is not None
    include = [*(features.numeric or []), *(features.categorical or []), *features.dates,
               *features.profile_only] if declared else None
    return include, list(features.ignore)


def _unread(cfg: Config, previous: Model | None) -> Callable[[str], bool]:
    """The columns not worth parsing: identifiers by their name, which inference ignores
    whatever their values (converting 1M ids costs 10 to 15 ms), unless the config names
    them or the previous version reads them (its segments of this data measure how many
    customers keep their id)."""
    features = cfg.features
    named = {*(features.numeric or []), *(features.categorical or []), *features.dates,
             *features.profile_only, *features.ignore, *features.transforms}
    if previous is not None:
        named |= {*previous.transform.numeric, *previous.transform.categorical}
    return lambda name: name not in named and identifier_by_name(name)


def train_local(cfg: Config, request: TrainRequest, reporter: Reporter) -> Model:
    """Read, engineer features, fit PCA + KMeans, score, profile and name the segments.

    With `request.previous` (the model group's latest version), cluster ids are matched
    to its segments (see `core/matching`) and the agreement on this data is recorded.
    """
    data_sha256, previous = request.data_sha256, request.previous
    t0 = time.perf_counter()
    reporter.stage("Reading data", 0.0)
    features = cfg.features
    include, exclude = _columns(cfg)
    data = read_data(
        cfg.data_location,
        known_sha256=data_sha256,
        delimiter=cfg.csv.delimiter,
        s3_endpoint_url=cfg.s3.endpoint_url,
        include=include,
        exclude=exclude,
        skip=_unread(cfg, previous),
    )
    t_read = time.perf_counter() - t0
    reporter.stage("Feature engineering", 0.0)
    source = (
        data.files[0] if len(data.files) == 1 else f"{len(data.files)} files at {cfg.data_location}"
    )
    schema = infer_schema(data.table, features, source, header=data.meta.get("header"))
    check_column_settings(schema, cfg)
    missing = {c: int(data.table.column(c).null_count) for c in schema.numeric + schema.categorical}
    transform, encoded = fit_features(data.table, schema, data.locate, features)
    described = profile_only_columns(data.table, schema.profile_only)
    old_labels = previous_labels(previous, data.table, cfg.random_state)
    data.release()  # free the Arrow table before PCA and KMeans: memory matters at 10M rows
    t_features = time.perf_counter() - t0 - t_read
    result = train(
        encoded,
        transform,
        k_candidates=cfg.k_candidates,
        n_components=cfg.n_components,
        metric=cfg.tuning.metric,
        random_state=cfg.random_state,
        n_init=cfg.tuning.n_init,
        silhouette_sample_size=cfg.tuning.silhouette_sample_size,
        min_share=cfg.tuning.min_share,
        min_stability=cfg.tuning.stability,
        tolerance=cfg.tuning.tolerance,
        progress=lambda msg, frac: reporter.stage(msg, frac),
    )
    k = result.clustering.k
    if cfg.segment_names is not None and len(cfg.segment_names) != k:
        raise ConfigError(f"segment_names has {len(cfg.segment_names)} names, but the model "
                          f"has {k} segments")
    clustering = result.clustering
    profiles = profile_segments(encoded, transform, clustering.labels, k, cfg.random_state,
                                result.totals)
    describe_profile_only(profiles, described, clustering.labels, k)
    correlations = numeric_correlations(encoded, transform, cfg.random_state)
    stability = None
    if previous is not None and previous.meta.get("segments"):
        ids, stability = match_previous(profiles, transform, previous, clustering.labels,
                                        old_labels,
                                        original_sd(encoded, transform, cfg.random_state))
        clustering, profiles = relabel(clustering, profiles, ids)
    sample = report_sample(encoded, transform, result.projection, clustering.labels, k,
                           cfg.random_state)
    baseline = training_baseline(encoded, transform, result.projection, clustering.centers,
                                 clustering.labels, missing=missing, rows=encoded.n,
                                 random_state=cfg.random_state)
    names = name_segments(profiles, cfg.segment_names, value_labels=cfg.value_labels,
                          correlations=correlations)
    for profile, name in zip(profiles, names, strict=True):
        profile["name"] = name
    warnings = run_warnings(schema, transform, result, missing, encoded.n, cfg,
                            [p["size"] for p in profiles]) + unlabelled_codes(transform, cfg)
    meta = model_meta(
        cfg, request, LocalEngine.name, result, profiles=profiles, names=names,
        stability=stability, correlations=correlations, sample=sample, warnings=warnings,
        baseline=baseline,
        data={"files": data.files, "sha256": data.sha256, "rows": encoded.n,
              "delimiter": data.delimiter, "missing": missing},
        timings={"read": t_read, "features": t_features, **result.timings})
    return Model(
        schema=schema,
        transform=transform,
        projection=result.projection,
        centers=clustering.centers,
        meta=meta,
    )
