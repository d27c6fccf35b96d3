"""The pipeline config (`pipeline_config.yaml`): parsed once, validated before any work.

`load_config` reads the YAML, applies `-p NAME=VALUE` overrides and returns a frozen
:class:`Config`. Every problem is a :class:`ConfigError` naming the key path, what was
expected and what was found; unknown keys are errors (with a "did you mean" hint).
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from custseg.errors import ConfigError

if TYPE_CHECKING:
    from custseg.store.database import Store

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "CaptureOptions",
    "Config",
    "Features",
    "KRange",
    "MonitorOptions",
    "Tuning",
    "env_overrides",
    "host_id",
    "load_config",
    "parse_override",
]

DEFAULT_CONFIG_FILE = "pipeline_config.yaml"
CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")
AUTO_K_RANGE = (2, 10)
SelectionMetric = Literal["silhouette", "calinski_harabasz", "davies_bouldin"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KRange(_Section):
    """A range of cluster counts to sweep, inclusive."""

    min: int = Field(ge=2)
    max: int = Field(ge=2)

    @model_validator(mode="after")
    def _ordered(self) -> KRange:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self


class CsvOptions(_Section):
    delimiter: str = "auto"

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, v: str) -> str:
        if v != "auto" and len(v) != 1:
            raise ValueError(f"expected 'auto' or a single character, found {v!r}")
        return v


class S3Options(_Section):
    endpoint_url: str | None = None


ColumnTransform = Literal["auto", "none", "log", "clip"]


class Features(_Section):
    """The feature schema and its transforms.

    Columns listed keep the role given. When `numeric` or `categorical` is given, every
    other column is ignored (recorded as "not declared"); otherwise the columns not
    listed are inferred (see `custseg.core.schema`), each with a role and a reason.
    """

    numeric: list[str] | None = None
    categorical: list[str] | None = None
    ignore: list[str] = Field(default_factory=list)
    profile_only: list[str] = Field(default_factory=list)
    dates: list[str] = Field(default_factory=list)
    # auto: log-transform skewed numeric columns, clip at robust quantiles, weight each
    # one-hot block; none: impute, standard-scale and one-hot only
    transform: Literal["auto", "none"] = "auto"
    transforms: dict[str, ColumnTransform] = Field(default_factory=dict)
    # share of one numeric column's variance that a categorical column carries
    categorical_weight: float = Field(default=0.25, gt=0.0, le=1.0)
    # text columns with more distinct values are ignored when inferred
    max_levels: int = Field(default=20, ge=2)


class Tuning(_Section):
    metric: SelectionMetric = "silhouette"
    # a swept k must give every segment at least this share of the rows ...
    min_share: float = Field(default=0.02, ge=0.0, lt=0.5)
    # ... and refits on seeded subsamples must agree with the full fit (mean ARI)
    stability: float = Field(default=0.8, ge=0.0, le=1.0)
    # the smallest eligible k scoring within this fraction of the best is chosen
    tolerance: float = Field(default=0.03, ge=0.0, lt=1.0)
    silhouette_sample_size: int = Field(default=10_000, ge=100)
    n_init: int = Field(default=10, ge=1)


# what Spark accepts as a master URL (checked before a JVM starts)
SPARK_MASTER = re.compile(
    r"^(local(\[(\*|[1-9]\d*)(,\s*[1-9]\d*)?\])?|local-cluster\[\d+,\s*\d+,\s*\d+\]"
    r"|spark://\S+|yarn|k8s://\S+)$")


class SparkOptions(_Section):
    """Where `engine: spark` trains. `master` is a Spark master URL; `remote` a Spark
    Connect URL (`sc://HOST:15002`, Databricks Connect), instead of a master; `conf`
    is passed to the SparkSession builder as is (`spark.executor.memory: 4g`, ...)."""

    master: str = "local[*]"
    remote: str | None = None
    conf: dict[str, str] = Field(default_factory=dict)

    @field_validator("master")
    @classmethod
    def _master_url(cls, v: str) -> str:
        if not SPARK_MASTER.match(v):
            raise ValueError(
                "expected a Spark master URL: local, local[N], local[*], spark://HOST:PORT, "
                f"yarn or k8s://https://HOST:PORT, found {v!r}")
        return v

    @field_validator("remote")
    @classmethod
    def _remote_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("sc://"):
            raise ValueError(f"expected a Spark Connect URL sc://HOST:PORT, found {v!r}")
        return v

    @field_validator("conf", mode="before")
    @classmethod
    def _conf_as_text(cls, v: Any) -> Any:
        """Spark settings are text: YAML numbers and booleans are written as Spark reads
        them (4 -> "4", true -> "true"); a key must be a Spark setting."""
        if not isinstance(v, dict):
            return v
        out = {}
        for key, value in v.items():
            key = str(key)
            if not key.startswith("spark."):
                raise ValueError(f"expected Spark settings (spark.*), found key {key!r}")
            if key in ("spark.master", "spark.remote"):
                raise ValueError(f"found {key!r}: set it as spark: "
                                 f"{{{key.removeprefix('spark.')}: ...}}, not in spark.conf")
            if isinstance(value, dict | list) or value is None:
                raise ValueError(f"expected a text value for {key!r}, found {value!r}")
            out[key] = (str(value).lower() if isinstance(value, bool) else str(value))
        return out

    @model_validator(mode="after")
    def _master_or_remote(self) -> SparkOptions:
        if self.remote is not None and "master" in self.model_fields_set:
            raise ValueError("set spark.master or spark.remote (Spark Connect), not both; "
                             "found both")
        return self


class CaptureOptions(_Section):
    """Data capture (`endpoint.capture`): a sampled share of the requests and their
    responses written off the request path to Parquet files under
    `<artifacts>/capture/<endpoint>/<date>/` (see `serving/capture`)."""

    sample: float = Field(default=0.1, gt=0.0, le=1.0)  # share of requests captured
    max_mb: float = Field(default=512.0, gt=0.0)  # per endpoint; the oldest files go first
    # request fields never written as sent: hashed (keyed sha256) or left out
    pii: list[str] = Field(default_factory=list)
    pii_action: Literal["hash", "omit"] = "hash"
    # the environment variable holding the hashing key (else a random key kept in the
    # store's folder, made on first use: set one for a store shared by several hosts)
    pii_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # requests waiting for the writer thread, per worker; more are dropped and counted
    queue_size: int = Field(default=1000, ge=1)
    # records buffered before a file is written (and at most this long, in seconds)
    file_records: int = Field(default=10_000, ge=1)
    flush_seconds: float = Field(default=60.0, gt=0.0)


class EndpointOptions(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    workers: int = Field(default=2, ge=1)
    api_key_env: str | None = None
    # `custseg run` starts the endpoint server in the background when none is running
    autostart: bool = True
    max_body_bytes: int = Field(default=6 * 1024 * 1024, ge=1024)
    capture: CaptureOptions | None = None  # off unless set


class MonitorOptions(_Section):
    """`custseg monitor`'s thresholds: a figure past its threshold is drift (see
    `monitor/`); defaults follow the usual PSI reading (< 0.1 stable, 0.1-0.2 moderate,
    > 0.2 a shift)."""

    psi: float = Field(default=0.2, gt=0.0)  # per feature
    segment_psi: float = Field(default=0.2, gt=0.0)  # over segment ids
    chi2_p: float = Field(default=0.001, gt=0.0, lt=1.0)  # segment shares' p-value below
    unseen_share: float = Field(default=0.05, ge=0.0, le=1.0)  # per categorical feature
    missing_share: float = Field(default=0.1, ge=0.0, le=1.0)  # above training's, per feature
    far_share: float = Field(default=0.1, gt=0.0, le=1.0)  # beyond training's 95th percentile
    min_records: int = Field(default=100, ge=1)  # fewer: the window is too small to judge
    since: str = Field(default="24h", pattern=r"^\d+[smhdw]$")  # the default window


class DeployOptions(_Section):
    require_approval: bool = False


class Config(_Section):
    """A validated pipeline config. Paths are resolved against `config_dir`."""

    # the seed's keys
    project_name: str = Field(
        default="clustering-model", pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$"
    )
    environment: str = Field(default="dev", pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,30}$")
    region: str = "us-east-1"
    bucket_name: str | None = None
    role_arn: str | None = None
    lambda_role_arn: str | None = None
    # pipeline parameters (`-p NAME=VALUE` overrides them)
    n_clusters: int | Literal["auto"] | KRange = 3
    n_components: int | float | Literal["auto"] = 1
    data_file: str | None = "customers.csv"
    training_instance_type: str = "ml.m5.large"
    inference_instance_type: str = "ml.t2.medium"
    # where things live
    data_uri: str
    csv: CsvOptions = Field(default_factory=CsvOptions)
    s3: S3Options = Field(default_factory=S3Options)
    features: Features = Field(default_factory=Features)
    tuning: Tuning = Field(default_factory=Tuning)
    random_state: int = Field(default=0, ge=0)
    store: str = ".custseg"
    # the environment variable holding a PostgreSQL store's password (never in the URL)
    store_password_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    artifacts: str | None = Field(default=None, validate_default=True)
    engine: Literal["local", "spark"] = "local"
    spark: SparkOptions = Field(default_factory=SparkOptions)
    endpoint: EndpointOptions = Field(default_factory=EndpointOptions)
    deploy: DeployOptions = Field(default_factory=DeployOptions)
    monitor: MonitorOptions = Field(default_factory=MonitorOptions)
    # names for the segments, by cluster id (generated from the profiles when absent)
    segment_names: list[str] | None = None
    # words for coded categories, by column: {Channel: {1: Horeca, 2: Retail}}
    value_labels: dict[str, dict[str, str]] = Field(default_factory=dict)
    # not a key: the folder relative paths resolve against
    config_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("data_uri")
    @classmethod
    def _check_data_uri(cls, v: str) -> str:
        """A local path or `s3://`; `s3a://` (Spark's name for the same objects) is read
        as `s3://`, by S3A on Spark where it is there."""
        if v.startswith("s3a://"):
            return "s3://" + v.removeprefix("s3a://")
        scheme = v.split("://", 1)[0] if "://" in v else None
        if scheme is not None and scheme != "s3":
            raise ValueError(f"expected a local folder or file, or s3://bucket/prefix "
                             f"(s3a:// too); found {scheme}:// in {v!r}")
        return v

    @field_validator("store")
    @classmethod
    def _check_store(cls, v: str) -> str:
        """A database URL is checked before any work (a password in it is refused, and
        never echoed back)."""
        from custseg.errors import StoreError
        from custseg.store.database import is_postgres, postgres_url, redact

        if is_postgres(v):
            try:
                postgres_url(v)
            except StoreError as exc:
                raise ValueError(f"{exc}; found {redact(v)!r}") from None
        return v

    @field_validator("artifacts")
    @classmethod
    def _artifacts_for_a_shared_store(cls, v: str | None, info: ValidationInfo) -> str | None:
        from custseg.store.database import is_postgres, redact

        store = info.data.get("store")
        if v is None and isinstance(store, str) and is_postgres(store):
            raise ValueError(
                f"a PostgreSQL store needs an artifact location every host reaches: set "
                f"artifacts to an s3:// prefix or a shared folder (store: {redact(store)}); "
                f"found none")
        return v

    @field_validator("value_labels", mode="before")
    @classmethod
    def _label_keys_as_text(cls, v: Any) -> Any:
        """Codes may be written as numbers in YAML; categories are compared as text."""
        if not isinstance(v, dict):
            return v
        out = {}
        for column, labels in v.items():
            if not isinstance(labels, dict):
                raise ValueError(
                    f"expected a mapping of codes to labels for column {column!r}, "
                    f"found {labels!r}"
                )
            out[str(column)] = {_code_text(code): str(label) for code, label in labels.items()}
        return out

    @field_validator("n_clusters", mode="before")
    @classmethod
    def _check_n_clusters(cls, v: Any) -> Any:
        if isinstance(v, bool) or (isinstance(v, int) and v < 2):
            raise ValueError(f"expected an integer >= 2, 'auto' or {{min, max}}, found {v!r}")
        if isinstance(v, str) and v != "auto":
            raise ValueError(f"expected an integer >= 2, 'auto' or {{min, max}}, found {v!r}")
        if isinstance(v, dict):
            lo, hi = v.get("min"), v.get("max")
            if set(v) != {"min", "max"} or not all(
                isinstance(x, int) and not isinstance(x, bool) and x >= 2 for x in (lo, hi)
            ):
                raise ValueError(f"expected {{min: INT, max: INT}} with both >= 2, found {v!r}")
            if hi < lo:  # type: ignore[operator]
                raise ValueError(f"expected min <= max, found {v!r}")
        elif not isinstance(v, int | str):
            raise ValueError(f"expected an integer >= 2, 'auto' or {{min, max}}, found {v!r}")
        return v

    @field_validator("n_components", mode="before")
    @classmethod
    def _check_n_components(cls, v: Any) -> Any:
        ok = (
            v == "auto"
            or (isinstance(v, int) and not isinstance(v, bool) and v >= 1)
            or (isinstance(v, float) and 0.0 < v < 1.0)
        )
        if not ok:
            raise ValueError(
                f"expected an integer >= 1, a variance fraction in (0, 1) or 'auto', found {v!r}"
            )
        return v

    # -- derived locations -------------------------------------------------------------
    def resolve(self, location: str) -> str:
        """A path relative to the config file's folder, or a URI unchanged (a `sqlite:///`
        URL's path is resolved too)."""
        if location.startswith("sqlite:///"):
            return "sqlite:///" + self.resolve(location.removeprefix("sqlite:///"))
        if "://" in location:
            return location
        path = Path(location).expanduser()
        return str(path if path.is_absolute() else (self.config_dir / path).resolve())

    @property
    def data_location(self) -> str:
        """`data_uri` joined with `data_file` when `data_uri` is a folder."""
        base = self.resolve(self.data_uri)
        if not self.data_file:
            return base
        if base.startswith("s3://"):  # a prefix is a folder unless it names a CSV file
            if base.lower().rstrip("/").endswith(CSV_SUFFIXES):
                return base
            return base.rstrip("/") + "/" + self.data_file
        return str(Path(base) / self.data_file) if Path(base).is_dir() else base

    @property
    def store_location(self) -> str:
        return self.resolve(self.store)

    @property
    def artifacts_location(self) -> str:
        """`artifacts`, or an `artifacts` folder beside the store's database (a PostgreSQL
        store has no such folder: validation asks for `artifacts`)."""
        if self.artifacts:
            return self.resolve(self.artifacts)
        from custseg.store.database import store_paths

        return str(store_paths(self.store_location)[0] / "artifacts")

    def store_password(self) -> str | None:
        """The store's password, from the environment variable `store_password_env`
        names (None when it names none: libpq's own PGPASSWORD or ~/.pgpass then)."""
        return read_secret(self.store_password_env, "store_password_env")

    def open_store(self, *, existing: bool = False) -> Store:
        """The config's store: created and migrated when needed, or (`existing`) one
        that must be there already (read commands never create one)."""
        from custseg.store.database import Store

        opener = Store.existing if existing else Store.open
        return opener(self.store_location, self.artifacts_location,
                      password=self.store_password(), host=host_id())

    @property
    def k_candidates(self) -> list[int]:
        if isinstance(self.n_clusters, int):
            return [self.n_clusters]
        if isinstance(self.n_clusters, KRange):
            return list(range(self.n_clusters.min, self.n_clusters.max + 1))
        return list(range(AUTO_K_RANGE[0], AUTO_K_RANGE[1] + 1))

    def api_key(self) -> str | None:
        """The endpoint API key, read from the environment variable the config names."""
        return read_secret(self.endpoint.api_key_env, "endpoint.api_key_env")

    def parameters(self) -> dict[str, Any]:
        """The resolved pipeline parameters, as recorded with a run."""
        return self.model_dump(mode="json", exclude={"config_dir"})


HOST_ID_ENV = "CUSTSEG_HOST_ID"


def host_id() -> str:
    """This host's name in a shared store's process rows: `CUSTSEG_HOST_ID` when set
    (two containers with one host name, or tests simulating two hosts), else the host
    name."""
    import os
    import socket

    return os.environ.get(HOST_ID_ENV) or socket.gethostname()


def read_secret(variable: str | None, key: str) -> str | None:
    """The value of the environment variable `variable` (named by config key `key`);
    None when no variable is named, an error naming the key when it is not set."""
    import os

    if variable is None:
        return None
    value = os.environ.get(variable)
    if not value:
        raise ConfigError(f"{key} names the environment variable {variable!r}, which is not set")
    return value


def _code_text(code: Any) -> str:
    if isinstance(code, bool):
        return "true" if code else "false"
    if isinstance(code, float) and code.is_integer():
        return str(int(code))
    return str(code)


def parse_override(text: str) -> tuple[str, Any]:
    """Parse `NAME=VALUE` (VALUE is a YAML scalar or flow mapping, NAME may be dotted)."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ConfigError(f"override {text!r}: expected NAME=VALUE, e.g. -p n_clusters=4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    return name, value


def _apply_override(data: dict[str, Any], name: str, value: Any) -> None:
    parts = name.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(
                f"override {name}: {'.'.join(parts[: i + 1])} is not a mapping, "
                "cannot set a key in it"
            )
        node = child
    node[parts[-1]] = value


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if annotation is not None and not isinstance(annotation, type):  # X | None
            annotation = next((a for a in typing.get_args(annotation)
                               if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return [k for k in model.model_fields if k != "config_dir"]


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    seen: set[str] = set()
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = ".".join(str(p) for p in loc) or "(top level)"
        if path in seen:
            continue
        seen.add(path)
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc)
            hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            did_you_mean = f"; did you mean {hint[0]!r}?" if hint else ""
            lines.append(f"unknown key {path!r}{did_you_mean} (allowed: {', '.join(allowed)})")
        elif err["type"] == "missing":
            lines.append(f"{path}: required key is missing")
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            found = err.get("input")
            if "found" in msg:
                lines.append(f"{path}: {msg}")
            else:
                lines.append(f"{path}: {msg}, found {found!r}")
    return f"invalid config {source}: " + "; ".join(lines)


ENV_PREFIX = "CUSTSEG__"


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Keys set in the environment: `CUSTSEG__ENDPOINT__PORT=9000` sets endpoint.port.

    They apply over the file and under `-p`; values are YAML scalars, as for `-p`.
    """
    out = {}
    for name, raw in environ.items():
        if name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX):
            key = ".".join(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
            out[key] = parse_override(f"{key}={raw}")[1]
    return out


def load_config(
    path: str | Path = DEFAULT_CONFIG_FILE,
    overrides: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Read, override and validate a config file. Raises ConfigError with the key path.

    Precedence: the file, then `CUSTSEG__SECTION__KEY` environment variables, then
    `overrides` (`-p NAME=VALUE`).
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(
            f"config file not found: {file} (pass -c CONFIG or create {DEFAULT_CONFIG_FILE})"
        )
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"config {file} is not valid YAML{where}: {problem}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {file}: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config {file}: expected a mapping of keys at the top level, "
            f"found {type(data).__name__}"
        )
    import os

    merged = {**env_overrides(os.environ if environ is None else environ), **(overrides or {})}
    return config_from_dict(data, merged, config_dir=file.resolve().parent, source=str(file))


def config_from_dict(
    data: dict[str, Any],
    overrides: dict[str, Any] | None = None,
    *,
    config_dir: Path = Path("."),
    source: str = "(dict)",
) -> Config:
    """Validate a config given as a mapping (the YAML already parsed)."""
    data = dict(data)
    for name, value in (overrides or {}).items():
        _apply_override(data, name, value)
    if "config_dir" in data:
        raise ConfigError(f"invalid config {source}: unknown key 'config_dir'")
    try:
        return Config.model_validate({**data, "config_dir": config_dir.resolve()})
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from exc
