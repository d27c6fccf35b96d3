"""custseg: customer CSVs to a versioned, live segmentation model.

The public API (SPEC section 2)::

    cfg = custseg.load_config("pipeline_config.yaml", overrides={"n_clusters": 4})
    execution = custseg.run(cfg)
    model = custseg.load_model(execution.model_uri)
    model.predict(records_or_frame)
    model.to_sklearn()

Importing custseg stays light: heavy and optional libraries load when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "CustsegError",
    "DataError",
    "DeployError",
    "ModelError",
    "RegistryError",
    "StoreError",
    "TrainError",
    "__version__",
    "load_config",
    "load_model",
    "run",
]

from custseg.errors import (
    ConfigError,
    CustsegError,
    DataError,
    DeployError,
    ModelError,
    RegistryError,
    StoreError,
    TrainError,
)

if TYPE_CHECKING:
    from custseg.artifact.scorer import Model
    from custseg.config import Config
    from custseg.pipeline.runner import Execution, Reporter


def load_config(
    path: str = "pipeline_config.yaml", overrides: dict[str, Any] | None = None
) -> Config:
    """Read and validate a pipeline config (see `custseg.config`)."""
    from custseg.config import load_config as _load

    return _load(path, overrides)


def run(cfg: Config, reporter: Reporter | None = None, *, no_cache: bool = False) -> Execution:
    """Run the pipeline for `cfg`; returns the Execution (raises CustsegError on failure).

    `no_cache` retrains even when an earlier run had the same data, parameters and code.
    """
    from custseg.pipeline.runner import run as _run

    return _run(cfg, reporter, no_cache=no_cache)


def load_model(ref: str, store: str | None = None, *, s3_endpoint_url: str | None = None) -> Model:
    """Load a model, verifying its sha256 manifest.

    `ref` is an artifact folder or URI (local or s3://), or "GROUP/VERSION" in the
    registry of `store` (a store folder; default: the store pipeline_config.yaml in the
    current folder names).
    """
    import os

    from custseg.artifact.storage import load_model as _load
    from custseg.store.registry import package, parse_ref

    parsed = parse_ref(ref)
    if parsed is None or os.path.exists(ref):
        return _load(ref, s3_endpoint_url=s3_endpoint_url)
    from custseg.store.database import Store

    if store is None:
        cfg = load_config()
        opened = cfg.open_store(existing=True)
        s3_endpoint_url = s3_endpoint_url or cfg.s3.endpoint_url
    else:
        from custseg.config import host_id

        opened = Store.existing(store, host=host_id())
    pkg = package(opened, *parsed)
    return _load(pkg.artifact_uri, s3_endpoint_url=s3_endpoint_url)
