"""Swagger UI works offline: the page loads its JavaScript, CSS and icon from Pylon itself, never a CDN."""

from __future__ import annotations

import re

from litestar.testing import AsyncTestClient

ASSET_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


def asset_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)


async def test_swagger_page_references_only_same_origin_assets(client: AsyncTestClient) -> None:
    page = await client.get("/schema/swagger")
    assert page.status_code == 200
    urls = asset_urls(page.text)
    assert any(url.endswith("swagger-ui-bundle.js") for url in urls), urls
    assert any(url.endswith("swagger-ui.css") for url in urls), urls
    assert any(url.endswith("swagger-ui-standalone-preset.js") for url in urls), urls
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"not same-origin: {url}"
    assert "cdn" not in page.text.lower()


async def test_swagger_assets_are_served_with_their_types(client: AsyncTestClient) -> None:
    page = await client.get("/schema/swagger")
    for url in asset_urls(page.text):
        asset = await client.get(url)
        assert asset.status_code == 200, url
        kind = next(kind for suffix, kind in ASSET_TYPES.items() if url.endswith(suffix))
        assert kind in asset.headers["content-type"], (url, asset.headers["content-type"])
        assert len(asset.content) > 500, url
        assert "max-age" in asset.headers.get("cache-control", "")


async def test_swagger_bundle_is_swagger_ui_5(client: AsyncTestClient) -> None:
    # Litestar writes OpenAPI 3.1, which Swagger UI renders from version 5 on.
    bundle = await client.get("/schema/swagger-ui/swagger-ui-bundle.js")
    assert re.search(r'PACKAGE_VERSION:"5\.', bundle.text)


async def test_a_missing_asset_is_404(client: AsyncTestClient) -> None:
    response = await client.get("/schema/swagger-ui/no-such-file.js")
    assert response.status_code == 404
