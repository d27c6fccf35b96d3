"""The endpoint server's OpenAPI description, and a self-contained docs page.

`SPEC` is generated from the server's route table (`serving/routes`), the one the app
dispatches on. `spec_for(models)` adds, per live endpoint, its own invocation path
whose record schema and example come from the model's input schema (numeric, date and
categorical columns, the categories it knows), so that a client generator or a reader
sees the fields this endpoint really takes.
"""

from __future__ import annotations

import html
import json
from typing import Any

from custseg import __version__
from custseg.serving.routes import ROUTES, Route

__all__ = ["SPEC", "docs_html", "example_record", "spec_for"]

_RECORD = {
    "type": "object",
    "additionalProperties": True,
    "example": {"Age": 30, "Income": 50000, "Purchases": 10, "Gender": "Male"},
}
_PREDICTIONS = {
    "type": "object",
    "properties": {
        "predictions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "cluster": {"type": "integer"},
                    "segment": {"type": "string"},
                    "distance": {"type": "number"},
                },
            },
        }
    },
}
_ERROR_SCHEMA = {
    "type": "object",
    "properties": {"message": {"type": "string"}, "ErrorCode": {"type": "string"}},
}


def _body(record: dict[str, Any]) -> dict[str, Any]:
    """A records request body whose records look like `record`."""
    records = {"type": "array", "items": record}
    return {"required": True, "content": {
        "application/json": {"schema": {"oneOf": [
            record,
            records,
            {"type": "object", "properties": {"instances": records}},
            {"type": "object", "properties": {"dataframe_records": records}},
            {"type": "object", "properties": {"dataframe_split": {
                "type": "object",
                "properties": {"columns": {"type": "array", "items": {"type": "string"}},
                               "data": {"type": "array", "items": {"type": "array"}}}}}},
        ]}},
        "text/csv": {"schema": {"type": "string"},
                     "example": ",".join(record.get("example", {})) + "\n"},
    }}


def _responses(route: Route) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, description in route.responses.items():
        if status == "200" and route.records:
            out[status] = {"description": description, "content": {
                "application/json": {"schema": _PREDICTIONS},
                "text/csv": {"schema": {"type": "string"}}}}
        elif status == "200":
            out[status] = {"description": description}
        else:
            out[status] = {"description": description,
                           "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
    return out


def _operation(route: Route, record: dict[str, Any] = _RECORD, summary: str | None = None
               ) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary or route.summary, "responses": _responses(route)}
    if route.parameters:
        op["parameters"] = [{"name": p, "in": "path", "required": True,
                             "schema": {"type": "string"}} for p in route.parameters]
    if route.records:
        op["requestBody"] = _body(record)
    if route.keyed:
        op["security"] = [{"apiKey": []}, {}]  # required when the server has a key
    return op


def _paths() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for route in ROUTES:
        if route.ui:  # the dashboard's pages are for people, not part of the API
            continue
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return paths


SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "custseg endpoint server",
        "version": __version__,
        "description": "Customer segmentation endpoints (SageMaker runtime compatible).",
    },
    "paths": _paths(),
    "components": {"securitySchemes": {
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"}}},
}


def _record_schema(model: Any) -> dict[str, Any]:
    t = model.transform
    props: dict[str, Any] = {}
    for name in t.numeric:
        if name in t.dates:
            props[name] = {"type": ["string", "null"], "description":
                           f"a date ({t.dates[name]}); missing: the training median"}
        else:
            props[name] = {"type": ["number", "null"], "description":
                           "missing: the training median"}
    for name, cats in zip(t.categorical, t.categories, strict=True):
        props[name] = {"type": ["string", "number", "null"], "examples": cats[:20],
                       "description": "a category (unknown ones score as none of the "
                                      "known); missing: the most frequent"}
    return {"type": "object", "properties": props, "required": list(props),
            "example": example_record(model)}


def example_record(model: Any) -> dict[str, Any]:
    """A record the model takes: numeric medians, the most frequent categories."""
    t = model.transform
    record: dict[str, Any] = {}
    for name, median in zip(t.numeric, t.medians.tolist(), strict=True):
        record[name] = None if name in t.dates else round(float(median), 2)
    record |= dict(zip(t.categorical, t.modes, strict=True))
    return record


def spec_for(models: dict[str, Any]) -> dict[str, Any]:
    """`SPEC` plus one invocation path per live endpoint, with its model's fields."""
    paths = dict(SPEC["paths"])
    invoke = next(r for r in ROUTES if r.path == "/endpoints/{name}/invocations")
    for name, model in sorted(models.items()):
        op = _operation(invoke, _record_schema(model), f"Score records on endpoint {name}")
        op.pop("parameters")
        paths[invoke.path.replace("{name}", name)] = {"post": op}
    return {**SPEC, "paths": paths}


def docs_html(models: dict[str, Any] | None = None) -> str:
    """A plain HTML page listing the routes (no scripts, nothing fetched)."""
    spec = spec_for(models or {})
    rows = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>"
                f"{html.escape(path)}</code></td><td>{html.escape(op['summary'])}</td></tr>"
            )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>custseg endpoints</title>"
        "<style>body{font-family:sans-serif;margin:2em}td{padding:4px 12px}</style></head>"
        f"<body><h1>custseg endpoint server {__version__}</h1>"
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>; the dashboard: "
        "<a href='/ui'>/ui</a></p>"
        f"<table>{''.join(rows)}</table>"
        + "".join(
            f"<h2>{html.escape(name)}</h2><pre>curl -s localhost:PORT/endpoints/"
            f"{html.escape(name)}/invocations -H 'Content-Type: application/json' -d '"
            f"{html.escape(json.dumps(example_record(model)))}'</pre>"
            for name, model in sorted((models or {}).items()))
        + "</body></html>"
    )
