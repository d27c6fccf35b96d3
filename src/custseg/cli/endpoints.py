"""`custseg serve`, `custseg ui` and `custseg endpoints ...`: the endpoint server, its
dashboard and its endpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from custseg.cli.common import (
    DEFAULT_CONFIG,
    ConfigOpt,
    JsonOpt,
    fail,
    open_config_store,
    print_table,
)
from custseg.errors import CustsegError, DeployError

if TYPE_CHECKING:
    from custseg.store.database import Store

__all__ = ["endpoints_app", "serve", "ui"]

endpoints_app = typer.Typer(
    help="Endpoints: list, describe, invoke, rollback, delete.", no_args_is_help=True
)


def _store(config: Path) -> Store:
    return open_config_store(config)[1]


def serve(
    config: ConfigOpt = DEFAULT_CONFIG,
    store: Annotated[str | None, typer.Option(
        help="Store folder or postgresql:// URL (instead of -c).")] = None,
    artifacts: Annotated[str | None, typer.Option(help="Artifact location (with --store).")] = None,
    store_password_env: Annotated[str | None, typer.Option(
        help="Environment variable holding the PostgreSQL store's password (with --store)."
    )] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: endpoint.port).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
    api_key_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the API key.")
    ] = None,
    s3_endpoint_url: Annotated[str | None, typer.Option(help="S3-compatible endpoint.")] = None,
    max_body: Annotated[int | None, typer.Option(help="Request body limit in bytes.")] = None,
    allow_unauthenticated: Annotated[
        bool,
        typer.Option(
            "--allow-unauthenticated", help="Allow a non-loopback bind without an API key."
        ),
    ] = False,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart",
            help="Stop the store's background server and start it again with the config's "
            "settings (what `custseg run` starts), then return.",
        ),
    ] = False,
) -> None:
    """Run the endpoint server in the foreground (every endpoint of the store)."""
    from custseg.config import host_id, load_config, read_secret
    from custseg.errors import ConfigError
    from custseg.serving.server import check_bind
    from custseg.serving.server import serve as run_server
    from custseg.serving.settings import ServerSettings
    from custseg.store.database import Store

    if store is not None:
        if restart:
            raise ConfigError("--restart takes the settings from the config: use -c")
        opened = Store.open(store, artifacts, host=host_id(), password=read_secret(
            store_password_env, "--store-password-env"))
        base = ServerSettings(store=opened.location, artifacts=opened.artifacts,
                              store_password_env=store_password_env)
    else:
        cfg = load_config(config)
        opened = cfg.open_store()
        base = ServerSettings.from_config(cfg, opened.location, opened.artifacts)
    given = {"host": host, "port": port, "workers": workers, "api_key_env": api_key_env,
             "s3_endpoint_url": s3_endpoint_url, "max_body": max_body}
    settings = base.replace(**{k: v for k, v in given.items() if v is not None})
    if restart:
        from custseg.serving.server import start_background, stop

        check_bind(settings.host, settings.api_key(), allow_unauthenticated)
        stopped = stop(opened)
        info = start_background(opened, settings)
        typer.echo(f"{'Restarted' if stopped else 'Started'} the endpoint server "
                   f"(pid {info.pid}) at {info.url}")
        if info.note:
            typer.echo(f"note: {info.note}")
        return
    run_server(opened, settings, allow_unauthenticated=allow_unauthenticated)


def ui(
    config: ConfigOpt = DEFAULT_CONFIG,
    no_open: Annotated[bool, typer.Option(
        "--no-open", help="Only print the dashboard's URL.")] = False,
) -> None:
    """Open the dashboard of the store's running endpoint server in the browser."""
    import webbrowser

    from custseg.serving.server import running_server

    server = running_server(_store(config))
    if server is None:
        raise DeployError("no endpoint server runs for this store: `custseg serve` runs one "
                          "(`custseg run` starts one in the background)")
    url = f"{server.url}/ui"
    typer.echo(f"Dashboard: {url}")
    if not no_open and not webbrowser.open(url):
        typer.echo("(no browser to open here: open the URL yourself)")


@endpoints_app.command("list")
def endpoints_list(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """Endpoints of the store, with status, config and model version."""
    from custseg.store.endpoints import endpoint_records

    records = endpoint_records(_store(config))
    if as_json:
        typer.echo(json.dumps(records, indent=2))
        return
    print_table(
        ["name", "status", "model version", "config"],
        [[r["name"], r["status"], r["model_version"], r["config_name"]] for r in records],
    )


@endpoints_app.command("describe")
def endpoints_describe(
    name: Annotated[str, typer.Argument(help="Endpoint name.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOpt = False,
) -> None:
    """An endpoint: status, current and previous config, history, workers, URL."""
    from custseg.serving.server import running_server
    from custseg.store.endpoints import endpoint_record

    store = _store(config)
    record = endpoint_record(store, name)
    if record is None:
        raise DeployError(f"no endpoint {name!r} (see `custseg endpoints list`)")
    server = running_server(store)
    record["url"] = f"{server.url}/endpoints/{name}/invocations" if server else None
    if as_json:
        typer.echo(json.dumps(record, indent=2))
        return
    out = typer.echo
    out(
        f"Endpoint {name}: {record['status']}"
        + (f" ({record['status_reason']})" if record["status_reason"] else "")
    )
    out(f"Model version: {record['model_version']}")
    out(f"Config: {record['config_name']} (previous: {record['previous_config_name'] or '-'})")
    out(f"URL: {record['url'] or 'not served (no server running: custseg serve)'}")
    out("History:")
    for h in record["history"]:
        out(f"- {h['created_at']} {h['name']}: {h['group_name']}/{h['version']}")


def _post(url: str, body: bytes, content_type: str, api_key: str | None) -> tuple[int, str]:
    import urllib.error  # here: urllib.request costs 20 ms of every command's start-up
    import urllib.request

    headers = {"Content-Type": content_type}
    if api_key:
        headers["X-Api-Key"] = api_key
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        raise DeployError(f"cannot reach the endpoint server at {url}: {exc}") from exc


@endpoints_app.command("invoke")
def endpoints_invoke(
    name: Annotated[str, typer.Argument(help="Endpoint name.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    body: Annotated[str | None, typer.Option("--body", help="A JSON body.")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="A .json or .csv file.")] = None,
) -> None:
    """Send records to an endpoint and print the predictions."""
    from custseg.config import load_config
    from custseg.serving.server import running_server
    from custseg.store.endpoints import endpoint_record

    try:
        cfg = load_config(config)
        store = _store(config)
        record = endpoint_record(store, name)
        if record is None:
            raise DeployError(f"no endpoint {name!r} (see custseg endpoints list)")
        if record["status"] == "Deleted":
            raise DeployError(f"endpoint {name!r} was deleted (custseg run deploys it again)")
        server = running_server(store)
        if server is None:
            raise DeployError("no endpoint server runs for this store (start: custseg serve)")
        if (body is None) == (file is None):
            raise DeployError("pass exactly one of --body JSON or --file FILE")
        data = body.encode() if body is not None else Path(file).read_bytes()  # type: ignore[arg-type]
        kind = (
            "text/csv"
            if file is not None and file.suffix.lower() == ".csv"
            else ("application/json")
        )
        status, text = _post(
            f"{server.url}/endpoints/{name}/invocations", data, kind, cfg.api_key()
        )
    except (CustsegError, OSError) as exc:
        raise fail(exc if isinstance(exc, CustsegError) else DeployError(str(exc))) from None
    if status != 200:
        raise fail(DeployError(f"HTTP {status}: {text.strip()}"))
    typer.echo(text)


@endpoints_app.command("rollback")
def endpoints_rollback(
    name: Annotated[str, typer.Argument(help="Endpoint name.")], config: ConfigOpt = DEFAULT_CONFIG
) -> None:
    """Return the endpoint to its previous config, with the same zero-downtime switch."""
    from custseg.pipeline.deploy import roll_back

    done = roll_back(_store(config), name)
    typer.echo(f"Endpoint {name}: {done.previous_config} -> {done.config}")


@endpoints_app.command("delete")
def endpoints_delete(
    name: Annotated[str, typer.Argument(help="Endpoint name.")], config: ConfigOpt = DEFAULT_CONFIG
) -> None:
    """Stop serving an endpoint (the last one stops the background server)."""
    from custseg.serving.server import stop
    from custseg.store.endpoints import delete, endpoint_records

    store = _store(config)
    delete(store, name)
    live = [r for r in endpoint_records(store) if r["status"] != "Deleted"]
    stopped = stop(store) if not live else False
    typer.echo(f"Endpoint {name} deleted" + ("; the endpoint server stopped" if stopped else ""))
