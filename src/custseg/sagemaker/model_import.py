"""`custseg models import`: a SageMaker-trained `model.tar.gz` into the local store.

The training job writes custseg's artifact (`model.json`, `arrays.npz`, `manifest.json`)
into `SM_MODEL_DIR`, which SageMaker packs as `model.tar.gz`. Importing reads the archive
(a local file, `s3://` with `s3.endpoint_url`, or the one a SageMaker model package ARN
registers: `custseg.sagemaker.model_package`), takes only those three regular files
(anything else in it is refused: links, paths outside, other files), verifies them
against the manifest, saves the artifact in the store's artifact location and registers
it as the next version of `{project_name}-model-group`, with its lineage from the
artifact (and, from an ARN, the package's ARN and its approval status on SageMaker).
`report`, `predict` and approval then work on it.

The version is always registered PendingManualApproval, whatever the package's status on
SageMaker: an approval there was given for SageMaker's endpoint, by someone the local
audit does not know, and here it would deploy (`deploy.require_approval`); approving is
`custseg models approve`, recorded with its author.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import PurePosixPath
from typing import Any

from custseg.artifact.format import FILES, parse_artifact, read_verified
from custseg.artifact.scorer import Model
from custseg.artifact.storage import load_model, save_model
from custseg.config import Config
from custseg.core.preprocessing import schema_rows
from custseg.errors import ModelError
from custseg.sagemaker.model_package import is_package_arn, source_of
from custseg.store.database import Store
from custseg.store.registry import ApprovalStatus, ModelPackage, current_user, group_name, package
from custseg.store.registry import register as register_version

__all__ = ["import_model", "read_archive"]

WANTED = (*FILES, "manifest.json")
MAX_BYTES = 2 * 1024**3  # an artifact is megabytes; a bigger archive is not one


def _read_bytes(uri: str, s3_endpoint_url: str | None) -> bytes:
    try:
        if uri.startswith("s3://"):
            from custseg.io.data import s3_filesystem

            with s3_filesystem(s3_endpoint_url).open(uri.removeprefix("s3://"), "rb") as f:
                return bytes(f.read())
        with open(uri, "rb") as f:
            return f.read()
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the model archive {uri}: {exc}") from exc


def read_archive(uri: str, s3_endpoint_url: str | None = None
                 ) -> tuple[Model, dict[str, bytes], str]:
    """The verified model in a `model.tar.gz`, its files, and the archive's sha256."""
    data = _read_bytes(uri, s3_endpoint_url)
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for member in tar.getmembers():
                path = PurePosixPath(member.name)
                name = path.name
                if member.isdir() and path.parts in ((), (".",)):
                    continue
                if not member.isfile() or len([p for p in path.parts if p != "."]) != 1 \
                        or name not in WANTED or name in files or member.size > MAX_BYTES:
                    raise ModelError(f"model archive {uri}: unexpected member {member.name!r} "
                                     f"(a custseg artifact holds only {', '.join(WANTED)} at "
                                     f"its top level)")
                extracted = tar.extractfile(member)
                if extracted is None:  # pragma: no cover - isfile() members have data
                    raise ModelError(f"model archive {uri}: cannot read {member.name!r}")
                files[name] = extracted.read()
    except tarfile.TarError as exc:
        raise ModelError(f"model archive {uri} is not a readable tar.gz: {exc}") from exc
    missing = [n for n in WANTED if n not in files]
    if missing:
        raise ModelError(f"model archive {uri} is not a custseg artifact: it lacks "
                         f"{', '.join(missing)} (was it trained by custseg's entry point?)")
    where = f"{uri} (archive)"
    blobs = read_verified(where, files.__getitem__)
    return parse_artifact(blobs, where), files, hashlib.sha256(data).hexdigest()


def _origin(uri: str) -> tuple[str, dict[str, Any]]:
    """The archive to read for `uri`, and what the lineage records of where it came from."""
    if not is_package_arn(uri):
        return uri, {"imported_from": uri}
    source = source_of(uri)
    return source.model_data_url, {
        "imported_from": uri, "model_data_url": source.model_data_url,
        "model_package_arn": source.arn,
        "model_package_approval_status": source.approval_status}


def import_model(store: Store, cfg: Config, uri: str) -> ModelPackage:
    """Verify, save and register the archive at `uri` (a path, an s3:// URI or a model
    package ARN); returns the new version, PendingManualApproval."""
    archive, origin = _origin(uri)
    model, _, archive_sha = read_archive(archive, cfg.s3.endpoint_url)
    meta = model.meta
    dest = f"{store.artifacts.rstrip('/')}/imported/{archive_sha[:16]}/model"
    try:  # imported before: the same archive gives the same artifact, saved once
        saved = str(load_model(dest, s3_endpoint_url=cfg.s3.endpoint_url).uri or dest)
    except ModelError:
        saved = save_model(model, dest, s3_endpoint_url=cfg.s3.endpoint_url)
    data: dict[str, Any] = meta.get("data") or {}
    lineage = {
        "execution_id": None,
        "trained_by_execution": meta.get("execution_id"),
        **origin,
        "archive_sha256": archive_sha,
        "data_uri": data.get("uri"),
        "data_sha256": data.get("sha256"),
        "rows": data.get("rows"),
        "parameters": meta.get("parameters"),
        "metrics": meta.get("metrics"),
        "code_version": meta.get("code_version") or {},
        "engine": "sagemaker",
        "model_name": None,
        "segment_names": meta.get("segment_names"),
        "stability": meta.get("stability"),
        "schema": model.schema.to_dict() | {"columns": schema_rows(model.schema,
                                                                    model.transform)},
        "warnings": meta.get("warnings") or [],
    }
    group = group_name(cfg.project_name)
    version = register_version(store, group, execution_id=None, artifact_uri=saved,
                               lineage=lineage, status=ApprovalStatus.PENDING,
                               user=current_user())
    return package(store, group, version)
