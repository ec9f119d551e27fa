"""The Litestar application: `create_app(settings)` lists every router, plugin and hook in one place."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin
from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from app import __version__
from app.auth.guards import authorize
from app.db import alchemy_config
from app.errors import EXCEPTION_HANDLERS
from app.health import database_check, health, ready, ready_checks
from app.inference.controller import inference_lifespan, inference_router
from app.logging import configure_logging, request_id_middleware
from app.metrics import http_metrics_middleware_factory, metrics_endpoint
from app.settings import Settings, load_settings


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Pylon",
        version=__version__,
        description="A gateway for Bittensor subnets: metagraph reads, weights, inference and API keys.",
        path="/schema",
        render_plugins=[SwaggerRenderPlugin(path="/swagger"), JsonRenderPlugin(path="/openapi.json")],
        components=Components(
            security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer", description="Pylon API key")}
        ),
        security=[{"bearer": []}],
    )


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the app. granian calls this with no argument in each worker, which reads the environment."""
    settings = settings or load_settings()
    configure_logging(settings.logging)
    db_config = alchemy_config(settings)

    @asynccontextmanager
    async def database_ready(app: Litestar) -> AsyncIterator[None]:
        ready_checks(app.state)["database"] = database_check(db_config.get_engine())
        yield

    def keep_settings(app_config: AppConfig) -> AppConfig:
        app_config.state["settings"] = settings
        return app_config

    return Litestar(
        route_handlers=[health, ready, metrics_endpoint, inference_router(settings)],
        plugins=[SQLAlchemyPlugin(config=db_config)],
        on_app_init=[keep_settings],
        lifespan=[database_ready, inference_lifespan(settings)],
        guards=[authorize],
        middleware=[request_id_middleware, http_metrics_middleware_factory(settings.app_name)],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        openapi_config=openapi_config(),
        request_max_body_size=settings.max_body_size,
        logging_config=None,
        debug=False,
    )
