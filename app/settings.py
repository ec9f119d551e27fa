"""Pylon's settings: one frozen msgspec tree read from `PYLON_*` variables and an optional env file.

Each section names the prefix of its variables, so a field `url` of `DatabaseSettings` is `PYLON_DB_URL`.
A wrong value stops the start with a message naming the variable and what it expects.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import msgspec

ENV_FILE_VARIABLE = "PYLON_ENV_FILE"
SECRET_FIELDS = frozenset({"admin_token", "metrics_token", "url", "api_key"})


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


class Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    env_prefix: ClassVar[str] = "PYLON_"


class DatabaseSettings(Section, frozen=True, kw_only=True):
    env_prefix: ClassVar[str] = "PYLON_DB_"
    # Empty means a SQLite file in the data dir.
    url: str = ""
    pool_size: int = 10
    max_overflow: int = 10
    echo: bool = False


class ChainSettings(Section, frozen=True, kw_only=True):
    # `local` is the in-process simulated subnet; otherwise finney, test, archive or a ws(s):// URL.
    network: str = "local"
    archive_network: str = "archive"
    archive_blocks_cutoff: int = 300
    # The subnet served by the default-netuid routes (bittensor-pylon's `PYLON_NETUID`).
    netuid: int = 1
    # Every chain call and extrinsic is bounded by these.
    call_timeout: float = 10.0
    extrinsic_timeout: float = 60.0
    local_block_time: float = 12.0
    local_netuids: list[int] = msgspec.field(default_factory=lambda: [1])
    local_neurons: int = 256
    local_seed: int = 0


class AuthSettings(Section, frozen=True, kw_only=True):
    admin_token: str = ""
    # /metrics answers 403 while this is empty.
    metrics_token: str = ""


class LoggingSettings(Section, frozen=True, kw_only=True):
    env_prefix: ClassVar[str] = "PYLON_LOG_"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # auto: JSON lines when stderr is not a terminal, a readable console otherwise.
    format: Literal["auto", "json", "console"] = "auto"


class ServerSettings(Section, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1


class BackendSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One upstream model server, as listed in `PYLON_BACKENDS` (a JSON list of these objects)."""

    name: str
    # openai: any OpenAI-compatible server (vLLM, llama.cpp server, TGI); ollama: Ollama's native API.
    kind: Literal["openai", "ollama"] = "openai"
    # openai kind: the server's OpenAI base URL (`/v1` is appended when missing); ollama kind: its host URL.
    base_url: str
    # Models served; empty means discovered from the backend (`/v1/models` or `/api/tags`).
    models: list[str] = msgspec.field(default_factory=list)
    # Share of traffic relative to other backends of the same model (least in-flight per weight).
    weight: float = 1.0
    connect_timeout: float = 5.0
    # Longest wait for a whole non-streamed answer, or between two streamed chunks.
    read_timeout: float = 300.0
    # Sent upstream as `Authorization: Bearer ...`; never logged nor shown by `pylon config show`.
    api_key: str = ""


class InferenceSettings(Section, frozen=True, kw_only=True):
    backends: list[BackendSettings] = msgspec.field(default_factory=list)
    # Longest body accepted on the /v1 inference routes, in bytes (larger bodies get 413).
    inference_max_body_size: int = 1024 * 1024
    # Ceiling for max_tokens / max_completion_tokens; larger values get 400 instead of reaching a backend.
    max_tokens_limit: int = 32768
    # Seconds between background probes of every backend.
    backend_health_interval: float = 10.0
    # Seconds a failed backend is skipped before a probe may bring it back.
    backend_cooldown: float = 15.0


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    app_name: str = "pylon"
    # Where the SQLite file, the dev wallet and the metrics scratch space live.
    data_dir: str = ".pylon"
    # Longest request body accepted, in bytes.
    max_body_size: int = 8 * 1024 * 1024
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    db: DatabaseSettings = msgspec.field(default_factory=DatabaseSettings)
    chain: ChainSettings = msgspec.field(default_factory=ChainSettings)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    logging: LoggingSettings = msgspec.field(default_factory=LoggingSettings)
    inference: InferenceSettings = msgspec.field(default_factory=InferenceSettings)

    @property
    def database_url(self) -> str:
        if self.db.url:
            return self.db.url
        return f"sqlite+aiosqlite:///{Path(self.data_dir).resolve() / 'pylon.sqlite3'}"


# Top-level scalar fields and the variables they are read from.
TOP_LEVEL_PREFIX = "PYLON_"


def parse_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read KEY=VALUE lines; `#` starts a comment line; quotes around a value are stripped."""
    values: dict[str, str] = {}
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SettingsError(
            f"{ENV_FILE_VARIABLE}: cannot read env file {str(path)!r}: {exc.strerror}"
        ) from exc
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :]
        key, sep, value = line.partition("=")
        if not sep:
            raise SettingsError(f"{path}:{number}: expected KEY=VALUE, got {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _field_value(env_name: str, raw: str, field_type: Any) -> Any:
    """Convert one variable to its field's type, or fail naming the variable."""
    value: Any = raw
    origin = getattr(field_type, "__origin__", None)
    if origin in (list, tuple, set, dict) or (
        isinstance(field_type, type) and issubclass(field_type, msgspec.Struct)
    ):
        stripped = raw.strip()
        if stripped.startswith(("[", "{")):
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise SettingsError(f"{env_name}: not valid JSON ({exc.msg}): {raw!r}") from exc
        else:
            value = [item.strip() for item in stripped.split(",") if item.strip()]
    try:
        return msgspec.convert(value, type=field_type, strict=False)
    except msgspec.ValidationError as exc:
        expected = getattr(field_type, "__name__", str(field_type))
        raise SettingsError(f"{env_name}: expected {expected}, got {raw!r} ({exc})") from exc


def _section_values(section_type: type[Section], environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    hints = msgspec.structs.fields(section_type)
    for field in hints:
        env_name = f"{section_type.env_prefix}{field.name.upper()}"
        if env_name in environ:
            values[field.name] = _field_value(env_name, environ[env_name], field.type)
    return values


def env_names() -> list[str]:
    """Every variable Pylon reads, for documentation and `pylon config show`."""
    names = [f"{TOP_LEVEL_PREFIX}{f.name.upper()}" for f in _top_level_scalars()]
    for field in _sections():
        section_type = field.type
        names += [f"{section_type.env_prefix}{f.name.upper()}" for f in msgspec.structs.fields(section_type)]
    return names


def _sections() -> list[msgspec.structs.FieldInfo]:
    return [
        f
        for f in msgspec.structs.fields(Settings)
        if isinstance(f.type, type) and issubclass(f.type, Section)
    ]


def _top_level_scalars() -> list[msgspec.structs.FieldInfo]:
    section_names = {f.name for f in _sections()}
    return [f for f in msgspec.structs.fields(Settings) if f.name not in section_names]


def load_settings(environ: Mapping[str, str] | None = None, env_file: str | None = None) -> Settings:
    """Build the settings from the environment, an env file underneath it, and the defaults under both.

    Variables set in the environment win over the env file, so one file can serve several instances.
    """
    env = dict(os.environ if environ is None else environ)
    env_file = env_file or env.get(ENV_FILE_VARIABLE)
    merged: dict[str, str] = {}
    if env_file:
        merged.update(parse_env_file(env_file))
    merged.update(env)

    kwargs: dict[str, Any] = {}
    for field in _top_level_scalars():
        env_name = f"{TOP_LEVEL_PREFIX}{field.name.upper()}"
        if env_name in merged:
            kwargs[field.name] = _field_value(env_name, merged[env_name], field.type)
    for field in _sections():
        section_type = field.type
        try:
            kwargs[field.name] = section_type(**_section_values(section_type, merged))
        except (TypeError, msgspec.ValidationError) as exc:
            raise SettingsError(f"{section_type.env_prefix}*: {exc}") from exc
    settings = Settings(**kwargs)
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Checks that span more than one field's type."""
    url = settings.database_url
    if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise SettingsError(
            f"PYLON_DB_URL: expected a sqlite+aiosqlite:// or postgresql+asyncpg:// URL, got {mask_url(url)!r}"
        )
    if not 1 <= settings.server.port <= 65535:
        raise SettingsError(f"PYLON_PORT: expected a port from 1 to 65535, got {settings.server.port}")
    if settings.server.workers < 1:
        raise SettingsError(f"PYLON_WORKERS: expected at least 1, got {settings.server.workers}")
    if settings.chain.local_block_time <= 0:
        raise SettingsError(
            f"PYLON_LOCAL_BLOCK_TIME: expected seconds above 0, got {settings.chain.local_block_time}"
        )
    if settings.chain.netuid < 0:
        raise SettingsError(f"PYLON_NETUID: expected a netuid of 0 or more, got {settings.chain.netuid}")
    _validate_inference(settings.inference)


def _validate_inference(inference: InferenceSettings) -> None:
    names = [backend.name for backend in inference.backends]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise SettingsError(
            f"PYLON_BACKENDS: backend names must be unique, repeated: {', '.join(duplicates)}"
        )
    for backend in inference.backends:
        if not backend.name:
            raise SettingsError("PYLON_BACKENDS: every backend needs a non-empty name")
        if not backend.base_url.startswith(("http://", "https://")):
            raise SettingsError(
                f"PYLON_BACKENDS: backend {backend.name!r}: base_url must start with http:// or https://, "
                f"got {backend.base_url!r}"
            )
        if backend.weight <= 0:
            raise SettingsError(f"PYLON_BACKENDS: backend {backend.name!r}: weight must be above 0")
        if backend.connect_timeout <= 0 or backend.read_timeout <= 0:
            raise SettingsError(f"PYLON_BACKENDS: backend {backend.name!r}: timeouts must be above 0 seconds")
    if inference.inference_max_body_size < 1024:
        raise SettingsError(
            "PYLON_INFERENCE_MAX_BODY_SIZE: expected at least 1024 bytes, "
            f"got {inference.inference_max_body_size}"
        )
    if inference.max_tokens_limit < 1:
        raise SettingsError(f"PYLON_MAX_TOKENS_LIMIT: expected at least 1, got {inference.max_tokens_limit}")
    if inference.backend_health_interval <= 0:
        raise SettingsError(
            "PYLON_BACKEND_HEALTH_INTERVAL: expected seconds above 0, "
            f"got {inference.backend_health_interval}"
        )
    if inference.backend_cooldown < 0:
        raise SettingsError(
            f"PYLON_BACKEND_COOLDOWN: expected 0 seconds or more, got {inference.backend_cooldown}"
        )


def mask_url(url: str) -> str:
    """Hide a password in a database URL."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url


def masked(settings: Settings) -> dict[str, Any]:
    """The settings as plain data with secrets hidden, for `pylon config show`."""
    data = msgspec.to_builtins(settings)

    def hide(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key in SECRET_FIELDS and isinstance(value, str) and value:
                    out[key] = mask_url(value) if key == "url" else "***"
                else:
                    out[key] = hide(value)
            return out
        if isinstance(node, list):
            return [hide(item) for item in node]
        return node

    result = hide(data)
    result["database_url"] = mask_url(settings.database_url)
    return result
