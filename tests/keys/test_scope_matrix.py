"""Every route in the app is guarded: walked generically, so routes added by any feature are covered."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient

from app.auth.scopes import Scope
from app.http.admission import OPEN_PATH_PREFIXES
from tests.keys.helpers import bearer, create_key

# The only routes anyone may call without credentials. Adding to this list is a deliberate act.
OPEN_ROUTES = {
    "/health",
    "/ready",
    # The miner's readiness with each upstream (app/upstreams/): names, statuses and latencies only.
    "/status",
    # Fiber: the miner's RSA public key and hotkey (public by design), and whether it takes work now.
    "/public-encryption-key",
    "/availability",
    # bittensor-pylon's identity list (names and netuids only) and its 1.x login (the token is in the body).
    "/api/v1/identities",
    "/api/_unstable/identities",
    "/api/v1/login/identity/{identity_name:str}",
    # The dashboard's HTML, JS and CSS: no data; the JSON routes they call need the `dashboard` scope.
    "/dashboard",
    "/dashboard/static/{file_path:path}",
}
SAMPLE_VALUES = {"int": "1", "float": "1.5", "uuid": "00000000-0000-4000-8000-000000000000", "path": "x/y"}
PARAM_RE = re.compile(r"\{(\w+):(\w+)\}")


def concrete_path(path: str) -> str:
    return PARAM_RE.sub(lambda m: SAMPLE_VALUES.get(m.group(2), "x"), path)


def guarded_endpoints(app: Litestar) -> Iterator[tuple[str, str, HTTPRouteHandler]]:
    for route in app.litestar.routes:
        if not isinstance(route, HTTPRoute) or route.path.startswith(OPEN_PATH_PREFIXES):
            continue
        for handler in route.route_handlers:
            for method in sorted(handler.http_methods - {"OPTIONS", "HEAD"}):
                yield method, route.path, handler


def test_every_route_declares_a_scope_or_is_on_the_open_list(app: Litestar) -> None:
    endpoints = list(guarded_endpoints(app))
    assert endpoints, "no routes found"
    for method, path, handler in endpoints:
        if "open" in handler.opt:
            assert path in OPEN_ROUTES, f"{method} {path} is open but not on the allow-list"
        else:
            assert handler.opt.get("scope") in set(Scope), f"{method} {path} declares no known scope"


async def test_unauthenticated_and_wrong_scope_calls_are_refused(
    app: Litestar, client: AsyncTestClient
) -> None:
    keys_without = {}
    for scope in Scope:
        others = [str(s) for s in Scope if s != scope]
        keys_without[str(scope)] = (await create_key(client, others))["key"]
    checked = 0
    for method, path, handler in guarded_endpoints(app):
        if "open" in handler.opt:
            continue
        url = concrete_path(path)
        anonymous = await client.request(method, url)
        assert anonymous.status_code == 401, f"{method} {path} without credentials: {anonymous.status_code}"
        scope = str(handler.opt["scope"])
        wrong = await client.request(method, url, headers=bearer(keys_without[scope]))
        assert wrong.status_code == 403, f"{method} {path} without scope {scope}: {wrong.status_code}"
        body = wrong.json()
        # /v1 routes answer in OpenAI's error format, the rest in Pylon's.
        message = body["error"]["message"] if "error" in body else body["detail"]
        assert scope in message
        checked += 1
    assert checked >= 6


async def test_a_route_without_a_declaration_is_refused(app: Litestar, client: AsyncTestClient) -> None:
    from litestar import get

    @get("/undeclared", sync_to_thread=False)
    def undeclared() -> str:
        return "should not be reachable"

    app.litestar.register(undeclared)
    response = await client.get("/undeclared", headers={"Authorization": "Bearer test-admin-token"})
    assert response.status_code == 403


@pytest.mark.parametrize("path", ["/schema/openapi.json", "/health", "/ready", "/status"])
async def test_open_routes_answer_without_credentials(client: AsyncTestClient, path: str) -> None:
    assert (await client.get(path)).status_code == 200
