"""Every status an operation can answer, in the OpenAPI document, read from the route's own `opt`.

Litestar documents a handler's success status and, when it takes parameters, a 400. The rest follow from
what the route declares, so they are added once, as each route is registered (Litestar's
`ReceiveRoutePlugin` hook), to the handler's `responses`:

- a route with a scope (not `open`): 401 (no, malformed or unknown credential), 403 (scope, netuid,
  model or identity not allowed), 429 (a key's rpm/tpm, Epistula's replay window), 503 (the database or
  the chain away; a backend pool with none healthy);
- a path parameter: 400 and 404; a body (POST, PUT, PATCH): 400 and 413;
- any route: 504 (`X-Pylon-Timeout` passed);
- beyond those, a handler lists what it raises in Litestar's own `raises=` (weights: 404, 422).

The body is `ErrorResponse` (app/errors.py) unless the route's `opt["error_body"]` names another Struct
(the /v1 routes: OpenAI's `{"error": {...}}`).
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.plugins import ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute

from app.http.authenticate import Requirement

WHY = {
    400: "The request is malformed: the body or a parameter is refused (the field is named).",
    401: "No credential, a malformed one, or one Pylon does not know (revoked, expired).",
    403: "The credential is valid but may not do this (scope, netuid, model or identity).",
    404: "Nothing by that name or number.",
    413: "The body is larger than the route accepts.",
    422: "The request is well-formed but cannot be carried out as asked.",
    429: "Too many requests: the key's limit or the signature window; see Retry-After.",
    502: "The upstream answered with an error.",
    503: "A dependency is unavailable (database, chain, backends); see Retry-After where given.",
    504: "The request ran past its `X-Pylon-Timeout`.",
}
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def error_statuses(handler: HTTPRouteHandler, has_path_params: bool) -> set[int]:
    """The error statuses `handler` can answer, from its declarations (see the module docstring)."""
    statuses = {504}
    if Requirement.of(handler.opt) is not None:
        statuses |= {401, 403, 429, 503}
    if has_path_params:
        statuses |= {400, 404}
    if _BODY_METHODS & set(handler.http_methods):
        statuses |= {400, 413}
    return statuses


def _responses(statuses: Iterable[int], body: Any) -> dict[int, ResponseSpec]:
    return {
        status: ResponseSpec(
            data_container=body,
            description=WHY.get(status, HTTPStatus(status).phrase),
            generate_examples=False,
        )
        for status in sorted(statuses)
    }


class ErrorResponsesPlugin(ReceiveRoutePlugin):
    """Adds each operation's error statuses to its handler's `responses` (what Litestar documents)."""

    def __init__(self, default_body: Any) -> None:
        self.default_body = default_body

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute):
            return
        for handler in route.route_handlers:
            if not handler.include_in_schema:
                continue
            body = handler.opt.get("error_body", self.default_body)
            declared = dict(handler.responses or {})
            for status, spec in _responses(
                error_statuses(handler, bool(route.path_parameters)), body
            ).items():
                declared.setdefault(status, spec)
            handler.responses = declared
