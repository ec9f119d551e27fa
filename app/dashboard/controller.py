"""`GET /dashboard`: the operator's dashboard, and the JSON routes under `/api/v1/dashboard` it polls.

The shell (`/dashboard` and `/dashboard/static/...`: HTML, ES modules, CSS) is open because it holds no
data; the page asks for a token, keeps it in sessionStorage and sends it as a bearer token to the data
routes, which need the `dashboard` scope (or the admin token). Everything is served from package data
(app/dashboard/static/): no CDN, and a Content-Security-Policy that lets the page load nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from litestar import Controller, MediaType, Request, Response, Router, get
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import QueryParameter
from litestar.static_files import create_static_files_router

from app import __version__
from app.auth.scopes import Scope
from app.chain.client import ChainError
from app.chain.metagraph import MetagraphCache
from app.dashboard.schemas import BackendsHealth, MetagraphTable, Overview, UsageOverview, WeightsTimeline
from app.dashboard.service import backends_health, latest_table, usage_overview, weights_timeline
from app.http.context import principal_of
from app.http.inputs import NetuidQuery
from app.keys.runtime import KeysRuntime
from app.neurons.controller import chain_error_handler

STATIC = Path(__file__).parent / "static"
SHELL_OPEN = "the dashboard's HTML, JS and CSS hold no data; its JSON routes need the dashboard scope"
# The page's own files only: a script or stylesheet from anywhere else, or inline, is refused.
SHELL_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
INDEX = (STATIC / "index.html").read_bytes()


@get("/dashboard", opt={"open": SHELL_OPEN}, include_in_schema=False, sync_to_thread=False)
def dashboard_page() -> Response[bytes]:
    """The dashboard's HTML shell."""
    return Response(INDEX, media_type=MediaType.HTML, headers=SHELL_HEADERS)


dashboard_static = create_static_files_router(
    path="/dashboard/static",
    directories=[STATIC],
    name="dashboard_static",
    opt={"open": SHELL_OPEN},
    # Revalidated on every load: an upgraded Pylon's page never runs yesterday's modules.
    cache_control=CacheControlHeader(no_cache=True),
)


def _allowed_netuids(request: Request) -> frozenset[int] | None:
    principal = principal_of(request)
    return None if principal is None else principal.netuids


class DashboardController(Controller):
    """The data behind the dashboard's pages: the features' services, reshaped for a page."""

    path = "/api/v1/dashboard"
    tags = ["dashboard"]
    opt = {"scope": Scope.DASHBOARD}
    exception_handlers = {ChainError: chain_error_handler, TimeoutError: chain_error_handler}

    @get("/overview", sync_to_thread=False)
    def overview(self, request: Request) -> Overview:
        """Who is signed in, Pylon's version and subnet, and the chain head the metagraph cache follows."""
        cache: MetagraphCache = request.app.state.metagraph
        principal = principal_of(request)
        age = cache.head_age()
        return Overview(
            version=__version__,
            principal="anonymous" if principal is None else f"{principal.kind}:{principal.id}",
            netuid=request.app.state.settings.chain.netuid,
            head=cache.head,
            head_age=None if age is None else round(age, 2),
            stale=cache.is_stale(),
        )

    @get("/metagraph", raises=[NotFoundException])
    async def metagraph(self, request: Request, netuid: NetuidQuery = None) -> MetagraphTable:
        """The latest metagraph as rows ordered by uid (the same neurons as `.../neurons/latest`).

        `netuid` defaults to `PYLON_NETUID`; 404 for a subnet that does not exist.
        """
        netuid = request.app.state.settings.chain.netuid if netuid is None else netuid
        allowed = _allowed_netuids(request)
        if allowed is not None and netuid not in allowed:
            raise PermissionDeniedException(f"this API key may not use subnet {netuid}")
        return await latest_table(request.app.state.metagraph, netuid)

    @get("/weights")
    async def weights(
        self, request: Request, limit: Annotated[int, QueryParameter(ge=1, le=500)] = 200
    ) -> WeightsTimeline:
        """The newest `limit` weights jobs of every identity, oldest first, and a count per status."""
        return await weights_timeline(
            request.app.state.weights, limit=limit, netuids=_allowed_netuids(request)
        )

    @get("/usage")
    async def usage(
        self, request: Request, days: Annotated[int, QueryParameter(ge=1, le=366)] = 14
    ) -> UsageOverview:
        """Every key's requests, errors and tokens per UTC day (as `GET /api/v1/keys/{id}/usage`), and
        their sum per day over the last `days` days."""
        runtime: KeysRuntime = request.app.state.keys_runtime
        # This worker's unwritten buckets count too; other workers' land within their flush interval.
        await runtime.usage.flush()
        return await usage_overview(runtime.sessions, days=days)

    @get("/backends", sync_to_thread=False)
    def backends(self, request: Request) -> BackendsHealth:
        """Each inference backend as this worker's router knows it (`/ready` has the summary)."""
        return backends_health(request.app.state.inference.router)


dashboard_router = Router(path="/", route_handlers=[dashboard_page, dashboard_static, DashboardController])
