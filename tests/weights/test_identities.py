"""Identities: settings, wallets, the dev wallet, and which identity an API key may act as."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from bittensor_wallet import Wallet
from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.exceptions import PermissionDeniedException
from litestar.types import ASGIApp, Receive, Scope, Send

from app.auth.context import Principal
from app.chain.lifespan import chain_lifespan
from app.db import create_engine
from app.errors import EXCEPTION_HANDLERS
from app.http.context import CONTEXT_KEY, RequestContext
from app.settings import Settings, SettingsError, load_settings
from app.weights.controller import WeightsController, identity_for, visible_identities
from app.weights.identities import DEV_WALLET_NAME, IdentityError, ensure_dev_wallet, load_identities
from app.weights.runtime import weights_lifespan
from tests.client import PylonTestClient
from tests.weights.conftest import hotkeys, wait_job


def make_wallet(path: Path, name: str) -> str:
    wallet = Wallet(name=name, hotkey="default", path=str(path))
    wallet.create_if_non_existent(coldkey_use_password=False, hotkey_use_password=False, suppress=True)
    return str(wallet.hotkey.ss58_address)


def identity_env(wallets: Path) -> dict[str, str]:
    return {
        "PYLON_IDENTITIES": "alpha,beta",
        "PYLON_IDENTITY_ALPHA_WALLET_NAME": "alpha-wallet",
        "PYLON_IDENTITY_ALPHA_WALLET_PATH": str(wallets),
        "PYLON_IDENTITY_BETA_WALLET_NAME": "beta-wallet",
        "PYLON_IDENTITY_BETA_WALLET_PATH": str(wallets),
        "PYLON_IDENTITY_BETA_NETUIDS": "2",
        "PYLON_LOCAL_NETUIDS": "1,2",
    }


def test_identities_are_read_from_dynamic_variables(tmp_path: Path) -> None:
    settings = load_settings(
        {**identity_env(tmp_path), "PYLON_WALLET_NAME": "main", "PYLON_WALLET_HOTKEY": "hk"}
    )
    assert [i.name for i in settings.identities] == ["alpha", "beta"]
    assert settings.identities[0].wallet_path == str(tmp_path)
    assert settings.identities[0].netuids is None
    assert settings.identities[1].netuids == [2]
    assert (settings.wallet.name, settings.wallet.hotkey) == ("main", "hk")


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"PYLON_IDENTITIES": "alpha"}, "PYLON_IDENTITY_ALPHA_WALLET_NAME"),
        ({"PYLON_IDENTITIES": "al pha"}, "PYLON_IDENTITIES"),
        ({"PYLON_IDENTITIES": "default"}, "PYLON_IDENTITIES"),
        ({"PYLON_IDENTITIES": "a,a", "PYLON_IDENTITY_A_WALLET_NAME": "w"}, "PYLON_IDENTITIES"),
        (
            {"PYLON_IDENTITIES": "a", "PYLON_IDENTITY_A_WALLET_NAME": "w", "PYLON_IDENTITY_A_NETUIDS": "x"},
            "NETUIDS",
        ),
        ({"PYLON_WEIGHTS_RETRY_START": "0"}, "PYLON_WEIGHTS_RETRY_START"),
        ({"PYLON_WEIGHTS_MAX_ATTEMPTS": "0"}, "PYLON_WEIGHTS_MAX_ATTEMPTS"),
    ],
)
def test_bad_identity_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings(env)


def test_dev_wallet_is_created_once_in_the_data_dir_for_local_only(tmp_path: Path) -> None:
    settings = load_settings({"PYLON_DATA_DIR": str(tmp_path), "PYLON_NETWORK": "local"})
    first = load_identities(settings)["default"]
    assert (tmp_path / "wallets" / DEV_WALLET_NAME / "hotkeys" / "default").exists()
    assert load_identities(settings)["default"].hotkey_ss58 == first.hotkey_ss58, "the same wallet on restart"

    finney = msgspec.structs.replace(
        settings, chain=msgspec.structs.replace(settings.chain, network="finney")
    )
    with pytest.raises(IdentityError, match="refusing"):
        ensure_dev_wallet(finney)
    assert "default" not in load_identities(finney), (
        "no wallet configured, no default identity on a real network"
    )


def test_missing_wallet_fails_at_start_naming_the_identity(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "PYLON_DATA_DIR": str(tmp_path),
            "PYLON_IDENTITIES": "alpha",
            "PYLON_IDENTITY_ALPHA_WALLET_NAME": "missing",
            "PYLON_IDENTITY_ALPHA_WALLET_PATH": str(tmp_path / "none"),
        }
    )
    with pytest.raises(IdentityError, match="identity 'alpha'"):
        load_identities(settings)


def key(identity: str | None = None, netuids: frozenset[int] | None = None) -> Principal:
    return Principal(
        kind="api_key", id="k1", scopes=frozenset({"weights:write"}), identity=identity, netuids=netuids
    )


def test_identity_for_enforces_the_key_binding() -> None:
    admin = Principal(kind="admin_token", id="admin", scopes=frozenset())
    assert identity_for(None, None, 1) == "default"
    assert identity_for(None, "beta", 1) == "beta"
    assert identity_for(admin, "beta", 1) == "beta"
    assert identity_for(key("alpha"), None, 1) == "alpha", "routes without identity act as the key's identity"
    assert identity_for(key("alpha"), "alpha", 1) == "alpha"
    assert identity_for(key(None), None, 1) == "default"
    with pytest.raises(PermissionDeniedException, match="bound to identity 'alpha'"):
        identity_for(key("alpha"), "beta", 1)
    with pytest.raises(PermissionDeniedException):
        identity_for(key(None), "alpha", 1)
    with pytest.raises(PermissionDeniedException, match="subnet 2"):
        identity_for(key("alpha", frozenset({1})), None, 2)
    assert visible_identities(key("alpha")) == ["alpha"]
    assert visible_identities(key(None)) == ["default"]
    assert visible_identities(admin) is None


PRINCIPALS = {
    "alpha-key": key("alpha"),
    "default-key": key(None),
    "alpha-net1-key": key("alpha", frozenset({1})),
}


def principal_middleware(app: ASGIApp) -> ASGIApp:
    """Stands in for the edge and the auth check: the test names its key in a header."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            context = RequestContext("test", scope["method"], "test")
            scope.setdefault("state", {})[CONTEXT_KEY] = context
            name = dict(scope["headers"]).get(b"x-test-key")
            if name:
                context.principal = PRINCIPALS[name.decode()]
        await app(scope, receive, send)

    return middleware


def app_with_principals(settings: Settings) -> Litestar:
    def keep_settings(app_config: AppConfig) -> AppConfig:
        app_config.state["settings"] = settings
        return app_config

    return Litestar(
        route_handlers=[WeightsController],
        on_app_init=[keep_settings],
        lifespan=[chain_lifespan, weights_lifespan(create_engine(settings))],
        middleware=[principal_middleware],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
    )


async def test_bound_keys_through_requests(tmp_path: Path, weights_settings: Callable[..., Settings]) -> None:
    wallets = tmp_path / "wallets-elsewhere"
    alpha_hotkey = make_wallet(wallets, "alpha-wallet")
    make_wallet(wallets, "beta-wallet")
    settings = weights_settings(**identity_env(wallets))
    async with PylonTestClient(app=app_with_principals(settings)) as client:
        keys = await hotkeys(client)
        body = {"weights": {keys[0]: 1.0}}

        def as_key(name: str) -> dict[str, str]:
            return {"x-test-key": name}

        denied = await client.put(
            "/api/v1/identity/beta/subnet/2/weights", json=body, headers=as_key("alpha-key")
        )
        assert denied.status_code == 403
        assert "bound to identity 'alpha'" in denied.json()["detail"]
        denied = await client.put(
            "/api/v1/identity/alpha/subnet/1/weights", json=body, headers=as_key("default-key")
        )
        assert denied.status_code == 403
        # beta is limited to netuid 2 by PYLON_IDENTITY_BETA_NETUIDS.
        denied = await client.put("/api/v1/identity/beta/subnet/1/weights", json=body)
        assert denied.status_code == 403 and "PYLON_IDENTITY_BETA_NETUIDS" in denied.json()["detail"]
        denied = await client.put("/api/v1/subnet/2/weights", json=body, headers=as_key("alpha-net1-key"))
        assert denied.status_code == 403

        # A key bound to alpha using bittensor-pylon's identity-less route signs as alpha.
        accepted = await client.put("/api/v1/subnet/1/weights", json=body, headers=as_key("alpha-key"))
        assert accepted.status_code == 202 and accepted.json()["identity"] == "alpha"
        job = await wait_job(client, accepted.json()["job_id"])
        assert job["status"] == "set" and job["hotkey"] == alpha_hotkey

        beta = await client.put("/api/v1/identity/beta/subnet/2/weights", json=body)
        assert beta.status_code == 202 and beta.json()["identity"] == "beta"
        default = await client.put("/api/v1/subnet/1/weights", json=body, headers=as_key("default-key"))
        assert default.json()["identity"] == "default"

        # Reads are limited to the key's identity.
        seen = (await client.get("/api/v1/weights/jobs", headers=as_key("alpha-key"))).json()["jobs"]
        assert {j["identity"] for j in seen} == {"alpha"}
        everything = (await client.get("/api/v1/weights/jobs")).json()["jobs"]
        assert {j["identity"] for j in everything} == {"alpha", "beta", "default"}
        hidden = await client.get(
            f"/api/v1/weights/jobs/{beta.json()['job_id']}", headers=as_key("alpha-key")
        )
        assert hidden.status_code == 404
        forbidden = await client.get("/api/v1/weights/jobs?identity=beta", headers=as_key("alpha-key"))
        assert forbidden.status_code == 403
        last = await client.get("/api/v1/subnet/1/weights/last", headers=as_key("alpha-key"))
        assert last.status_code == 200 and last.json()["identity"] == "alpha"
