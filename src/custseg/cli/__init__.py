"""The `custseg` command line: `commands` holds the app and the run/deploy/report/predict/
sample commands; `store_commands`, `endpoints` and `schema` the command groups; `common`
what they share.

`main` is the console script. It tunes the process's cyclic garbage collector before the
command line's modules load: Python's defaults suit long-lived programs (a young
collection every 700 allocations, and a full one, walking every object alive, every
hundred of those), and a command is one short process whose memory is mostly arrays,
freed by reference counting. With collections 70x rarer, and what is alive at the end
left out of the collections of interpreter shutdown (`gc.freeze` in `commands.main`), a
1M-row `custseg run` takes 5-10% less time (benchmarks/RESULTS.md). The endpoint server's
workers are spawned processes, with Python's defaults. `app` (for typer's test runner)
loads `commands` when first asked for.
"""

from __future__ import annotations

import gc
from typing import Any

__all__ = ["GC_THRESHOLD", "app", "main"]

GC_THRESHOLD = 50_000  # allocations between young collections (Python's default: 700)


def main() -> None:
    """Console-script entry point."""
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
    from custseg.cli.commands import main as run_command_line

    run_command_line()


def __getattr__(name: str) -> Any:
    if name == "app":
        from custseg.cli.commands import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
