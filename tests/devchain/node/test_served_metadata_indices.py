"""Pallet, call and error indices come from the served metadata, not from the node's code: the shipped runtime
with `SubtensorModule` moved to another pallet index is served, and the unmodified SDK's submissions still
decode, apply and fail with the right error name (which the SDK finds through that index)."""

from __future__ import annotations

from collections.abc import Iterator

import bittensor as bt
import pytest

from app.chain.client import SubnetHyperparams
from app.devchain.node import extrinsics
from app.devchain.node.codec import Runtime
from app.devchain.node.node import build_node

from .conftest import NodeThread, Wallets

MOVED_TO = 200
# A spec version and seed (so a genesis hash) of its own: the SDK caches runtimes by both (memory, disk).
SPEC_VERSION = 318_200
SEED = 318_200


def moved_runtime(runtime: Runtime) -> Runtime:
    """The same runtime, re-encoded with `SubtensorModule` at pallet index `MOVED_TO`."""
    value = runtime.metadata.value
    pallets = value[1]["V15"]["pallets"]
    assert MOVED_TO not in {p["index"] for p in pallets}
    moved = [{**p, "index": MOVED_TO} if p["name"] == "SubtensorModule" else p for p in pallets]
    changed = [value[0], {"V15": {**value[1]["V15"], "pallets": moved}}]
    encoded = runtime.registry.create_scale_object("MetadataVersioned").encode(changed)
    answer = runtime.registry.create_scale_object("Option<Vec<u8>>").encode("0x" + bytes(encoded.data).hex())
    return Runtime("0x" + bytes(answer.data).hex(), {**runtime.runtime_version, "specVersion": SPEC_VERSION})


@pytest.fixture(scope="module")
def moved_node(runtime: Runtime, wallets: Wallets) -> Iterator[NodeThread]:
    served = moved_runtime(runtime)
    assert served.module_error("SubtensorModule", "SettingWeightsTooFast") is not None
    node = build_node(
        served,
        netuids=[1],
        neurons=8,
        seed=SEED,
        block_time=0.5,
        validators=[wallets.hotkey("validator")],
        hyperparams=SubnetHyperparams(tempo=360, weights_rate_limit=100),
    )
    thread = NodeThread(node).start()
    try:
        yield thread
    finally:
        thread.stop()


async def test_submissions_follow_the_served_pallet_index(moved_node: NodeThread, wallets: Wallets):
    call = bt.calls.SubtensorModule.set_mechanism_weights(
        netuid=1, mecid=0, dests=[0, 1], weights=[1, 3], version_key=0
    )
    async with bt.Subtensor(moved_node.url, fallback_endpoints=[], archive_endpoints=[]) as client:
        first = await client.submit_call(call, wallets["validator"], signer="hotkey")
        assert first.success, first.message
        second = await client.submit_call(call, wallets["validator"], signer="hotkey")
    # The SDK encoded the call at the moved index (a call's first byte is its pallet's), and the node read it.
    signed = moved_node.call(lambda node: node.body(node.number_of(first.block_hash))[1:])
    calls = [extrinsics.decode(moved_node.node.runtime, x.data).call_bytes for x in signed]
    assert [c[0] for c in calls] == [MOVED_TO]
    uid = moved_node.call(lambda node: node.chain.head.subnets[1].uid_of(wallets.hotkey("validator")))
    weights = moved_node.call(lambda node: dict(node.chain.head.subnets[1].weights))
    assert dict(weights[uid]) == {0: 21845, 1: 65535}
    # The refusal's module error carries the moved index, and the SDK names it from the served metadata.
    assert not second.success and second.error is not None
    assert second.error.name == "SettingWeightsTooFast"
