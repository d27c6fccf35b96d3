"""Where model artifacts live: saving to and loading from a local folder or `s3://`.

`save_model` writes `custseg.artifact.format`'s files and returns where they went; it
leaves the model as it was (take `model.with_uri(saved)` to carry the place along).
`load_model` reads the files, verifies them against the sha256 manifest and parses them.

A local save writes into a temporary sibling folder and renames it into place, so a
failed or killed save never leaves a half-written model. An S3 save writes the manifest
last: a prefix without one is not a model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from custseg.artifact.format import FILES, artifact_files, parse_artifact, read_verified
from custseg.artifact.scorer import Model
from custseg.errors import ModelError

__all__ = ["load_model", "save_model"]


def save_model(model: Model, uri: str, *, s3_endpoint_url: str | None = None) -> str:
    """Write the artifact at `uri` (a folder path or s3:// prefix); never half-written.

    Returns where it was saved; the model itself is not changed.
    """
    files = artifact_files(model)
    try:
        return (
            _save_s3(files, uri, s3_endpoint_url)
            if uri.startswith("s3://")
            else _save_local(files, Path(uri))
        )
    except ModelError:
        raise
    except Exception as exc:  # the artifact store's own errors, reported with the place
        raise ModelError(f"cannot write the model artifact to {uri}: {exc}") from exc


def load_model(uri: str | os.PathLike[str], *, s3_endpoint_url: str | None = None) -> Model:
    """Load and verify an artifact folder. Raises ModelError when anything is off."""
    where = str(uri)
    blobs = read_verified(where, lambda name: _read(where, name, s3_endpoint_url))
    return parse_artifact(blobs, where)


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
