"""Weights API on the simulated subnet: set and commit-reveal, retries, expiry, supersede, validation."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY

from tests.client import PylonTestClient
from tests.weights.conftest import chain_of, hotkeys, wait_job


async def test_put_sets_weights_on_chain_and_reports_skipped_hotkeys(wclient: AsyncTestClient) -> None:
    keys = await hotkeys(wclient)
    body = {"weights": {keys[0]: 3.0, keys[1]: 1.0, "5NotOnTheSubnet": 2.0}}
    response = await wclient.put("/api/v1/subnet/1/weights", json=body)
    assert response.status_code == 202, response.text
    accepted = response.json()
    # bittensor-pylon's client reads `detail` and `count`.
    assert accepted["detail"] == "weights update scheduled"
    assert accepted["count"] == 3
    assert accepted["identity"] == "default" and accepted["netuid"] == 1
    assert accepted["skipped_hotkeys"] == ["5NotOnTheSubnet"]

    job = await wait_job(wclient, accepted["job_id"])
    assert job["status"] == "set", job
    assert job["mode"] == "set"
    assert job["attempts"] == 1
    assert job["skipped_hotkeys"] == ["5NotOnTheSubnet"]
    assert job["applied_block"] > job["created_block"] - 1
    assert job["extrinsic_hash"].startswith("0x")
    assert job["epoch_end_block"] >= job["created_block"]

    chain = chain_of(wclient)
    neurons = {n.hotkey: n.uid for n in await chain.neurons(1)}
    me = neurons[job["hotkey"]]
    on_chain = (await chain.weights(1))[me]
    assert on_chain == {neurons[keys[0]]: 65535, neurons[keys[1]]: round(65535 / 3)}

    last = (await wclient.get("/api/v1/subnet/1/weights/last")).json()
    assert last["job_id"] == job["id"] and last["status"] == "set"
    assert last["block"] == job["applied_block"]
    assert last["weights"] == body["weights"]

    metrics = REGISTRY.get_sample_value(
        "pylon_apply_weights_job_duration_seconds_count",
        {"status": "set", "netuid": "1", "identity": "default"},
    )
    assert metrics and metrics >= 1
    attempts = REGISTRY.get_sample_value(
        "pylon_apply_weights_attempt_duration_seconds_count",
        {"status": "success", "netuid": "1", "identity": "default"},
    )
    assert attempts and attempts >= 1


async def test_commit_reveal_subnet_commits_instead_of_setting(
    weights_app_factory: Callable[..., Litestar],
) -> None:
    async with PylonTestClient(app=weights_app_factory(PYLON_LOCAL_COMMIT_REVEAL="true")) as client:
        client.headers["Authorization"] = "Bearer test-admin-token"  # envs/test.env
        keys = await hotkeys(client)
        response = await client.put(
            "/api/v1/subnet/1/weights", json={"weights": {keys[0]: 1.0, keys[1]: 1.0}}
        )
        job = await wait_job(client, response.json()["job_id"])
        assert job["status"] == "committed", job
        assert job["mode"] == "commit"
        assert job["reveal_round"] is not None and job["reveal_round"] > job["applied_block"]
        commits = await chain_of(client).pending_commits(1)
        assert [c.hotkey for c in commits] == [job["hotkey"]]
        last = (await client.get("/api/v1/subnet/1/weights/last")).json()
        assert last["status"] == "committed" and last["reveal_round"] == job["reveal_round"]


async def test_default_netuid_route_uses_pylon_netuid(weights_app_factory: Callable[..., Litestar]) -> None:
    app = weights_app_factory(PYLON_LOCAL_NETUIDS="1,2", PYLON_NETUID="2")
    async with PylonTestClient(app=app) as client:
        client.headers["Authorization"] = "Bearer test-admin-token"  # envs/test.env
        keys = await hotkeys(client, netuid=2)
        response = await client.put("/api/v1/subnet/weights", json={"weights": {keys[0]: 1.0}})
        assert response.status_code == 202
        assert response.json()["netuid"] == 2
        job = await wait_job(client, response.json()["job_id"])
        assert job["status"] == "set" and job["netuid"] == 2


async def test_retries_through_chain_failures_then_lands(wclient: AsyncTestClient) -> None:
    chain = chain_of(wclient)
    keys = await hotkeys(wclient)
    chain.unreachable = True
    response = await wclient.put("/api/v1/subnet/1/weights", json={"weights": {keys[0]: 1.0}})
    assert response.status_code == 202, "a PUT is stored even while the chain is down"
    job_id = response.json()["job_id"]
    failing = await wait_job(wclient, job_id, lambda job: job["attempts"] >= 3 and job["status"] == "pending")
    assert "unreachable" in failing["last_error"]
    assert failing["next_attempt_at"] is not None
    chain.unreachable = False
    job = await wait_job(wclient, job_id)
    assert job["status"] == "set", job
    assert job["attempts"] >= 4
    # The window is fixed by the worker when the PUT could not read the chain.
    assert job["created_block"] is not None and job["epoch_end_block"] is not None
    errors = REGISTRY.get_sample_value(
        "pylon_apply_weights_attempt_duration_seconds_count",
        {"status": "error", "netuid": "1", "identity": "default"},
    )
    assert errors and errors >= 3


async def test_rate_limited_job_expires_when_its_epoch_ends(
    weights_app_factory: Callable[..., Litestar],
) -> None:
    # Epochs of 11 blocks, but weights may be set only every 1000 blocks: the second job cannot land.
    app = weights_app_factory(PYLON_LOCAL_TEMPO="10", PYLON_LOCAL_WEIGHTS_RATE_LIMIT="1000")
    async with PylonTestClient(app=app) as client:
        client.headers["Authorization"] = "Bearer test-admin-token"  # envs/test.env
        keys = await hotkeys(client)
        first = await client.put("/api/v1/subnet/1/weights", json={"weights": {keys[0]: 1.0}})
        assert (await wait_job(client, first.json()["job_id"]))["status"] == "set"
        second = await client.put("/api/v1/subnet/1/weights", json={"weights": {keys[1]: 1.0}})
        job = await wait_job(client, second.json()["job_id"])
        assert job["status"] == "expired", job
        assert "SettingWeightsTooFast" in job["last_error"]
        assert job["attempts"] >= 2
        head = (await chain_of(client).head()).number
        assert head > job["epoch_end_block"]
        assert job["epoch_end_block"] - job["created_block"] <= 10


async def test_permanent_chain_error_fails_without_retrying(wclient: AsyncTestClient) -> None:
    chain = chain_of(wclient)
    keys = await hotkeys(wclient)
    me = wclient.app.state.weights.identities["default"].hotkey_ss58
    chain.chain.set_validator_permit(1, me, permit=False)
    response = await wclient.put("/api/v1/subnet/1/weights", json={"weights": {keys[0]: 1.0}})
    job = await wait_job(wclient, response.json()["job_id"])
    assert job["status"] == "failed"
    assert "NeuronNoValidatorPermit" in job["last_error"]
    assert job["attempts"] == 1


async def test_job_whose_hotkeys_are_all_unknown_fails_with_a_reason(wclient: AsyncTestClient) -> None:
    response = await wclient.put("/api/v1/subnet/1/weights", json={"weights": {"5Unknown": 1.0}})
    assert response.status_code == 202
    assert response.json()["skipped_hotkeys"] == ["5Unknown"]
    job = await wait_job(wclient, response.json()["job_id"])
    assert job["status"] == "failed"
    assert "none of the 1 hotkeys" in job["last_error"]


async def test_newer_put_supersedes_a_pending_job(weights_app_factory: Callable[..., Litestar]) -> None:
    async with PylonTestClient(app=weights_app_factory(PYLON_WEIGHTS_COALESCE_SECONDS="0.5")) as client:
        client.headers["Authorization"] = "Bearer test-admin-token"  # envs/test.env
        keys = await hotkeys(client)
        ids = []
        for key in keys[:3]:
            response = await client.put("/api/v1/subnet/1/weights", json={"weights": {key: 1.0}})
            ids.append(response.json()["job_id"])
        last = await wait_job(client, ids[-1])
        assert last["status"] == "set"
        for older, newer in itertools.pairwise(ids):
            job = (await client.get(f"/api/v1/weights/jobs/{older}")).json()
            assert job["status"] == "superseded", job
            assert job["superseded_by"] == newer
            assert job["attempts"] == 0
        listed = (await client.get("/api/v1/weights/jobs", params={"netuid": 1})).json()["jobs"]
        assert [job["id"] for job in listed] == sorted(ids, reverse=True)
        assert "weights" not in listed[0]
        superseded = (await client.get("/api/v1/weights/jobs", params={"status": "superseded"})).json()[
            "jobs"
        ]
        assert {job["id"] for job in superseded} == set(ids[:-1])


async def test_validation_errors_are_clear(weights_app_factory: Callable[..., Litestar]) -> None:
    async with PylonTestClient(app=weights_app_factory(PYLON_LOCAL_NEURONS="4")) as client:
        client.headers["Authorization"] = "Bearer test-admin-token"  # envs/test.env
        url = "/api/v1/subnet/1/weights"
        cases = [
            ({"weights": {}}, 422, "must not be empty"),
            ({"weights": {"a": -1.0}}, 422, "must not be negative"),
            ({"weights": {"a": 0.0, "b": 0}}, 422, "above 0"),
            ({"weights": {"": 1.0}}, 422, "non-blank"),
            ({"weights": {f"h{i}": 1.0 for i in range(16_385)}}, 422, "at most 16384"),
            ({"weights": {"a": "x"}}, 400, "Validation failed"),
            ({"weights": [["a", 1.0]]}, 400, "Validation failed"),
            ({"weights": {"a": 1.0}, "extra": 1}, 400, "Validation failed"),
            ({}, 400, "Validation failed"),
        ]
        for body, status, detail in cases:
            response = await client.put(url, json=body)
            assert response.status_code == status, (body, response.text)
            assert detail in response.json()["detail"], (body, response.text)
        for raw in (b'{"weights": {"a": 1e999}}', b'{"weights": {"a": NaN}}', b"not json"):
            response = await client.put(url, content=raw, headers={"content-type": "application/json"})
            assert response.status_code == 400, (raw, response.text)
        negative = await client.put(url, json={"weights": {"a": 1.0, "b": -2.0}})
        assert negative.json()["extra"] == {"hotkeys": ["b"]}
        assert (
            await client.put("/api/v1/subnet/99/weights", json={"weights": {"a": 1.0}})
        ).status_code == 404
        jobs = (await client.get("/api/v1/weights/jobs")).json()["jobs"]
        assert jobs == [], "rejected PUTs store nothing"


async def test_unknown_job_and_identity_are_404(wclient: AsyncTestClient) -> None:
    assert (await wclient.get("/api/v1/weights/jobs/12345")).status_code == 404
    response = await wclient.put("/api/v1/identity/nobody/subnet/1/weights", json={"weights": {"a": 1.0}})
    assert response.status_code == 404
    assert "PYLON_IDENTITIES" in response.json()["detail"]
    assert (await wclient.get("/api/v1/subnet/1/weights/last")).status_code == 404
    assert (await wclient.get("/api/v1/weights/jobs", params={"limit": 0})).status_code == 400


@pytest.mark.postgres
async def test_weights_land_with_postgres(
    weights_app_factory: Callable[..., Litestar], postgres_url: str
) -> None:
    async with PylonTestClient(app=weights_app_factory(PYLON_DB_URL=postgres_url)) as client:
        client.headers["Authorization"] = "Bearer test-admin-token"  # envs/test.env
        keys = await hotkeys(client)
        first = await client.put("/api/v1/subnet/1/weights", json={"weights": {keys[0]: 1.0, keys[1]: 2.0}})
        job = await wait_job(client, first.json()["job_id"])
        assert job["status"] == "set", job
        assert job["weights"] == {keys[0]: 1.0, keys[1]: 2.0}
        last = (await client.get("/api/v1/subnet/1/weights/last")).json()
        assert last["job_id"] == job["id"]
