"""PYLON_UPSTREAMS: bad values fail at start naming the variable; prefixes never shadow Pylon's routes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.main import create_app
from app.settings import RESERVED_PREFIXES, SettingsError, load_settings
from tests.conftest import base_env


@pytest.mark.parametrize(
    ("upstreams", "message"),
    [
        ([{"prefix": "/api/x", "url": "http://127.0.0.1:1"}], "clashes with Pylon's own routes under /api"),
        ([{"prefix": "/v1", "url": "http://127.0.0.1:1"}], "clashes"),
        ([{"prefix": "/status", "url": "http://127.0.0.1:1"}], "clashes"),
        (
            [{"prefix": "/a", "url": "http://127.0.0.1:1"}, {"prefix": "/a/b", "url": "http://127.0.0.1:2"}],
            "distinct and not nested",
        ),
        (
            [{"prefix": "/a", "url": "http://127.0.0.1:1"}, {"prefix": "/a", "url": "http://127.0.0.1:2"}],
            "distinct",
        ),
        ([{"prefix": "train", "url": "http://127.0.0.1:1"}], "must be a path like /train"),
        ([{"prefix": "/train/", "url": "http://127.0.0.1:1"}], "must be a path like /train"),
        ([{"prefix": "/train", "url": "ftp://127.0.0.1:1"}], "url must be http:// or https://"),
        ([{"prefix": "/train", "url": "http://127.0.0.1:1", "timeout": 0}], "timeouts must be above 0"),
        ([{"prefix": "/train", "url": "http://127.0.0.1:1", "bogus": 1}], "bogus"),
    ],
)
def test_bad_upstreams_fail_at_start_naming_the_variable(
    tmp_path: Path, upstreams: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(SettingsError, match="PYLON_UPSTREAMS") as raised:
        load_settings({**base_env(tmp_path), "PYLON_UPSTREAMS": json.dumps(upstreams)})
    assert message in str(raised.value)


def test_the_reserved_prefixes_cover_every_route_of_pylon(tmp_path: Path) -> None:
    """A new top-level route must join RESERVED_PREFIXES, or an upstream prefix could shadow it."""
    app = create_app(load_settings(base_env(tmp_path)))
    for route in app.litestar.routes:
        assert any(
            route.path == prefix or route.path.startswith(prefix + "/") for prefix in RESERVED_PREFIXES
        ), route.path


def test_the_miner_example_env_file_loads() -> None:
    from tests.conftest import PROJECT_ROOT

    settings = load_settings({}, env_file=str(PROJECT_ROOT / "envs" / "miner.env.example"))
    assert [u.prefix for u in settings.upstreams.upstreams] == ["/train", "/inference"]
