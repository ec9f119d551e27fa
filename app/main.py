"""The Litestar application: `create_app(settings)` lists every router, plugin and hook in one place."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin
from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from app import __version__, inference, neurons, peer
from app.chain.lifespan import chain_lifespan
from app.dashboard.controller import dashboard_router
from app.db import alchemy_config
from app.errors import EXCEPTION_HANDLERS, ErrorResponse
from app.fiber.controller import fiber_lifespan, fiber_router
from app.fiber.envelope import FiberEnvelope
from app.gateway.controller import GatewayController, gateway_lifespan
from app.health import database_check, health, ready, ready_checks
from app.http.admission import admission_middleware
from app.http.authenticate import authentication_lifespan
from app.http.edge import PylonEdge
from app.http.inputs import input_middleware
from app.http.openapi import ErrorResponsesPlugin
from app.http.security import cors_config, response_headers
from app.inference.controller import inference_lifespan, inference_router
from app.keys.controller import KeyController
from app.keys.runtime import keys_lifespan
from app.logging import configure_logging
from app.metrics import metrics_endpoint
from app.metrics_buffer import metrics_lifespan
from app.neurons.controller import neurons_router
from app.peer.controller import peer_router
from app.settings import Settings, load_settings, secret_values
from app.swagger import LocalSwaggerRenderPlugin
from app.tasks.controller import TasksController
from app.tasks.runtime import tasks_lifespan
from app.upstreams.controller import upstream_routes, upstreams_lifespan
from app.weights.controller import WeightsController
from app.weights.runtime import weights_lifespan


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Pylon",
        version=__version__,
        description="A gateway for Bittensor subnets: metagraph reads, weights, inference and API keys.",
        path="/schema",
        render_plugins=[LocalSwaggerRenderPlugin(path="/swagger"), JsonRenderPlugin(path="/openapi.json")],
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer", description="Pylon API key")
            }
        ),
        security=[{"bearer": []}],
    )


async def freeze_startup_objects(_app: Litestar) -> None:
    """Move everything built at startup (app, routes, schemas, libraries) out of the collector's way.

    A full (gen2) collection walked all of it: 50-90 ms pauses every second or two under load, which
    were the p99. Frozen objects are still freed normally if they lose their last reference.
    """
    gc.collect()
    gc.freeze()


async def unfreeze_objects(_app: Litestar) -> None:
    # Let the collector see them again: a process that builds several apps (the tests) would keep every
    # stopped app's reference cycles forever.
    gc.unfreeze()


def create_app(settings: Settings | None = None) -> PylonEdge:
    """Build the app. granian calls this with no argument in each worker, which reads the environment.

    What granian serves is the edge (app/http/edge.py): request id, HTTP metrics and usage for every
    request, and the hot routes each feature declares beside its controller, around the Litestar app.
    """
    settings = settings or load_settings()
    configure_logging(settings.logging, redact=secret_values(settings))
    db_config = alchemy_config(settings)

    @asynccontextmanager
    async def database_ready(app: Litestar) -> AsyncIterator[None]:
        ready_checks(app.state)["database"] = database_check(db_config.get_engine())
        yield

    def keep_settings(app_config: AppConfig) -> AppConfig:
        app_config.state["settings"] = settings
        return app_config

    litestar = Litestar(
        route_handlers=[
            health,
            ready,
            metrics_endpoint,
            neurons_router,
            peer_router,
            WeightsController,
            KeyController,
            GatewayController,
            inference_router(settings),
            dashboard_router,
            TasksController,
            fiber_router,
            *upstream_routes(settings),
        ],
        plugins=[SQLAlchemyPlugin(config=db_config), ErrorResponsesPlugin(ErrorResponse)],
        on_app_init=[keep_settings],
        lifespan=[
            metrics_lifespan,
            database_ready,
            # The chain first: it provides the metagraph the keys runtime checks Epistula signers against.
            chain_lifespan,
            keys_lifespan(db_config.get_engine()),
            fiber_lifespan,
            authentication_lifespan,
            weights_lifespan(db_config.get_engine()),
            # After chain and weights (it reads the metagraph, submits jobs), before inference (it builds
            # the subnet backends).
            gateway_lifespan(db_config.get_engine()),
            inference_lifespan(settings),
            # After inference: tasks run through its router.
            tasks_lifespan(db_config.get_engine()),
            upstreams_lifespan(settings),
        ],
        # Last, once every lifespan hook above has built its objects.
        on_startup=[freeze_startup_objects],
        on_shutdown=[unfreeze_objects],
        # Every matched route's declared scope (app/http/authenticate.py), then its inputs' rules.
        middleware=[admission_middleware, input_middleware],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        # Browser edges (app/http/security.py): CORS from PYLON_CORS_*, security headers on every answer.
        cors_config=cors_config(settings.cors),
        response_headers=response_headers(),
        openapi_config=openapi_config(),
        request_max_body_size=settings.max_body_size,
        logging_config=None,
        debug=False,
    )
    return PylonEdge(
        litestar,
        hot_routes=[
            *neurons.controller.HOT_ROUTES,
            *peer.controller.HOT_ROUTES,
            *inference.controller.HOT_ROUTES,
        ],
        # Fiber's MLTS calls: opened, routed as any request, sealed (app/fiber/envelope.py).
        envelopes=[FiberEnvelope(settings.inference.inference_max_body_size)],
    )
