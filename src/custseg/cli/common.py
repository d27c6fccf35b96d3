"""What every `custseg` command shares: options, the one-line error, the store, tables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from custseg.errors import ConfigError, CustsegError

if TYPE_CHECKING:
    from rich.console import Console

    from custseg.config import Config
    from custseg.store.database import Store

__all__ = [
    "DEFAULT_CONFIG",
    "ConfigOpt",
    "JsonOpt",
    "err_console",
    "fail",
    "open_config_store",
    "parse_duration",
    "print_table",
]

ConfigOpt = Annotated[Path, typer.Option("-c", "--config", help="Pipeline config YAML.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
DEFAULT_CONFIG = Path("pipeline_config.yaml")
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, None: 1}


def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def fail(exc: CustsegError) -> typer.Exit:
    """Print a user error as one line on stderr; the exit carries its branch's code."""
    message = str(exc).replace("\n", " ")
    err_console().print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    return typer.Exit(code=exc.exit_code)


def open_config_store(config: Path) -> tuple[Config, Store]:
    """The config and its store, which must exist (read commands never create one)."""
    from custseg.config import load_config

    cfg = load_config(config)
    return cfg, cfg.open_store(existing=True)


def print_table(columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(header_style="bold")
    first = max([len(columns[0]), *(len(str(r[0])) for r in rows)])
    table.add_column(columns[0], no_wrap=True, min_width=first)  # ids stay whole, to copy
    for name in columns[1:]:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console(highlight=False).print(table)


def parse_duration(text: str, option: str) -> float:
    """Seconds in `90`, `90s`, `30m`, `2h`, `7d` or `2w`; ConfigError naming the option
    otherwise."""
    found = DURATION.match(text)
    if found is None or float(found.group(1)) <= 0:
        raise ConfigError(f"{option}: expected a positive duration in seconds or with a "
                          f"unit (90, 90s, 30m, 2h, 7d, 2w), found {text!r}")
    return float(found.group(1)) * UNIT_SECONDS[found.group(2)]
