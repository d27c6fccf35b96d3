"""The endpoint server's OpenAPI description, and a self-contained docs page."""

from __future__ import annotations

import html
from typing import Any

from custseg import __version__

__all__ = ["SPEC", "docs_html"]

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
                "summary": "Prometheus metrics of the answering worker",
                "responses": {"200": {"description": "text exposition format"}},
            }
        },
    },
}


def docs_html() -> str:
    """A plain HTML page listing the routes (no scripts, nothing fetched)."""
    rows = []
    for path, methods in SPEC["paths"].items():
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
        "<h2>Example</h2><pre>curl -s localhost:8080/invocations -H 'Content-Type: "
        'application/json\' -d \'{"Age": 30, "Income": 50000, "Purchases": 10, '
        '"Gender": "Male"}\'</pre></body></html>'
    )
