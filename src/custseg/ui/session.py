"""Who may use the dashboard, and proof that a form came from it.

A session is a cookie `issued.nonce.mac`: the mac is an HMAC-SHA256, keyed by the
server's API key, of the issue time and a random nonce, so the cookie never holds the
key, any worker of the server can check it without shared state, and rotating the key
ends every session. Without an API key (the server then listens on loopback only) a
session is issued without a login, keyed by a random secret kept in the store folder
(`ui-secret`, mode 0600, shared by the workers), so that forms still need their token.

Every form carries a CSRF token: the HMAC of the session's nonce. A page of another site
can neither read it nor send the cookie (SameSite=Strict), so it cannot post a form.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["FLASH_COOKIE", "SESSION_COOKIE", "SESSION_SECONDS", "Sessions", "cookie"]

SESSION_COOKIE = "custseg_ui"
FLASH_COOKIE = "custseg_ui_flash"
SESSION_SECONDS = 12 * 3600
SECRET_FILE = "ui-secret"


def cookie(name: str, value: str, max_age: int) -> str:
    """A Set-Cookie value scoped to the dashboard, out of reach of scripts and of other
    sites' requests (max_age 0 removes it)."""
    return f"{name}={value}; Path=/ui; Max-Age={max_age}; HttpOnly; SameSite=Strict"


def _local_secret(folder: Path) -> bytes:
    """The store folder's dashboard secret, made once (the first worker's wins)."""
    path = folder / SECRET_FILE
    if not path.exists():
        tmp = folder / f"{SECRET_FILE}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # atomic, and refuses to replace another worker's
        except FileExistsError:
            pass
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
    return bytes.fromhex(path.read_text(encoding="ascii").strip())


class Sessions:
    """Issuing and checking sessions and CSRF tokens (see the module's docstring)."""

    def __init__(self, api_key: str | None, folder: Path,
                 now: Callable[[], float] = time.time) -> None:
        self.login_required = api_key is not None
        self._api_key = api_key.encode() if api_key is not None else None
        self._secret = self._api_key if self._api_key is not None else _local_secret(folder)
        self._now = now

    def _mac(self, *parts: str) -> str:
        message = "|".join(parts).encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def key_matches(self, offered: str) -> bool:
        return self._api_key is not None and hmac.compare_digest(offered.encode(),
                                                                 self._api_key)

    def new(self) -> str:
        """A new session's cookie value."""
        issued, nonce = str(int(self._now())), secrets.token_urlsafe(18)
        return f"{issued}.{nonce}.{self._mac('session', issued, nonce)}"

    def session(self, value: str | None) -> str | None:
        """The session's nonce when the cookie is one of ours and not expired, else None."""
        parts = (value or "").split(".")
        if len(parts) != 3:
            return None
        issued, nonce, mac = parts
        if not (issued.isdigit() and nonce and mac):
            return None
        if not hmac.compare_digest(mac, self._mac("session", issued, nonce)):
            return None
        if not 0 <= self._now() - int(issued) < SESSION_SECONDS:
            return None
        return nonce

    def csrf_token(self, session: str) -> str:
        return self._mac("csrf", session)

    def csrf_ok(self, session: str, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token, self.csrf_token(session))
