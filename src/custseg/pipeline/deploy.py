"""DeployEndpoint: the seed's Lambda logic, with a stable endpoint name.

Each deployment creates a new endpoint config named
`{project}-endpoint-config-{environment}-{timestamp}` for the model version; the endpoint
`{project}-endpoint-{environment}` is created on it when absent, else updated to it
(keeping the previous config for rollback). The endpoint server loads the new config
beside the old one and switches to it (see `serving/endpoints`). The records and their
state transitions live in `store/endpoints`; this module waits for the switch and
starts the server.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from custseg.artifact.scorer import Model
from custseg.config import Config
from custseg.errors import DeployError
from custseg.pipeline.records import Deployed
from custseg.store.database import Store
from custseg.store.endpoints import (
    Deployment,
    create_or_update,
    endpoint_name,
    revert,
    rollback,
    set_status,
    switch_view,
    wanted_configs,
)
from custseg.store.registry import ApprovalStatus, ModelPackage, set_approval

__all__ = ["check_settings", "deploy_version", "make_live", "review", "roll_back",
           "wait_until_served"]


def wait_until_served(store: Store, name: str, config: str, timeout: float = 30.0) -> str:
    """Wait until every live server worker serves `config` for endpoint `name`.

    Returns "InService", or "Superseded" when another deploy moved the endpoint on in the
    meantime. Raises DeployError, after putting the endpoint back on its previous config,
    when a worker refuses the model or the switch does not happen within `timeout`; an
    interrupted wait reverts too.
    """
    try:
        return _wait(store, name, config, timeout)
    except DeployError as exc:
        revert(store, name, config, str(exc))
        raise
    except BaseException:
        revert(store, name, config, "the deploy was interrupted")
        raise


def _wait(store: Store, name: str, config: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        current, workers, rows = switch_view(store, name)
        if current != config:
            return "Superseded"
        mine = [rows[p] for p in workers if p in rows and rows[p]["config_name"] == config]
        failed = [r for r in mine if r["status"] == "Failed"]
        if failed:
            raise DeployError(f"endpoint {name} stays on its previous model: "
                              f"{failed[0]['reason']}")
        if workers and len(mine) == len(workers) and all(
                r["status"] == "InService" for r in mine):
            set_status(store, name, "InService")
            return "InService"
        if time.monotonic() > deadline:
            raise DeployError(f"endpoint {name} stays on its previous model: the server did "
                              f"not switch to {config} within {timeout:.0f} s (see the server "
                              f"log)")
        time.sleep(0.05)


def check_settings(server: Any, settings: Any) -> None:
    """A running server whose settings differ from the config's (an API key added or
    rotated, another port or worker count) must not be reported as serving the config:
    the deploy fails, naming the differences and how to restart it."""
    differences = settings.differences(server.settings)
    if differences:
        raise DeployError(
            f"the endpoint server of this store (pid {server.pid}, {server.url}) runs with "
            f"settings other than the config's: {'; '.join(differences)}. Restart it with "
            f"`custseg serve --restart` (requests fail while it restarts), then run again")


def make_live(store: Store, cfg: Config, deployment: Deployment) -> Deployed:
    """Have the endpoint server serve `deployment`: start the store's background server
    when none runs on this host (and `endpoint.autostart`), then wait for every worker
    (of every host sharing the store) to switch."""
    from custseg.serving.server import running_server, start_background
    from custseg.serving.settings import ServerSettings

    settings = ServerSettings.from_config(cfg, store.location, store.artifacts)
    server = running_server(store)
    if server is not None:
        try:
            check_settings(server, settings)
        except DeployError as exc:  # the endpoint does not stay on the refused deploy
            revert(store, deployment.endpoint, deployment.config, str(exc))
            raise
    if server is None and cfg.endpoint.autostart:
        server = start_background(store, settings)
    served = functools.partial(Deployed, deployment.endpoint, deployment.config,
                               deployment.action, deployment.previous_config)
    if server is None and switch_view(store, deployment.endpoint)[1]:
        # no server on this host, but other hosts' servers serve this (shared) store
        status = wait_until_served(store, deployment.endpoint, deployment.config)
        return served(status=status, url=None,
                      note="served by the endpoint servers of other hosts")
    if server is None:
        return served(status="Creating" if deployment.action == "created" else "Updating",
                      url=None,
                      note="no endpoint server runs for this store: `custseg serve` serves it")
    status = wait_until_served(store, deployment.endpoint, deployment.config)
    return served(status=status, url=server.url, note=server.note or None)


def _check_unserved(store: Store, cfg: Config, pkg: ModelPackage, model: Model | None
                    ) -> None:
    """With no server to check it (none runs for the store, on any host), the checks a
    worker makes before it switches: the new model against the endpoint's current one
    (its callers' schema) and a smoke prediction. A server started later loads the new
    config with no current model to compare with."""
    from custseg.artifact.storage import load_model
    from custseg.errors import ModelError
    from custseg.serving.endpoints import verify

    name = endpoint_name(cfg.project_name, cfg.environment)
    current = wanted_configs(store).get(name)
    old = None
    if current is not None:
        try:
            old = load_model(current["artifact_uri"], s3_endpoint_url=cfg.s3.endpoint_url)
        except ModelError:  # the endpoint has no model its callers use: nothing to keep
            old = None
    new = model or load_model(pkg.artifact_uri, s3_endpoint_url=cfg.s3.endpoint_url)
    try:
        verify(new, old)
    except DeployError as exc:
        raise DeployError(f"endpoint {name} stays on its previous model: {exc}") from None


def deploy_version(store: Store, cfg: Config, pkg: ModelPackage,
                   model: Model | None = None) -> Deployed:
    """DeployEndpoint for a registered version: a new timestamped endpoint config, the
    endpoint created or updated on it, and the server switched to it. A running server
    whose settings differ from the config's refuses the deploy before the endpoint moves.
    `model`: the version's model when the caller holds it (not loaded again)."""
    from custseg.serving.server import running_server
    from custseg.serving.settings import ServerSettings

    server = running_server(store)
    if server is not None:
        check_settings(server, ServerSettings.from_config(cfg, store.location,
                                                          store.artifacts))
    elif not switch_view(store, endpoint_name(cfg.project_name, cfg.environment))[1]:
        _check_unserved(store, cfg, pkg, model)
    deployment = create_or_update(
        store,
        project=cfg.project_name,
        environment=cfg.environment,
        group=pkg.group,
        version=pkg.version,
        artifact_uri=pkg.artifact_uri,
        execution_id=pkg.execution_id,
    )
    return make_live(store, cfg, deployment)


def review(store: Store, cfg: Config, group: str, version: int, to: ApprovalStatus, *,
           by: str, comment: str | None) -> tuple[ModelPackage, Deployed | None]:
    """Approve or reject a version (recorded with who and why); approving deploys it when
    `deploy.require_approval` held it back."""
    pkg = set_approval(store, group, version, to, by=by, comment=comment)
    if pkg.approval_status == ApprovalStatus.APPROVED and cfg.deploy.require_approval:
        return pkg, deploy_version(store, cfg, pkg)
    return pkg, None


def roll_back(store: Store, name: str) -> Deployment:
    """Return endpoint `name` to the config it served before, and wait for the store's
    server (when one runs) to switch to it, as a deploy does."""
    from custseg.serving.server import running_server

    done = rollback(store, name)
    if running_server(store) is not None:
        wait_until_served(store, name, done.config)
    return done
