"""The `custseg` command line: `commands` holds the app and the run/deploy/report/predict/
sample commands; `store_commands`, `endpoints` and `schema` the command groups; `common`
what they share."""

from custseg.cli.commands import app, main

__all__ = ["app", "main"]
