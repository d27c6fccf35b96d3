"""The `custseg` command line: `commands` holds the app and the run/deploy/report/predict/
sample commands; `store_commands`, `endpoints` and `schema` the command groups; `common`
what they share; `gc_tuning` the process's collector settings, applied here, before
typer, pydantic and the rest load."""

from custseg.cli.gc_tuning import tune_collector

tune_collector()

from custseg.cli.commands import app, main  # noqa: E402

__all__ = ["app", "main"]
