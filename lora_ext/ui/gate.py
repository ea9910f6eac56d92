"""The standalone app's front door: one ASGI middleware in front of every route of the server.

With credentials set, nothing but the login page answers without them: gradio's
routes, its queue (websocket or not), its file and upload routes, our REST API and
FastAPI's ``/openapi.json``/``/docs``. A request passes with a gradio login session
(the cookie gradio sets at login, checked against the server's live tokens) or with
HTTP Basic credentials; each route may then ask for more (the REST API takes Basic
only, gradio's routes take the session only).

Whatever the credentials, the file route serves only gradio's upload/cache folder
(where gradio copies everything the page shows): never the working folder, the data
folder's originals or anything else on the machine.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

from lora_ext.api import PREFIX, credentials_match
from lora_ext.ui import compat

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]

# FastAPI's own description of the REST API: asked for with Basic, like the API.
_API_DOCS = ("/openapi.json", "/docs", "/redoc")


class Gate:
    """ASGI middleware: credentials on every non-public route, and the file route kept to gradio's cache."""

    def __init__(self, app: ASGIApp, credentials: dict[str, str]) -> None:
        self.app = app
        self.credentials = dict(credentials)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if self.credentials and not _is_public(path) and not self._admitted(scope):
            await _refuse(scope, receive, send, 401, "Not authenticated", basic=_wants_basic(path))
            return
        if path.startswith(compat.FILE_ROUTE_PREFIXES) and not _servable(scope, path):
            await _refuse(scope, receive, send, 403, "File not allowed")
            return
        await self.app(scope, receive, send)

    def _admitted(self, scope: Scope) -> bool:
        headers = _headers(scope)
        given = _basic_credentials(headers.get("authorization", ""))
        if given is not None and credentials_match(self.credentials, *given):
            return True
        return compat.session_user(scope.get("app"), _cookies(headers.get("cookie", ""))) is not None


def _is_public(path: str) -> bool:
    return path in compat.PUBLIC_PATHS or path.startswith(compat.PUBLIC_PREFIXES)


def _wants_basic(path: str) -> bool:
    """Challenge with Basic only where Basic is the way in (a browser would pop a dialog on the page's calls)."""
    return path == PREFIX or path.startswith(PREFIX + "/") or path in _API_DOCS


def _servable(scope: Scope, path: str) -> bool:
    """The requested file (after resolving links and ``..``) lies inside gradio's upload/cache folder."""
    prefix = next(prefix for prefix in compat.FILE_ROUTE_PREFIXES if path.startswith(prefix))
    requested = unquote(path[len(prefix) :])
    if "://" in requested:  # gradio would redirect to a URL; the page never asks for one
        return False
    root = os.path.realpath(compat.served_folder(scope.get("app")))
    target = os.path.realpath(requested)
    return target != root and target.startswith(root + os.sep)


def _headers(scope: Scope) -> dict[str, str]:
    return {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope.get("headers", [])}


def _cookies(header: str) -> dict[str, str]:
    from starlette.requests import cookie_parser  # what gradio's ``request.cookies`` reads with

    return cookie_parser(header)


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


async def _refuse(scope: Scope, receive: Any, send: Any, status: int, detail: str, basic: bool = False) -> None:
    if scope["type"] == "websocket":
        from starlette.websockets import WebSocketClose

        await WebSocketClose(code=1008, reason=detail)(scope, receive, send)  # the handshake answers 403
        return
    from starlette.responses import JSONResponse

    headers = {"WWW-Authenticate": "Basic"} if basic else None
    await JSONResponse({"detail": detail}, status_code=status, headers=headers)(scope, receive, send)
