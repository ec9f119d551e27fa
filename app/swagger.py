"""Swagger UI served whole by Pylon: its JavaScript, CSS and icon come from the `swagger-ui-py` package.

Litestar's `SwaggerRenderPlugin` points the page at a CDN, which leaves a blank page offline or behind a
firewall. This plugin renders the same page with same-origin asset URLs under the schema path
(`/schema/swagger-ui/...`) and serves the package's static folder there.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.static_files import create_static_files_router

ASSETS_PATH = "/swagger-ui"


def swagger_ui_dir() -> Path:
    """The package's static folder, found without importing the package (it pulls in jinja2 and PyYAML)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed: `uv sync`")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


class LocalSwaggerRenderPlugin(SwaggerRenderPlugin):
    """Swagger UI with its assets served by Pylon (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.assets_dir = swagger_ui_dir()

    def receive_router(self, router: Router) -> None:
        super().receive_router(router)
        # The router is the OpenAPI one (at OpenAPIConfig.path): the assets sit beside the page.
        base = f"{router.path.rstrip('/')}{ASSETS_PATH}"
        self.js_url = f"{base}/swagger-ui-bundle.js"
        self.css_url = f"{base}/swagger-ui.css"
        self.standalone_preset_js_url = f"{base}/swagger-ui-standalone-preset.js"
        self.favicon = f"<link rel='icon' type='image/png' href='{base}/favicon-32x32.png'>"
        router.register(
            create_static_files_router(
                path=ASSETS_PATH,
                directories=[self.assets_dir],
                name="swagger_ui_assets",
                # The files change only with the package's version.
                cache_control=CacheControlHeader(max_age=86400, public=True),
                opt={"open": "Swagger UI's static assets"},
            )
        )
