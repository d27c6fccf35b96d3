"""The two non-custseg, non-MLflow servers of `bench_serve.py`, as uvicorn app factories.

* `fastapi_app()`: the hand-written FastAPI baseline. It loads the custseg model named by
  `BENCH_MODEL_URI` with `custseg.load_model(...).to_sklearn()` (the fitted scikit-learn
  Pipeline: ColumnTransformer + PCA + KMeans) and answers `POST /invocations` with
  `{"predictions": [cluster, ...]}` from `pipeline.predict(pd.DataFrame(records))`.
  It takes the same bodies as MLflow's scoring server and custseg (one record object, a
  list of records, `{"instances": [...]}` or `{"dataframe_records": [...]}`). It is kept
  lean on purpose (no pydantic request model, no middleware): a generous baseline. The
  endpoint is a plain `def`, as FastAPI advises for blocking work: FastAPI reads and
  decodes the body on the event loop and runs `predict` in its thread pool, so a slow
  prediction does not stop the worker from reading other requests (with `async def`,
  `predict` blocked the loop and c=64 ended in wrk timeouts).
* `static_app()`: the floor. A raw ASGI app that reads the request body and returns a
  constant small JSON answer, shaped like custseg's one-record response. On the same
  uvicorn stack as custseg (uvloop + httptools, access log off), it is the most that
  stack can serve on this machine: no parsing, no scoring.

* `static_protocol_app()`: the floor of custseg's own stack. custseg answers small
  invocations in its HTTP protocol without an ASGI task (`serving/http_protocol.py`),
  so the ASGI floor above is not the most its stack can serve; this app gives that
  protocol a constant answer (`answer`) and answers the rest (`/ping`) as `static_app`.
  Run with `python benchmarks/serve_apps.py static-protocol PORT` (two workers on
  custseg's `SO_REUSEPORT` sockets, as `custseg serve`).

Run: uvicorn --app-dir benchmarks --factory serve_apps:fastapi_app --workers 2 ...
(No `from __future__ import annotations` here: FastAPI reads the endpoint's signature,
and `Body` is imported inside `fastapi_app`.)
"""

import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

STATIC_BODY = b'{"predictions":[{"cluster":0,"segment":"0","distance":0.25}]}'
STATIC_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(STATIC_BODY)).encode()),
]


def _records(payload: Any) -> list[dict[str, Any]]:
    if isinstance(payload, dict):
        for key in ("dataframe_records", "instances"):
            if key in payload:
                return list(payload[key])
        return [payload]
    return list(payload)


def fastapi_app() -> Any:
    """FastAPI + pandas + the scikit-learn pipeline, as a user would write it."""
    import pandas as pd
    from fastapi import Body, FastAPI

    import custseg

    pipeline = custseg.load_model(os.environ["BENCH_MODEL_URI"]).to_sklearn()
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/invocations")
    def invocations(payload: Any = Body()) -> dict[str, list[int]]:
        frame = pd.DataFrame(_records(payload))
        return {"predictions": pipeline.predict(frame).tolist()}

    return app


def static_app() -> ASGIApp:
    """A raw ASGI app: read the body, answer 200 with a constant JSON body."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": STATIC_HEADERS})
        await send({"type": "http.response.body", "body": STATIC_BODY})

    return app


def static_protocol_app() -> Any:
    """custseg's protocol path answering a constant (see the module)."""
    from types import SimpleNamespace

    from custseg.serving.app import Reply

    reply = Reply(200, STATIC_BODY, "application/json", [])
    others = static_app()

    class StaticAnswers:
        settings = SimpleNamespace(max_body=6 * 1024 * 1024)

        def answer(self, name: Any, headers: Any, body: bytes) -> Reply:
            return reply

        def finish(self, done: Reply) -> None:
            pass

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await others(scope, receive, send)

    return StaticAnswers()


if __name__ == "__main__" and sys.argv[1:2] == ["static-protocol"]:
    from custseg.serving.http_protocol import TimedHttpToolsProtocol
    from custseg.serving.workers import run_workers

    # the workers are spawned with this sys.path, which starts with this folder
    run_workers("127.0.0.1", int(sys.argv[2]), 2, {
        "app": "serve_apps:static_protocol_app", "factory": True, "loop": "uvloop",
        "http": TimedHttpToolsProtocol, "lifespan": "on", "access_log": False,
        "proxy_headers": False, "log_level": "warning"})
