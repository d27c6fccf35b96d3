"""uvicorn's httptools protocol with request timeouts, one timer per request.

A connection that sends nothing, or only part of a request's headers, within
`REQUEST_TIMEOUT` seconds is closed (uvicorn only times out idle connections after a
response). A request whose body stops arriving for `REQUEST_TIMEOUT` seconds gets a 408
and the connection is closed. Both run on the same timer, armed when a request is due
and cancelled when its message is complete; body chunks only note the time (the timer,
when it fires, re-arms itself for the rest of the window), so a request costs one timer
whatever its size. The app itself then reads bodies without a timeout of its own.
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
    _progress: float = 0.0  # when the current request's body last advanced

    def _arm(self, delay: float = REQUEST_TIMEOUT) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay, self._late)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _late(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and cycle.more_body:
            waited = self.loop.time() - self._progress  # headers in, body incomplete
            if waited < REQUEST_TIMEOUT:
                self._arm(REQUEST_TIMEOUT - waited)
                return
            if not cycle.response_started:
                self.transport.write(_LATE_RESPONSE)
            self.transport.close()
        elif cycle is None or cycle.response_complete:  # the headers are late
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_headers_complete(self) -> None:
        self._progress = self.loop.time()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._progress = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request is due in time too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
