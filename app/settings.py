"""Pylon's settings: one frozen msgspec tree read from `PYLON_*` variables and an optional env file.

Each section names the prefix of its variables, so a field `url` of `DatabaseSettings` is `PYLON_DB_URL`.
A wrong value stops the start with a message naming the variable and what it expects.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import msgspec

ENV_FILE_VARIABLE = "PYLON_ENV_FILE"
SECRET_FIELDS = frozenset({"admin_token", "metrics_token", "open_access_token", "token", "url", "api_key"})


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
    # Older metagraphs kept in memory per process (LRU), besides the latest per served netuid.
    metagraph_cache_blocks: int = 64


class DevChainSettings(Section, frozen=True, kw_only=True):
    """The development chain behind `PYLON_NETWORK=local` (`PYLON_LOCAL_BLOCK_TIME`, ...)."""

    env_prefix: ClassVar[str] = "PYLON_LOCAL_"
    block_time: float = 12.0
    netuids: list[int] = msgspec.field(default_factory=lambda: [1])
    neurons: int = 256
    seed: int = 0
    # Simulated subnets' tempo (blocks per epoch), weights rate limit (blocks) and commit-reveal switch.
    tempo: int = 360
    weights_rate_limit: int = 100
    commit_reveal: bool = False
    # Blocks between two commitments of one hotkey on one subnet (the Commitments pallet's `RateLimit`;
    # subtensor's default is 100, i.e. 20 minutes: shorter here so a developer can iterate).
    commitment_rate_limit: int = 10
    # ss58 hotkeys registered with a validator permit on every simulated subnet at start (dev wallet).
    validators: list[str] = msgspec.field(default_factory=list)
    # Every chain call fails as if the node were down (tests of retries and restarts). `pylon serve` then
    # runs no node: each worker simulates a chain that is down.
    unreachable: bool = False
    # `pylon serve` runs the simulated chain once, as a local subtensor node on 127.0.0.1:`node_port`, and
    # every worker, the CLI, other Pylons and turbobt scripts read that one chain (0: any free port, which
    # the CLI cannot find). False: each process simulates a chain of its own.
    node: bool = True
    node_port: int = 9944
    # The node the development chain is read through (ws://...): `pylon serve` sets it for its workers, the
    # CLI when it finds the node up. Empty: this process simulates the chain itself.
    node_url: str = ""


class AuthSettings(Section, frozen=True, kw_only=True):
    admin_token: str = ""
    # /metrics answers 403 while this is empty.
    metrics_token: str = ""
    # bittensor-pylon's open-access token: it reads neurons and the chain (scope `neurons:read`).
    open_access_token: str = ""


class KeysSettings(Section, frozen=True, kw_only=True):
    env_prefix: ClassVar[str] = "PYLON_KEYS_"
    # Seconds between polls of the key change feed and syncs of rate counters with the database: how long
    # a revocation made elsewhere (another worker, instance or the CLI) can go unnoticed.
    sync_interval: float = 1.0
    # Seconds between usage writes; they also happen early once `usage_batch_size` buckets are waiting (a
    # bucket is one key's requests to one route with one status and model in one minute).
    usage_flush_interval: float = 2.0
    usage_batch_size: int = 500
    # Buckets kept in memory while the database is unreachable; the oldest are dropped (and logged) beyond it.
    usage_buffer_max: int = 100_000
    # A cached key is re-read after this many seconds even if no change was seen (a safety net).
    cache_ttl: float = 60.0
    # Length of one rate-limit window in seconds; rpm/tpm limits are scaled to it. Keep 60 in production.
    rate_window: float = 60.0


class EpistulaSettings(Section, frozen=True, kw_only=True):
    env_prefix: ClassVar[str] = "PYLON_EPISTULA_"
    # This Pylon's ss58 hotkey: requests must be signed for it. Empty: the default identity's hotkey
    # (PYLON_WALLET_*, or the dev wallet with PYLON_NETWORK=local); with no default identity, Epistula is off.
    hotkey: str = ""
    # Callers must be registered on this subnet; None means PYLON_NETUID.
    netuid: int | None = None
    # Accepted clock difference in seconds, in either direction; a uuid is remembered for twice as long.
    window: float = 8.0
    require_validator_permit: bool = False
    min_stake: float = 0.0
    # A static hotkey directory instead of the metagraph: `ss58` or `ss58:stake` entries, each registered
    # with a validator permit. Empty: signers are checked against the metagraph of the netuid above.
    hotkeys: list[str] = msgspec.field(default_factory=list)
    # Most (signed_by, uuid) pairs remembered at once; beyond it new signed requests get 429.
    replay_capacity: int = 100_000


class FiberSettings(Section, frozen=True, kw_only=True):
    """Fiber's signed requests and MLTS (app/fiber/); the miner hotkey and signer rules are Epistula's."""

    env_prefix: ClassVar[str] = "PYLON_FIBER_"
    # Accepted age of a nonce's timestamp, in either direction (Fiber's NONCE_WINDOW_NS: 120 s).
    nonce_window: float = 120.0
    # Seconds an exchanged symmetric key stays usable (Fiber's SymmetricKeyInfo: 5 hours).
    symmetric_key_ttl: float = 5 * 3600.0
    # Most nonces remembered at once; beyond it new Fiber requests get 429.
    replay_capacity: int = 100_000


class CorsSettings(Section, frozen=True, kw_only=True):
    """Browser callers (`PYLON_CORS_ALLOW_ORIGINS`, ...): Litestar's CORSConfig. No origins: CORS is off."""

    env_prefix: ClassVar[str] = "PYLON_CORS_"
    # Exact origins (`https://app.example`) or `*`; empty: no cross-origin caller is allowed.
    allow_origins: list[str] = msgspec.field(default_factory=list)
    allow_methods: list[str] = msgspec.field(default_factory=lambda: ["GET", "POST"])
    allow_headers: list[str] = msgspec.field(default_factory=lambda: ["Authorization", "Content-Type"])
    allow_credentials: bool = False
    max_age: int = 600


class LoggingSettings(Section, frozen=True, kw_only=True):
    env_prefix: ClassVar[str] = "PYLON_LOG_"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # auto: JSON lines when stderr is not a terminal, a readable console otherwise.
    format: Literal["auto", "json", "console"] = "auto"


class WalletSettings(Section, frozen=True, kw_only=True):
    """The default identity's wallet (`PYLON_WALLET_NAME`, `PYLON_WALLET_HOTKEY`, `PYLON_WALLET_PATH`)."""

    env_prefix: ClassVar[str] = "PYLON_WALLET_"
    # Empty: with PYLON_NETWORK=local a dev wallet is created in the data dir; otherwise no default identity.
    name: str = ""
    hotkey: str = "default"
    # Empty means bittensor's default folder, ~/.bittensor/wallets.
    path: str = ""


class IdentitySettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One named wallet, read from `PYLON_IDENTITY_<NAME>_*` for each name in `PYLON_IDENTITIES`."""

    name: str
    wallet_name: str
    wallet_hotkey: str = "default"
    wallet_path: str = ""
    # Subnets this identity may set weights on; None means any.
    netuids: list[int] | None = None
    # bittensor-pylon's identity token: it acts as this identity (`PYLON_ID_<NAME>_TOKEN`). Empty: none.
    token: str = ""


class WeightsSettings(Section, frozen=True, kw_only=True):
    env_prefix: ClassVar[str] = "PYLON_WEIGHTS_"
    # Run the apply-weights worker in this process (every worker process runs one; claims are exclusive).
    worker: bool = True
    # Seconds between looks for due jobs when nothing woke the worker.
    poll_interval: float = 1.0
    # Exponential backoff between failed attempts: start, doubling up to the cap, at most this many attempts.
    retry_start: float = 2.0
    retry_cap: float = 60.0
    max_attempts: int = 20
    # A new job waits this long before its first attempt, so a burst of PUTs for one identity+netuid
    # collapses into the last one (the others become `superseded`) instead of landing one after another.
    coalesce_seconds: float = 1.0
    # Extra seconds a claimed job stays leased beyond the chain timeouts, before another worker takes it over.
    lease_margin: float = 10.0


class ServerSettings(Section, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    # Longest X-Pylon-Timeout honoured, in seconds; larger values are capped to it.
    max_request_timeout: float = 300.0
    # Seconds a worker has to stop after SIGTERM (finish requests, flush usage) before it is killed. Bounds
    # shutdown: granian loses a SIGTERM that reaches a worker still starting, which then never stops.
    shutdown_timeout: int = 10


class BackendSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One upstream model server, as listed in `PYLON_BACKENDS` (a JSON list of these objects)."""

    name: str
    # openai: any OpenAI-compatible server (vLLM, llama.cpp server, TGI); ollama: Ollama's native API;
    # subnet: the miners of a subnet, signed fan-out with scoring (app/gateway/, fields below).
    kind: Literal["openai", "ollama", "subnet"] = "openai"
    # openai kind: the server's OpenAI base URL (`/v1` is appended when missing); ollama kind: its host URL.
    # Not used by the subnet kind (miners' addresses come from the metagraph).
    base_url: str = ""
    # Models served; empty means discovered from the backend (`/v1/models` or `/api/tags`).
    models: list[str] = msgspec.field(default_factory=list)
    # Share of traffic relative to other backends of the same model (least in-flight per weight).
    weight: float = 1.0
    connect_timeout: float = 5.0
    # Longest wait for a whole non-streamed answer, or between two streamed chunks.
    read_timeout: float = 300.0
    # Sent upstream as `Authorization: Bearer ...`; never logged nor shown by `pylon config show`.
    api_key: str = ""
    # Most requests this worker sends the backend at once (0: no cap); at the cap it takes no more work
    # (other backends of the model do; `GET /availability` says so once all are full).
    max_in_flight: int = 0
    # --- subnet kind only (app/gateway/) ---
    # The subnet whose miners answer (None: PYLON_NETUID); the identity whose hotkey signs (Epistula v2).
    netuid: int | None = None
    identity: str = "default"
    # Miners asked at once per non-streamed request (streams: one, hedged by the next best).
    fanout: int = 3
    # The model name sent to miners (empty: the caller's) and to the reference backend.
    upstream_model: str = ""
    # Name of another configured backend whose answers are the reference (empty: validity and speed only).
    reference: str = ""
    # Put before the OpenAI path at the miner's axon: http://ip:port + path_prefix + /v1/chat/completions.
    path_prefix: str = ""
    # Only miners without a validator permit are called.
    require_no_permit: bool = False
    # Longest wait for one miner's whole answer (streams: between chunks), and for the whole fan-out.
    request_timeout: float = 30.0
    total_timeout: float = 60.0
    # Seconds a stream's first chunk may take before the next-best miner is started too; None: the miner's
    # own p90 time to first chunk (this default until it has a few), clamped to [0.05, request_timeout].
    hedge_delay: float | None = None


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


class JobsSettings(Section, frozen=True, kw_only=True):
    """The one job mechanism (app/jobs/) that weights and tasks share."""

    env_prefix: ClassVar[str] = "PYLON_JOBS_"
    # Names this instance in every lease it takes; empty: a random id kept in the data dir (stable across
    # restarts, so a restarted instance knows its own interrupted jobs and takes them back at once).
    instance_id: str = ""
    # Names this boot; `pylon serve` sets it once for all its workers. Empty: one per process.
    boot_id: str = ""


class TasksSettings(Section, frozen=True, kw_only=True):
    """Long jobs (app/tasks/): transcription, speech and summaries in the durable queue."""

    env_prefix: ClassVar[str] = "PYLON_TASKS_"
    # Run the task worker in this process (every worker process runs one; claims are exclusive).
    worker: bool = True
    # Task kind -> the model name the inference router resolves (a subnet backend's model or any other).
    routes: dict[str, str] = msgspec.field(
        default_factory=lambda: {"transcription": "whisper-1", "tts": "tts-1", "summarization": "gpt-4o-mini"}
    )
    # Task kind -> the model whose answer is the reference a task's answer is scored against (the
    # validator's own pipeline); empty: answers are not scored (app/tasks/scoring.py).
    references: dict[str, str] = msgspec.field(default_factory=dict)
    max_attempts: int = 3
    # Backoff between failed attempts: start, doubling up to the cap.
    retry_start: float = 1.0
    retry_cap: float = 30.0
    # Seconds one attempt of each kind may take; the lease is this plus lease_margin.
    timeouts: dict[str, float] = msgspec.field(
        default_factory=lambda: {"transcription": 300.0, "tts": 120.0, "summarization": 120.0}
    )
    lease_margin: float = 10.0
    # Finished tasks (and their files) are kept this many seconds, then pruned.
    result_ttl: float = 86400.0
    # Seconds between looks for due tasks when nothing woke the worker (other processes' submissions).
    poll_interval: float = 0.05
    # Largest audio upload, in bytes (checked while streaming to the data dir).
    max_upload_size: int = 50 * 1024 * 1024


class GatewaySettings(Section, frozen=True, kw_only=True):
    """The subnet gateway (`PYLON_GATEWAY_*`): where it may send, how it scores, how records are written."""

    env_prefix: ClassVar[str] = "PYLON_GATEWAY_"
    # CIDR networks miners may be called at. Production: public addresses, plus these (private, link-local
    # or reserved ones only when listed). PYLON_NETWORK=local: loopback only (these must lie inside it).
    allowed_networks: list[str] = msgspec.field(default_factory=list)
    # `module:function` building the scorer (app/gateway/scoring.py); empty: the built-in one.
    scorer: str = ""
    accuracy_weight: float = 0.7
    speed_weight: float = 0.3
    # Latency (seconds) at which the speed score is 0.5: speed = 1 / (1 + latency / speed_scale).
    speed_scale: float = 1.0
    # Weight of a new score in a miner's moving averages.
    score_alpha: float = 0.1
    # Share of fan-outs whose last slot goes to a random miner instead of the next best.
    exploration: float = 0.1
    # Seconds between buffered writes of miner records to the database.
    flush_interval: float = 2.0
    # Turn scores into a weights job once per epoch (per subnet backend, signed by its identity).
    auto_weights: bool = False


class UpstreamSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One internal server behind a path prefix, as listed in `PYLON_UPSTREAMS` (a JSON list)."""

    # `/train`: requests to /train and /train/... go to this upstream.
    prefix: str
    # http(s)://host:port[/base]; the prefix of the request path is replaced by the URL's path.
    url: str
    # The metrics label and /status name; empty: the prefix without slashes (`/a/b` -> `a-b`).
    name: str = ""
    connect_timeout: float = 5.0
    # Longest wait for the upstream's answer to begin, and between two chunks of it (504 before it began).
    timeout: float = 60.0
    # Stricter than PYLON_EPISTULA_* for this upstream: signers need a validator permit / this stake.
    require_validator_permit: bool = False
    min_stake: float = 0.0
    # Probed by GET /status (any answer below 500 is up); a required upstream down makes /status 503.
    health_path: str = "/"
    required: bool = True


class UpstreamsSettings(Section, frozen=True, kw_only=True):
    upstreams: list[UpstreamSettings] = msgspec.field(default_factory=list)
    # Longest body an Epistula-signed request to an upstream may have: it is read whole to check its hash
    # before anything is forwarded (API-key callers' bodies are streamed, unbounded).
    upstream_signed_body_max: int = 16 * 1024 * 1024
    # Seconds an upstream probe of GET /status is reused, and how long one may take.
    upstream_status_ttl: float = 3.0
    upstream_probe_timeout: float = 1.0


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    app_name: str = "pylon"
    # Where the SQLite file, the dev wallet and the metrics scratch space live.
    data_dir: str = ".pylon"
    # Longest request body accepted, in bytes.
    max_body_size: int = 8 * 1024 * 1024
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    db: DatabaseSettings = msgspec.field(default_factory=DatabaseSettings)
    chain: ChainSettings = msgspec.field(default_factory=ChainSettings)
    devchain: DevChainSettings = msgspec.field(default_factory=DevChainSettings)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    keys: KeysSettings = msgspec.field(default_factory=KeysSettings)
    epistula: EpistulaSettings = msgspec.field(default_factory=EpistulaSettings)
    fiber: FiberSettings = msgspec.field(default_factory=FiberSettings)
    cors: CorsSettings = msgspec.field(default_factory=CorsSettings)
    logging: LoggingSettings = msgspec.field(default_factory=LoggingSettings)
    wallet: WalletSettings = msgspec.field(default_factory=WalletSettings)
    weights: WeightsSettings = msgspec.field(default_factory=WeightsSettings)
    # Named wallets besides the default one: PYLON_IDENTITIES=alpha,beta (see `_identities`).
    identities: tuple[IdentitySettings, ...] = ()
    inference: InferenceSettings = msgspec.field(default_factory=InferenceSettings)
    jobs: JobsSettings = msgspec.field(default_factory=JobsSettings)
    tasks: TasksSettings = msgspec.field(default_factory=TasksSettings)
    gateway: GatewaySettings = msgspec.field(default_factory=GatewaySettings)
    upstreams: UpstreamsSettings = msgspec.field(default_factory=UpstreamsSettings)

    @property
    def database_url(self) -> str:
        if self.db.url:
            return self.db.url
        return f"sqlite+aiosqlite:///{Path(self.data_dir).resolve() / 'pylon.sqlite3'}"


# Top-level scalar fields and the variables they are read from.
TOP_LEVEL_PREFIX = "PYLON_"
# Top-level fields whose variables have dynamic names; each has its own reader below.
DYNAMIC_FIELDS = frozenset({"identities"})
IDENTITY_FIELDS = ("wallet_name", "wallet_hotkey", "wallet_path", "netuids")
DEFAULT_IDENTITY = "default"


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
    elif origin is Literal:
        # Levels and formats are case-insensitive: `info` means `INFO`.
        value = next((choice for choice in field_type.__args__ if str(choice).lower() == raw.lower()), raw)
    try:
        return msgspec.convert(value, type=field_type, strict=False)
    except msgspec.ValidationError as exc:
        # msgspec's own message adds where inside a list or struct the bad item sits.
        detail = f" ({exc})" if "$" in str(exc) else ""
        raise SettingsError(f"{env_name}: expected {_describe(field_type)}, got {raw!r}{detail}") from exc


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "text"}
_PLURALS = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}


def _describe(field_type: Any) -> str:
    """What a variable of this type should hold, in words."""
    origin = getattr(field_type, "__origin__", None)
    if origin is Literal:
        return "one of " + ", ".join(str(choice) for choice in field_type.__args__)
    if origin in (list, tuple, set):
        items = ", ".join(_PLURALS.get(arg, str(arg)) for arg in field_type.__args__ if arg is not Ellipsis)
        return f"a comma-separated or JSON list of {items}"
    if field_type in _TYPE_NAMES:
        return _TYPE_NAMES[field_type]
    return getattr(field_type, "__name__", str(field_type))


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
    names += ["PYLON_IDENTITIES"] + [
        f"PYLON_IDENTITY_<NAME>_{f.upper()}" for f in (*IDENTITY_FIELDS, "token")
    ]
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
    section_names = {f.name for f in _sections()} | DYNAMIC_FIELDS
    return [f for f in msgspec.structs.fields(Settings) if f.name not in section_names]


# bittensor-pylon's names for identity fields (`PYLON_ID_<NAME>_*`), read when Pylon's own are absent.
PEER_IDENTITY_FIELDS = {"wallet_name": "WALLET_NAME", "wallet_hotkey": "HOTKEY_NAME", "netuids": "NETUID"}
# bittensor-pylon's names for Pylon variables, so a validator's existing env file works unchanged.
PEER_ALIASES = {
    "PYLON_BITTENSOR_NETWORK": "PYLON_NETWORK",
    "PYLON_BITTENSOR_ARCHIVE_NETWORK": "PYLON_ARCHIVE_NETWORK",
    "PYLON_BITTENSOR_ARCHIVE_BLOCKS_CUTOFF": "PYLON_ARCHIVE_BLOCKS_CUTOFF",
    "PYLON_BITTENSOR_WALLET_PATH": "PYLON_WALLET_PATH",
}
_IDENTITY_NAME = re.compile(r"[A-Za-z0-9_-]+")


def _identity_names(raw: str) -> list[str]:
    """`alpha,beta` (Pylon) or `["alpha", "beta"]` (bittensor-pylon's JSON list)."""
    text = raw.strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            names = json.loads(text)
        except json.JSONDecodeError:
            # `[sn1, sn2]`: the JSON list after a shell's `source` ate its quotes.
            names = text[1:-1].split(",")
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise SettingsError(f"PYLON_IDENTITIES: expected a list of names, got {raw!r}")
        return [name.strip().strip("'\"") for name in names if name.strip()]
    return [name.strip() for name in text.split(",") if name.strip()]


def _identity_value(environ: Mapping[str, str], name: str, field_name: str) -> tuple[str, str] | None:
    """(variable, value) of an identity field: `PYLON_IDENTITY_<NAME>_<FIELD>`, else bittensor-pylon's
    `PYLON_ID_<NAME>_<FIELD>`; None when neither is set."""
    upper = name.upper().replace("-", "_")
    candidates = [f"PYLON_IDENTITY_{upper}_{field_name.upper()}"]
    candidates.append(f"PYLON_ID_{upper}_{PEER_IDENTITY_FIELDS.get(field_name, field_name.upper())}")
    for env_name in candidates:
        if environ.get(env_name, "").strip():
            return env_name, environ[env_name]
    return None


def _identities(environ: Mapping[str, str]) -> tuple[IdentitySettings, ...]:
    """`PYLON_IDENTITIES=alpha,beta` names identities; `PYLON_IDENTITY_ALPHA_WALLET_NAME`... describe them.

    bittensor-pylon's form works too: `PYLON_IDENTITIES=["sn1"]` with `PYLON_ID_SN1_WALLET_NAME`,
    `_HOTKEY_NAME`, `_NETUID` and `_TOKEN` (its wallets in `PYLON_BITTENSOR_WALLET_PATH`).
    """
    names = _identity_names(environ.get("PYLON_IDENTITIES", ""))
    seen: set[str] = set()
    identities = []
    for name in names:
        if not name.isascii() or not _IDENTITY_NAME.fullmatch(name):
            raise SettingsError(f"PYLON_IDENTITIES: {name!r} is not a name of letters, digits, _ and -")
        if name == DEFAULT_IDENTITY:
            raise SettingsError(f"PYLON_IDENTITIES: {name!r} is reserved for the PYLON_WALLET_* identity")
        key = name.upper().replace("-", "_")
        if key in seen:
            raise SettingsError(f"PYLON_IDENTITIES: {name!r} is listed twice")
        seen.add(key)
        values: dict[str, Any] = {"name": name}
        # An empty NETUIDS keeps the default (any netuid), so the optional list parses as a plain list.
        types: dict[str, Any] = {"wallet_name": str, "wallet_hotkey": str, "wallet_path": str, "token": str}
        types["netuids"] = list[int]
        for field_name in (*IDENTITY_FIELDS, "token"):
            found = _identity_value(environ, name, field_name)
            if found is not None:
                values[field_name] = _field_value(found[0], found[1], types[field_name])
        if "wallet_path" not in values and environ.get("PYLON_BITTENSOR_WALLET_PATH", "").strip():
            values["wallet_path"] = environ["PYLON_BITTENSOR_WALLET_PATH"].strip()
        if "wallet_name" not in values:
            raise SettingsError(
                f"PYLON_IDENTITY_{key}_WALLET_NAME: required for identity {name!r} (PYLON_IDENTITIES)"
            )
        identities.append(IdentitySettings(**values))
    tokens = [identity.token for identity in identities if identity.token]
    if len(tokens) != len(set(tokens)):
        raise SettingsError("PYLON_ID_<NAME>_TOKEN: two identities share a token; each needs its own")
    return tuple(identities)


def _with_peer_aliases(values: Mapping[str, str]) -> dict[str, str]:
    """bittensor-pylon's names as Pylon's, within one source (the environment or the env file): Pylon's own
    name wins in the same source, and the environment wins over the file whichever name each uses."""
    resolved = dict(values)
    for peer_name, name in PEER_ALIASES.items():
        if peer_name in resolved and name not in resolved:
            resolved[name] = resolved[peer_name]
    return resolved


def load_settings(environ: Mapping[str, str] | None = None, env_file: str | None = None) -> Settings:
    """Build the settings from the environment, an env file underneath it, and the defaults under both.

    Variables set in the environment win over the env file, so one file can serve several instances.
    """
    env = dict(os.environ if environ is None else environ)
    env_file = env_file or env.get(ENV_FILE_VARIABLE)
    merged: dict[str, str] = {}
    if env_file:
        merged.update(_with_peer_aliases(parse_env_file(env_file)))
    merged.update(_with_peer_aliases(env))

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
    kwargs["identities"] = _identities(merged)
    settings = Settings(**kwargs)
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Checks that span more than one field's type."""
    url = settings.database_url
    if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise SettingsError(
            "PYLON_DB_URL: expected a sqlite+aiosqlite:// or postgresql+asyncpg:// URL, "
            f"got {mask_url(url)!r}"
        )
    if not 1 <= settings.server.port <= 65535:
        raise SettingsError(f"PYLON_PORT: expected a port from 1 to 65535, got {settings.server.port}")
    if settings.server.workers < 1:
        raise SettingsError(f"PYLON_WORKERS: expected at least 1, got {settings.server.workers}")
    if settings.server.shutdown_timeout < 1:
        raise SettingsError(
            f"PYLON_SHUTDOWN_TIMEOUT: expected at least 1 second, got {settings.server.shutdown_timeout}"
        )
    devchain = settings.devchain
    if devchain.block_time <= 0:
        raise SettingsError(f"PYLON_LOCAL_BLOCK_TIME: expected seconds above 0, got {devchain.block_time}")
    if devchain.tempo < 1:
        raise SettingsError(f"PYLON_LOCAL_TEMPO: expected at least 1 block, got {devchain.tempo}")
    if not 0 <= devchain.node_port <= 65535:
        raise SettingsError(
            f"PYLON_LOCAL_NODE_PORT: expected a port from 0 to 65535, got {devchain.node_port}"
        )
    if devchain.node_url and not devchain.node_url.startswith(("ws://", "wss://")):
        raise SettingsError(f"PYLON_LOCAL_NODE_URL: expected a ws:// URL, got {devchain.node_url!r}")
    if settings.chain.metagraph_cache_blocks < 0:
        raise SettingsError(
            f"PYLON_METAGRAPH_CACHE_BLOCKS: expected 0 or more, got {settings.chain.metagraph_cache_blocks}"
        )
    if settings.chain.netuid < 0:
        raise SettingsError(f"PYLON_NETUID: expected a netuid of 0 or more, got {settings.chain.netuid}")
    weights = settings.weights
    for name, value in (
        ("POLL_INTERVAL", weights.poll_interval),
        ("RETRY_START", weights.retry_start),
        ("RETRY_CAP", weights.retry_cap),
    ):
        if value <= 0:
            raise SettingsError(f"PYLON_WEIGHTS_{name}: expected seconds above 0, got {value}")
    if weights.max_attempts < 1:
        raise SettingsError(f"PYLON_WEIGHTS_MAX_ATTEMPTS: expected at least 1, got {weights.max_attempts}")
    if weights.coalesce_seconds < 0:
        raise SettingsError(f"PYLON_WEIGHTS_COALESCE_SECONDS: expected >= 0, got {weights.coalesce_seconds}")
    if weights.lease_margin < 0:
        raise SettingsError(f"PYLON_WEIGHTS_LEASE_MARGIN: expected >= 0 seconds, got {weights.lease_margin}")
    _validate_keys(settings)
    _validate_inference(settings.inference)
    _validate_tasks(settings.tasks)
    _validate_fiber(settings)
    _validate_gateway(settings)
    _validate_upstreams(settings.upstreams)


TASK_KINDS = ("transcription", "tts", "summarization")


def _validate_tasks(tasks: TasksSettings) -> None:
    for name in ("retry_start", "retry_cap", "result_ttl", "poll_interval"):
        if getattr(tasks, name) <= 0:
            raise SettingsError(
                f"PYLON_TASKS_{name.upper()}: expected seconds above 0, got {getattr(tasks, name)}"
            )
    if tasks.max_attempts < 1:
        raise SettingsError(f"PYLON_TASKS_MAX_ATTEMPTS: expected at least 1, got {tasks.max_attempts}")
    if tasks.lease_margin < 0:
        raise SettingsError(f"PYLON_TASKS_LEASE_MARGIN: expected >= 0 seconds, got {tasks.lease_margin}")
    if tasks.max_upload_size < 1:
        raise SettingsError(
            f"PYLON_TASKS_MAX_UPLOAD_SIZE: expected bytes above 0, got {tasks.max_upload_size}"
        )
    for name, mapping in (
        ("ROUTES", tasks.routes),
        ("TIMEOUTS", tasks.timeouts),
        ("REFERENCES", tasks.references),
    ):
        unknown = sorted(set(mapping) - set(TASK_KINDS))
        if unknown:
            raise SettingsError(
                f"PYLON_TASKS_{name}: unknown task kind {unknown[0]!r}; kinds are {', '.join(TASK_KINDS)}"
            )
    for kind, timeout in tasks.timeouts.items():
        if timeout <= 0:
            raise SettingsError(f"PYLON_TASKS_TIMEOUTS: {kind} expected seconds above 0, got {timeout}")


def _validate_keys(settings: Settings) -> None:
    keys, epistula = settings.keys, settings.epistula
    for name in ("sync_interval", "usage_flush_interval", "cache_ttl", "rate_window"):
        if getattr(keys, name) <= 0:
            raise SettingsError(
                f"PYLON_KEYS_{name.upper()}: expected seconds above 0, got {getattr(keys, name)}"
            )
    for name in ("usage_batch_size", "usage_buffer_max"):
        if getattr(keys, name) < 1:
            raise SettingsError(f"PYLON_KEYS_{name.upper()}: expected at least 1, got {getattr(keys, name)}")
    if epistula.window <= 0:
        raise SettingsError(f"PYLON_EPISTULA_WINDOW: expected seconds above 0, got {epistula.window}")
    if epistula.replay_capacity < 1:
        raise SettingsError(
            f"PYLON_EPISTULA_REPLAY_CAPACITY: expected at least 1, got {epistula.replay_capacity}"
        )
    if epistula.min_stake < 0:
        raise SettingsError(f"PYLON_EPISTULA_MIN_STAKE: expected 0 or more, got {epistula.min_stake}")
    if epistula.netuid is not None and epistula.netuid < 0:
        raise SettingsError(f"PYLON_EPISTULA_NETUID: expected a netuid of 0 or more, got {epistula.netuid}")
    for entry in epistula.hotkeys:
        _, sep, stake = entry.partition(":")
        if sep:
            try:
                float(stake)
            except ValueError:
                raise SettingsError(
                    f"PYLON_EPISTULA_HOTKEYS: expected `ss58` or `ss58:stake` entries, got {entry!r}"
                ) from None


def _validate_fiber(settings: Settings) -> None:
    fiber, cors = settings.fiber, settings.cors
    if fiber.nonce_window <= 0:
        raise SettingsError(f"PYLON_FIBER_NONCE_WINDOW: expected seconds above 0, got {fiber.nonce_window}")
    if fiber.symmetric_key_ttl <= 0:
        raise SettingsError(
            f"PYLON_FIBER_SYMMETRIC_KEY_TTL: expected seconds above 0, got {fiber.symmetric_key_ttl}"
        )
    if fiber.replay_capacity < 1:
        raise SettingsError(f"PYLON_FIBER_REPLAY_CAPACITY: expected at least 1, got {fiber.replay_capacity}")
    for origin in cors.allow_origins:
        if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
            raise SettingsError(
                f"PYLON_CORS_ALLOW_ORIGINS: expected origins like https://app.example (no path) or *, "
                f"got {origin!r}"
            )
    if "*" in cors.allow_origins and cors.allow_credentials:
        raise SettingsError(
            "PYLON_CORS_ALLOW_CREDENTIALS: cannot be true while PYLON_CORS_ALLOW_ORIGINS is *"
        )
    if cors.max_age < 0:
        raise SettingsError(f"PYLON_CORS_MAX_AGE: expected 0 seconds or more, got {cors.max_age}")


_URL_SECRET_PARAMS = re.compile(r"([?&](?:password|passwd|pwd|token|api_key|apikey|secret)=)([^&#]*)", re.I)


def _url_parts(url: str) -> tuple[str, str, str, str] | None:
    """(scheme, user, password, host and the rest) of a URL with credentials, or None."""
    scheme, sep, rest = url.partition("://")
    # The last `@` ends the credentials: an unencoded password may itself hold `@`, `:` or `/`.
    credentials, at, host = rest.rpartition("@")
    if not sep or not at:
        return None
    user, _, password = credentials.partition(":")
    return scheme, user, password, host


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
        if backend.kind == "subnet":
            continue  # checked by _validate_gateway
        if not backend.base_url.startswith(("http://", "https://")):
            raise SettingsError(
                f"PYLON_BACKENDS: backend {backend.name!r}: base_url must start with http:// or https://, "
                f"got {backend.base_url!r}"
            )
        if backend.weight <= 0:
            raise SettingsError(f"PYLON_BACKENDS: backend {backend.name!r}: weight must be above 0")
        if backend.max_in_flight < 0:
            raise SettingsError(f"PYLON_BACKENDS: backend {backend.name!r}: max_in_flight must be 0 or more")
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


def _validate_gateway(settings: Settings) -> None:
    import ipaddress

    gateway = settings.gateway
    for entry in gateway.allowed_networks:
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise SettingsError(
                f"PYLON_GATEWAY_ALLOWED_NETWORKS: {entry!r} is not a CIDR network (e.g. 203.0.113.0/24)"
            ) from None
        if settings.chain.network == "local" and not network.is_loopback:
            raise SettingsError(
                f"PYLON_GATEWAY_ALLOWED_NETWORKS: {entry!r} is not loopback; with PYLON_NETWORK=local the "
                "gateway calls loopback miners only"
            )
    if gateway.scorer and ":" not in gateway.scorer:
        raise SettingsError(f"PYLON_GATEWAY_SCORER: expected module:function, got {gateway.scorer!r}")
    for name in ("accuracy_weight", "speed_weight"):
        if getattr(gateway, name) < 0:
            raise SettingsError(
                f"PYLON_GATEWAY_{name.upper()}: expected 0 or more, got {getattr(gateway, name)}"
            )
    if gateway.accuracy_weight + gateway.speed_weight <= 0:
        raise SettingsError("PYLON_GATEWAY_ACCURACY_WEIGHT: accuracy and speed weights cannot both be 0")
    if gateway.speed_scale <= 0:
        raise SettingsError(f"PYLON_GATEWAY_SPEED_SCALE: expected seconds above 0, got {gateway.speed_scale}")
    if not 0 < gateway.score_alpha <= 1:
        raise SettingsError(
            f"PYLON_GATEWAY_SCORE_ALPHA: expected above 0 and at most 1, got {gateway.score_alpha}"
        )
    if not 0 <= gateway.exploration <= 1:
        raise SettingsError(f"PYLON_GATEWAY_EXPLORATION: expected 0 to 1, got {gateway.exploration}")
    if gateway.flush_interval <= 0:
        raise SettingsError(
            f"PYLON_GATEWAY_FLUSH_INTERVAL: expected seconds above 0, got {gateway.flush_interval}"
        )
    names = {backend.name: backend for backend in settings.inference.backends}
    for backend in settings.inference.backends:
        if backend.kind != "subnet":
            continue
        where = f"PYLON_BACKENDS: subnet backend {backend.name!r}"
        if not backend.models:
            raise SettingsError(f"{where}: list the model names it serves in `models`")
        if backend.fanout < 1:
            raise SettingsError(f"{where}: fanout must be at least 1")
        if backend.request_timeout <= 0 or backend.total_timeout <= 0:
            raise SettingsError(f"{where}: timeouts must be above 0 seconds")
        if backend.hedge_delay is not None and backend.hedge_delay < 0:
            raise SettingsError(f"{where}: hedge_delay must be 0 seconds or more")
        if backend.netuid is not None and backend.netuid < 0:
            raise SettingsError(f"{where}: netuid must be 0 or more")
        if backend.path_prefix and not backend.path_prefix.startswith("/"):
            raise SettingsError(f"{where}: path_prefix must start with / (got {backend.path_prefix!r})")
        if backend.reference:
            reference = names.get(backend.reference)
            if reference is None:
                raise SettingsError(f"{where}: reference {backend.reference!r} is not a configured backend")
            if reference.kind == "subnet":
                raise SettingsError(f"{where}: the reference must be a model server, not a subnet backend")
        if backend.identity != DEFAULT_IDENTITY and backend.identity not in {
            identity.name for identity in settings.identities
        }:
            raise SettingsError(f"{where}: identity {backend.identity!r} is not listed in PYLON_IDENTITIES")


# Pylon's own route prefixes: an upstream prefix may not sit on or under them, nor they under it.
RESERVED_PREFIXES = (
    "/api",
    "/v1",
    "/health",
    "/ready",
    "/status",
    "/metrics",
    "/schema",
    "/dashboard",
    # Fiber (app/fiber/): the handshake and the miner's availability.
    "/public-encryption-key",
    "/exchange-symmetric-key",
    "/availability",
)
_PREFIX = re.compile(r"^(/[A-Za-z0-9._~!$&'()*+,;=:@-]+)+$")
_UPSTREAM_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def upstream_name(upstream: UpstreamSettings) -> str:
    """The upstream's name: its own, or its prefix without slashes (`/a/b` -> `a-b`)."""
    return upstream.name or upstream.prefix.strip("/").replace("/", "-")


def _validate_upstreams(section: UpstreamsSettings) -> None:
    var = "PYLON_UPSTREAMS"
    seen: dict[str, str] = {}
    names: set[str] = set()
    for upstream in section.upstreams:
        prefix = upstream.prefix
        if not _PREFIX.match(prefix):
            raise SettingsError(
                f"{var}: prefix {prefix!r} must be a path like /train: starting with /, no trailing slash, "
                "no empty segment, query or parameter"
            )
        for reserved in RESERVED_PREFIXES:
            if _under(prefix, reserved) or _under(reserved, prefix):
                raise SettingsError(
                    f"{var}: prefix {prefix!r} clashes with Pylon's own routes under {reserved}"
                )
        for other in seen:
            if _under(prefix, other) or _under(other, prefix):
                raise SettingsError(
                    f"{var}: prefixes must be distinct and not nested: {other!r} and {prefix!r}"
                )
        name = upstream_name(upstream)
        if not _UPSTREAM_NAME.match(name) or name in names:
            raise SettingsError(
                f"{var}: upstream {prefix!r}: name {name!r} must be unique, letters, digits, _.-"
            )
        seen[prefix] = name
        names.add(name)
        host = upstream.url.partition("://")[2].split("/", 1)[0]
        if not upstream.url.startswith(("http://", "https://")) or not host or "?" in upstream.url:
            raise SettingsError(
                f"{var}: upstream {prefix!r}: url must be http:// or https:// with a host and no query, "
                f"got {mask_url(upstream.url)!r}"
            )
        if upstream.connect_timeout <= 0 or upstream.timeout <= 0:
            raise SettingsError(f"{var}: upstream {prefix!r}: timeouts must be above 0 seconds")
        if upstream.min_stake < 0:
            raise SettingsError(f"{var}: upstream {prefix!r}: min_stake must be 0 or more")
        if not upstream.health_path.startswith("/"):
            raise SettingsError(f"{var}: upstream {prefix!r}: health_path must start with /")
    if section.upstream_signed_body_max < 1024:
        raise SettingsError(
            "PYLON_UPSTREAM_SIGNED_BODY_MAX: expected at least 1024 bytes, "
            f"got {section.upstream_signed_body_max}"
        )
    for name in ("upstream_status_ttl", "upstream_probe_timeout"):
        if getattr(section, name) <= 0:
            raise SettingsError(
                f"PYLON_{name.upper()}: expected seconds above 0, got {getattr(section, name)}"
            )


def mask_url(url: str) -> str:
    """Hide a password in a URL, in its credentials or its query (`?password=`)."""
    parts = _url_parts(url)
    if parts is not None:
        scheme, user, password, host = parts
        if password:
            url = f"{scheme}://{user}:***@{host}"
    return _URL_SECRET_PARAMS.sub(r"\1***", url)


def is_secret_field(name: str) -> bool:
    """Fields whose value is secret: the known names and any `*_token`, `*_key`, `*_secret`, `*password`."""
    return name in SECRET_FIELDS or name.endswith(("_token", "_key", "_secret", "password"))


def _secret_strings(data: Any, found: list[str]) -> Any:
    """Mask secrets in plain data, collecting the raw secret values in `found`."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, str) and value and is_secret_field(str(key)) and "://" not in value:
                found.append(value)
                out[key] = "***"
            else:
                out[key] = _secret_strings(value, found)
        return out
    if isinstance(data, list | tuple):
        return [_secret_strings(item, found) for item in data]
    if isinstance(data, str) and "://" in data:
        # Any URL (database, backend, chain node) may carry a password.
        parts = _url_parts(data)
        if parts is not None and parts[2]:
            found.append(parts[2])
        found.extend(match.group(2) for match in _URL_SECRET_PARAMS.finditer(data) if match.group(2))
        return mask_url(data)
    return data


def masked(settings: Settings) -> dict[str, Any]:
    """The settings as plain data with secrets hidden, for `pylon config show`."""
    result: dict[str, Any] = _secret_strings(msgspec.to_builtins(settings), [])
    result["database_url"] = mask_url(settings.database_url)
    return result


def secret_values(settings: Settings) -> list[str]:
    """Every secret value in the settings (tokens, URL passwords), for the log redactor."""
    found: list[str] = []
    _secret_strings(msgspec.to_builtins(settings), found)
    _secret_strings(settings.database_url, found)
    return sorted(set(found))
