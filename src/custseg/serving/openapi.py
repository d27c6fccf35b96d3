"""The endpoint server's OpenAPI description, and a self-contained docs page.

`SPEC` describes the routes; `spec_for(models)` adds, per live endpoint, its own
invocation path whose record schema and example come from the model's input schema
(numeric, date and categorical columns, the categories it knows), so that a client
generator or a reader sees the fields this endpoint really takes.
"""

from __future__ import annotations

import html
import json
from typing import Any

from custseg import __version__

__all__ = ["SPEC", "docs_html", "example_record", "spec_for"]

_RECORD = {
    "type": "object",
    "additionalProperties": True,
    "example": {"Age": 30, "Income": 50000, "Purchases": 10, "Gender": "Male"},
}
_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    _RECORD,
                    {"type": "array", "items": _RECORD},
                    {
                        "type": "object",
                        "properties": {"instances": {"type": "array", "items": _RECORD}},
                    },
                    {
                        "type": "object",
                        "properties": {"dataframe_records": {"type": "array", "items": _RECORD}},
                    },
                    {
                        "type": "object",
                        "properties": {
                            "dataframe_split": {
                                "type": "object",
                                "properties": {
                                    "columns": {"type": "array"},
                                    "data": {"type": "array"},
                                },
                            }
                        },
                    },
                ]
            }
        },
        "text/csv": {
            "schema": {"type": "string"},
            "example": "Age,Income,Purchases,Gender\n30,50000,10,Male\n",
        },
    },
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
_ERROR = {
    "description": "error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"message": {"type": "string"}, "ErrorCode": {"type": "string"}},
            }
        }
    },
}
_INVOKE = {
    "requestBody": _BODY,
    "responses": {
        "200": {
            "description": "one prediction per record; the model version is in the "
            "X-Custseg-Model-Version header",
            "content": {
                "application/json": {"schema": _PREDICTIONS},
                "text/csv": {"schema": {"type": "string"}},
            },
        },
        "400": _ERROR | {"description": "invalid input (field and reason)"},
        "401": _ERROR | {"description": "API key missing or wrong"},
        "404": _ERROR | {"description": "unknown endpoint"},
        "413": _ERROR | {"description": "body over the size limit"},
        "415": _ERROR | {"description": "unsupported media type"},
        "503": _ERROR | {"description": "no model loaded yet"},
    },
}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "custseg endpoint server",
        "version": __version__,
        "description": "Customer segmentation endpoints (SageMaker runtime compatible).",
    },
    "paths": {
        "/ping": {
            "get": {
                "summary": "Health: 200 when every endpoint has a model",
                "responses": {"200": {"description": "healthy"}, "503": _ERROR},
            }
        },
        "/invocations": {"post": {"summary": "Score records on the single endpoint", **_INVOKE}},
        "/endpoints/{name}/invocations": {
            "post": {
                "summary": "Score records on an endpoint (the SageMaker runtime path)",
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {
                            "type": "string",
                            "pattern": "^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$",
                        },
                    }
                ],
                **_INVOKE,
            }
        },
        "/endpoints": {
            "get": {
                "summary": "Endpoints served and their model versions",
                "responses": {"200": {"description": "endpoints"}},
            }
        },
        "/endpoints/{name}": {
            "get": {
                "summary": "An endpoint: status, config, model version, history",
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {"200": {"description": "the endpoint"}, "404": _ERROR},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics, summed over the server's workers",
                "responses": {"200": {"description": "text exposition format"}},
            }
        },
    },
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
    for name, model in sorted(models.items()):
        record = _record_schema(model)
        body = {"required": True, "content": {
            "application/json": {"schema": {"oneOf": [
                record, {"type": "array", "items": record},
                {"type": "object", "properties": {"instances": {"type": "array",
                                                                "items": record}}}]}},
            "text/csv": {"schema": {"type": "string"}},
        }}
        paths[f"/endpoints/{name}/invocations"] = {"post": {
            "summary": f"Score records on endpoint {name}",
            **{**_INVOKE, "requestBody": body}}}
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
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a></p>"
        f"<table>{''.join(rows)}</table>"
        + "".join(
            f"<h2>{html.escape(name)}</h2><pre>curl -s localhost:PORT/endpoints/"
            f"{html.escape(name)}/invocations -H 'Content-Type: application/json' -d '"
            f"{html.escape(json.dumps(example_record(model)))}'</pre>"
            for name, model in sorted((models or {}).items()))
        + "</body></html>"
    )
