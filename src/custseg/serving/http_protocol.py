"""uvicorn's httptools protocol with request timeouts, one timer per connection.

A connection that sends nothing, or only part of a request's headers, within
`REQUEST_TIMEOUT` seconds is closed (uvicorn only times out idle connections after a
response). A request whose body stops arriving for `REQUEST_TIMEOUT` seconds gets a 408
and the connection is closed.

Requests only note the time: when the client owes us bytes (a request is due, its
headers or its body are incomplete), `_waiting_since` holds when it last sent some, and
None while the app works on a complete request. One timer per connection checks that
note when the window could have run out, and sets itself again for the rest of it; so a
request costs no timer of its own (a timer per request cost a handle, a start and a
cancel on every request of a keep-alive connection). The app reads bodies without a
timeout of its own.
"""

from __future__ import annotations

import asyncio

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["REQUEST_TIMEOUT", "TimedHttpToolsProtocol"]

REQUEST_TIMEOUT = 10.0
_LATE = orjson.dumps({
    "message": f"the request body did not arrive within {REQUEST_TIMEOUT:g} s",
    "ErrorCode": "ValidationError", "status": 408})
_LATE_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                  b"x-amzn-errortype: ValidationError\r\nconnection: close\r\n"
                  b"content-length: " + str(len(_LATE)).encode() + b"\r\n\r\n" + _LATE)


class TimedHttpToolsProtocol(HttpToolsProtocol):
    _timer: asyncio.TimerHandle | None = None
    _waiting_since: float | None = None  # when the client last sent what it owes

    def _check(self) -> None:
        """The connection's timer: close it, or answer 408, when the client has owed us
        bytes for the whole window; else look again when the window could end."""
        self._timer = None
        if self.transport.is_closing():
            return
        since = self._waiting_since
        waited = 0.0 if since is None else self.loop.time() - since
        if waited < REQUEST_TIMEOUT:
            self._timer = self.loop.call_later(REQUEST_TIMEOUT - waited, self._check)
            return
        cycle = self.cycle
        if (cycle is not None and not cycle.response_complete and cycle.more_body
                and not cycle.response_started):  # headers in, the body stopped
            self.transport.write(_LATE_RESPONSE)
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._waiting_since = self.loop.time()  # the first request is due
        self._timer = self.loop.call_later(REQUEST_TIMEOUT, self._check)

    def on_headers_complete(self) -> None:
        self._waiting_since = self.loop.time()  # the body, if any, is due
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._waiting_since = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._waiting_since = None  # the client owes nothing while the app works
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._waiting_since = self.loop.time()  # the next request is due in time too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)
