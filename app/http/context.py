"""The request context: what the pipeline and the features learn about one HTTP request.

The edge (app/http/edge.py) creates it before anything else runs and keeps it in the ASGI scope's state;
authentication sets the caller, a route its template, a feature the tokens it consumed; the edge reads it
all back once the response has been sent (metrics, usage).
"""

from __future__ import annotations

from typing import Any

from app.auth.context import Principal, Usage
from app.metrics import in_progress_gauge
from app.metrics_buffer import BUFFER

CONTEXT_KEY = "pylon_context"
REQUEST_ID_HEADER = b"x-request-id"


class RequestContext:
    __slots__ = (
        "admitted_for",
        "app_name",
        "in_progress",
        "method",
        "principal",
        "request_id",
        "template",
        "usage",
    )

    def __init__(self, request_id: str, method: str, app_name: str) -> None:
        self.request_id = request_id
        self.method = method
        self.app_name = app_name
        # The route's template once a route matched (None: no route, counted as `<unmatched>`).
        self.template: str | None = None
        self.principal: Principal | None = None
        # The requirement `principal` was admitted for: a hot route that declines hands it to the routed
        # path, which does not authenticate (or count a rate-limited request) a second time.
        self.admitted_for: Any = None
        self.usage: Usage | None = None
        self.in_progress: Any = None

    @property
    def request_id_header(self) -> tuple[bytes, bytes]:
        return (REQUEST_ID_HEADER, self.request_id.encode())

    def enter_route(self, template: str) -> None:
        """The route is known: count the request in progress under its template (once per request)."""
        if self.in_progress is not None:
            if self.template == template:
                return
            BUFFER.add_to_gauge(self.in_progress, -1)
        self.template = template
        self.in_progress = in_progress_gauge(self.method, template, self.app_name)
        BUFFER.add_to_gauge(self.in_progress, 1)

    def leave_route(self) -> None:
        if self.in_progress is not None:
            BUFFER.add_to_gauge(self.in_progress, -1)
            self.in_progress = None


def context_of(connection: Any) -> RequestContext:
    """The context of a request, from its ASGI scope or a Litestar connection."""
    scope = connection.scope if hasattr(connection, "scope") else connection
    context: RequestContext = scope["state"][CONTEXT_KEY]
    return context


def principal_of(connection: Any) -> Principal | None:
    return context_of(connection).principal
