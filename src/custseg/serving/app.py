"""The endpoint server: one ASGI app hosting every endpoint of a store.

Routes (SPEC section 6): `GET /ping`, `POST /invocations` (the single endpoint),
`POST /endpoints/{name}/invocations` (the SageMaker runtime path, so boto3's
`invoke_endpoint` works unchanged), `GET /endpoints`, `GET /endpoints/{name}`,
`GET /metrics` (Prometheus), `GET /openapi.json` and `GET /docs`.

A raw ASGI app (no framework) on uvicorn with orjson: a request is parsed, scored by the
numpy scorer and answered in well under a millisecond. Errors carry boto3's error shape
(`x-amzn-ErrorType` header, `message` in the body), so boto3 raises ValidationError etc.
with our message. Each worker follows the store (see `serving`) in a background task.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from custseg.errors import CustsegError
from custseg.serving.capture import CaptureWriter, pii_key
from custseg.serving.endpoints import ENDPOINT_NAME, EndpointTable, Served
from custseg.serving.metrics import Metrics, drift_metrics, merged_metrics
from custseg.serving.routes import ROUTES, resolve
from custseg.serving.scoring import Observed, score_response
from custseg.serving.settings import SETTINGS_ENV, ServerSettings
from custseg.serving.wire import WireError

__all__ = ["App", "Reply", "create_app", "error_reply"]

UNREADABLE = "the store cannot be read now; see the server log"
OFFLOAD_BYTES = 256 * 1024  # bodies larger than this are scored in a thread
SWITCH_INTERVAL = 0.001
# a worker's collector: young collections of a few hundred objects, each a pause of tens
# of microseconds (Python 3.11's default). A worker spawned by the command line imports
# `custseg.cli` again, which raises the threshold for short commands (cli/startup): a
# young collection of 50,000 objects would be a millisecond pause in a request's way.
WORKER_GC_THRESHOLD = (700, 10, 10)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

ERROR_TYPES = {
    400: "ValidationError",
    401: "AccessDeniedException",
    404: "ValidationError",
    405: "ValidationError",
    413: "ValidationError",
    415: "ValidationError",
    503: "ServiceUnavailable",
    500: "InternalFailure",
}


@dataclass(slots=True)
class Reply:
    """An invocation's reply, and what `App.finish` needs once it is sent: the endpoint
    (None when refused before one was known), what scoring observed, the number of
    records, when the request started, and the request body and its media type (for
    data capture)."""

    status: int
    body: bytes
    media: str
    headers: list[tuple[bytes, bytes]]  # besides the content type and length
    served: Served | None = None
    observed: Observed | None = None
    n: int = 0
    started: float = 0.0
    request: bytes = b""
    content_type: str = ""


def error_reply(status: int, message: str) -> Reply:
    """An error in boto3's shape: `x-amzn-errortype` header, `message` in the body."""
    error_type = ERROR_TYPES.get(status, "ValidationError")
    body = orjson.dumps({"message": message, "ErrorCode": error_type, "status": status})
    return Reply(status, body, "application/json", [(b"x-amzn-errortype", error_type.encode())])


class App:
    """The ASGI application (one per worker process)."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.store = settings.open_store()
        self.table = EndpointTable(self.store, settings.s3_endpoint_url)
        self.metrics = Metrics()
        self._metrics_dir = self.store.folder / "metrics"
        self.capture = self._capture_writer()
        self._task: asyncio.Task[None] | None = None
        key = settings.api_key()
        self._api_key = key.encode() if key else None
        # what answers each route of the table that is not an invocation
        self._pages: dict[str, Callable[..., Awaitable[None]]] = {
            "ping": self._ping, "endpoints": self._endpoints, "endpoint": self._endpoint,
            "metrics": self._metrics, "openapi": self._openapi, "docs": self._docs}
        unanswered = {r.handler for r in ROUTES if not (r.records or r.ui)} - set(self._pages)
        self._dashboard: Any = None  # custseg.ui's, made at the first /ui request
        if unanswered:
            raise RuntimeError(f"routes without a handler: {sorted(unanswered)}")

    def _capture_writer(self) -> CaptureWriter | None:
        """The worker's data capture (`endpoint.capture`), or None when it is off."""
        options = self.settings.capture
        if options is None:
            return None
        key = pii_key(options, self.store.folder) if options.pii else b""
        return CaptureWriter(options, self.store.artifacts, key=key,
                             s3_endpoint_url=self.settings.s3_endpoint_url,
                             counts=self.metrics.capture)

    def _live_models(self) -> dict[str, Any]:
        return {name: served.model for name, served in self.table.live.items()}

    # -- lifecycle ------------------------------------------------------------------------
    async def _follow_store(self) -> None:
        """Every `sync_interval`: the endpoints read again when the store changed, and
        this worker's counters shared with the others when they changed. Both looks are
        cheap and made on the event loop; a thread reads the store only after a change
        (a thread hand-off at every look cost a busy worker 10% of its requests)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                if self.table.stale():
                    await loop.run_in_executor(None, self.table.sync)
                snapshot = self.metrics.snapshot_if_changed()
                if snapshot is not None:  # a small file under the store: for /metrics
                    self.metrics.dump(snapshot, self._metrics_dir)
            except Exception as exc:  # a store hiccup must not stop the worker; retry
                print(f"custseg: syncing endpoints failed: {exc}", flush=True)
            await asyncio.sleep(self.settings.sync_interval)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await asyncio.get_running_loop().run_in_executor(None, self.table.sync)
                self.table.register_worker()
                if self.capture is not None:
                    self.capture.start()
                self._task = asyncio.create_task(self._follow_store())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._task:
                    self._task.cancel()
                if self.capture is not None:  # the last records written before exiting
                    await asyncio.get_running_loop().run_in_executor(None, self.capture.close)
                self.table.forget_worker()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- responses ------------------------------------------------------------------------
    @staticmethod
    async def _send(
        send: Send,
        status: int,
        body: bytes,
        content_type: str,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(body)).encode()),
                    *(headers or []),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _json(self, send: Send, status: int, payload: Any) -> None:
        await self._send(send, status, orjson.dumps(payload), "application/json")

    async def _error(self, send: Send, status: int, message: str) -> None:
        await self._send_reply(send, error_reply(status, message))

    async def _send_reply(self, send: Send, reply: Reply) -> None:
        await self._send(send, reply.status, reply.body, reply.media, reply.headers)

    # -- requests -------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return
        method, path = scope["method"], scope["path"]
        route, found, status = resolve(method, path)
        if route is None:
            if status == 405:
                await self._error(send, 405, f"{method} {path} is not supported")
            else:
                await self._error(send, 404, f"no route {path} (see /docs)")
        elif route.records:
            await self._invoke(scope, receive, send, found.get("name"))
        elif route.ui:
            await self._ui(scope, receive, send)
        elif route.keyed and not self._authorised(dict(scope["headers"])):
            await self._error(send, 401, "missing or wrong API key")
        else:
            await self._pages[route.handler](send, **found)

    async def _ui(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The dashboard (`custseg.ui`): its own login, forms and pages."""
        if self._dashboard is None:
            from custseg.ui import Dashboard

            self._dashboard = Dashboard(
                self.settings, self.store,
                lambda: merged_metrics(self.metrics, self._metrics_dir))
        await self._dashboard(scope, receive, send)

    async def _endpoints(self, send: Send) -> None:
        """Every endpoint of the store with its real status, served here or not (one
        that failed to load its model included)."""
        from custseg.store.endpoints import endpoint_records

        try:
            records = await self._read_store(endpoint_records, self.store)
        except CustsegError:
            await self._error(send, 503, UNREADABLE)
            return
        await self._json(send, 200, {"endpoints": [self._describe(r) for r in records]})

    async def _read_store(self, read: Callable[..., Any], *args: Any) -> Any:
        """`read(*args)` in a thread (it may write: `endpoint_record` reconciles); a store
        failure logged (its message may name the store's place) and raised again."""
        try:
            return await asyncio.get_running_loop().run_in_executor(None, read, *args)
        except CustsegError as exc:
            print(f"custseg: reading the endpoints failed: {exc}", flush=True)
            raise

    async def _metrics(self, send: Send) -> None:  # every worker's counters, whichever answers
        body = merged_metrics(self.metrics, self._metrics_dir).render()
        body += await asyncio.get_running_loop().run_in_executor(None, self._drift_metrics)
        await self._send(send, 200, body, "text/plain; version=0.0.4")

    def _drift_metrics(self) -> bytes:
        """The last `custseg monitor` figures of each endpoint, from the store."""
        from custseg.errors import StoreError
        from custseg.store.drift import latest_drift

        try:
            return drift_metrics(latest_drift(self.store))
        except StoreError as exc:  # the counters still answer
            print(f"custseg: reading drift reports failed: {exc}", flush=True)
            return b""

    async def _openapi(self, send: Send) -> None:
        from custseg.serving.openapi import spec_for

        await self._json(send, 200, spec_for(self._live_models()))

    async def _docs(self, send: Send) -> None:
        from custseg.serving.openapi import docs_html

        body = docs_html(self._live_models()).encode()
        await self._send(send, 200, body, "text/html; charset=utf-8")

    async def _ping(self, send: Send) -> None:
        # no key is needed here: the count only, the names and reasons are behind the key
        unserved = [n for n in self.table.failed if n not in self.table.live]
        if unserved:
            many = len(unserved) > 1
            await self._error(send, 503, f"{len(unserved)} endpoint{'s' if many else ''} "
                                         f"failed to load {'their models' if many else 'its model'}"
                                         f" (GET /endpoints says why)")
        elif not self.table.live:
            await self._error(send, 503, "no endpoint has a model yet")
        else:
            await self._send(send, 200, b"", "text/plain")

    def _describe(self, record: dict[str, Any]) -> dict[str, Any]:
        """An endpoint as the store records it (`endpoint_record`: its status reconciled
        from what the workers report), in the names of SageMaker's DescribeEndpoint
        (EndpointName, EndpointConfigName, EndpointStatus, FailureReason, CreationTime,
        LastModifiedTime) and ours, with what this worker serves for it (None when it
        serves no model for it)."""
        name, status, reason = record["name"], record["status"], record["status_reason"]
        served = self.table.get(name)
        described: dict[str, Any] = {
            "EndpointName": name,
            "EndpointConfigName": record["config_name"],
            "EndpointStatus": status,
            "CreationTime": record["created_at"],
            "LastModifiedTime": record["updated_at"],
            "name": name,
            "status": status,
            "status_reason": reason,
            "config": record["config_name"],
            "model_version": record["model_version"],
            "served_model_version": served.ref if served else None,
            "loaded_at": served.loaded_at if served else None,
            "input_columns": served.model.input_columns if served else None,
            "k": served.model.k if served else None,
            "segments": served.segment_names if served else None,
        }
        # as SageMaker: why it failed, or why an update failed while the endpoint serves on
        if reason and (status == "Failed" or status == "InService"):
            described["FailureReason"] = reason
        return described

    async def _endpoint(self, send: Send, name: str) -> None:
        from custseg.store.endpoints import endpoint_record

        if not ENDPOINT_NAME.match(name):
            await self._error(send, 400, f"invalid endpoint name {name!r}")
            return
        try:
            record = await self._read_store(endpoint_record, self.store, name)
        except CustsegError:
            await self._error(send, 503, UNREADABLE)
            return
        if record is None:
            await self._error(send, 404, f"no endpoint {name!r} (GET /endpoints lists them)")
            return
        await self._json(send, 200, self._describe(record) | {"record": record})

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        """The request body, up to the limit. A larger body is read to its end and
        discarded (memory stays bounded) so that the client gets a clean 413 rather than a
        reset connection; past 8x the limit the connection is dropped."""
        limit = self.settings.max_body
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()  # a body that stops arriving: 408 by http_protocol
            if message["type"] == "http.disconnect":
                raise WireError(400, "client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size <= limit:
                chunks.append(chunk)
            else:
                chunks.clear()
                if size > 8 * limit:
                    break
            if not message.get("more_body", False):
                break
        if size > limit:
            raise WireError(413, f"request body of {size:,}+ bytes is over the {limit:,}-byte "
                                 f"limit; send smaller batches")
        return b"".join(chunks)

    def _authorised(self, headers: dict[bytes, bytes]) -> bool:
        if self._api_key is None:
            return True
        offered = headers.get(b"x-api-key")
        auth = headers.get(b"authorization", b"")
        if offered is None and auth.lower().startswith(b"bearer "):
            offered = auth[7:].strip()
        if offered is None:  # boto3 callers: CustomAttributes="api_key=..."
            for part in headers.get(b"x-amzn-sagemaker-custom-attributes", b"").split(b","):
                key, _, value = part.strip().partition(b"=")
                if key == b"api_key":
                    offered = value
        return offered is not None and hmac.compare_digest(offered, self._api_key)

    async def _invoke(self, scope: Scope, receive: Receive, send: Send, name: str | None
                      ) -> None:
        """Score a request on endpoint `name` (None: the single endpoint), the ASGI way:
        for what `http_protocol` does not answer itself (bodies sent in pieces or over
        `FAST_BYTES`, pipelined requests, Expect: 100-continue)."""
        started = time.perf_counter()
        headers = dict(scope["headers"])
        try:
            reply = self._target(headers, name)
            if not isinstance(reply, Reply):
                target, observed = reply, self._observed(reply)
                try:
                    body = await self._read_body(scope, receive)
                except WireError as exc:
                    reply = self._refused(target, exc.status, exc.message, started)
                else:
                    if len(body) > OFFLOAD_BYTES:  # a big batch: scored in a thread and in
                        # pieces, so that the worker keeps answering small requests
                        reply = await asyncio.to_thread(self._score, target, headers, body,
                                                        observed, started, chunked=True)
                    else:
                        reply = self._score(target, headers, body, observed, started)
        except Exception as exc:  # a bug must not surface as a bare 500 or kill the worker
            reply = self._failed(exc)
        await self._send_reply(send, reply)
        self.finish(reply)

    def answer(self, name: str | None, headers: dict[bytes, bytes], body: bytes) -> Reply:
        """Score a complete small request on endpoint `name` at once (what
        `http_protocol` calls for the common case, without an ASGI task); the caller
        sends the reply, then calls `finish` with it."""
        started = time.perf_counter()
        try:
            target = self._target(headers, name)
            if isinstance(target, Reply):
                return target
            return self._score(target, headers, body, self._observed(target), started)
        except Exception as exc:  # a bug must not surface as a bare 500 or kill the worker
            return self._failed(exc)

    @staticmethod
    def _failed(exc: Exception) -> Reply:
        print(f"custseg: invocation failed: {type(exc).__name__}: {exc}", flush=True)
        return error_reply(500, f"internal error ({type(exc).__name__}); see the server log")

    def _target(self, headers: dict[bytes, bytes], name: str | None) -> Served | Reply:
        """The endpoint a request goes to, or the reply refusing it (API key, name)."""
        if not self._authorised(headers):
            return error_reply(401, "missing or wrong API key (send X-Api-Key, "
                                    "Authorization: Bearer, or CustomAttributes api_key=)")
        if name is None:
            live = self.table.live
            if len(live) != 1:
                if not live:
                    return error_reply(503, "no endpoint has a model yet")
                return error_reply(400, f"{len(live)} endpoints ({', '.join(sorted(live))}): "
                                        f"POST /endpoints/NAME/invocations")
            (only,) = live.values()
            return only
        if not ENDPOINT_NAME.match(name):
            return error_reply(400, f"invalid endpoint name {name!r}")
        served = self.table.get(name)  # held for the whole request: a switch cannot tear it
        if served is None:
            refused = self.table.failed.get(name)
            if refused is not None:  # the full reason, with its paths, is in the log
                return error_reply(503, f"endpoint {name!r} has no model: {refused.public} "
                                        f"(the server log has the details)")
            return error_reply(404, f"no endpoint {name!r}")
        return served

    def _observed(self, served: Served) -> Observed:
        sampled = self.capture is not None and self.capture.sampled()
        return Observed([0] * len(served.model.transform.categorical), keep=sampled,
                        keep_records=sampled and self.capture is not None
                        and self.capture.needs_records)

    def _score(self, served: Served, headers: dict[bytes, bytes], body: bytes,
               observed: Observed, started: float, *, chunked: bool = False) -> Reply:
        """The reply to a request for `served` (its answers, or why it was refused)."""
        content_type = headers.get(b"content-type", b"application/json").decode("latin-1")
        accept = headers.get(b"accept", b"application/json").decode("latin-1")
        try:
            out, media, n = score_response(served.model, body, content_type,
                                           served.segment_names, accept, chunked=chunked,
                                           observed=observed)
        except WireError as exc:
            return self._refused(served, exc.status, exc.message, started)
        except CustsegError as exc:
            return self._refused(served, 400, str(exc), started)
        return Reply(200, out, media, served.headers, served, observed, n, started,
                     body, content_type)

    @staticmethod
    def _refused(served: Served, status: int, message: str, started: float) -> Reply:
        reply = error_reply(status, message)
        reply.served, reply.started = served, started
        return reply

    def finish(self, reply: Reply) -> None:
        """After a reply is sent: the request counted, and its records offered to data
        capture when sampled. Never raises: the answer is out."""
        try:
            self._count(reply)
        except Exception as exc:  # a bug in counting must not break the connection
            print(f"custseg: counting a request failed: {type(exc).__name__}: {exc}",
                  flush=True)

    def _count(self, reply: Reply) -> None:
        served = reply.served
        if served is None:  # refused before an endpoint was known
            return
        name = served.name
        if reply.status != 200:
            self.metrics.observe(name, served.ref, reply.status, 0.0, 0)
            return
        self.metrics.observe(name, served.ref, 200, time.perf_counter() - reply.started,
                             reply.n)
        observed = reply.observed
        if observed is None:
            return
        if any(observed.unseen):
            self.metrics.observe_unseen(name, served.ref, served.model.transform.categorical,
                                        observed.unseen)
        if self.capture is not None and observed.scored:  # sampled: after the response
            self.capture.offer(name, served.ref, served.segment_names, observed.scored,
                               reply.request, reply.content_type, reply.n)


def create_app() -> App:
    """The app for a uvicorn worker: its settings from the file the server wrote (the
    environment only says where the file is)."""
    # a batch scored in a thread hands the GIL back to the event loop every millisecond
    # (Python's default is 5 ms), so that one-record requests wait less behind it
    sys.setswitchinterval(SWITCH_INTERVAL)
    gc.set_threshold(*WORKER_GC_THRESHOLD)
    return App(ServerSettings.read(os.environ[SETTINGS_ENV]))
