"""PYLON_BACKENDS and friends, `pylon config show` masking, and `pylon backends list`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from app.settings import SettingsError, masked
from cli.main import app as cli_app
from tests.inference.conftest import backends_env, ollama_backend, openai_backend


def test_backends_parse_from_json(settings_factory):
    settings = settings_factory(
        PYLON_BACKENDS=json.dumps(
            [
                {
                    "name": "vllm",
                    "base_url": "http://10.0.0.2:8000/v1",
                    "models": ["m"],
                    "weight": 2,
                    "api_key": "s3",
                },
                {
                    "name": "ollama",
                    "kind": "ollama",
                    "base_url": "http://127.0.0.1:11434",
                    "read_timeout": 30,
                },
            ]
        ),
        PYLON_MAX_TOKENS_LIMIT="4096",
    )
    first, second = settings.inference.backends
    assert (first.kind, first.weight, first.api_key, first.models) == ("openai", 2.0, "s3", ["m"])
    assert (second.kind, second.read_timeout, second.connect_timeout) == ("ollama", 30.0, 5.0)
    assert settings.inference.max_tokens_limit == 4096
    assert masked(settings)["inference"]["backends"][0]["api_key"] == "***"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PYLON_BACKENDS": "[{"}, "PYLON_BACKENDS: not valid JSON"),
        ({"PYLON_BACKENDS": '[{"name": "a"}]'}, "PYLON_BACKENDS"),
        ({"PYLON_BACKENDS": '[{"name": "a", "base_url": "x", "kind": "openai"}]'}, "must start with http"),
        ({"PYLON_BACKENDS": '[{"name": "a", "base_url": "http://x", "kind": "tgi"}]'}, "PYLON_BACKENDS"),
        ({"PYLON_BACKENDS": '[{"name": "a", "base_url": "http://x", "colour": 1}]'}, "PYLON_BACKENDS"),
        (
            {
                "PYLON_BACKENDS": '[{"name": "a", "base_url": "http://x"}, {"name": "a", "base_url": "http://y"}]'
            },
            "unique",
        ),
        ({"PYLON_BACKENDS": '[{"name": "a", "base_url": "http://x", "weight": 0}]'}, "weight"),
        ({"PYLON_MAX_TOKENS_LIMIT": "0"}, "PYLON_MAX_TOKENS_LIMIT"),
        ({"PYLON_BACKEND_HEALTH_INTERVAL": "0"}, "PYLON_BACKEND_HEALTH_INTERVAL"),
        ({"PYLON_INFERENCE_MAX_BODY_SIZE": "10"}, "PYLON_INFERENCE_MAX_BODY_SIZE"),
    ],
)
def test_bad_backend_settings_name_the_variable(settings_factory, env, message):
    with pytest.raises(SettingsError, match=message):
        settings_factory(**env)


def test_config_show_never_prints_the_api_key(tmp_path, monkeypatch):
    monkeypatch.setenv("PYLON_DATA_DIR", str(tmp_path))
    monkeypatch.setenv(
        "PYLON_BACKENDS", json.dumps([{"name": "a", "base_url": "http://x", "api_key": "sk-very-secret"}])
    )
    result = CliRunner().invoke(cli_app, ["config", "show"])
    assert result.exit_code == 0, result.output
    assert "sk-very-secret" not in result.output
    assert '"api_key": "***"' in result.output


def test_backends_list_probes_each_backend(fake_backend, tmp_path, monkeypatch):
    env = backends_env(
        openai_backend("live", fake_backend, api_key="sk-hidden"),
        ollama_backend("gone", fake_backend, base_url="http://127.0.0.1:9"),
    )
    monkeypatch.setenv("PYLON_DATA_DIR", str(tmp_path))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(cli_app, ["backends", "list", "--json"])
    assert result.exit_code == 0, result.output
    backends = {b["name"]: b for b in json.loads(result.stdout)["backends"]}
    assert backends["live"]["healthy"] is True and backends["live"]["models"] == ["fake-model"]
    assert backends["gone"]["healthy"] is False and backends["gone"]["last_error"]
    assert "sk-hidden" not in result.output
    table = CliRunner().invoke(cli_app, ["backends", "list"])
    assert table.exit_code == 0 and "live" in table.stdout and "healthy" in table.stdout


def test_backends_list_without_backends_says_how_to_configure(tmp_path, monkeypatch):
    monkeypatch.setenv("PYLON_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("PYLON_BACKENDS", raising=False)
    result = CliRunner().invoke(cli_app, ["backends", "list"])
    assert result.exit_code == 0
    assert "PYLON_BACKENDS" in result.output
