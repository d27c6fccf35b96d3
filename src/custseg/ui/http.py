"""The dashboard's HTTP: a request read from ASGI (path below `/ui`, query, cookies, form
fields), a response written back with the headers every page carries (no scripts may
run, nothing is fetched from elsewhere, no framing by other sites, no caching)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from custseg.serving.wire import WireError as RequestError  # a refusal: status, message

__all__ = ["FORM_LIMIT", "Request", "RequestError", "Response", "html", "read_request",
           "redirect", "send_response"]

FORM_LIMIT = 64 * 1024  # the dashboard's forms are a name, a comment and a token
FORM_TYPE = "application/x-www-form-urlencoded"

# no script runs on these pages (the one refresh is a meta tag); styles are inline
SECURITY_HEADERS = (
    ("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'; "
     "img-src 'self' data:; form-action 'self'; frame-ancestors 'self'; base-uri 'none'"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
)

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # below /ui: "" for /ui itself, else "/models/..."
    query: dict[str, str]
    cookies: dict[str, str]
    form: dict[str, str]
    origin: str | None  # the Origin header of a form post, when the browser sent one
    host: str | None


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = field(default=())

    def with_headers(self, *headers: tuple[str, str]) -> Response:
        return Response(self.status, self.body, self.content_type, self.headers + headers)


def html(text: str, status: int = 200) -> Response:
    return Response(status, text.encode("utf-8"))


def redirect(location: str) -> Response:
    """303 See Other: after a form, the browser loads `location` with GET."""
    return Response(303, b"", "text/plain", (("location", location),))


def _cookies(raw: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in raw.decode("latin-1").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name not in out:  # the first of two same-named cookies wins
            out[name] = value.strip('"')
    return out


def _fields(text: str) -> dict[str, str]:
    return {k: v[0] for k, v in urllib.parse.parse_qs(text, keep_blank_values=True).items()}


async def _form(headers: dict[bytes, bytes], receive: Receive) -> dict[str, str]:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestError(400, "the browser went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > FORM_LIMIT:
            raise RequestError(413, f"a form over {FORM_LIMIT:,} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    kind = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
    if body and kind != FORM_TYPE:
        raise RequestError(415, f"the dashboard takes {FORM_TYPE} forms, not {kind or 'none'}")
    try:
        return _fields(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise RequestError(400, "a form that is not UTF-8") from None


async def read_request(scope: dict[str, Any], receive: Receive) -> Request:
    headers = dict(scope["headers"])
    method = scope["method"]
    form = await _form(headers, receive) if method == "POST" else {}
    origin = headers.get(b"origin")
    host = headers.get(b"host")
    return Request(
        method=method,
        path=scope["path"].removeprefix("/ui").rstrip("/"),
        query=_fields(scope.get("query_string", b"").decode("latin-1")),
        cookies=_cookies(headers.get(b"cookie", b"")),
        form=form,
        origin=None if origin is None else origin.decode("latin-1"),
        host=None if host is None else host.decode("latin-1"),
    )


async def send_response(send: Send, response: Response) -> None:
    headers = [(b"content-type", response.content_type.encode()),
               (b"content-length", str(len(response.body)).encode())]
    headers += [(k.encode(), v.encode("latin-1")) for k, v in SECURITY_HEADERS]
    headers += [(k.encode(), v.encode("latin-1")) for k, v in response.headers]
    await send({"type": "http.response.start", "status": response.status,
                "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
