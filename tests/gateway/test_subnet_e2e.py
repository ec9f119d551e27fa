"""A subnet on one machine: one development chain, three miner Pylons, one validator Pylon with a gateway.

The validator's `pylon serve` runs the development chain's node; each miner is a `pylon serve` in front
of a fake model server (exact, wrong, slow), registered with `pylon localnet register` and posting its
loopback axon with `pylon post-ip --allow-private`. The official `openai` SDK calls the validator's
subnet backend. Every process is shared by the module's tests (one fixture), which run in file order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from app.auth.epistula import sign_request
from app.devchain.genesis import keypair_for
from tests.conftest import PROJECT_ROOT, LiveServer, base_env, free_port
from tests.inference.conftest import FakeBackend

# Not yet passing: on the shared, loaded machine the validator's development node answered reads after
# more than PYLON_CALL_TIMEOUT and the fixture never got past the validator's start. Unfinished work,
# listed in the branch's report; not counted as done.
pytestmark = pytest.mark.skip(
    reason="draft end-to-end run of issue 15, not yet passing (see module docstring)"
)

ADMIN = {"Authorization": "Bearer test-admin-token"}
MODEL_SERVERS = {
    "ref": {},
    "exact": {},
    # Another salt: answers other words than the reference (a wrong model).
    "wrong": {"FAKE_SALT": "wrong"},
    # The reference's words, late.
    "slow": {"FAKE_LATENCY": "0.3"},
}
MINERS = ("exact", "wrong", "slow")
WARM_REQUESTS = 150


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not seen within {timeout}s: {what}")


def server_env(folder: Path, **env: str) -> dict[str, str]:
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("PYLON_")}
    full = {
        **inherited,
        **base_env(folder),
        "PYLON_LOCAL_NEURONS": "16",
        "PYLON_LOCAL_BLOCK_TIME": "0.5",
        "PYLON_WEIGHTS_COALESCE_SECONDS": "0",
        "PYLON_WEIGHTS_POLL_INTERVAL": "0.1",
        **env,
    }
    full.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return full


def pylon(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def dev_hotkey(server: LiveServer) -> str:
    from bittensor_wallet import Wallet

    path = Path(server.env["PYLON_DATA_DIR"]) / "wallets"
    return str(Wallet(name="pylon-dev", hotkey="default", path=str(path)).hotkey.ss58_address)


class Subnet:
    def __init__(self) -> None:
        self.models: dict[str, FakeBackend] = {}
        self.miners: dict[str, LiveServer] = {}
        self.hotkeys: dict[str, str] = {}
        self.validator: LiveServer

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.validator.url}/v1", api_key="test-admin-token", max_retries=0)

    def by_hotkey(self) -> dict[str, str]:
        return {hotkey: name for name, hotkey in self.hotkeys.items()}

    def records(self) -> dict[str, dict[str, Any]]:
        response = httpx.get(f"{self.validator.url}/api/v1/subnet/1/miners", headers=ADMIN, timeout=10)
        assert response.status_code == 200, response.text
        names = self.by_hotkey()
        return {names[m["hotkey"]]: m for m in response.json()["miners"] if m["hotkey"] in names}


@pytest.fixture(scope="module")
def subnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Subnet]:
    root = tmp_path_factory.mktemp("subnet")
    net = Subnet()
    started: list[Any] = []
    try:
        for name, extra in MODEL_SERVERS.items():
            env = {**os.environ, "FAKE_MODELS": "tiny", **extra}
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
            net.models[name] = FakeBackend(free_port(), root / f"model-{name}.log", env)
        node_port = free_port()
        backends = [
            {"name": "ref", "kind": "openai", "base_url": net.models["ref"].url, "models": ["tiny"]},
            {
                "name": "sn1",
                "kind": "subnet",
                "netuid": 1,
                "models": ["sn1"],
                "fanout": 3,
                "upstream_model": "tiny",
                "reference": "ref",
                "request_timeout": 5,
                "total_timeout": 10,
            },
        ]
        net.validator = LiveServer(
            server_env(
                root / "validator",
                PYLON_LOCAL_NODE="true",
                PYLON_LOCAL_NODE_PORT=str(node_port),
                PYLON_BACKENDS=json.dumps(backends),
                PYLON_GATEWAY_FLUSH_INTERVAL="0.5",
            ),
            free_port(),
            root / "validator.log",
        )
        node = {
            "PYLON_LOCAL_NODE": "false",
            "PYLON_LOCAL_NODE_PORT": str(node_port),
            "PYLON_LOCAL_NODE_URL": f"ws://127.0.0.1:{node_port}",
        }
        for name in MINERS:
            upstream = [
                {"name": name, "kind": "openai", "base_url": net.models[name].url, "models": ["tiny"]}
            ]
            net.miners[name] = LiveServer(
                server_env(root / name, **node, PYLON_BACKENDS=json.dumps(upstream)),
                free_port(),
                root / f"miner-{name}.log",
            )
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda fake: fake.start(), net.models.values()))
            started += net.models.values()
            net.validator.start(timeout=120)
            started.append(net.validator)
            list(pool.map(lambda miner: miner.start(timeout=120), net.miners.values()))
            started += net.miners.values()

            def register(name: str) -> None:
                miner = net.miners[name]
                hotkey = net.hotkeys[name] = dev_hotkey(miner)
                done = pylon(miner.env, "localnet", "register", hotkey, "--netuid", "1")
                assert done.returncode == 0, done.stderr
                posted = pylon(
                    miner.env,
                    "post-ip",
                    "--ip",
                    "127.0.0.1",
                    "--port",
                    str(miner.port),
                    "--allow-private",
                    "--yes",
                )
                assert posted.returncode == 0, posted.stdout + posted.stderr

            list(pool.map(register, MINERS))

        def routable() -> bool:
            found = httpx.get(f"{net.validator.url}/api/v1/subnet/1/miners", headers=ADMIN, timeout=10).json()
            return set(net.hotkeys.values()) <= set(found["routable"])

        wait_for(routable, "the three miners' axons in the validator's metagraph")
        yield net
    finally:
        for process in reversed(started):
            process.stop()


def reference_answer(net: Subnet, prompt: str) -> str:
    reply = httpx.post(
        f"{net.models['ref'].url}/v1/chat/completions",
        json={"model": "tiny", "messages": [{"role": "user", "content": prompt}]},
        timeout=10,
    )
    return str(reply.json()["choices"][0]["message"]["content"])


def test_a_miner_refuses_unsigned_and_unregistered_callers(subnet: Subnet) -> None:
    miner = subnet.miners["exact"]
    body = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}).encode()
    url = f"{miner.url}/v1/chat/completions"
    plain = {"Content-Type": "application/json"}
    assert httpx.post(url, content=body, headers=plain, timeout=10).status_code == 401
    stranger = keypair_for(12345, 1, 0)
    signed = {**sign_request(stranger, body, subnet.hotkeys["exact"]), **plain}
    refused = httpx.post(url, content=body, headers=signed, timeout=10)
    assert refused.status_code == 403, refused.text
    assert "not registered" in refused.json()["error"]["message"]
    # The same request signed by the validator (registered, with a permit) is served.
    from bittensor_wallet import Wallet

    wallets = Path(subnet.validator.env["PYLON_DATA_DIR"]) / "wallets"
    validator = Wallet(name="pylon-dev", hotkey="default", path=str(wallets)).hotkey
    accepted = httpx.post(
        url,
        content=body,
        headers={**sign_request(validator, body, subnet.hotkeys["exact"]), **plain},
        timeout=10,
    )
    assert accepted.status_code == 200, accepted.text


def test_scores_rank_the_miners_by_quality_and_speed(subnet: Subnet) -> None:
    client = subnet.client()
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(
            pool.map(
                lambda i: client.chat.completions.create(
                    model="sn1", messages=[{"role": "user", "content": f"question {i}"}], max_tokens=8
                ),
                range(WARM_REQUESTS),
            )
        )
    assert all(answer.choices[0].message.content for answer in answers)
    # Every request went to all three miners (fan-out 3); each is scored in the background.
    records = wait_for(
        lambda: (r := subnet.records()) and all(r[n]["requests"] >= WARM_REQUESTS for n in MINERS) and r,
        "every answer scored",
    )
    scores = {name: records[name]["score"] for name in MINERS}
    assert scores["exact"] > scores["slow"] > scores["wrong"], scores
    assert records["slow"]["latency"] > records["exact"]["latency"] + 0.2, records
    # The durable records, read by the CLI straight from the validator's database.
    shown = wait_for(
        lambda: (
            (out := pylon(subnet.validator.env, "gateway", "miners", "--netuid", "1", "--json")).returncode
            == 0
            and (rows := {m["hotkey"]: m for m in json.loads(out.stdout)["miners"]})
            and all(rows.get(h, {}).get("requests", 0) >= WARM_REQUESTS for h in subnet.hotkeys.values())
            and rows
        ),
        "the records flushed",
    )
    stored = {name: shown[hotkey]["score"] for name, hotkey in subnet.hotkeys.items()}
    assert stored["exact"] > stored["slow"] > stored["wrong"], stored
    table = pylon(subnet.validator.env, "gateway", "miners", "--netuid", "1")
    assert table.returncode == 0 and subnet.hotkeys["exact"][:8] in table.stdout, table.stdout + table.stderr


def test_plain_and_streamed_answers_come_from_the_best_miner(subnet: Subnet) -> None:
    client = subnet.client()
    prompt = "which miner answers?"
    expected = reference_answer(subnet, prompt)
    plain = client.chat.completions.create(model="sn1", messages=[{"role": "user", "content": prompt}])
    assert plain.choices[0].message.content == expected
    before = {name: subnet.models[name].stats()["requests"] for name in MINERS}
    chunks = client.chat.completions.create(
        model="sn1", messages=[{"role": "user", "content": prompt}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == expected
    after = {name: subnet.models[name].stats()["requests"] for name in MINERS}
    assert after["exact"] == before["exact"] + 1, (before, after)
    completion = client.completions.create(model="sn1", prompt="a text completion", max_tokens=4)
    assert completion.choices[0].text
    vectors = client.embeddings.create(model="sn1", input="embed me")
    assert len(vectors.data[0].embedding) == 8


def test_scores_become_weights_on_chain(subnet: Subnet) -> None:
    made = httpx.post(
        f"{subnet.validator.url}/api/v1/subnet/1/weights/from-scores", headers=ADMIN, timeout=10
    )
    assert made.status_code == 202, made.text
    job = made.json()
    names = subnet.by_hotkey()
    weights = {names[hotkey]: weight for hotkey, weight in job["weights"].items()}
    assert weights["exact"] > weights["slow"] > weights["wrong"], weights

    def finished() -> dict[str, Any] | None:
        found = httpx.get(
            f"{subnet.validator.url}/api/v1/weights/jobs/{job['job_id']}", headers=ADMIN, timeout=10
        )
        data: dict[str, Any] = found.json()
        return data if data["status"] not in ("pending", "running") else None

    landed = wait_for(finished, "the weights job applied")
    assert landed["status"] == "set", landed
    me = dev_hotkey(subnet.validator)

    def updated() -> bool:
        found = httpx.get(
            f"{subnet.validator.url}/api/v1/subnet/1/neurons/latest/{me}", headers=ADMIN, timeout=10
        )
        return bool(found.json()["neuron"]["last_update"] >= landed["applied_block"])

    wait_for(updated, "the validator's last_update at the weights' block")
    bad = httpx.post(
        f"{subnet.validator.url}/api/v1/subnet/1/weights/from-scores",
        headers=ADMIN,
        json={"min_requests": 1, "unknown": 1},
        timeout=10,
    )
    assert bad.status_code == 400, bad.text


def test_a_killed_miner_is_routed_around(subnet: Subnet) -> None:
    subnet.miners["slow"].stop()
    failures_before = subnet.records()["slow"]["failures"]
    client = subnet.client()
    prompt = "is anyone there?"
    expected = reference_answer(subnet, prompt)
    for _ in range(10):
        answer = client.chat.completions.create(model="sn1", messages=[{"role": "user", "content": prompt}])
        assert answer.choices[0].message.content == expected
    wait_for(
        lambda: subnet.records()["slow"]["failures"] >= failures_before + 10, "the dead miner's failures"
    )
