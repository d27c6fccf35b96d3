"""The endpoint server's settings: one frozen object, built once from the config (and the
`custseg serve` options), handed to the server process as a JSON file, read by every
worker. The API key itself never enters the file: it stays in the environment variable
the config names (`endpoint.api_key_env`), which the server's workers inherit.

The only environment read here besides that key: `SETTINGS_ENV`, the path of the
settings file, which uvicorn's worker processes need to find it (they start the app
from an import string and take no arguments).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custseg.store.database import Store

if TYPE_CHECKING:
    from custseg.config import CaptureOptions, Config

__all__ = ["DEFAULT_MAX_BODY", "SETTINGS_ENV", "CaptureSettings", "ServerSettings"]

DEFAULT_MAX_BODY = 6 * 1024 * 1024  # SageMaker's payload limit
SETTINGS_ENV = "CUSTSEG_SERVER_SETTINGS"


@dataclass(frozen=True)
class CaptureSettings:
    """`endpoint.capture` as the server's workers run it (see `serving/capture`)."""

    sample: float = 0.1
    max_mb: float = 512.0
    pii: tuple[str, ...] = ()
    pii_action: str = "hash"  # or "omit"
    pii_key_env: str | None = None
    queue_size: int = 1000
    file_records: int = 10_000
    flush_seconds: float = 60.0

    @classmethod
    def from_options(cls, options: CaptureOptions | None) -> CaptureSettings | None:
        if options is None:
            return None
        return cls(sample=options.sample, max_mb=options.max_mb, pii=tuple(options.pii),
                   pii_action=options.pii_action, pii_key_env=options.pii_key_env,
                   queue_size=options.queue_size, file_records=options.file_records,
                   flush_seconds=options.flush_seconds)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> CaptureSettings | None:
        return None if data is None else cls(**{**data, "pii": tuple(data.get("pii", ()))})

    def record(self) -> dict[str, Any]:
        """As JSON (the settings file, and what a running server records)."""
        return dataclasses.asdict(self) | {"pii": list(self.pii)}


@dataclass(frozen=True)
class ServerSettings:
    store: str  # the store's database file or URL (never with a password)
    artifacts: str
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    api_key_env: str | None = None
    s3_endpoint_url: str | None = None
    max_body: int = DEFAULT_MAX_BODY
    sync_interval: float = 0.1  # seconds between a worker's looks at the store
    requested_port: int | None = None  # the config's port, when serving on another
    store_password_env: str | None = None  # a PostgreSQL store's password variable
    # the config the server was started from (validated data and its folder; no secret is
    # in it): what the dashboard's approve deploys with, as `custseg models approve` does
    config: dict[str, Any] | None = None
    config_dir: str | None = None
    capture: CaptureSettings | None = None  # data capture, off when None

    @classmethod
    def from_config(cls, cfg: Config, store_db: str, artifacts: str) -> ServerSettings:
        e = cfg.endpoint
        return cls(store=store_db, artifacts=artifacts, host=e.host, port=e.port,
                   workers=e.workers, api_key_env=e.api_key_env,
                   s3_endpoint_url=cfg.s3.endpoint_url, max_body=e.max_body_bytes,
                   store_password_env=cfg.store_password_env,
                   config=cfg.model_dump(mode="json"), config_dir=str(cfg.config_dir),
                   capture=CaptureSettings.from_options(e.capture))

    def replace(self, **changes: Any) -> ServerSettings:
        return dataclasses.replace(self, **changes)

    def pipeline_config(self) -> Config | None:
        """The config the server was started from (None: started with `--store`)."""
        from custseg.config import config_from_dict

        if self.config is None:
            return None
        return config_from_dict(self.config, config_dir=Path(self.config_dir or "."),
                                source="(the endpoint server's config)")

    def api_key(self) -> str | None:
        """The key from the variable `api_key_env` names (None when no key is set)."""
        from custseg.config import read_secret

        return read_secret(self.api_key_env, "endpoint.api_key_env")

    def open_store(self) -> Store:
        """The store the server serves (it exists: the server was started for it), with
        the password from the variable the config names (inherited by the workers)."""
        from custseg.config import host_id, read_secret

        return Store.existing(self.store, self.artifacts,
                              password=read_secret(self.store_password_env,
                                                   "store_password_env"),
                              host=host_id())

    # -- the file the server process and its workers read ------------------------------
    def write(self, path: Path) -> Path:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self), indent=2), encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, path: str | Path) -> ServerSettings:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(**{**data, "capture": CaptureSettings.from_dict(data.get("capture"))})

    # -- what a running server records about itself -----------------------------------
    def record(self) -> dict[str, Any]:
        """The settings as recorded in the store: the API key only as a salted hash, so
        that a later deploy can tell a changed key without the key being stored."""
        key = self.api_key()
        salt = secrets.token_hex(8)
        return {"host": self.host, "port": self.requested_port or self.port,
                "workers": self.workers,
                "api_key": None if key is None else {"salt": salt,
                                                     "sha256": _key_hash(salt, key)},
                "s3_endpoint_url": self.s3_endpoint_url, "max_body_bytes": self.max_body,
                "capture": self._capture_record()}

    def _capture_record(self) -> dict[str, Any] | None:
        return None if self.capture is None else self.capture.record()

    def differences(self, recorded: dict[str, Any]) -> list[str]:
        """How a running server's recorded settings differ from these (the key named,
        never shown); empty when they match or when the server recorded none."""
        if not recorded:
            return []
        out = []
        wanted = {"host": self.host, "port": self.requested_port or self.port,
                  "workers": self.workers, "s3_endpoint_url": self.s3_endpoint_url,
                  "max_body_bytes": self.max_body}
        for name, value in wanted.items():
            if recorded.get(name) != value:
                out.append(f"{name} {recorded.get(name)} -> {value}")
        out += _capture_differences(recorded.get("capture"), self._capture_record())
        have, key = recorded.get("api_key"), self.api_key()
        if have is None and key is not None:
            out.append("API key: none in the server, one in the config")
        elif have is not None and key is None:
            out.append("API key: one in the server, none in the config")
        elif have is not None and key is not None and not secrets.compare_digest(
                str(have.get("sha256", "")), _key_hash(str(have.get("salt", "")), key)):
            out.append("API key: changed")
        return out


def _capture_differences(have: dict[str, Any] | None, want: dict[str, Any] | None
                         ) -> list[str]:
    """Data capture's differences: turned on or off, or each key that changed."""
    if have == want:
        return []
    if have is None or want is None:
        return [f"capture {'off' if have is None else 'on'} -> {'off' if want is None else 'on'}"]
    return [f"capture.{k} {have.get(k)} -> {v}" for k, v in want.items() if have.get(k) != v]


def _key_hash(salt: str, key: str) -> str:
    return hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()
