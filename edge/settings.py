"""Process settings: every ``EDGE_*`` variable, read once into a frozen object.

Nothing on the request path reads the environment; it gets a ``Settings``.
A bad value fails the start with a message naming the variable. The full
list with defaults is docs/CONFIG.md; keep the two in step.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass


class SettingsError(ValueError):
    """An environment variable holds a value the gateway cannot use."""


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    policy: str = ""  # path to a policy TOML; empty = the shipped default
    state_dir: str = "./state"
    redis_url: str = ""
    keys: str = (
        ""  # comma-separated gateway keys (or sha256:<hex> digests), key=tier to set a default tier
    )
    keys_file: str = ""
    admin_key: str = ""
    log_level: str = "info"
    access_log: bool = True
    max_body_bytes: int = 32 * 1024 * 1024
    # request body bytes one worker buffers at once; 0 = the larger of 64 MiB and two bodies
    max_buffered_bytes: int = 0
    max_json_items: int = 200_000  # `{`, `[` and `,` outside strings in a request body
    max_json_depth: int = 64
    max_messages: int = 10_000
    max_tools: int = 1_000
    auth_failures: int = 5  # failed auths per peer address within the window before delays
    auth_window_s: float = 60.0
    auth_delay_max_s: float = 8.0
    max_header_bytes: int = 32 * 1024
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    keepalive_timeout_s: float = 75.0
    write_timeout_s: float = 30.0  # a client that reads nothing this long loses its connection
    max_connections: int = 4096
    drain_s: float = 30.0
    upstream_connect_timeout_s: float = 5.0
    upstream_read_timeout_s: float = 600.0
    upstream_max_per_host: int = 512
    upstream_idle_s: float = 30.0
    upstream_ca_file: str = (
        ""  # extra CA bundle (PEM) to trust for https providers; empty = system store only
    )
    hedging: bool = True
    hedge_budget_percent: float = 10.0  # hedges as a share of requests over a sliding minute
    hedge_budget_min: int = (
        3  # hedges a minute allowed whatever the traffic (a quiet gateway can hedge)
    )
    max_attempts: int = 3  # upstream attempts per request: primary, hedges and failovers together
    breakers: bool = True  # the breakers' thresholds are the policy's [breakers] table
    jobs_concurrency: int = 4  # jobs run at once, per worker
    jobs_rate: float = 5.0  # job starts per second, per worker
    jobs_max_attempts: int = 5
    jobs_lease_s: float = 30.0
    jobs_retention_s: float = 7 * 86400.0
    responses_retention_s: float = 30 * 86400.0  # stored Responses API answers (store=true)
    jobs_poll_s: float = 0.5
    jobs_backoff_s: float = 2.0  # first retry delay of a failed job; doubles, capped at 300 s
    jobs_webhook_attempts: int = 5  # deliveries of a job's webhook tried before it is given up
    jobs_webhook_backoff_s: float = 1.0  # first delay between them; doubles
    state_wait_ms: float = 10.0  # longest a SQLite call on the event loop waits for a lock
    redis_wait_ms: float = 100.0  # longest a Redis call on the event loop waits (connect, answer)
    spend_pending_max: int = 10_000  # settlements and ledger rows kept while the state is down
    rollout_stages: str = "1,10,50,100"  # canary percentages, in order
    rollout_min_requests: int = 200  # canary requests a stage needs before it advances
    rollout_dwell_s: float = 600.0  # minimum age of a stage before it advances
    rollout_min_samples: int = 100  # per arm, before a breach or a comparison can roll back
    rollout_success_floor: float = 0.97
    rollout_p95_ms: float = 3000.0
    rollout_cost_cap_usd: float = 0.02
    rollout_margin: float = 0.02
    rollout_alpha: float = 0.01
    gold_every: str = (
        "7d"  # the scheduled gold run's period: 7d, 12h, 30m, 90s; 0 = no scheduled runs
    )
    gold_report: str = ""  # the gold report whose per-model scores the router uses; "" = <state_dir>/gold/latest.json
    metrics_dir: str = (
        ""  # set by the supervisor: where workers share their metrics (not an env var)
    )
    # the cyclic collector's generation thresholds for a worker (Python's own, 700,10,10, run a
    # collection every couple of requests)
    gc_thresholds: str = "20000,20,50"
    simulate: str = "auto"  # auto | on | off
    sim_profile: str = "default"

    @property
    def stages(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.rollout_stages.split(",") if p.strip())

    @property
    def gold_every_s(self) -> float:
        return duration_s(self.gold_every)

    @property
    def gold_report_path(self) -> str:
        return self.gold_report or os.path.join(self.state_dir, "gold", "latest.json")

    @property
    def gc(self) -> tuple[int, int, int]:
        first, second, third = (int(x) for x in self.gc_thresholds.split(","))
        return first, second, third

    @property
    def body_budget(self) -> int:
        if self.max_buffered_bytes:
            return self.max_buffered_bytes
        return max(64 * 1024 * 1024, 2 * self.max_body_bytes)

    @property
    def loopback(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")


_FIELDS: dict[str, tuple[str, type]] = {
    "EDGE_HOST": ("host", str),
    "EDGE_PORT": ("port", int),
    "EDGE_WORKERS": ("workers", int),
    "EDGE_POLICY": ("policy", str),
    "EDGE_STATE_DIR": ("state_dir", str),
    "EDGE_REDIS_URL": ("redis_url", str),
    "EDGE_KEYS": ("keys", str),
    "EDGE_KEYS_FILE": ("keys_file", str),
    "EDGE_ADMIN_KEY": ("admin_key", str),
    "EDGE_LOG_LEVEL": ("log_level", str),
    "EDGE_ACCESS_LOG": ("access_log", bool),
    "EDGE_MAX_BODY_BYTES": ("max_body_bytes", int),
    "EDGE_MAX_BUFFERED_BYTES": ("max_buffered_bytes", int),
    "EDGE_MAX_JSON_ITEMS": ("max_json_items", int),
    "EDGE_MAX_JSON_DEPTH": ("max_json_depth", int),
    "EDGE_MAX_MESSAGES": ("max_messages", int),
    "EDGE_MAX_TOOLS": ("max_tools", int),
    "EDGE_AUTH_FAILURES": ("auth_failures", int),
    "EDGE_AUTH_WINDOW_S": ("auth_window_s", float),
    "EDGE_AUTH_DELAY_MAX_S": ("auth_delay_max_s", float),
    "EDGE_MAX_HEADER_BYTES": ("max_header_bytes", int),
    "EDGE_HEADER_TIMEOUT_S": ("header_timeout_s", float),
    "EDGE_BODY_TIMEOUT_S": ("body_timeout_s", float),
    "EDGE_KEEPALIVE_TIMEOUT_S": ("keepalive_timeout_s", float),
    "EDGE_WRITE_TIMEOUT_S": ("write_timeout_s", float),
    "EDGE_MAX_CONNECTIONS": ("max_connections", int),
    "EDGE_GC_THRESHOLDS": ("gc_thresholds", str),
    "EDGE_DRAIN_S": ("drain_s", float),
    "EDGE_UPSTREAM_CONNECT_TIMEOUT_S": ("upstream_connect_timeout_s", float),
    "EDGE_UPSTREAM_READ_TIMEOUT_S": ("upstream_read_timeout_s", float),
    "EDGE_UPSTREAM_MAX_PER_HOST": ("upstream_max_per_host", int),
    "EDGE_UPSTREAM_IDLE_S": ("upstream_idle_s", float),
    "EDGE_UPSTREAM_CA_FILE": ("upstream_ca_file", str),
    "EDGE_HEDGING": ("hedging", bool),
    "EDGE_HEDGE_BUDGET_PERCENT": ("hedge_budget_percent", float),
    "EDGE_HEDGE_BUDGET_MIN": ("hedge_budget_min", int),
    "EDGE_MAX_ATTEMPTS": ("max_attempts", int),
    "EDGE_BREAKERS": ("breakers", bool),
    "EDGE_JOBS_CONCURRENCY": ("jobs_concurrency", int),
    "EDGE_JOBS_RATE": ("jobs_rate", float),
    "EDGE_JOBS_MAX_ATTEMPTS": ("jobs_max_attempts", int),
    "EDGE_JOBS_LEASE_S": ("jobs_lease_s", float),
    "EDGE_JOBS_RETENTION_S": ("jobs_retention_s", float),
    "EDGE_RESPONSES_RETENTION_S": ("responses_retention_s", float),
    "EDGE_JOBS_POLL_S": ("jobs_poll_s", float),
    "EDGE_JOBS_BACKOFF_S": ("jobs_backoff_s", float),
    "EDGE_JOBS_WEBHOOK_ATTEMPTS": ("jobs_webhook_attempts", int),
    "EDGE_JOBS_WEBHOOK_BACKOFF_S": ("jobs_webhook_backoff_s", float),
    "EDGE_STATE_WAIT_MS": ("state_wait_ms", float),
    "EDGE_REDIS_WAIT_MS": ("redis_wait_ms", float),
    "EDGE_SPEND_PENDING_MAX": ("spend_pending_max", int),
    "EDGE_GOLD_REPORT": ("gold_report", str),
    "EDGE_GOLD_EVERY": ("gold_every", str),
    "EDGE_ROLLOUT_STAGES": ("rollout_stages", str),
    "EDGE_ROLLOUT_MIN_REQUESTS": ("rollout_min_requests", int),
    "EDGE_ROLLOUT_DWELL_S": ("rollout_dwell_s", float),
    "EDGE_ROLLOUT_MIN_SAMPLES": ("rollout_min_samples", int),
    "EDGE_ROLLOUT_SUCCESS_FLOOR": ("rollout_success_floor", float),
    "EDGE_ROLLOUT_P95_MS": ("rollout_p95_ms", float),
    "EDGE_ROLLOUT_COST_CAP_USD": ("rollout_cost_cap_usd", float),
    "EDGE_ROLLOUT_MARGIN": ("rollout_margin", float),
    "EDGE_ROLLOUT_ALPHA": ("rollout_alpha", float),
    "EDGE_SIMULATE": ("simulate", str),
    "EDGE_SIM_PROFILE": ("sim_profile", str),
}
# read elsewhere: the compiled-module selector, the gold runner, the locust file
OTHER_NAMES = frozenset({"EDGE_NO_EXTENSIONS", "EDGE_GOLD_KEY", "EDGE_GOLD_SET", "EDGE_BENCH_KEY"})


def unknown_names(env: Mapping[str, str], policy_names: set[str]) -> list[str]:
    """``EDGE_*`` variables nothing reads, each with the nearest valid name: a typo such as
    ``EDGE_L1_SOFT_TIMOUT_MS`` must not be silently ignored."""
    valid = set(_FIELDS) | OTHER_NAMES | policy_names
    out = []
    for name in sorted(env):
        if name.startswith("EDGE_") and name not in valid:
            near = difflib.get_close_matches(name, valid, n=1)
            out.append(f"{name} (did you mean {near[0]}?)" if near else name)
    return out


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def duration_s(raw: str) -> float:
    """``7d``, ``12h``, ``30m``, ``90s``, ``1w`` or plain seconds -> seconds (ValueError else)."""
    text = raw.strip().lower()
    unit = _UNITS.get(text[-1:], 0.0)
    number = float(text[:-1] if unit else text)
    if number < 0 or number != number or number == float("inf"):
        raise ValueError(raw)
    return number * (unit or 1.0)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(name: str, raw: str, kind: type) -> object:
    raw = raw.strip()
    try:
        if kind is bool:
            low = raw.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(raw)
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
    except ValueError:
        raise SettingsError(f"{name}: expected {kind.__name__}, got {raw!r}") from None
    return raw


def load_settings(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Read ``EDGE_*`` from ``env`` (default: the process environment); overrides win."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for name, (attr, kind) in _FIELDS.items():
        if name in env and env[name] != "":
            values[attr] = _parse(name, env[name], kind)
    values.update({k: v for k, v in overrides.items() if v is not None})
    s = Settings(**values)  # type: ignore[arg-type]
    _check(s)
    return s


def _check(s: Settings) -> None:
    def need(cond: bool, name: str, why: str) -> None:
        if not cond:
            raise SettingsError(f"{name}: {why}")

    try:
        duration_s(s.gold_every)
    except ValueError:
        need(False, "EDGE_GOLD_EVERY", f"expected a duration (7d, 12h, 0), got {s.gold_every!r}")
    need(0 <= s.port <= 65535, "EDGE_PORT", "must be 0..65535")
    need(s.workers >= 1, "EDGE_WORKERS", "must be at least 1")
    need(s.max_body_bytes >= 1024, "EDGE_MAX_BODY_BYTES", "must be at least 1024")
    need(s.max_header_bytes >= 1024, "EDGE_MAX_HEADER_BYTES", "must be at least 1024")
    need(
        not s.max_buffered_bytes or s.max_buffered_bytes >= s.max_body_bytes,
        "EDGE_MAX_BUFFERED_BYTES",
        "must be at least EDGE_MAX_BODY_BYTES (a body of the largest size must fit)",
    )
    need(s.max_json_items >= 16, "EDGE_MAX_JSON_ITEMS", "must be at least 16")
    need(
        1 <= s.max_json_depth <= 254,
        "EDGE_MAX_JSON_DEPTH",
        "must be 1..254 (deeper JSON cannot be forwarded)",
    )
    need(s.max_messages >= 1, "EDGE_MAX_MESSAGES", "must be at least 1")
    need(s.max_tools >= 0, "EDGE_MAX_TOOLS", "must not be negative")
    need(s.auth_failures >= 0, "EDGE_AUTH_FAILURES", "must not be negative")
    need(s.auth_window_s > 0, "EDGE_AUTH_WINDOW_S", "must be greater than 0")
    need(s.auth_delay_max_s >= 0, "EDGE_AUTH_DELAY_MAX_S", "must not be negative")
    need(s.max_connections >= 1, "EDGE_MAX_CONNECTIONS", "must be at least 1")
    need(s.upstream_max_per_host >= 1, "EDGE_UPSTREAM_MAX_PER_HOST", "must be at least 1")
    for name, value in (
        ("EDGE_HEADER_TIMEOUT_S", s.header_timeout_s),
        ("EDGE_BODY_TIMEOUT_S", s.body_timeout_s),
        ("EDGE_KEEPALIVE_TIMEOUT_S", s.keepalive_timeout_s),
        ("EDGE_WRITE_TIMEOUT_S", s.write_timeout_s),
        ("EDGE_UPSTREAM_CONNECT_TIMEOUT_S", s.upstream_connect_timeout_s),
        ("EDGE_UPSTREAM_READ_TIMEOUT_S", s.upstream_read_timeout_s),
    ):
        need(value > 0, name, "must be greater than 0")
    need(s.drain_s >= 0, "EDGE_DRAIN_S", "must not be negative")
    try:
        gc = s.gc
    except ValueError:
        gc = (0, 0, 0)
    need(
        min(gc) >= 1,
        "EDGE_GC_THRESHOLDS",
        f"expected three positive integers (20000,20,50), got {s.gc_thresholds!r}",
    )
    need(
        0 <= s.hedge_budget_percent <= 100, "EDGE_HEDGE_BUDGET_PERCENT", "must be between 0 and 100"
    )
    need(s.hedge_budget_min >= 0, "EDGE_HEDGE_BUDGET_MIN", "must not be negative")
    need(s.max_attempts >= 1, "EDGE_MAX_ATTEMPTS", "must be at least 1")
    try:
        stages = s.stages
    except ValueError:
        stages = ()
    need(
        bool(stages)
        and list(stages) == sorted(set(stages))
        and stages[0] > 0
        and stages[-1] == 100,
        "EDGE_ROLLOUT_STAGES",
        "must be increasing percentages ending at 100, like 1,10,50,100",
    )
    need(s.jobs_concurrency >= 1, "EDGE_JOBS_CONCURRENCY", "must be at least 1")
    need(s.jobs_max_attempts >= 1, "EDGE_JOBS_MAX_ATTEMPTS", "must be at least 1")
    need(s.jobs_webhook_attempts >= 1, "EDGE_JOBS_WEBHOOK_ATTEMPTS", "must be at least 1")
    need(s.spend_pending_max >= 100, "EDGE_SPEND_PENDING_MAX", "must be at least 100")
    for name, value in (
        ("EDGE_JOBS_RATE", s.jobs_rate),
        ("EDGE_JOBS_LEASE_S", s.jobs_lease_s),
        ("EDGE_JOBS_RETENTION_S", s.jobs_retention_s),
        ("EDGE_RESPONSES_RETENTION_S", s.responses_retention_s),
        ("EDGE_JOBS_POLL_S", s.jobs_poll_s),
        ("EDGE_JOBS_BACKOFF_S", s.jobs_backoff_s),
        ("EDGE_JOBS_WEBHOOK_BACKOFF_S", s.jobs_webhook_backoff_s),
        ("EDGE_STATE_WAIT_MS", s.state_wait_ms),
        ("EDGE_REDIS_WAIT_MS", s.redis_wait_ms),
    ):
        need(value > 0, name, "must be greater than 0")
    need(
        not s.upstream_ca_file or os.path.isfile(s.upstream_ca_file),
        "EDGE_UPSTREAM_CA_FILE",
        "no such file",
    )
    need(s.simulate in ("auto", "on", "off"), "EDGE_SIMULATE", "must be auto, on or off")
    need(
        s.log_level in ("debug", "info", "warning", "error"),
        "EDGE_LOG_LEVEL",
        "must be debug, info, warning or error",
    )
