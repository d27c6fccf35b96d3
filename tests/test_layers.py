"""The layers hold: `core/` is pure computation (it imports no I/O layer and no module
that touches files, sockets or databases), the environment is read only by the config
and the server's settings, and SQL lives only in `store/`."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "custseg"
IO_LAYERS = ("custseg.artifact", "custseg.io", "custseg.store", "custseg.pipeline",
             "custseg.serving", "custseg.report", "custseg.cli")
IO_MODULES = ("sqlite3", "socket", "urllib", "http", "subprocess", "fsspec", "s3fs", "boto3",
              "uvicorn", "shutil", "tempfile")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{alias.name}" for alias in node.names}
    return out


def _modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).glob("*.py"))


@pytest.mark.parametrize("path", _modules("core"), ids=lambda p: p.name)
def test_core_imports_no_io_layer_and_no_io_module(path: Path) -> None:
    imported = _imports(path)
    bad = sorted(m for m in imported if m.startswith(IO_LAYERS)
                 or m.split(".")[0] in IO_MODULES)
    assert bad == [], f"core/{path.name} imports {bad}"


@pytest.mark.parametrize("path", _modules("engines"), ids=lambda p: p.name)
def test_engines_know_nothing_of_the_store_the_server_or_the_pipeline(path: Path) -> None:
    """An engine turns the config into a model; recording, serving and deploying it are
    the pipeline's business, whatever the engine."""
    bad = sorted(m for m in _imports(path) if m.startswith(
        ("custseg.store", "custseg.serving", "custseg.cli", "custseg.pipeline",
         "custseg.report")))
    assert bad == [], f"engines/{path.name} imports {bad}"


def test_only_the_config_and_the_server_settings_read_the_environment() -> None:
    readers = set()
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if re.search(r"os\.environ(\.get)?[\[(]|os\.getenv\(", text):
            readers.add(path.relative_to(PACKAGE).as_posix())
    # serving/app reads the settings file's path; cli/commands only prints an example
    # that reads the user's key variable; serving/server sets the path for its workers;
    # engines/__init__ looks for the java that pyspark would start (JAVA_HOME)
    assert readers <= {"config.py", "serving/settings.py", "serving/app.py",
                       "serving/server.py", "cli/commands.py", "engines/__init__.py"}, readers


SQL = re.compile(r"[\"'](SELECT|INSERT|UPDATE|DELETE|CREATE TABLE|ALTER TABLE)\b")


def _sql_outside_store() -> list[str]:
    return sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
                  if p.parent.name != "store" and SQL.search(p.read_text(encoding="utf-8")))


def test_only_the_store_holds_sql() -> None:
    assert _sql_outside_store() == []


def test_the_cli_has_one_error_handler() -> None:
    """Commands let a CustsegError rise; `cli.main` alone turns it into one line on
    stderr and the exit code of its branch of the exception tree."""
    handlers = {p.relative_to(PACKAGE).as_posix(): p.read_text(encoding="utf-8").count(
        "except CustsegError") for p in (PACKAGE / "cli").glob("*.py")}
    assert {k: v for k, v in handlers.items() if v} == {"cli/commands.py": 1}
