"""The code version a model records and the Train cache keys on: custseg's version, the
sha256 of its source files and the git commit of the checkout it runs from.

Light (no numpy, no pyarrow), so that `custseg run` can compute it on a thread while
those import (`compute_in_background`): a git process and the hash of every source
file take about 8 ms.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
import threading
from pathlib import Path

from custseg import __version__
from custseg.pipeline.records import CodeVersion

__all__ = ["PACKAGE", "code_version", "compute_in_background", "source_files",
           "source_sha256"]

PACKAGE = Path(__file__).resolve().parents[1]  # src/custseg


def source_files() -> list[Path]:
    """custseg's own source files, every package included."""
    return sorted(PACKAGE.rglob("*.py"))


@functools.cache
def source_sha256() -> str:
    """The hash of custseg's own source files: what the Train cache keys on, so that an
    edited (even uncommitted) custseg never serves a model the old code trained."""
    digest = hashlib.sha256()
    for path in source_files():
        digest.update(path.relative_to(PACKAGE).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@functools.cache
def code_version() -> CodeVersion:
    """The package version and source hash, and the git commit when run from a checkout."""
    root = PACKAGE.parents[1]  # the checkout, when custseg runs from one
    commit = None
    if (root / ".git").exists():
        try:
            commit = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "HEAD"],
                capture_output=True, text=True, timeout=5, check=True,
            ).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            commit = None
    return CodeVersion(__version__, source_sha256(), commit)


def compute_in_background() -> None:
    """Start computing `code_version()` on a thread; a later call takes the cached value
    (one made before the thread is done computes it again, to the same value)."""
    threading.Thread(target=code_version, name="custseg-code-version").start()
