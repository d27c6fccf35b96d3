"""The endpoint server's routes: one table that the app dispatches on and the OpenAPI
document is generated from, so the two cannot drift apart.

Each route names its method, its OpenAPI path template and the regular expression that
matches it, the `App` method that answers it, whether it sits behind the API key (when
one is set), and what it documents: a summary, whether it takes a records body, and
its responses. The dashboard's pages (`/ui`, answered by `custseg.ui`) are for people,
not part of the API: they are not in the OpenAPI document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["ROUTES", "Route", "resolve"]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # the OpenAPI template, e.g. /endpoints/{name}/invocations
    pattern: re.Pattern[str]
    handler: str  # the name of the App method that answers
    summary: str
    keyed: bool = False  # behind the API key, when one is set
    records: bool = False  # takes a records body (JSON or CSV), answers predictions
    ui: bool = False  # a dashboard page (custseg.ui, with its own login): not in OpenAPI
    responses: dict[str, str] = field(default_factory=dict)  # status -> description

    @property
    def parameters(self) -> list[str]:
        return re.findall(r"\{(\w+)\}", self.path)


_INVOKE_RESPONSES = {
    "200": "one prediction per record; the model version is in the "
           "X-Custseg-Model-Version header",
    "400": "invalid input (record, field and reason)",
    "401": "API key missing or wrong",
    "404": "unknown endpoint",
    "408": "the request body did not arrive in time",
    "413": "body over the size limit",
    "415": "unsupported media type",
    "503": "the endpoint has no model loaded",
}
_KEYED = {"401": "API key missing or wrong"}

ROUTES: tuple[Route, ...] = (
    Route("POST", "/invocations", re.compile(r"/invocations"), "invoke",
          "Score records on the single endpoint", keyed=True, records=True,
          responses=_INVOKE_RESPONSES),
    # the name is checked by the handler (400 for an invalid one), so it matches anything
    Route("POST", "/endpoints/{name}/invocations",
          re.compile(r"/endpoints/(?P<name>.+)/invocations"), "invoke",
          "Score records on an endpoint (the SageMaker runtime path)", keyed=True,
          records=True, responses=_INVOKE_RESPONSES),
    Route("GET", "/ping", re.compile(r"/ping"), "ping",
          "Health: 200 when every endpoint has a model",
          responses={"200": "healthy", "503": "an endpoint has no model"}),
    # they name endpoints, versions and worker pids: behind the key
    Route("GET", "/endpoints", re.compile(r"/endpoints"), "endpoints",
          "Every endpoint of the store: status (and why it failed), config, model version",
          keyed=True, responses={"200": "the endpoints (SageMaker DescribeEndpoint's "
                                        "EndpointStatus, FailureReason, ...)",
                                 "503": "the store cannot be read"} | _KEYED),
    Route("GET", "/endpoints/{name}", re.compile(r"/endpoints/(?P<name>[^/]+)"), "endpoint",
          "An endpoint: status (and why it failed), config, model version, history",
          keyed=True, responses={"200": "the endpoint", "400": "invalid endpoint name",
                                 "404": "unknown endpoint",
                                 "503": "the store cannot be read"} | _KEYED),
    Route("GET", "/metrics", re.compile(r"/metrics"), "metrics",
          "Prometheus metrics, summed over the server's workers", keyed=True,
          responses={"200": "text exposition format"} | _KEYED),
    Route("GET", "/openapi.json", re.compile(r"/openapi\.json"), "openapi",
          "This document, with each live endpoint's record fields",
          responses={"200": "OpenAPI 3.1"}),
    # the dashboard: every /ui path, answered (and protected) by custseg.ui
    Route("GET", "/ui", re.compile(r"/ui(?:/.*)?"), "ui", "The dashboard (HTML)", ui=True),
    Route("POST", "/ui", re.compile(r"/ui(?:/.*)?"), "ui", "The dashboard's forms", ui=True),
    Route("GET", "/docs", re.compile(r"/docs|/"), "docs",
          "A page listing the routes and an example call per endpoint",
          responses={"200": "HTML"}),
)


def resolve(method: str, path: str) -> tuple[Route | None, dict[str, str], int]:
    """The route for a request and its path parameters, or (None, {}, 404 or 405)."""
    allowed = False
    for route in ROUTES:
        match = route.pattern.fullmatch(path)
        if match is not None:
            if route.method == method:
                return route, match.groupdict(), 200
            allowed = True
    return None, {}, 405 if allowed else 404
