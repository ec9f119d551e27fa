"""A validator's bittensor-pylon env file works unchanged: its names are read beside Pylon's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import SettingsError, load_settings, masked

PEER_ENV = {
    "PYLON_BITTENSOR_NETWORK": "ws://127.0.0.1:9944",
    "PYLON_BITTENSOR_WALLET_PATH": "/root/.bittensor/wallets",
    "PYLON_OPEN_ACCESS_TOKEN": "my_open_access_token",
    "PYLON_IDENTITIES": '["sn12", "sn89"]',
    "PYLON_ID_SN12_WALLET_NAME": "sn12_wallet",
    "PYLON_ID_SN12_HOTKEY_NAME": "sn12_hotkey",
    "PYLON_ID_SN12_NETUID": "12",
    "PYLON_ID_SN12_TOKEN": "8GOqUEjyTuYXER790bm8LpSmOIDuPvbr",
    "PYLON_ID_SN89_WALLET_NAME": "sn89_wallet",
    "PYLON_ID_SN89_HOTKEY_NAME": "sn89_hotkey",
    "PYLON_ID_SN89_NETUID": "89",
    "PYLON_ID_SN89_TOKEN": "IEYAWl9rPQAMTV0hqAKAaQtEYqqKws5z",
}


def test_bittensor_pylons_readme_configuration_is_read() -> None:
    settings = load_settings(PEER_ENV)
    assert settings.chain.network == "ws://127.0.0.1:9944"
    assert settings.wallet.path == "/root/.bittensor/wallets"
    assert settings.auth.open_access_token == "my_open_access_token"
    sn12, sn89 = settings.identities
    assert (sn12.name, sn12.wallet_name, sn12.wallet_hotkey, sn12.netuids) == (
        "sn12",
        "sn12_wallet",
        "sn12_hotkey",
        [12],
    )
    assert sn12.wallet_path == "/root/.bittensor/wallets"
    assert sn12.token == "8GOqUEjyTuYXER790bm8LpSmOIDuPvbr"
    assert (sn89.name, sn89.netuids, sn89.token) == ("sn89", [89], "IEYAWl9rPQAMTV0hqAKAaQtEYqqKws5z")


def test_tokens_are_masked_in_the_shown_configuration() -> None:
    shown = str(masked(load_settings(PEER_ENV)))
    for secret in (
        "my_open_access_token",
        "8GOqUEjyTuYXER790bm8LpSmOIDuPvbr",
        "IEYAWl9rPQAMTV0hqAKAaQtEYqqKws5z",
    ):
        assert secret not in shown


def test_pylons_own_names_win_over_the_peers() -> None:
    settings = load_settings(
        {
            **PEER_ENV,
            "PYLON_NETWORK": "finney",
            "PYLON_IDENTITY_SN12_WALLET_NAME": "own",
            "PYLON_IDENTITY_SN12_NETUIDS": "1,12",
        }
    )
    assert settings.chain.network == "finney"
    assert settings.identities[0].wallet_name == "own"
    assert settings.identities[0].netuids == [1, 12]


def test_a_sourced_env_file_without_quotes_still_names_the_identities() -> None:
    env = {**PEER_ENV, "PYLON_IDENTITIES": "[sn12, sn89]"}
    assert [identity.name for identity in load_settings(env).identities] == ["sn12", "sn89"]


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"PYLON_ID_SN89_TOKEN": "8GOqUEjyTuYXER790bm8LpSmOIDuPvbr"}, "share a token"),
        ({"PYLON_IDENTITIES": '["sn12", "SN12"]'}, "listed twice"),
        ({"PYLON_IDENTITIES": '{"sn12": 1}'}, "PYLON_IDENTITIES"),
        ({"PYLON_ID_SN12_NETUID": "twelve"}, "PYLON_ID_SN12_NETUID"),
        ({"PYLON_ID_SN12_WALLET_NAME": ""}, "PYLON_IDENTITY_SN12_WALLET_NAME"),
    ],
)
def test_wrong_values_name_their_variable(changes: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings({**PEER_ENV, **changes})


def test_the_environment_wins_over_the_env_file_whichever_name_each_uses(tmp_path: Path) -> None:
    env_file = tmp_path / "dev.env"
    env_file.write_text("PYLON_NETWORK=local\nPYLON_WALLET_PATH=/from/file\n")
    settings = load_settings({"PYLON_BITTENSOR_NETWORK": "ws://127.0.0.1:9944"}, env_file=str(env_file))
    assert settings.chain.network == "ws://127.0.0.1:9944"
    assert settings.wallet.path == "/from/file"
