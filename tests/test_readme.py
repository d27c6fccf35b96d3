"""The README's commands run as written, in order, on a copy of the repository's quick
start (its config, the shipped sample and the wholesale example): real `custseg`
processes, the background endpoint server on a free port. Only the commands that are
not custseg's (pytest, ruff, mypy, .ci/run) and the foreground `serve` are left out."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CUSTSEG = Path(sys.executable).parent / "custseg"


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            command = re.split(r"\s{2,}#", line)[0].strip()
            if command.startswith("uv run custseg "):
                commands.append(command)
    return commands


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_readme_lists_the_commands_this_test_runs() -> None:
    commands = readme_commands()
    assert commands[0] == "uv run custseg run"
    assert len(commands) >= 20


def test_every_readme_command_runs(tmp_path: Path) -> None:
    shutil.copy(REPO / "pipeline_config.yaml", tmp_path)
    shutil.copytree(REPO / "data", tmp_path / "data")
    shutil.copytree(REPO / "examples" / "wholesale", tmp_path / "examples" / "wholesale")
    env = {**os.environ, "CUSTSEG__ENDPOINT__AUTOSTART": "true",
           "CUSTSEG__ENDPOINT__PORT": str(free_port())}
    ran = []
    try:
        for command in readme_commands():
            args = shlex.split(command)[3:]
            if args[0] == "serve":
                continue  # the foreground server: the background one serves the rest
            if "ID" in args:
                listed = subprocess.run([str(CUSTSEG), "executions", "list", "--json"],
                                        cwd=tmp_path, env=env, capture_output=True,
                                        text=True, timeout=60, check=True)
                latest = json.loads(listed.stdout)[0]["id"]
                args = [latest if a == "ID" else a for a in args]
            result = subprocess.run([str(CUSTSEG), *args], cwd=tmp_path, env=env,
                                    capture_output=True, text=True, timeout=300, check=False)
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
            assert "Traceback" not in result.stderr, command
            ran.append(command)
    finally:
        db = tmp_path / ".custseg" / "custseg.db"
        if db.exists():
            with contextlib.closing(sqlite3.connect(db)) as conn:
                for (pid,) in conn.execute("SELECT pid FROM servers"):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(int(pid), signal.SIGTERM)
    assert len(ran) == len(readme_commands()) - 1  # all but the foreground serve
    assert (tmp_path / "run.svg").exists() and (tmp_path / "report.html").exists()
    assert (tmp_path / "profiles.csv").exists() and (tmp_path / "scored.parquet").exists()
