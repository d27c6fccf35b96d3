"""The model pages: every registered version, and one version with its lineage, metrics,
segments, approval history, the form that approves or rejects it, and its segment report.

Approving and rejecting go through `pipeline.deploy.review`, what `custseg models
approve` and `reject` run: recorded with who and why, and deploying the version when the
server's config sets `deploy.require_approval`.
"""

from __future__ import annotations

import json
from typing import Any

from custseg.artifact.storage import load_model
from custseg.config import Config
from custseg.errors import RegistryError
from custseg.pipeline.deploy import review
from custseg.pipeline.report import report_html
from custseg.store.database import Store
from custseg.store.endpoints import wanted_configs
from custseg.store.registry import ALLOWED, ApprovalStatus, ModelPackage, package, packages
from custseg.ui.layout import Frame, badge, e, form, href, link, page, table, when

__all__ = ["NAME_LIMIT", "live_versions", "model_page", "models_page", "models_table",
           "report_page", "review_version"]

NAME_LIMIT, COMMENT_LIMIT = 100, 2000
ACTIONS = {"approve": ApprovalStatus.APPROVED, "reject": ApprovalStatus.REJECTED}


def _metric(lineage: dict[str, Any], *path: str) -> Any:
    value: Any = lineage.get("metrics") or {}
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _number(value: Any, spec: str = ".4f") -> str:
    return "-" if not isinstance(value, int | float) else e(format(value, spec))


def live_versions(store: Store) -> dict[str, list[str]]:
    """Model ref -> the endpoints serving it."""
    out: dict[str, list[str]] = {}
    for name, row in wanted_configs(store).items():
        out.setdefault(f"{row['group_name']}/{row['version']}", []).append(name)
    return out


def models_table(found: list[ModelPackage], live: dict[str, list[str]]) -> str:
    rows = [[link(href("models", p.group, p.version), p.ref), badge(p.approval_status.value),
             when(p.created_at), _number(_metric(p.lineage, "k"), "d"),
             _number(_metric(p.lineage, "silhouette", "value")),
             _number(p.lineage.get("rows"), ",d"),
             ", ".join(link(href("endpoints", n), n) for n in live.get(p.ref, [])) or "-"]
            for p in reversed(found)]
    return table(["version", "approval", "registered (UTC)", "k", "silhouette", "rows",
                  "served by"], rows)


def models_page(store: Store, frame: Frame) -> str:
    found = packages(store)
    body = (models_table(found, live_versions(store)) if found else
            "<p class='muted'>No model versions yet: <code>custseg run</code> registers one."
            "</p>")
    return page("Models", body, frame, here="/models")


def _lineage(pkg: ModelPackage) -> str:
    lin = pkg.lineage
    code = lin.get("code_version") or {}
    previous, count = lin.get("previous_version"), lin.get("rows")
    data = lin.get("data_uri", "-") + (f" ({count:,} rows)" if isinstance(count, int) else "")
    rows = [
        ["execution", link(href("executions", pkg.execution_id), pkg.execution_id)
         if pkg.execution_id else "-"],
        ["data", e(data)],
        ["data sha256", e(lin.get("data_sha256", "-"))],
        ["code", e(f"custseg {code.get('package', '?')}, git {code.get('git_commit') or '?'}")],
        ["engine", e(lin.get("engine", "-"))],
        ["previous version", link(href("models", pkg.group, previous), previous)
         if previous else "-"],
        ["artifact", e(pkg.artifact_uri)],
        ["registered", f"{when(pkg.created_at)} by {e(pkg.created_by)}"],
    ]
    return table(["", ""], rows)


def _metrics(pkg: ModelPackage) -> str:
    lin = pkg.lineage
    figures = [("k", _number(_metric(lin, "k"), "d")),
               ("silhouette", _number(_metric(lin, "silhouette", "value"))),
               ("Calinski-Harabasz", _number(_metric(lin, "calinski_harabasz"), ".2f")),
               ("Davies-Bouldin", _number(_metric(lin, "davies_bouldin")))]
    cards = "".join(f"<div class='metric'><span class='muted'>{e(name)}</span><b>{value}</b>"
                    f"</div>" for name, value in figures)
    sizes = _metric(lin, "cluster_sizes") or []
    names = lin.get("segment_names") or []
    segments = "<h2>Segments</h2>" + table(["segment", "name", "customers"], [
        [e(i), e(name), _number(sizes[i], ",d") if i < len(sizes) else "-"]
        for i, name in enumerate(names)]) if names else ""
    warnings = "".join(f"<li>{e(w)}</li>" for w in lin.get("warnings") or [])
    return (f"<div class='metrics'>{cards}</div>{segments}"
            + (f"<div class='warnings'><b>Warnings</b><ul>{warnings}</ul></div>"
               if warnings else ""))


def _history(pkg: ModelPackage) -> str:
    return table(["when (UTC)", "who", "from", "to", "comment"], [
        [when(h["at"]), e(h["by"]), e(h["from_status"] or "(new)"), badge(h["to_status"]),
         e(h["comment"] or "")] for h in pkg.history])


def _review_form(pkg: ModelPackage, frame: Frame, cfg: Config | None) -> str:
    allowed = ALLOWED[pkg.approval_status]
    if cfg is None:
        effect = ("This server was started without a config (<code>--store</code>): the "
                  "decision is recorded, nothing is deployed.")
    elif cfg.deploy.require_approval:
        effect = ("<code>deploy.require_approval</code> is set: approving deploys this version "
                  "to the endpoint, as <code>custseg models approve</code> does.")
    else:
        effect = ("<code>deploy.require_approval</code> is off: runs deploy their versions "
                  "themselves; the decision is recorded.")
    buttons = "".join(
        f'<button type="submit" name="action" value="{action}" class="{action}" '
        f'id="{action}">{action.capitalize()}</button>'
        for action, status in ACTIONS.items() if status in allowed)
    inner = (f"<p class='muted'>{effect}</p>"
             f'<label for="by">Your name</label><input type="text" id="by" name="by" '
             f'required maxlength="{NAME_LIMIT}" autocomplete="name">'
             f'<label for="comment">Comment</label><textarea id="comment" name="comment" '
             f'rows="3" maxlength="{COMMENT_LIMIT}"></textarea>{buttons}')
    return "<h2>Review</h2>" + form(href("models", pkg.group, pkg.version, "review"),
                                    frame.csrf, inner, "review")


def model_page(store: Store, frame: Frame, group: str, version: int,
               cfg: Config | None) -> str:
    pkg = package(store, group, version)
    live = live_versions(store).get(pkg.ref, [])
    serving = (" · served by " + ", ".join(link(href("endpoints", n), n) for n in live)
               if live else "")
    params = e(json.dumps(pkg.lineage.get("parameters") or {}, indent=2, sort_keys=True))
    body = (f"<p>{badge(pkg.approval_status.value)}{serving} · "
            f"{link(href('models', group, version, 'report'), 'Segment report')}</p>"
            f"{_metrics(pkg)}{_review_form(pkg, frame, cfg)}"
            f"<h2>Approval history</h2>{_history(pkg)}<h2>Lineage</h2>{_lineage(pkg)}"
            f"<details><summary>Parameters</summary><pre>{params}</pre></details>")
    return page(f"Model {pkg.ref}", body, frame, here="/models")


def report_page(store: Store, group: str, version: int, s3_endpoint_url: str | None) -> str:
    """The version's segment report, rendered from its artifact (as `custseg report`)."""
    pkg = package(store, group, version)
    model = load_model(pkg.artifact_uri, s3_endpoint_url=s3_endpoint_url)
    return report_html(model, f"Segments of model {pkg.ref}",
                       f"execution {pkg.execution_id}, {pkg.approval_status.value}")


def review_version(store: Store, cfg: Config | None, group: str, version: int,
                   fields: dict[str, str]) -> str:
    """Approve or reject from the form's fields (action, by, comment): what happened, in
    words. Raises RegistryError for a missing name or a change that is not allowed."""
    from custseg.store.registry import set_approval

    to = ACTIONS.get(fields.get("action", ""))
    by = " ".join(fields.get("by", "").split())
    comment = fields.get("comment", "").strip() or None
    if to is None:
        raise RegistryError("choose Approve or Reject")
    if not by or len(by) > NAME_LIMIT:
        raise RegistryError(f"say who you are: a name of 1 to {NAME_LIMIT} characters")
    if comment is not None and len(comment) > COMMENT_LIMIT:
        raise RegistryError(f"a comment of at most {COMMENT_LIMIT} characters")
    if cfg is None:
        pkg, deployed = set_approval(store, group, version, to, by=by, comment=comment), None
    else:
        pkg, deployed = review(store, cfg, group, version, to, by=by, comment=comment)
    done = (f"Model {pkg.ref}: {pkg.history[-1]['from_status']} -> "
            f"{pkg.approval_status.value} (by {by})")
    if deployed is not None:
        done += (f"; endpoint {deployed.endpoint_name} -> {deployed.endpoint_config_name} "
                 f"({deployed.action}, {deployed.status})")
    return done
