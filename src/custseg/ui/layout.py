"""What every dashboard page shares: the frame (title, navigation, the notice of the last
action, sign-out), the report's stylesheet with a few additions, tables, status badges,
links and forms. Every value shown goes through `e` (html.escape, quotes too); helpers
that take `html` take markup already built from escaped values."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

from custseg.report.base import CSS as REPORT_CSS
from custseg.report.base import e

__all__ = ["Frame", "badge", "e", "form", "href", "link", "page", "table", "when"]

CSS = REPORT_CSS + """
body{max-width:1200px}nav{display:flex;gap:18px;align-items:center;border-bottom:2px solid
#cfd8dc;padding-bottom:8px}nav a{color:#263238;text-decoration:none;font-weight:600}
nav a.here{color:#1565c0;border-bottom:3px solid #1565c0}nav .brand{font-size:18px;
margin-right:12px}nav form{margin-left:auto}a{color:#1565c0}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;
font-weight:600;border:1px solid}.s-ok{color:#2e7d32;background:#e8f5e9;border-color:#2e7d32}
.s-wait{color:#ef6c00;background:#fff3e0;border-color:#ef6c00}.s-bad{color:#c62828;
background:#ffebee;border-color:#c62828}.s-info{color:#1565c0;background:#e3f2fd;
border-color:#1565c0}.s-off{color:#616161;background:#f5f5f5;border-color:#9e9e9e}
.notice{border-radius:6px;padding:8px 14px;margin:14px 0;border:1px solid}
.notice.ok{background:#e8f5e9;border-color:#2e7d32}.notice.error{background:#ffebee;
border-color:#c62828}form.review{border:1px solid #cfd8dc;border-radius:8px;padding:12px 16px;
max-width:560px}form.review label{display:block;margin:8px 0 2px;font-weight:600}
form.review input[type=text],form.review textarea{width:100%;box-sizing:border-box;
padding:6px;font:inherit}button{font:inherit;padding:5px 14px;margin:8px 8px 0 0;
border-radius:6px;border:1px solid #90a4ae;background:#f5f7f8;cursor:pointer}
button.approve{background:#2e7d32;color:white;border-color:#2e7d32}button.reject{
background:#c62828;color:white;border-color:#c62828}.graph svg{max-width:100%;height:auto}
table.data td,table.data th{text-align:left}pre{background:#f5f7f8;padding:8px;
border-radius:6px;overflow-x:auto;white-space:pre-wrap;overflow-wrap:anywhere}
"""

NAV = (("", "Overview"), ("/executions", "Executions"), ("/models", "Models"),
       ("/endpoints", "Endpoints"))
STATUS_CLASSES = {
    "s-ok": {"Succeeded", "InService", "Approved", "Up", "ok"},
    "s-wait": {"Executing", "Creating", "Updating", "PendingManualApproval", "Pending"},
    "s-bad": {"Failed", "Rejected", "drift"},
    "s-info": {"Cached"},
}


@dataclass(frozen=True)
class Frame:
    """What a page needs besides its body: the form token, whether a sign-out button
    belongs in the navigation, and the notice of the last action ("ok" or "error")."""

    csrf: str
    signed_in: bool = False
    notice: tuple[str, str] | None = None


def href(*parts: str | int, query: dict[str, str] | None = None) -> str:
    """A dashboard URL from path segments, each quoted (then escape it with `e`)."""
    path = "/ui" + "".join("/" + urllib.parse.quote(str(p), safe="") for p in parts)
    return path + ("?" + urllib.parse.urlencode(query) if query else "")


def link(url: str, text: Any) -> str:
    return f'<a href="{e(url)}">{e(text)}</a>'


def badge(status: Any) -> str:
    text = str(status)
    kind = next((k for k, names in STATUS_CLASSES.items() if text in names), "s-off")
    return f'<span class="badge {kind}">{e(text)}</span>'


def when(at: str | None) -> str:
    """An ISO time as `YYYY-MM-DD HH:MM:SS` (UTC), escaped; `-` when unknown."""
    return "-" if not at else e(at[:19].replace("T", " "))


def table(columns: list[str], rows: list[list[str]], css: str = "data") -> str:
    """A table whose cells are markup (escape values with `e` first)."""
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
                   for row in rows)
    return f'<table class="{e(css)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def form(action: str, csrf: str, inner: str, css: str = "") -> str:
    """A POST form to `action` carrying the session's CSRF token."""
    return (f'<form method="post" action="{e(action)}" class="{e(css)}">'
            f'<input type="hidden" name="csrf" value="{e(csrf)}">{inner}</form>')


def _nav(here: str, frame: Frame) -> str:
    links = "".join(
        f'<a href="{e(href() + path)}" class="{"here" if path == here else ""}">{e(label)}</a>'
        for path, label in NAV)
    out = f'<span class="brand">custseg</span>{links}'
    if frame.signed_in:
        out += form(href("logout"), frame.csrf, "<button type='submit'>Sign out</button>")
    return f"<nav>{out}</nav>"


def page(title: str, body: str, frame: Frame, *, here: str = "",
         refresh: int | None = None) -> str:
    """A whole page; `refresh` reloads it every so many seconds (a meta tag: no script)."""
    meta = f'<meta http-equiv="refresh" content="{int(refresh)}">' if refresh else ""
    notice = ""
    if frame.notice is not None:
        kind, text = frame.notice
        notice = f'<div class="notice {e(kind)}" id="notice" role="status">{e(text)}</div>'
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><meta "
            "name='viewport' content='width=device-width,initial-scale=1'>"
            # an empty icon: the browser asks for no /favicon.ico
            "<link rel='icon' href='data:,'>"
            f"{meta}<title>{e(title)} · custseg</title><style>{CSS}</style></head><body>"
            f"{_nav(here, frame)}{notice}<h1>{e(title)}</h1>{body}</body></html>")
