"""uvicorn's httptools protocol with request timeouts, one timer per connection, that
answers the common invocation itself.

A connection that sends nothing, or only part of a request's headers, within
`REQUEST_TIMEOUT` seconds is closed (uvicorn only times out idle connections after a
response). A request whose body stops arriving for `REQUEST_TIMEOUT` seconds gets a 408
and the connection is closed.

Requests only note the time: when the client owes us bytes (a request is due, its
headers or its body are incomplete), `_waiting_since` holds when it last sent some, and
None while the app works on a complete request. One timer per connection checks that
note when the window could have run out, and sets itself again for the rest of it; so a
request costs no timer of its own (a timer per request cost a handle, a start and a
cancel on every request of a keep-alive connection). The same timer closes a connection
left idle for uvicorn's keep-alive timeout after a response answered here (see below),
within one window. The app reads bodies without a timeout of its own.

The common case, a small invocation (`POST /invocations` or
`POST /endpoints/NAME/invocations` with a Content-Length of at most `FAST_BYTES` and
within the server's body limit), is
answered here as soon as its body is in: `App.answer` scores it and the response is
written at once, in one write, without an ASGI task and its scope, events and messages
(they took a third of a one-record request's CPU). The response carries the same bytes
as the ASGI path's. Everything else goes the ASGI way: other routes, bodies in chunks or
over `FAST_BYTES`, Expect: 100-continue, a request pipelined behind one the app is still
working on, a client not reading its responses, or a server over its concurrency limit
(which answers 503 there).
"""

from __future__ import annotations

import asyncio
import urllib.parse
from dataclasses import dataclass
from typing import Any

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from custseg.serving.routes import resolve

__all__ = ["FAST_BYTES", "REQUEST_TIMEOUT", "TimedHttpToolsProtocol"]

FAST_BYTES = 256 * 1024  # = app.OFFLOAD_BYTES: larger bodies are scored in a thread
_NOT_FAST = object()
_TARGETS: dict[bytes, Any] = {}  # request target -> endpoint name (None: the single
# endpoint) or _NOT_FAST; bounded by _TARGETS_KEPT
_TARGETS_KEPT = 256

REQUEST_TIMEOUT = 10.0
_LATE = orjson.dumps({
    "message": f"the request body did not arrive within {REQUEST_TIMEOUT:g} s",
    "ErrorCode": "ValidationError", "status": 408})
_LATE_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                  b"x-amzn-errortype: ValidationError\r\nconnection: close\r\n"
                  b"content-length: " + str(len(_LATE)).encode() + b"\r\n\r\n" + _LATE)


def _invocation(url: bytes) -> Any:
    """The endpoint a request target invokes (None: the single one), or _NOT_FAST."""
    target = _TARGETS.get(url)
    if target is None and url not in _TARGETS:
        raw = httptools.parse_url(url).path.decode("ascii")
        path = urllib.parse.unquote(raw) if "%" in raw else raw
        route, found, _ = resolve("POST", path)
        target = found.get("name") if route is not None and route.records else _NOT_FAST
        if len(_TARGETS) >= _TARGETS_KEPT:
            _TARGETS.clear()
        _TARGETS[url] = target
    return target


_LINES: dict[int, tuple[list[tuple[bytes, bytes]], bytes]] = {}  # id -> (headers, lines)
_LINES_KEPT = 64


def _lines(headers: list[tuple[bytes, bytes]]) -> bytes:
    """Header lines as bytes, kept for the lists seen last: uvicorn's default headers
    (a new list each second, for the date) and each endpoint's (one per model)."""
    kept = _LINES.get(id(headers))
    if kept is not None and kept[0] is headers:
        return kept[1]
    lines = b"".join(b"%s: %s\r\n" % pair for pair in headers)
    if len(_LINES) >= _LINES_KEPT:
        _LINES.clear()
    _LINES[id(headers)] = (headers, lines)
    return lines


@dataclass(slots=True)
class _Fast:
    """A small invocation being read, to be answered by the protocol (see the module)."""

    name: str | None
    headers: dict[bytes, bytes]
    keep_alive: bool
    body: bytes = b""


class TimedHttpToolsProtocol(HttpToolsProtocol):
    _timer: asyncio.TimerHandle | None = None
    _waiting_since: float | None = None  # when the client last sent what it owes
    _fast: _Fast | None = None  # the invocation answered here, while its body comes
    _idle = False  # between a response answered here and the next request
    _answer: Any = None  # App.answer
    _fast_bytes = FAST_BYTES  # the largest body answered here

    def _check(self) -> None:
        """The connection's timer: close it, or answer 408, when the client has owed us
        bytes for the whole window; else look again when the window could end."""
        self._timer = None
        if self.transport.is_closing():
            return
        since = self._waiting_since
        waited = 0.0 if since is None else self.loop.time() - since
        window = self.timeout_keep_alive if self._idle else REQUEST_TIMEOUT
        if waited < window:
            self._timer = self.loop.call_later(window - waited, self._check)
            return
        cycle = self.cycle
        if self._fast is not None or (
                cycle is not None and not cycle.response_complete and cycle.more_body
                and not cycle.response_started):  # headers in, the body stopped
            self.transport.write(_LATE_RESPONSE)
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._answer = getattr(self.app, "answer", None)  # custseg's App, not wrapped
        if self._answer is not None:  # bodies over the server's limit: 413, the ASGI way
            self._fast_bytes = min(FAST_BYTES, self.app.settings.max_body)
        self._waiting_since = self.loop.time()  # the first request is due
        self._timer = self.loop.call_later(REQUEST_TIMEOUT, self._check)

    def on_message_begin(self) -> None:
        self._idle = False
        # what uvicorn's on_message_begin sets, less the ASGI scope: made only for a
        # request that goes the ASGI way (see on_headers_complete)
        self.url = b""
        self.expect_100_continue = False
        self.headers = []

    def on_headers_complete(self) -> None:
        self._waiting_since = self.loop.time()  # the body, if any, is due
        self._fast = self._fast_invocation()
        if self._fast is None:
            url, headers, expect = self.url, self.headers, self.expect_100_continue
            super().on_message_begin()  # the scope, as uvicorn makes it
            self.url, self.headers, self.expect_100_continue = url, headers, expect
            self.scope["headers"] = headers
            super().on_headers_complete()

    def _fast_invocation(self) -> _Fast | None:
        """The request, when it is an invocation to answer here (see the module)."""
        if (self._answer is None or self.parser.get_method() != b"POST"
                or self.expect_100_continue or self.pipeline
                or (self.cycle is not None and not self.cycle.response_complete)
                or self.flow.write_paused or self.parser.should_upgrade()):
            return None
        limit = self.limit_concurrency
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            return None
        name = _invocation(self.url)
        if name is _NOT_FAST:
            return None
        headers = dict(self.headers)
        length = headers.get(b"content-length")
        if (length is None or b"transfer-encoding" in headers or not length.isdigit()
                or int(length) > self._fast_bytes):
            return None
        keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
        return _Fast(name, headers, keep_alive)

    def on_body(self, body: bytes) -> None:
        self._waiting_since = self.loop.time()
        if self._fast is not None:
            self._fast.body += body  # the first piece is kept as is, not copied
        else:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._waiting_since = None  # the client owes nothing while the app works
        fast = self._fast
        if fast is None:
            super().on_message_complete()
            return
        self._fast = None
        reply = self._answer(fast.name, fast.headers, fast.body)
        self.transport.write(b"".join((
            STATUS_LINE[reply.status], _lines(self.server_state.default_headers),
            b"content-type: ", reply.media.encode(),
            b"\r\ncontent-length: ", str(len(reply.body)).encode(), b"\r\n",
            _lines(reply.headers), b"" if fast.keep_alive else b"connection: close\r\n",
            b"\r\n", reply.body)))
        if not fast.keep_alive:
            self.transport.close()
        self.app.finish(reply)  # never raises
        self.server_state.total_requests += 1
        # idle until the next request: the connection's timer closes it after the
        # keep-alive timeout (uvicorn's way, a timer per response, cost 3 us a request);
        # nothing is pipelined behind a request answered here (see _fast_invocation)
        self._idle = True
        self._waiting_since = self.loop.time()

    def shutdown(self) -> None:
        if self._fast is not None:  # its body is coming: answer it, then close
            self._fast.keep_alive = False
        else:
            super().shutdown()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._waiting_since = self.loop.time()  # the next request is due in time too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)
