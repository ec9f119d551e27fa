"""What a caller may do. Every route names one scope in `opt={"scope": ...}` or says why it is open."""

from enum import StrEnum


class Scope(StrEnum):
    NEURONS_READ = "neurons:read"
    WEIGHTS_WRITE = "weights:write"
    WEIGHTS_READ = "weights:read"
    INFERENCE = "inference"
    KEYS_ADMIN = "keys:admin"
    METRICS_READ = "metrics:read"
    DASHBOARD = "dashboard"
    TASKS = "tasks"
    # The miner's internal servers behind PYLON_UPSTREAMS prefixes (app/upstreams/).
    UPSTREAM = "upstream"
