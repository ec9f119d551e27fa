"""Fast checks of the gateway's parts: allowed networks, selection, scoring, the records' merge."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from app.chain.client import AxonInfo, Neuron, Stakes
from app.devchain.client import SimulatedChainClient
from app.gateway.networks import AllowedNetworks
from app.gateway.records import MinerRecords
from app.gateway.scoring import Answer, Reference, WeightedScorer, cosine, text_similarity
from app.gateway.selection import WARMUP, Miner, choose, eligible_miners
from app.gateway.transport import EpistulaTransport, MinerRefused
from app.inference.upstream import UpstreamPool
from app.settings import SettingsError, load_settings
from tests.conftest import base_env, migrate


def neuron(uid: int, ip: str, port: int = 8091, permit: bool = False) -> Neuron:
    return Neuron(
        uid=uid,
        coldkey=f"c{uid}",
        hotkey=f"h{uid}",
        active=True,
        axon_info=AxonInfo(ip=ip, port=port, protocol=4),
        stake=0.0,
        rank=0.0,
        emission=0.0,
        incentive=0.0,
        consensus=0.0,
        trust=0.0,
        validator_trust=0.0,
        dividends=0.0,
        last_update=0,
        validator_permit=permit,
        pruning_score=0,
        stakes=Stakes(alpha=0.0, tao=0.0, total=0.0),
    )


def test_local_network_allows_loopback_only() -> None:
    local = AllowedNetworks.for_network("local", [])
    assert local.allows("127.0.0.1") and local.allows("::1")
    for ip in ("8.8.8.8", "10.0.0.1", "192.0.2.7", "0.0.0.0", "not-an-ip"):
        assert not local.allows(ip), ip


def test_production_allows_public_and_listed_only() -> None:
    public = AllowedNetworks.for_network("finney", [])
    assert public.allows("8.8.8.8")
    for ip in ("10.1.2.3", "192.168.1.1", "169.254.0.1", "224.0.0.1", "127.0.0.1", "203.0.113.5", "0.0.0.0"):
        assert not public.allows(ip), ip
    listed = AllowedNetworks.for_network("finney", ["10.0.0.0/8"])
    assert listed.allows("10.1.2.3") and not listed.allows("192.168.1.1")


def test_a_non_loopback_network_is_refused_at_start_on_the_local_chain(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="PYLON_GATEWAY_ALLOWED_NETWORKS"):
        load_settings({**base_env(tmp_path), "PYLON_GATEWAY_ALLOWED_NETWORKS": "10.0.0.0/8"})


async def test_the_simulated_subnets_axons_are_all_refused(tmp_path: Path) -> None:
    settings = load_settings({**base_env(tmp_path), "PYLON_LOCAL_NEURONS": "64"})
    client = SimulatedChainClient.from_settings(settings)
    client.start()
    try:
        neurons = await client.neurons(1)
    finally:
        await client.close()
    documentation = ("192.0.2.", "198.51.100.", "203.0.113.")
    assert len(neurons) == 64
    assert all(n.axon_info.ip.startswith(documentation) or not n.axon_info.port for n in neurons)
    for network in ("local", "finney"):
        allowed = AllowedNetworks.for_network(network, [])
        assert eligible_miners(neurons, allowed, own_hotkey=None, require_no_permit=False) == []


async def test_a_refused_axon_is_never_connected_to() -> None:
    pool = UpstreamPool()
    transport = EpistulaTransport(pool, keypair=None, allowed=AllowedNetworks.for_network("local", []))
    with pytest.raises(MinerRefused):
        await transport.request(
            Miner(hotkey="h", uid=1, ip="192.0.2.1", port=80), "/v1/x", b"{}", read_timeout=1
        )
    # No origin was even prepared: nothing was resolved or connected.
    assert pool.origins == {}
    await pool.close()


def test_eligibility_skips_own_hotkey_unserved_and_permits() -> None:
    allowed = AllowedNetworks.for_network("local", [])
    neurons = [neuron(0, "127.0.0.1"), neuron(1, "127.0.0.1", port=0), neuron(2, "127.0.0.1", permit=True)]
    neurons.append(neuron(3, "127.0.0.1"))
    found = eligible_miners(neurons, allowed, own_hotkey="h3", require_no_permit=True)
    assert [m.uid for m in found] == [0]
    assert len(eligible_miners(neurons, allowed, own_hotkey=None, require_no_permit=False)) == 3


def test_selection_tries_new_miners_then_prefers_scores() -> None:
    records = MinerRecords(None, alpha=0.5, flush_interval=1)
    miners = [Miner(hotkey=f"h{i}", uid=i, ip="127.0.0.1", port=1) for i in range(4)]
    rng = random.Random(1)
    for index, miner in enumerate(miners):
        for _ in range(WARMUP):
            records.record(records.get(1, miner.hotkey), ok=True, score=index / 4, latency=0.01)
    fresh = Miner(hotkey="new", uid=9, ip="127.0.0.1", port=1)
    chosen = choose(1, [*miners, fresh], records, 2, exploration=0.0, rng=rng)
    assert [m.hotkey for m in chosen] == ["new", "h3"]
    explored = {choose(1, miners, records, 2, exploration=1.0, rng=rng)[-1].hotkey for _ in range(50)}
    assert explored <= {"h0", "h1"} and explored


async def test_scorer_combines_accuracy_and_speed() -> None:
    scorer = WeightedScorer(0.7, 0.3, speed_scale=1.0)
    answers = [
        Answer(hotkey="a", ok=True, latency=0.0, text="amber basalt cedar"),
        Answer(hotkey="b", ok=True, latency=1.0, text="amber basalt cedar"),
        Answer(hotkey="c", ok=True, latency=0.0, text="zephyr onyx kelp"),
        Answer(hotkey="d", ok=False, latency=0.0),
    ]
    scores = await scorer.score("chat", answers, Reference(text="amber basalt cedar"), None)
    assert scores[0] == pytest.approx(1.0)
    assert scores[1] == pytest.approx(0.7 + 0.3 * 0.5)
    assert scores[2] == pytest.approx(0.3)
    assert scores[3] == 0.0
    # Without a reference: validity and speed.
    assert (await scorer.score("chat", answers, None, None))[2] == pytest.approx(1.0)

    async def embed(texts: list[str]) -> list[list[float]]:
        return [[1.0, 0.0] if "amber" in text else [0.0, 1.0] for text in texts]

    by_embedding = await scorer.score("chat", answers, Reference(text="amber"), embed)
    assert by_embedding[0] == pytest.approx(1.0) and by_embedding[2] == pytest.approx(0.3)
    assert cosine([1, 0], [-1, 0]) == 0.0 and text_similarity("a b", "a b") == 1.0


async def test_records_merge_two_workers_exactly(settings_factory) -> None:  # type: ignore[no-untyped-def]
    from app.db import create_engine

    settings = settings_factory()
    migrate(settings)
    engine = create_engine(settings)
    first = MinerRecords(engine, alpha=0.5, flush_interval=60)
    second = MinerRecords(engine, alpha=0.5, flush_interval=60)
    await first.start([1])
    await second.start([1])
    expected: float | None = None
    for records, value in ((first, 1.0), (second, 0.0), (first, 1.0)):
        records.record(records.get(1, "h"), ok=True, score=value, latency=0.1)
        # One exponential average over the three, in order, started at the first value.
        expected = value if expected is None else 0.5 * expected + 0.5 * value
        await records.flush()
    await second.flush()
    merged = second.views(1)[0]
    assert merged.requests == 3 and merged.successes == 3
    assert merged.score == pytest.approx(expected)
    await first.close()
    await second.close()
    await engine.dispose()
