"""Bad input never reaches a 500 (issue 19): every case answers 4xx with a JSON body naming the field.

The cases are the fuzz's and the hand-made probes' findings: non-ASCII digits in path parameters, integers
past what the database stores, strings for numbers, out-of-range netuids, invalid UTF-8, duplicate keys,
control characters in names. Inference is probed on both paths: a fresh key's first request is routed,
its second takes the hot route (app/inference/controller.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

ADMIN = {"Authorization": "Bearer test-admin-token"}  # envs/test.env
JSON = {"Content-Type": "application/json"}
HOTKEY = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
TOO_BIG = 2**63
KEY = {"name": "k", "scopes": ["neurons:read"]}


def names_field(response: Any, field: str) -> None:
    """A 4xx whose JSON body names `field` (in `detail`, or in Litestar's `extra` list)."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    body = response.json()
    assert field in str(body), (field, body)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/subnet/1/neurons/\u00b9", "block_number"),
        ("/api/v1/subnet/1/neurons/\uff11", "block_number"),
        ("/api/v1/subnet/\uff11/neurons/latest", "netuid"),
        ("/api/v1/subnet/\uff11/hyperparams", "netuid"),
        ("/api/v1/weights/jobs/\uff11", "job_id"),
        (f"/api/v1/weights/jobs/{TOO_BIG}", "job_id"),
        (f"/api/v1/subnet/{TOO_BIG}/weights/last", "netuid"),
        ("/api/v1/subnet/70000/weights/last", "netuid"),
        ("/api/v1/subnet/70000/neurons/latest", "netuid"),
        (f"/api/v1/subnet/1/neurons/{2**64}", "block_number"),
        ("/api/v1/weights/jobs?netuid=18446744073709551616", "netuid"),
        ("/api/v1/weights/jobs?netuid=-1", "netuid"),
        ("/api/v1/weights/jobs?netuid=\uff11", "netuid"),
    ],
)
async def test_path_and_query_integers_are_ascii_and_bounded(
    client: AsyncTestClient, path: str, field: str
) -> None:
    response = await client.get(path, headers=ADMIN)
    names_field(response, field)


def int_param_paths(app: Any) -> list[tuple[str, str, str]]:
    """(method, path template, int parameter) for every operation of the app with an int path parameter."""
    found = []
    for route in app.litestar.routes:
        for method in sorted(getattr(route, "methods", ())):
            if method in ("OPTIONS", "HEAD"):
                continue
            for component in route.path_components:
                if not isinstance(component, str) and component.type is int:
                    found.append((method, route.path, component.name))
    return found


def fill(template: str, field: str, value: str) -> str:
    """The template with `value` for `field`, 1 for other ints and a plain word for other parameters."""
    parts = []
    for part in template.split("/"):
        if part.startswith("{"):
            name, _, kind = part[1:-1].partition(":")
            part = value if name == field else ("1" if kind == "int" else "default")
        parts.append(part)
    return "/".join(parts)


async def test_every_int_path_parameter_is_named_when_not_ascii_digits(
    app: Any, client: AsyncTestClient
) -> None:
    # `\u00b9` is what `int()` refuses (Litestar's router answered 404), `\uff11` what it takes; both
    # are a 400 naming the parameter on every route, hot (an admin token is hot) and routed alike.
    cases = int_param_paths(app)
    assert len(cases) > 40, cases
    for method, template, field in cases:
        for digit in ("\u00b9", "\uff11", "1\u00b2"):
            path = fill(template, field, digit)
            response = await client.request(method, path, headers=ADMIN, json={})
            assert response.status_code == 400, (method, path, response.text)
            names_field(response, field)
        response = await client.request(method, fill(template, field, str(2**64)), headers=ADMIN, json={})
        assert 400 <= response.status_code < 500, (method, template, response.text)


async def test_unparseable_integers_are_named_without_credentials(client: AsyncTestClient) -> None:
    # The route's shape is public (the OpenAPI document): no credential is needed to learn the path is bad.
    for path, field in (
        ("/api/v1/subnet/\u00b9/hyperparams", "netuid"),
        ("/api/v1/block/1/extrinsic/\u2460", "extrinsic_index"),
    ):
        response = await client.get(path)
        assert response.status_code == 400, response.text
        names_field(response, field)
    # A path no route has the shape of stays a 404.
    assert (await client.get("/api/v1/subnet/abc/nothing")).status_code == 404


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"rpm": 2**64}, "rpm"),
        ({"tpm": TOO_BIG}, "tpm"),
        ({"rpm": "10"}, "rpm"),
        ({"expires_in": "99999999999999d"}, "expires_in"),
        ({"expires_in": "\uff11d"}, "expires_in"),
        ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"netuids": [-1]}, "netuids"),
        ({"netuids": [70000]}, "netuids"),
        ({"netuids": ["1"]}, "netuids"),
        ({"identity": "nobody"}, "identity"),
        ({"scopes": ["root"]}, "scopes"),
        ({"scopes": "inference"}, "scopes"),
        ({"expires_at": "2999-13-01T00:00:00Z"}, "expires_at"),
        ({"name": "a\x00b"}, "name"),
        ({"name": "a\nb"}, "name"),
        ({"name": "a\x7fb"}, "name"),
        ({"models": ["m\x00"]}, "models"),
        ({"models": ["m\x1b[31m"]}, "models"),
    ],
)
async def test_key_creation_refuses_nonsense(
    client: AsyncTestClient, changes: dict[str, Any], field: str
) -> None:
    response = await client.post("/api/v1/keys", json={**KEY, **changes}, headers=ADMIN)
    assert response.status_code == 400, response.text
    names_field(response, field)


async def test_key_update_refuses_nonsense(client: AsyncTestClient) -> None:
    created = await client.post("/api/v1/keys", json=KEY, headers=ADMIN)
    key_id = created.json()["id"]
    for changes, field in (
        ({"rpm": 2**64}, "rpm"),
        ({"rpm": "10"}, "rpm"),
        ({"name": "x\x00"}, "name"),
        ({"expires_in": "99999999999999d"}, "expires_in"),
    ):
        response = await client.patch(f"/api/v1/keys/{key_id}", json=changes, headers=ADMIN)
        assert response.status_code == 400, (changes, response.text)
        names_field(response, field)


async def test_sensible_keys_are_still_created(client: AsyncTestClient) -> None:
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    for changes in (
        {"rpm": 10, "tpm": 2**63 - 1, "netuids": [0, 65535], "models": ["org/model:7b"]},
        {"expires_in": "36500d", "name": "Zoë's key"},
        {"expires_at": future, "identity": "default"},
    ):
        response = await client.post("/api/v1/keys", json={**KEY, **changes}, headers=ADMIN)
        assert response.status_code == 201, (changes, response.text)


async def test_certificate_algorithm_is_checked(client: AsyncTestClient) -> None:
    for algorithm in (-1, 2, 2**64, "1"):
        response = await client.post(
            "/api/v1/subnet/1/certificates/self", json={"algorithm": algorithm}, headers=ADMIN
        )
        assert response.status_code == 400, (algorithm, response.text)
        names_field(response, "algorithm")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"weights": {"\xff\xfe": 1}}', "UTF-8"),
        (b'{"weights": {"' + HOTKEY.encode() + b'": "1.0"}}', "weights"),
        (b'{"weights": {"' + HOTKEY.encode() + b'": true}}', "weights"),
        (b'{"weights": {"a": 1}, "weights": {"b": 1}}', "weights"),
        (b'{"weights": {"' + HOTKEY.encode() + b'": 1, "' + HOTKEY.encode() + b'": 2}}', HOTKEY),
        (b'{"weights": {"a": 1}, "weights" : {"b": 1}}', "weights"),
        (b'{"weights": {"a\\"": 1, "a\\"": 2}}', 'a"'),
    ],
)
async def test_weights_bodies_are_strict(client: AsyncTestClient, raw: bytes, field: str) -> None:
    for path in ("/api/v1/subnet/1/weights", "/api/v1/subnet/weights"):
        response = await client.put(path, content=raw, headers={**ADMIN, **JSON})
        assert response.status_code == 400, (path, raw, response.text)
        names_field(response, field)


async def test_invalid_utf8_is_400_on_every_routed_json_route(client: AsyncTestClient) -> None:
    created = (await client.post("/api/v1/keys", json=KEY, headers=ADMIN)).json()
    for method, path, raw in (
        ("POST", "/api/v1/keys", b'{"name": "\xff", "scopes": ["inference"]}'),
        ("PATCH", f"/api/v1/keys/{created['id']}", b'{"name": "\xc3\x28"}'),
        ("POST", "/api/v1/subnet/1/certificates/self", b'{"\xff\xfe": 1}'),
        ("PUT", "/api/v1/identity/default/subnet/1/weights", b'{"weights": {"\xed\xa0\x80": 1}}'),
    ):
        response = await client.request(method, path, content=raw, headers={**ADMIN, **JSON})
        assert response.status_code == 400, (path, response.text)
        names_field(response, "UTF-8")


async def test_strings_in_json_values_that_look_like_keys_are_fine(client: AsyncTestClient) -> None:
    # `":` inside a string makes the duplicate check look closer; the answer must not change.
    body = b'{"name": "a\\": b\\":", "scopes" :["neurons:read"]}'
    response = await client.post("/api/v1/keys", content=body, headers={**ADMIN, **JSON})
    assert response.status_code == 201, response.text
    assert response.json()["name"] == 'a": b":'


CHAT_BAD = [
    (b'{"model": "m", "messages": [{"role": "user", "content": "\xff\xfe"}]}', "UTF-8"),
    (
        b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "\xff"}]}]}',
        "UTF-8",
    ),
    (b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "x-extra": "\xc3\x28"}', "UTF-8"),
    (b'{"model": "m", "model": "n", "messages": [{"role": "user", "content": "hi"}]}', "model"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "hi", "role": "system"}]}', "role"),
]


@pytest.mark.parametrize(("raw", "field"), CHAT_BAD)
async def test_inference_bodies_are_checked_on_both_paths(
    client: AsyncTestClient, raw: bytes, field: str
) -> None:
    minted = await client.post("/api/v1/keys", json={"name": "i", "scopes": ["inference"]}, headers=ADMIN)
    headers = {"Authorization": f"Bearer {minted.json()['key']}", **JSON}
    # The key's first request is routed (not yet in this worker's cache); the second takes the hot route.
    for _ in ("routed", "hot"):
        response = await client.post("/v1/chat/completions", content=raw, headers=headers)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert field in error["message"] or error.get("param") == field, error
    # The admin token is known from memory: hot from the first request.
    response = await client.post("/v1/chat/completions", content=raw, headers={**ADMIN, **JSON})
    assert response.status_code == 400, response.text
