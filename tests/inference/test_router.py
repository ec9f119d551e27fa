"""Backend selection without a network: least in-flight per weight, 404 and 503 shapes."""

from __future__ import annotations

import pytest

from app.inference.backends.base import Backend, BackendFailure
from app.inference.errors import InferenceError
from app.inference.router import BackendRouter
from app.settings import BackendSettings


class StubBackend(Backend):
    async def list_models(self):
        return list(self.config.models)

    async def complete(self, endpoint, raw, request):
        raise NotImplementedError

    async def open_stream(self, endpoint, raw, request, include_usage):
        raise NotImplementedError


def router(*specs: tuple[str, list[str], float], cooldown: float = 10) -> BackendRouter:
    backends = [
        StubBackend(BackendSettings(name=name, base_url="http://x", models=models, weight=weight))
        for name, models, weight in specs
    ]
    return BackendRouter(backends, cooldown=cooldown, health_interval=5)


def test_least_in_flight_per_weight_comes_first():
    r = router(("a", ["m"], 1), ("b", ["m"], 3), ("c", ["other"], 1))
    a, b, _ = r.states
    a.in_flight, b.in_flight = 1, 2  # loads 1.0 and 0.67
    assert [s.name for s in r.candidates("m")] == ["b", "a"]
    b.in_flight = 6  # load 2.0
    assert [s.name for s in r.candidates("m")] == ["a", "b"]


def test_equal_loads_rotate():
    r = router(("a", ["m"], 1), ("b", ["m"], 1))
    firsts = {r.candidates("m")[0].name for _ in range(4)}
    assert firsts == {"a", "b"}


def test_unknown_model_is_404():
    with pytest.raises(InferenceError) as caught:
        router(("a", ["m"], 1)).candidates("x")
    assert caught.value.status_code == 404 and caught.value.code == "model_not_found"


def test_failed_backend_is_skipped_then_503_with_retry_after():
    r = router(("a", ["m"], 1), ("b", ["m"], 1), cooldown=12)
    a, b = r.states
    r.failed(a, BackendFailure("boom"))
    assert [s.name for s in r.candidates("m")] == ["b"]
    r.failed(b, BackendFailure("boom"))
    with pytest.raises(InferenceError) as caught:
        r.candidates("m")
    assert caught.value.status_code == 503
    assert 11 <= int(caught.value.headers["Retry-After"]) <= 12


def test_busy_backend_is_not_cooled_down():
    r = router(("a", ["m"], 1))
    r.failed(r.states[0], BackendFailure("429", status=429, cool_down=False))
    assert r.states[0].healthy


async def test_probe_brings_a_backend_back_only_after_its_cooldown():
    r = router(("a", ["m"], 1), cooldown=0)
    r.failed(r.states[0], BackendFailure("boom"))
    assert not r.states[0].healthy
    await r.probe(r.states[0])
    assert r.states[0].healthy and r.states[0].last_error == ""
    r.cooldown = 60
    r.failed(r.states[0], BackendFailure("boom"))
    await r.probe(r.states[0])
    assert not r.states[0].healthy
