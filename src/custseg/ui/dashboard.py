"""The dashboard at `/ui`: which page or form a request is for, who may see it, and the
response (the endpoint server's app hands every `/ui` request here).

Pages are read from the store in a thread (the worker's event loop keeps serving
invocations meanwhile). A form is checked (session, CSRF token, same origin), its action
runs through the functions the CLI uses, and the browser is sent back to the page with
a one-shot notice of what happened (POST, redirect, GET: a reload does not repeat it).
"""

from __future__ import annotations

import asyncio
import functools
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

from custseg.config import Config
from custseg.errors import CustsegError, RegistryError, StoreError
from custseg.serving.metrics import Metrics
from custseg.serving.settings import ServerSettings
from custseg.store.database import Store
from custseg.ui.endpoints import endpoint_page, endpoints_page, roll_back_endpoint
from custseg.ui.executions import execution_page, executions_page
from custseg.ui.http import (
    Receive,
    Request,
    RequestError,
    Response,
    Send,
    html,
    read_request,
    redirect,
    send_response,
)
from custseg.ui.layout import Frame, e, href, page
from custseg.ui.models import model_page, models_page, report_page, review_version
from custseg.ui.overview import overview_page
from custseg.ui.session import (
    FLASH_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Sessions,
    cookie,
)
from custseg.ui.traffic import Traffic

__all__ = ["Dashboard"]

NOTICE_LIMIT = 600  # characters of a notice kept in its cookie
WRONG_KEY_DELAY = 0.5  # seconds

PAGES = {name: re.compile(pattern) for name, pattern in {
    "overview": r"",
    "executions": r"/executions",
    "execution": r"/executions/(?P<execution_id>[^/]+)",
    "models": r"/models",
    "model": r"/models/(?P<group>[^/]+)/(?P<version>\d{1,9})",
    "report": r"/models/(?P<group>[^/]+)/(?P<version>\d{1,9})/report",
    "endpoints": r"/endpoints",
    "endpoint": r"/endpoints/(?P<name>[^/]+)",
}.items()}
FORMS = {name: re.compile(pattern) for name, pattern in {
    "review": r"/models/(?P<group>[^/]+)/(?P<version>\d{1,9})/review",
    "rollback": r"/endpoints/(?P<name>[^/]+)/rollback",
    "logout": r"/logout",
}.items()}


def _match(table: dict[str, re.Pattern[str]], path: str) -> tuple[str, dict[str, str]]:
    for name, pattern in table.items():
        found = pattern.fullmatch(path)
        if found is not None:
            return name, found.groupdict()
    raise RequestError(404, f"no dashboard page /ui{path}")


def _notice(value: str | None) -> tuple[str, str] | None:
    kind, _, text = urllib.parse.unquote(value or "").partition(":")
    return (kind, text) if kind in ("ok", "error") and text else None


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a dashboard path only (never another site)."""
    if target and re.fullmatch(r"/ui(/[\w./%-]*)?", target) and "//" not in target:
        return target
    return href()


class Dashboard:
    """The ASGI handler of every `/ui` request of one server worker."""

    def __init__(self, settings: ServerSettings, store: Store,
                 metrics: Callable[[], Metrics]) -> None:
        self._settings, self._store = settings, store
        self._metrics = metrics
        self._sessions = Sessions(settings.api_key(), store.folder)
        self._traffic = Traffic()
        # named after the port: browsers send a host's cookies to each of its ports
        self._session_cookie = f"{SESSION_COOKIE}_{settings.port}"
        self._flash_cookie = f"{FLASH_COOKIE}_{settings.port}"

    @functools.cached_property
    def _config(self) -> Config | None:
        """The config the server was started from: what approving deploys with (read
        when first needed, in a page's thread, where an error is shown)."""
        return self._settings.pipeline_config()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        try:
            response = await self._respond(await read_request(scope, receive))
        except RequestError as exc:
            response = self._problem(exc.status, exc.message)
        except Exception as exc:  # a bug: a page that says so, never a dead worker
            print(f"custseg: dashboard failed: {type(exc).__name__}: {exc}", flush=True)
            response = self._problem(500, f"internal error ({type(exc).__name__}); see the "
                                          f"server log")
        await send_response(send, response)

    def _set_session(self, value: str, max_age: int = SESSION_SECONDS) -> tuple[str, str]:
        return "set-cookie", cookie(self._session_cookie, value, max_age)

    def _problem(self, status: int, message: str) -> Response:
        body = f"<p id='problem'>{e(message)}</p><p><a href='{href()}'>Back to the overview</a></p>"
        return html(page(f"Error {status}", body, Frame(csrf="")), status)

    # -- who ------------------------------------------------------------------------------
    async def _respond(self, request: Request) -> Response:
        if request.path == "/login":
            return await self._login(request)
        session = self._sessions.session(request.cookies.get(self._session_cookie))
        issued = None
        if session is None:
            if self._sessions.login_required and request.method == "GET":
                return redirect(href("login", query={"next": "/ui" + request.path}))
            if self._sessions.login_required or request.method != "GET":
                raise RequestError(403, "no session: open the page again and resend the form")
            issued = self._sessions.new()  # no API key: a session without a login
            session = self._sessions.session(issued)
            assert session is not None
        if request.method == "POST":
            response = await self._act(request, session)
        else:
            response = await self._show(request, session)
        if issued is not None:
            response = response.with_headers(self._set_session(issued))
        return response

    async def _login(self, request: Request) -> Response:
        if not self._sessions.login_required:
            return redirect(href())
        target = _safe_next(request.form.get("next") or request.query.get("next"))
        wrong = request.method == "POST" and not self._sessions.key_matches(
            request.form.get("key", ""))
        if wrong:  # each wrong guess costs its sender a while (the worker serves on)
            await asyncio.sleep(WRONG_KEY_DELAY)
        elif request.method == "POST":
            return redirect(target).with_headers(self._set_session(self._sessions.new()))
        notice = ("error", "wrong API key") if wrong else None
        body = ("<form method='post' action='/ui/login' class='review'>"
                f"<input type='hidden' name='next' value='{e(target)}'>"
                "<label for='key'>API key of this server</label>"
                "<input type='password' id='key' name='key' required autocomplete="
                "'current-password'><button type='submit' id='sign-in'>Sign in</button></form>")
        return html(page("Sign in", body, Frame(csrf="", notice=notice)), 401 if wrong else 200)

    # -- pages ----------------------------------------------------------------------------
    async def _show(self, request: Request, session: str) -> Response:
        name, params = _match(PAGES, request.path)
        notice = _notice(request.cookies.get(self._flash_cookie))
        frame = Frame(csrf=self._sessions.csrf_token(session),
                      signed_in=self._sessions.login_required, notice=notice)
        self._traffic.look(self._metrics())  # here, on the loop: the counters change there
        try:
            text = await asyncio.to_thread(self._page, name, frame, params)
        except (RegistryError, StoreError) as exc:
            raise RequestError(404, str(exc)) from None
        except CustsegError as exc:
            raise RequestError(500, str(exc)) from None
        if text is None:
            raise RequestError(404, f"no endpoint {params.get('name')!r}")
        response = html(text)
        if notice is not None:  # shown once
            response = response.with_headers(("set-cookie", cookie(self._flash_cookie, "", 0)))
        return response

    def _page(self, name: str, frame: Frame, params: dict[str, str]) -> str | None:
        store, traffic = self._store, self._traffic
        if name in ("model", "report"):
            group, version = params["group"], int(params["version"])
            if name == "report":
                return report_page(store, group, version, self._settings.s3_endpoint_url)
            return model_page(store, frame, group, version, self._config)
        pages: dict[str, Callable[[], str | None]] = {
            "overview": lambda: overview_page(store, frame, traffic),
            "executions": lambda: executions_page(store, frame),
            "execution": lambda: execution_page(store, frame, params.get("execution_id", "")),
            "models": lambda: models_page(store, frame),
            "endpoints": lambda: endpoints_page(store, frame, traffic),
            "endpoint": lambda: endpoint_page(store, frame, traffic, params.get("name", "")),
        }
        return pages[name]()

    # -- forms ----------------------------------------------------------------------------
    def _review(self, group: str, version: int, fields: dict[str, str]) -> str:
        return review_version(self._store, self._config, group, version, fields)

    async def _act(self, request: Request, session: str) -> Response:
        if request.origin not in (None, "null") and request.host is not None and \
                urllib.parse.urlsplit(request.origin).netloc != request.host:
            raise RequestError(403, "a form from another site")
        if not self._sessions.csrf_ok(session, request.form.get("csrf")):
            raise RequestError(403, "the form's token is missing or wrong: open the page "
                                    "again and resend the form")
        name, params = _match(FORMS, request.path)
        if name == "logout":
            return redirect(href("login")).with_headers(self._set_session("", 0))
        action: Callable[[], str]
        if name == "review":
            group, version = params["group"], int(params["version"])
            back = href("models", group, version)
            action = functools.partial(self._review, group, version, request.form)
        else:
            back = href("endpoints", params["name"])
            action = functools.partial(roll_back_endpoint, self._store, params["name"])
        try:
            notice = "ok:" + await asyncio.to_thread(action)
        except CustsegError as exc:
            notice = f"error:{exc}"
        value = urllib.parse.quote(notice[:NOTICE_LIMIT], safe="")
        return redirect(back).with_headers(("set-cookie", cookie(self._flash_cookie, value, 60)))
