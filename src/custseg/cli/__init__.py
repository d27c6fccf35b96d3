"""The `custseg` command line: `commands` holds the app and the run/deploy/report/predict/
sample commands; `store_commands`, `endpoints` and `schema` the command groups; `common`
what they share; `startup` what the process sets up first (applied here, before typer,
pydantic and the rest load)."""

from custseg.cli.startup import set_up_process

set_up_process()

from custseg.cli.commands import app, main  # noqa: E402

__all__ = ["app", "main"]
