"""The test client for what `create_app()` returns: the edge (app/http/edge.py) around the Litestar app."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient


class PylonTestClient(AsyncTestClient):  # type: ignore[type-arg]
    """Litestar's async test client, keeping `client.app` the app it was given.

    Litestar's client wraps any app that is not a Litestar instance in a function; the edge sets up the
    scope's state itself, and tests reach `client.app.state` (the Litestar app's state, which the edge
    exposes) as before.
    """

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app=app, **kwargs)
        self.app = app
