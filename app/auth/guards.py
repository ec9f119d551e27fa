"""The one guard every route passes through: it reads the route's declared scope.

A route declares `opt={"scope": Scope.X}` or `opt={"open": "why"}`; a route that declares neither is
refused, so a new route cannot ship unguarded.
"""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

# The OpenAPI schema and Swagger UI are served by Litestar's own handlers, which carry no opt.
OPEN_PATH_PREFIXES = ("/schema",)


def authorize(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    if "open" in handler.opt or connection.scope["path"].startswith(OPEN_PATH_PREFIXES):
        return
    if "scope" not in handler.opt:
        raise PermissionDeniedException("this route declares no scope and is refused")
    # API keys and Epistula signatures are checked here once the keys feature lands.
