"""The hot-route registry: matching, and every declared hot route named as Litestar's router names it."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.routes import HTTPRoute

from app import inference, neurons, peer
from app.http.hot import HotRequest, HotRoute, HotRoutes
from app.main import create_app
from tests.conftest import SettingsFactory

HOT_ROUTES = [*neurons.controller.HOT_ROUTES, *peer.controller.HOT_ROUTES, *inference.controller.HOT_ROUTES]


async def never(request: HotRequest) -> int | None:
    raise AssertionError("not called in these tests")


LATEST = HotRoute("GET", "/api/v1/subnet/{netuid:int}/neurons/latest", "neurons:read", never)
ONE = HotRoute("GET", "/api/v1/subnet/{netuid:int}/neurons/latest/{hotkey:str}", "neurons:read", never)
STATIC = HotRoute("POST", "/v1/chat/completions", "inference", never)
REGISTRY = HotRoutes([LATEST, ONE, STATIC])


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/api/v1/subnet/1/neurons/latest", (LATEST, {"netuid": 1})),
        ("GET", "/api/v1/subnet/0042/neurons/latest", (LATEST, {"netuid": 42})),
        ("GET", "/api/v1/subnet/1/neurons/latest/5Abc", (ONE, {"netuid": 1, "hotkey": "5Abc"})),
        ("POST", "/v1/chat/completions", (STATIC, {})),
        # Another method, or a path Litestar would answer otherwise, is not hot.
        ("POST", "/api/v1/subnet/1/neurons/latest", None),
        ("GET", "/v1/chat/completions", None),
        ("GET", "/api/v1/subnet/1/neurons/latest/", None),
        ("GET", "/api/v1/subnet//neurons/latest", None),
        ("GET", "/api/v1/subnet/x1/neurons/latest", None),
        # Digits that are not ASCII (int() would take them), and absurd lengths, are left to the router.
        ("GET", "/api/v1/subnet/\u00b9/neurons/latest", None),
        ("GET", "/api/v1/subnet/\uff11/neurons/latest", None),
        ("GET", "/api/v1/subnet/" + "9" * 21 + "/neurons/latest", None),
        ("GET", "/api/v1/subnet/1/neurons/latest/5Abc/extra", None),
    ],
)
def test_matching(method: str, path: str, expected: Any) -> None:
    assert REGISTRY.match(method, path) == expected


def test_a_parameter_must_be_int_or_str() -> None:
    with pytest.raises(ValueError, match="must be int or str"):
        HotRoute("GET", "/a/{x:float}", "neurons:read", never)


def test_every_hot_route_is_a_routed_route_with_the_same_template_and_scope(
    settings_factory: SettingsFactory,
) -> None:
    """A hot route answers only what its routed twin would; metrics and usage name it by one template."""
    litestar = create_app(settings_factory()).litestar
    routed = {
        (method, route.path_format): handler
        for route in litestar.routes
        if isinstance(route, HTTPRoute)
        for method, handler in route.route_handler_map.items()  # type: ignore[attr-defined]
    }
    assert HOT_ROUTES
    for hot in HOT_ROUTES:
        handler = routed.get((hot.method, hot.template))
        assert handler is not None, f"{hot.method} {hot.template} has no routed handler"
        assert str(handler[0].opt["scope"]) == hot.requirement.scope
        assert bool(handler[0].opt.get("epistula")) == hot.requirement.epistula
