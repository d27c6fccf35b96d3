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
    "ModelError",
    "TrainError",
    "__version__",
    "load_config",
    "load_model",
    "run",
]

from custseg.errors import ConfigError, CustsegError, DataError, ModelError, TrainError

if TYPE_CHECKING:
    from custseg.config import Config
    from custseg.model import Model
    from custseg.pipeline import Execution, Reporter


def load_config(
    path: str = "pipeline_config.yaml", overrides: dict[str, Any] | None = None
) -> Config:
    """Read and validate a pipeline config (see `custseg.config`)."""
    from custseg.config import load_config as _load

    return _load(path, overrides)


def run(cfg: Config, reporter: Reporter | None = None) -> Execution:
    """Run the pipeline for `cfg`; returns the Execution (raises CustsegError on failure)."""
    from custseg.pipeline import run as _run

    return _run(cfg, reporter)


def load_model(ref: str, store: str | None = None, *, s3_endpoint_url: str | None = None) -> Model:
    """Load a model artifact folder or URI (local or s3://), verifying its sha256 manifest."""
    from custseg.model import load_model as _load

    del store  # "GROUP/VERSION" references arrive with the registry
    return _load(ref, s3_endpoint_url=s3_endpoint_url)
