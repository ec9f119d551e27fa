"""Hot routes: requests answered before Litestar's router, declared by each feature next to its controller.

Validators poll the latest metagraph and clients call inference thousands of times a second; for those
requests Litestar's routing and handler pipeline cost more than the work itself. A feature declares

    HotRoute("GET", "/api/v1/subnet/{netuid:int}/neurons/latest", Scope.NEURONS_READ, serve_latest)

beside the routed handler of the same path, and `create_app()` lists it. The edge (app/http/edge.py)
matches the path, authenticates from memory (the same `Authenticator.check` the routed path uses) and
calls the handler with a `HotRequest`. Anything but a known caller (no or bad credentials, a key not in
this worker's cache, an Epistula signature) goes to the routed path, which renders every refusal; so does
a request the handler declines by returning None before it has sent anything (a cold cache). Either way
the caller's answer is the same: the handler shares its controller's service call and renderer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from litestar.types import HTTPScope, Receive, Send

from app.http.authenticate import Requirement
from app.http.context import RequestContext

# Longest `{name:int}` segment a hot route takes (u64 has 20 digits); longer ones go to the router.
INT_MAX_DIGITS = 20


class HotRequest:
    """What a hot handler gets: the ASGI triple, the app's state, the request context (its caller is
    `context.principal`) and the path parameters."""

    __slots__ = ("context", "params", "receive", "scope", "send", "state")

    def __init__(
        self,
        scope: HTTPScope,
        receive: Receive,
        send: Send,
        state: Any,
        context: RequestContext,
        params: dict[str, Any],
    ) -> None:
        self.scope, self.receive, self.send = scope, receive, send
        self.state = state
        self.context = context
        self.params = params


# Answers and returns the status it sent, or returns None having sent nothing (the routed path answers).
HotHandler = Callable[[HotRequest], Awaitable[int | None]]


class HotRoute:
    """One hot route: method, Litestar-style path template, the scope it requires, its handler."""

    __slots__ = ("handler", "method", "path", "requirement", "segments", "template")

    def __init__(
        self,
        method: str,
        path: str,
        scope: str,
        handler: HotHandler,
        *,
        epistula: bool = False,
        fiber: bool = False,
    ):
        self.method = method
        self.path = path
        self.handler = handler
        self.requirement = Requirement(scope=str(scope), epistula=epistula, fiber=fiber)
        # (literal, None) or (parameter name, its type) per segment.
        self.segments: list[tuple[str, str | None]] = []
        template: list[str] = []
        for part in path.strip("/").split("/"):
            if part.startswith("{") and part.endswith("}"):
                name, _, kind = part[1:-1].partition(":")
                if kind not in ("int", "str"):
                    raise ValueError(f"hot route {path}: parameter {part} must be int or str")
                self.segments.append((name, kind))
                template.append("{" + name + "}")
            else:
                self.segments.append((part, None))
                template.append(part)
        # The template as Litestar's router reports it (the metrics' and usage records' `path` label).
        self.template = "/" + "/".join(template)

    def match(self, parts: Sequence[str]) -> dict[str, Any] | None:
        """The path parameters if `parts` (the path's segments) fit this route."""
        params: dict[str, Any] = {}
        for part, (name, kind) in zip(parts, self.segments, strict=True):
            if kind is None:
                if part != name:
                    return None
            elif kind == "int":
                # ASCII digits only (isdigit() takes superscript and fullwidth digits too); bounded length.
                if not (part.isascii() and part.isdigit()) or len(part) > INT_MAX_DIGITS:
                    return None
                params[name] = int(part)
            elif part:
                params[name] = part
            else:
                return None
        return params


class HotRoutes:
    """The registry: routes without parameters by (method, path), the others by (method, segment count)."""

    def __init__(self, routes: Sequence[HotRoute] = ()) -> None:
        self._static: dict[tuple[str, str], HotRoute] = {}
        self._templated: dict[tuple[str, int], list[HotRoute]] = {}
        for route in routes:
            self.add(route)

    def add(self, route: HotRoute) -> None:
        if all(kind is None for _, kind in route.segments):
            self._static[(route.method, route.template)] = route
        else:
            self._templated.setdefault((route.method, len(route.segments)), []).append(route)

    def match(self, method: str, path: str) -> tuple[HotRoute, dict[str, Any]] | None:
        route = self._static.get((method, path))
        if route is not None:
            return route, {}
        if not self._templated:
            return None
        # Exactly as sent: a trailing or doubled slash gives an empty segment, which no route matches here.
        parts = path[1:].split("/")
        for route in self._templated.get((method, len(parts)), ()):
            params = route.match(parts)
            if params is not None:
                return route, params
        return None
