"""`pylon post-ip`, `pylon chain dump-metadata` and `pylon serve` against a running `pylon localnet`."""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from app.devchain.node.codec import (
    METADATA_FILE,
    RUNTIME_VERSION_FILE,
    SHIPPED_RUNTIME,
    Runtime,
    read_recorded,
)
from cli.main import app
from cli.post_ip import validate_ip

from .conftest import NodeThread, Wallets

runner = CliRunner()


def post_ip(localnet: NodeThread, wallets: Wallets, name: str, *args: str):
    return runner.invoke(
        app,
        [
            "post-ip",
            "--network",
            localnet.url,
            "--netuid",
            "1",
            "--wallet-name",
            name,
            "--wallet-hotkey",
            "default",
            "--wallet-path",
            str(wallets.path),
            *args,
        ],
        env={"PYLON_ARCHIVE_NETWORK": "", "PYLON_ENV_FILE": ""},
    )


def axon_of(localnet: NodeThread, hotkey: str):
    return localnet.call(
        lambda node: next(n.axon_info for n in node.chain.subnet(1).neurons if n.hotkey == hotkey)
    )


def test_post_ip_changes_the_axon_end_to_end(localnet: NodeThread, wallets: Wallets):
    before = axon_of(localnet, wallets.hotkey("miner"))
    result = post_ip(localnet, wallets, "miner", "--ip", "1.2.3.4", "--port", "8091", "--yes", "--json")
    assert result.exit_code == 0, result.output
    change = json.loads(result.stdout)
    assert change["before"] == {"ip": before.ip, "port": before.port, "protocol": before.protocol}
    assert change["after"] == {"ip": "1.2.3.4", "port": 8091, "protocol": 4}
    axon = axon_of(localnet, wallets.hotkey("miner"))
    assert (axon.ip, axon.port) == ("1.2.3.4", 8091)
    # Only the hotkey signed: the coldkey file was never needed (no password prompt either).
    assert "password" not in result.output.lower()


def test_post_ip_dry_run_sends_nothing(localnet: NodeThread, wallets: Wallets):
    before = axon_of(localnet, wallets.hotkey("miner"))
    result = post_ip(localnet, wallets, "miner", "--ip", "5.6.7.8", "--port", "9000", "--dry-run")
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "5.6.7.8:9000" in output and "Dry run" in output
    time.sleep(1.2)  # two blocks: had anything been sent, it would be in
    assert axon_of(localnet, wallets.hotkey("miner")) == before


def test_post_ip_unregistered_hotkey_is_a_clear_error(localnet: NodeThread, wallets: Wallets):
    result = post_ip(localnet, wallets, "stranger", "--ip", "1.2.3.4", "--port", "8091", "--yes")
    assert result.exit_code == 1
    assert "is not registered on subnet 1" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("ip", "allowed"),
    [
        ("0.0.0.0", False),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("192.168.1.4", False),
        ("::1", False),
        ("fe80::1", False),
        ("1.2.3.4", True),
        ("2606:4700::1111", True),
    ],
)
def test_ip_validation(ip: str, allowed: bool):
    from cli.errors import CliError

    if allowed:
        assert validate_ip(ip, allow_private=False) == ip
    else:
        with pytest.raises(CliError):
            validate_ip(ip, allow_private=False)


def test_private_ip_needs_allow_private(localnet: NodeThread, wallets: Wallets):
    refused = post_ip(localnet, wallets, "miner", "--ip", "192.168.1.4", "--port", "8091", "--yes")
    assert refused.exit_code == 1 and "--allow-private" in " ".join(refused.output.split())
    bad_port = post_ip(localnet, wallets, "miner", "--ip", "1.2.3.4", "--port", "70000", "--yes")
    assert bad_port.exit_code == 1 and "--port" in bad_port.output
    accepted = post_ip(
        localnet, wallets, "miner", "--ip", "192.168.1.4", "--port", "8091", "--allow-private", "--yes"
    )
    assert accepted.exit_code == 0, accepted.output
    assert axon_of(localnet, wallets.hotkey("miner")).ip == "192.168.1.4"


def test_dump_metadata_records_what_localnet_serves(localnet: NodeThread, tmp_path: Path):
    result = runner.invoke(app, ["chain", "dump-metadata", "--network", localnet.url, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    metadata, version = read_recorded(resources.files(SHIPPED_RUNTIME))
    assert json.loads((tmp_path / METADATA_FILE).read_text()) == metadata
    assert json.loads((tmp_path / RUNTIME_VERSION_FILE).read_text()) == version
    # What it wrote is a folder `pylon localnet --metadata-dir` serves.
    assert Runtime.from_dir(tmp_path).spec_version == localnet.node.runtime.spec_version


def test_pylon_serve_reads_the_metagraph_from_localnet(
    localnet: NodeThread, wallets: Wallets, live_server_factory
):
    server = live_server_factory(
        PYLON_NETWORK=localnet.url, PYLON_ARCHIVE_NETWORK="", PYLON_NETUID="1", PYLON_CALL_TIMEOUT="20"
    ).start(timeout=60)
    url = f"http://127.0.0.1:{server.port}/api/v1/subnet/1/neurons/latest"
    headers = {"Authorization": "Bearer test-admin-token"}
    deadline = time.monotonic() + 60
    body = None
    while time.monotonic() < deadline:
        response = httpx.get(url, headers=headers, timeout=10)
        if response.status_code == 200:
            body = response.json()
            break
        time.sleep(0.5)
    assert body is not None, server.log()
    hotkeys = localnet.call(lambda node: [n.hotkey for n in node.chain.head.subnets[1].neurons])
    assert sorted(body["neurons"]) == sorted(hotkeys)
    assert body["neurons"][wallets.hotkey("validator")]["validator_permit"] is True

    # An axon posted on the node shows in the next block's metagraph.
    result = post_ip(localnet, wallets, "miner", "--ip", "4.3.2.1", "--port", "8092", "--yes")
    assert result.exit_code == 0, result.output
    deadline = time.monotonic() + 30
    axon = None
    while time.monotonic() < deadline:
        axon = httpx.get(url, headers=headers, timeout=10).json()["neurons"][wallets.hotkey("miner")][
            "axon_info"
        ]
        if axon["ip"] == "4.3.2.1":
            break
        time.sleep(0.3)
    assert axon == {"ip": "4.3.2.1", "port": 8092, "protocol": 4}
